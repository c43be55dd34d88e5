"""`darktower dev` as a user runs it: a real fleet in a subprocess, its table, joins, status,
Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from tests.dev.support import StartFleet, cli
from tests.support.processes import pid_gone
from tests.support.waiting import wait_until


# About 60 s on an idle machine; 20 joins, each a Python start, and a fleet of processes.
@pytest.mark.timeout(300)
def test_dev_fleet_places_spreads_and_stops_cleanly(
    start_fleet: StartFleet, env: dict[str, str], tmp_path: Path
) -> None:
    fleet = start_fleet("--mcs", "2", "--mhs", "2")
    children = psutil.Process(fleet.proc.pid).children(recursive=True)
    commands = [" ".join(c.cmdline()) for c in children]
    assert sum("darktower mc" in c for c in commands) == 2
    assert sum("darktower gc" in c for c in commands) == 1
    assert sum("darktower mh-sim" in c for c in commands) == 2

    # The table names every pid and every port a user needs, each MH's zone, the logs.
    out = fleet.output()
    pids = fleet.pids()
    assert set(pids) == {"redis", "gc-1", "mc-1", "mc-2", "mh-1", "mh-2"}
    for name, pid in pids.items():
        assert re.search(rf"│ {name}\s+│ {pid}\s+│", out), (name, out)
    gc_ports = re.search(r"│ gc-1 .*HTTP (\d+)\s+gRPC (\d+)", out)
    assert gc_ports, out
    assert fleet.state()["gc_url"] == f"http://127.0.0.1:{gc_ports.group(1)}"
    for name, pid in pids.items():  # each process listens on the ports its row shows
        row = re.search(rf"│ {name}\s+│ {pid}\s+│([^│]*)│", out)
        assert row, out
        shown = {int(p) for p in re.findall(r"\d+", row.group(1))}
        listening = {
            c.laddr.port
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN
        }
        assert shown <= listening, (name, shown, listening)
        expected = {"redis": 1, "gc-1": 2, "mc-1": 3, "mc-2": 3}.get(name, 0)
        assert len(shown) == expected, (name, row.group(1))
    assert re.search(r"│ mh-1 .*│ zone-a", out) and re.search(r"│ mh-2 .*│ zone-b", out), out
    logs = fleet.logs()
    assert logs.parent == tmp_path / "state" and (logs / "gc-1.log").is_file()
    assert all(len(line) <= 80 for line in out.splitlines() if line != f"logs: {logs}"), out

    # The closing hint works as typed.
    hint = re.search(r"^try: (.+)$", out, re.MULTILINE)
    assert hint, out
    tried = subprocess.run(
        shlex.split(hint.group(1)), env=env, capture_output=True, text=True, timeout=60
    )
    assert tried.returncode == 0, tried.stderr
    assert json.loads(tried.stdout)["meeting_id"] == "standup"

    placed: Counter[str] = Counter({json.loads(tried.stdout)["mc_id"]: 1})
    for i in range(20):
        joined = cli(env, "join", f"meeting-{i}")  # no --gc-url: finds the dev fleet
        assert joined.returncode == 0, joined.stderr
        assert f"using the dev fleet pid {fleet.proc.pid} at " in joined.stderr
        assert "dev fleets are running" not in joined.stderr
        answer = json.loads(joined.stdout)
        assert answer["meeting_id"] == f"meeting-{i}"
        assert len(answer["media_handlers"]) == 2
        placed[answer["mc_id"]] += 1
    assert set(placed) == {"mc-1", "mc-2"}, placed  # spread over both MCs

    # `status` shows both MCs with the meetings they reported in their heartbeats.
    deadline = time.monotonic() + 20
    while True:
        status = cli(env, "status")
        assert status.returncode == 0, status.stderr
        counts = dict(re.findall(r"(mc-\d)\s.*?(\d+)/1000", status.stdout))
        if counts == {mc: str(n) for mc, n in placed.items()}:
            break
        assert time.monotonic() < deadline, f"status never matched {placed}:\n{status.stdout}"
        time.sleep(0.5)
    assert "healthy" in status.stdout

    assert fleet.interrupt() == 0
    assert "stopped. Logs: " + str(logs) in fleet.output()
    with contextlib.suppress(AssertionError):  # the assert below names the survivors
        wait_until(lambda: all(pid_gone(c.pid) for c in children), timeout=10, what="all gone")
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [c.cmdline() for c in alive]
    assert fleet.children_left() == []
    assert not fleet.state_file.exists()
    # Logs and the GC database are kept; the fleet's private keys are not.
    assert (logs / "mc-1.log").is_file() and (logs / "gc.db").is_file()
    assert not (logs / "keys").exists()


def test_port_in_use_is_named(env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = cli(env, "dev", "--mcs", "1", "--gc-http-port", str(port))
    assert started.returncode == 2
    assert f"port {port}" in started.stderr
    assert "Traceback" not in started.stderr
    # Nothing started, nothing kept: no state file, no empty log directory.
    assert list((tmp_path / "state").iterdir()) == []
