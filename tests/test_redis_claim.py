"""`tests.support.redis_claim`: one test run per Redis database on this machine."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from tests.support.redis_claim import DatabaseInUse, claim_database, claim_path


@pytest.fixture
def url() -> str:
    """A database nobody else claims: a port no Redis listens on, a fresh name each time."""
    return f"redis://127.0.0.1:1/claim-test-{uuid.uuid4().hex}"


def test_a_second_claim_is_refused_naming_the_holder_and_free_again_after(url: str) -> None:
    try:
        with (
            claim_database(url),
            pytest.raises(DatabaseInUse, match=r"in use by another test run \(pid \d+"),
            claim_database(url),
        ):
            pass
        with claim_database(url):  # released when the first claim ended
            pass
    finally:
        claim_path(url).unlink(missing_ok=True)


def test_a_killed_holder_leaves_the_database_free(url: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from tests.support.redis_claim import claim_database\n"
            f"with claim_database({url!r}):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DatabaseInUse, match=f"pid {holder.pid} "), claim_database(url):
            pass
        holder.kill()
        holder.wait(timeout=10)
        with claim_database(url):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
        claim_path(url).unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("redis://127.0.0.1:6379/15", "darktower-test-redis-127.0.0.1-6379-15.lock"),
        ("redis://localhost", "darktower-test-redis-localhost-6379-0.lock"),
    ],
)
def test_the_claim_is_named_after_host_port_and_database(url: str, name: str) -> None:
    assert claim_path(url).name == name
