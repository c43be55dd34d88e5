"""The managed-process helper with real processes: its log, its bounded waits, its stop, and
that its children die with it on Linux even when it is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from darktower.runtime.processes import (
    ManagedProcess,
    ProcessExited,
    ProcessNotReady,
    stop_all,
)
from tests.support.processes import pid_gone
from tests.support.waiting import wait_until

PY = sys.executable


def python(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


def test_output_goes_to_the_log_and_exit_code_is_returned(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    proc = ManagedProcess.start(
        python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"),
        log_path=log,
        name="child",
    )
    assert proc.wait(timeout=30) == 3
    assert proc.log().splitlines() == ["out", "err"]
    assert proc.name == "child"


def test_child_runs_in_a_session_of_its_own(tmp_path: Path) -> None:
    with ManagedProcess.start(["sleep", "60"], log_path=None) as proc:
        assert os.getsid(proc.pid) == proc.pid
        assert os.getpgid(proc.pid) == proc.pid
    assert proc.returncode == -signal.SIGTERM


def test_wait_ready_returns_once_the_check_passes(tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    code = f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"
    with ManagedProcess.start(python(code), log_path=tmp_path / "log") as proc:
        took = proc.wait_ready(marker.exists, timeout=30, what="marker written")
        assert 0 <= took < 30
        assert proc.running


def test_wait_ready_fails_early_with_the_log_when_the_process_exits(tmp_path: Path) -> None:
    proc = ManagedProcess.start(
        python("print('bad config'); raise SystemExit(2)"), log_path=tmp_path / "log", name="svc"
    )
    with pytest.raises(ProcessExited, match=r"svc \(pid \d+\) exited with 2 before ready") as err:
        proc.wait_ready(lambda: False, timeout=30)
    assert err.value.returncode == 2
    assert "bad config" in str(err.value)


def test_wait_ready_times_out_naming_what_it_waited_for(tmp_path: Path) -> None:
    with ManagedProcess.start(["sleep", "60"], log_path=tmp_path / "log", name="sleeper") as proc:
        started = time.monotonic()
        with pytest.raises(ProcessNotReady, match=r"sleeper \(pid \d+\) not listening within"):
            proc.wait_ready(lambda: False, timeout=0.3, what="listening")
        assert time.monotonic() - started < 10
        assert proc.running


def test_stop_sigkills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    marker = tmp_path / "armed"
    code = f"""
        import pathlib, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path({str(marker)!r}).touch()
        time.sleep(60)
    """
    proc = ManagedProcess.start(python(code), log_path=tmp_path / "log")
    proc.wait_ready(marker.exists, timeout=30, what="SIGTERM ignored")
    started = time.monotonic()
    assert proc.stop(grace=0.5) == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_stop_reaches_what_the_process_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = f"""
        import pathlib, subprocess, time
        child = subprocess.Popen(["sleep", "60"])
        pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))
        time.sleep(60)
    """
    proc = ManagedProcess.start(python(code), log_path=tmp_path / "log")
    proc.wait_ready(pid_file.exists, timeout=30, what="grandchild started")
    grandchild = int(pid_file.read_text())
    proc.stop(grace=5)
    wait_until(lambda: pid_gone(grandchild), timeout=10, what="grandchild gone")


def test_stop_all_stops_many_under_one_deadline(tmp_path: Path) -> None:
    procs = [ManagedProcess.start(["sleep", "60"], log_path=None) for _ in range(3)]
    stop_all(procs, grace=5)
    assert [p.returncode for p in procs] == [-signal.SIGTERM] * 3


def test_stop_of_an_exited_process_returns_its_code(tmp_path: Path) -> None:
    proc = ManagedProcess.start(python("raise SystemExit(4)"), log_path=None)
    assert proc.wait(timeout=30) == 4
    assert proc.stop(grace=1) == 4
    assert proc.kill() == 4


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
def test_a_managed_child_dies_when_its_owner_is_sigkilled(tmp_path: Path) -> None:
    """The owner (a Python process using the helper) starts a managed `sleep 60` and prints
    its pid; after a SIGKILL of the owner, which runs no cleanup, the sleep is gone."""
    owner_code = """
        import sys, time
        from darktower.runtime.processes import ManagedProcess
        child = ManagedProcess.start(["sleep", "60"], log_path=None)
        print(child.pid, flush=True)
        time.sleep(60)
    """
    owner = subprocess.Popen(
        python(owner_code), stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()  # bounded by the test timeout; the owner prints at once
        grandchild = int(line)
        assert not pid_gone(grandchild)
        owner.kill()
        owner.wait(timeout=10)
        wait_until(lambda: pid_gone(grandchild), timeout=10, what="managed child gone")
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=10)
        if owner.stdout is not None:
            owner.stdout.close()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
def test_without_die_with_parent_the_child_outlives_its_owner(tmp_path: Path) -> None:
    """The control: the same owner with `die_with_parent=False` leaves its child running, so
    the test above fails if the prctl is not made."""
    owner_code = """
        import time
        from darktower.runtime.processes import ManagedProcess
        child = ManagedProcess.start(["sleep", "60"], log_path=None, die_with_parent=False)
        print(child.pid, flush=True)
        time.sleep(60)
    """
    owner = subprocess.Popen(
        python(owner_code), stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    grandchild = 0
    try:
        assert owner.stdout is not None
        grandchild = int(owner.stdout.readline())
        owner.kill()
        owner.wait(timeout=10)
        # A poll, not a sleep: it keeps checking for a second that the child stays.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert not pid_gone(grandchild)
            time.sleep(0.05)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=10)
        if owner.stdout is not None:
            owner.stdout.close()
        if grandchild:
            os.killpg(grandchild, signal.SIGKILL)
