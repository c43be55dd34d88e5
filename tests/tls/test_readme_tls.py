"""The README's TLS section works as typed: its first block (keys, a certificate, a GC on TLS)
and its `darktower status --ca-file` line against that GC; the README's port 8080 becomes a
free one, the only change."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from darktower.embedded.redis import free_port
from tests.support.readme import bash_blocks_in
from tests.support.services import START_TIMEOUT_S, ServiceProcess, darktower_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)


def tls_blocks() -> list[str]:
    return bash_blocks_in("## TLS")


@pytest.fixture
def services() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    try:
        yield started
    finally:
        for service in started:
            service.close()


def test_the_readme_tls_gc_and_status_run_as_typed(
    tmp_path: Path, services: list[ServiceProcess]
) -> None:
    gc_block, status_block = tls_blocks()
    assert "darktower certs generate" in gc_block and "GC_TLS_CERT_FILE" in gc_block
    assert "https://127.0.0.1:8080" in status_block
    http = free_port()
    gc = ServiceProcess.shell(
        gc_block,
        darktower_env(
            {"GC_GRPC_BIND": f"127.0.0.1:{free_port()}", "GC_HTTP_BIND": f"127.0.0.1:{http}"}
        ),
        tmp_path,
    )
    services.append(gc)
    # The block runs four darktower commands before the GC's: each is a Python start, slow on
    # a loaded machine. The GC's start is judged from the moment its certificate exists.
    wait_until(
        lambda: (tmp_path / "certs" / "gc-1.key").exists() or gc.proc.poll() is not None,
        timeout=4 * START_TIMEOUT_S,
        what="the block's keys and certificates made",
    )
    assert gc.proc.poll() is None, gc.log()
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:  # the CA file appears once the block's second line ran
            trusting = ssl.create_default_context(cafile=tmp_path / "certs" / "ca.crt")
            live = httpx.get(f"https://127.0.0.1:{http}/health/live", verify=trusting, timeout=2)
            if live.status_code == 200:
                break
        except (httpx.TransportError, FileNotFoundError, ssl.SSLError):
            pass
        assert gc.proc.poll() is None, gc.log()
        assert time.monotonic() < deadline, gc.log()
        time.sleep(0.2)
    assert (tmp_path / "certs" / "ca.key").stat().st_mode & 0o077 == 0
    assert "serving gRPC (TLS)" in gc.log()

    done = subprocess.run(
        ["bash", "-c", status_block.replace(":8080", f":{http}")],
        env=darktower_env({}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"https://127.0.0.1:{http}" in done.stdout
    assert gc.terminate(40.0) == 0, gc.log()
