"""`darktower dev` as a user runs it: a real fleet in a subprocess, joins, status, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

DARKTOWER = [sys.executable, "-m", "darktower"]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DARKTOWER, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def dev_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "GC_", "DARKTOWER_GC"))}
    env["DARKTOWER_DEV_STATE"] = str(tmp_path / "dev-state.json")
    return env


@pytest.fixture
def dev_fleet(dev_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    out = (tmp_path / "dev.out").open("w")
    proc = subprocess.Popen(
        [*DARKTOWER, "dev", "--mcs", "2", "--mhs", "2", "--any-port"],
        env=dev_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / "dev-state.json").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"darktower dev did not come up:\n{(tmp_path / 'dev.out').read_text()}")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            # Whatever happened in the test, leave nothing behind.
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
        proc.wait()
        out.close()


@pytest.mark.timeout(180)
def test_dev_fleet_places_spreads_and_stops_cleanly(
    dev_fleet: subprocess.Popen[str], dev_env: dict[str, str], tmp_path: Path
) -> None:
    children = psutil.Process(dev_fleet.pid).children(recursive=True)
    commands = [" ".join(c.cmdline()) for c in children]
    assert sum("darktower mc" in c for c in commands) == 2
    assert sum("darktower gc" in c for c in commands) == 1
    assert sum("darktower mh-sim" in c for c in commands) == 2

    placed: Counter[str] = Counter()
    for i in range(20):
        joined = cli(dev_env, "join", f"meeting-{i}")  # no --gc-url: finds the dev fleet
        assert joined.returncode == 0, joined.stderr
        answer = json.loads(joined.stdout)
        assert answer["meeting_id"] == f"meeting-{i}"
        assert len(answer["media_handlers"]) == 2
        placed[answer["mc_id"]] += 1
    assert set(placed) == {"mc-1", "mc-2"}, placed  # spread over both MCs

    # `status` shows both MCs with the meetings they reported in their heartbeats.
    deadline = time.monotonic() + 20
    while True:
        status = cli(dev_env, "status")
        assert status.returncode == 0, status.stderr
        counts = dict(re.findall(r"(mc-\d)\s.*?(\d+)/1000", status.stdout))
        if counts == {mc: str(n) for mc, n in placed.items()}:
            break
        assert time.monotonic() < deadline, f"status never matched {placed}:\n{status.stdout}"
        time.sleep(0.5)
    assert "healthy" in status.stdout

    dev_fleet.send_signal(signal.SIGINT)
    assert dev_fleet.wait(timeout=60) == 0
    time.sleep(0.5)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [c.cmdline() for c in alive]
    assert not (tmp_path / "dev-state.json").exists()


def test_port_in_use_is_named(dev_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = cli(dev_env, "dev", "--mcs", "1", "--gc-http-port", str(port))
    assert started.returncode == 2
    assert f"port {port}" in started.stderr
    assert "Traceback" not in started.stderr
