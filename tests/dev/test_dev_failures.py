"""`darktower dev` supervises its fleet: an MC killed with -9 leaves the fleet up and its meeting
moves (the README's tour, command for command); `--restart` brings a dead MC back; a dead GC or
Redis stops the fleet with a non-zero exit and its logs kept."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.dev.support import StartFleet, cli, wait_for
from tests.support.readme import README, bash_blocks_in

# The dev GC marks an MC unhealthy 6 s after its last heartbeat (sweeping every second).
UNHEALTHY_WITHIN_S = 30.0


def tour_commands() -> tuple[list[str], list[str]]:
    """The commands of the README's "A short tour": its first bash block (before the kill) and
    its second (after), comments dropped."""
    assert "`kill -9 PID`" in README.read_text()
    blocks = bash_blocks_in("### A short tour")
    assert len(blocks) == 2, blocks
    before, after = (
        [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
        for block in blocks
    )
    return before, after


def _shell(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command exactly as the README shows it, run by a shell."""
    return subprocess.run(
        ["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def venv_cwd(tmp_path: Path) -> Path:
    """A directory where `.venv/bin/darktower` is this environment's `darktower`, as in a
    checkout that followed the README."""
    script = Path(sys.prefix) / "bin" / "darktower"
    if not script.is_file():
        pytest.skip("darktower is not installed as a console script in this environment")
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    (cwd / ".venv").symlink_to(sys.prefix)
    return cwd


@pytest.mark.timeout(240)
def test_the_tour_kill_9_the_host_and_the_meeting_moves(
    start_fleet: StartFleet, env: dict[str, str], venv_cwd: Path
) -> None:
    fleet = start_fleet("--mcs", "2", "--mhs", "2", argv=[".venv/bin/darktower"], cwd=venv_cwd)
    assert re.search(r"^try: (\.venv/bin/)?darktower join standup$", fleet.output(), re.M), (
        fleet.output()
    )
    before, after = tour_commands()
    assert before[0] == ".venv/bin/darktower join standup", before
    assert after == [".venv/bin/darktower join standup"], after
    joined = _shell(before[0], env, venv_cwd)
    assert joined.returncode == 0, joined.stderr
    assert f"using the dev fleet pid {fleet.proc.pid}" in joined.stderr
    host = json.loads(joined.stdout)["mc_id"]
    for command in before[1:]:  # status (and its variants) as the README shows them
        listed = _shell(command, env, venv_cwd)
        assert listed.returncode == 0, (command, listed.stderr)
        assert host in listed.stdout, (command, listed.stdout)

    pid = fleet.pids()[host]
    assert _shell(f"kill -9 {pid}", env, venv_cwd).returncode == 0
    death = fleet.wait_output(
        rf"darktower dev: {host} \(pid {pid}\) died: killed by SIGKILL; log (\S+); "
        r"the fleet goes on without it"
    )
    assert Path(death.group(1)) == fleet.logs() / f"{host}.log"
    assert Path(death.group(1)).is_file()

    def host_unhealthy() -> bool:
        status = _shell(".venv/bin/darktower status", env, venv_cwd)
        return bool(re.search(rf"\b{host}\b[^\n]*\bunhealthy\b", status.stdout))

    wait_for(f"{host} to turn unhealthy", host_unhealthy, UNHEALTHY_WITHIN_S, every=0.5)
    assert fleet.proc.poll() is None, fleet.output()  # the fleet is still up

    rejoined = _shell(after[0], env, venv_cwd)
    assert rejoined.returncode == 0, rejoined.stderr
    moved = json.loads(rejoined.stdout)
    assert moved["mc_id"] != host, moved  # answers another MC: the meeting moved
    assert moved["reused"] is False

    assert fleet.interrupt() == 0, fleet.output()
    assert fleet.children_left() == []
    assert not fleet.state_file.exists()
    assert (fleet.logs() / f"{host}.log").is_file()


@pytest.mark.timeout(180)
def test_restart_brings_a_killed_mc_back_with_its_id_and_ports(
    start_fleet: StartFleet, env: dict[str, str]
) -> None:
    fleet = start_fleet("--mcs", "1", "--mhs", "1", "--restart")
    assert "A dead MC or MH is restarted" in fleet.output()
    old = fleet.pids()["mc-1"]
    health = re.search(r"│ mc-1 .*health (\d+)", fleet.output())
    assert health, fleet.output()
    os.kill(old, signal.SIGKILL)
    fleet.wait_output(rf"mc-1 \(pid {old}\) died: killed by SIGKILL; log \S+; restarting it in 1s")
    new = int(fleet.wait_output(r"restarted mc-1: pid (\d+) \(same id and ports\)").group(1))
    assert new != old
    wait_for("the state file to name the new pid", lambda: fleet.pids()["mc-1"] == new, 10)
    restarted = psutil.Process(new)
    assert restarted.environ()["MC_ID"] == "mc-1"

    def ready() -> bool:  # registered with the GC, Redis reachable, on the same health port
        try:
            url = f"http://127.0.0.1:{health.group(1)}/health/ready"
            return httpx.get(url, timeout=2).is_success
        except httpx.HTTPError:
            return False

    wait_for("the restarted mc-1 to be ready", ready, 60, every=0.5)

    def healthy_in_status() -> bool:
        status = cli(env, "status")
        return bool(re.search(r"\bmc-1\b[^\n]*\bhealthy\b", status.stdout)) and not re.search(
            r"\bmc-1\b[^\n]*\bunhealthy\b", status.stdout
        )

    wait_for("the GC to see mc-1 healthy", healthy_in_status, 30, every=0.5)
    log = (fleet.logs() / "mc-1.log").read_text()
    assert f"--- darktower dev: restarted after pid {old}, killed by SIGKILL ---" in log
    assert fleet.proc.poll() is None
    assert fleet.interrupt() == 0
    assert fleet.children_left() == []


@pytest.mark.timeout(180)
@pytest.mark.parametrize("victim", ["gc-1", "redis"])
def test_a_dead_gc_or_redis_stops_the_fleet_and_keeps_its_logs(
    start_fleet: StartFleet, victim: str
) -> None:
    fleet = start_fleet("--mcs", "1", "--mhs", "0")
    pid = fleet.pids()[victim]
    logs = fleet.logs()
    os.kill(pid, signal.SIGKILL)
    assert fleet.proc.wait(timeout=60) == 1, fleet.output()
    out = fleet.output()
    assert re.search(rf"\(pid {pid}\) died: killed by SIGKILL", out), out
    assert f"the fleet cannot go on without it and stopped. Logs: {logs}" in out
    assert (logs / "gc-1.log").is_file() and (logs / "mc-1.log").is_file()
    assert (logs / "gc-1.log").stat().st_size > 0
    assert fleet.children_left() == []
    assert not fleet.state_file.exists()


def _with_state_dir(state_dir: str) -> list[str]:
    """The live processes whose environment names `state_dir` as DARKTOWER_DEV_STATE: the
    fleet and the services it started (each inherits its environment, whatever session or
    process group it runs in)."""
    left = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get("DARKTOWER_DEV_STATE") == state_dir and (
                process.status() != psutil.STATUS_ZOMBIE
            ):
                left.append(" ".join(process.cmdline()))
    return left


@pytest.mark.timeout(180)
def test_a_child_that_fails_at_start_stops_the_fleet_with_exit_2_and_its_logs_kept(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The GC cannot open its database (its directory is a file): it exits at start; the
    fleet says which process failed and where its log is, stops what it started (no process
    with its state directory in the environment is left), keeps the logs, publishes no state,
    and exits 2."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    args = ["--mcs", "1", "--mhs", "1", "--db-url", f"sqlite+aiosqlite:///{blocker}/gc.db"]
    fleet = subprocess.Popen(
        [sys.executable, "-m", "darktower", "dev", "--any-port", "--mh-sim", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = fleet.communicate(timeout=150)
    finally:
        if fleet.poll() is None:
            os.killpg(fleet.pid, signal.SIGKILL)
            fleet.wait()
    assert fleet.returncode == 2, out + err
    said = re.search(
        r"darktower dev: gc-1 \(pid \d+\) exited with \d+ before answering \S+; see (\S+); "
        r"the fleet stopped\. Logs: (\S+)$",
        err,
        re.MULTILINE,
    )
    assert said, err
    log, logs = Path(said.group(1)), Path(said.group(2))
    assert log == logs / "gc-1.log" and logs.parent == tmp_path / "state"
    assert "cannot open the database" in log.read_text()  # the GC's own reason, kept
    assert "Traceback" not in err
    assert not (logs / "keys").exists()  # the fleet's private keys are not kept
    assert list((tmp_path / "state").glob("*.json")) == []  # no state: nothing to find
    assert _with_state_dir(env["DARKTOWER_DEV_STATE"]) == []
