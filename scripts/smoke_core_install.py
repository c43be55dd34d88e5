"""Smoke test of a core-only install: what a new user gets from `pip install .` with no extras.

Run with the Python of a fresh venv that has only `pip install .` in it (`.ci/run` does, and
tests/deploy/test_image.py::test_a_core_only_install_runs_the_readme_first_command):

    /tmp/core/bin/python scripts/smoke_core_install.py

It imports every module of the package (a runtime import that only an extra provides fails
here), then runs the README's first command the way a user does: `darktower dev --any-port`
in the foreground, one `darktower join`, Ctrl-C (SIGINT); the fleet must exit 0 and leave no
process of this venv behind. Standard library only: the dev extras are not installed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A core dependency on Linux only (elsewhere the `fast` extra); every other module must import.
OPTIONAL = set() if sys.platform == "linux" else {"uvloop"}
# Alembic runs this one itself, inside a migration context (the GC's start exercises it).
NOT_IMPORTABLE = {"darktower.gc.migrations.env"}
FLEET_UP_SECONDS = 120.0
STOP_SECONDS = 40.0


def fail(message: str) -> None:
    print(f"core-only smoke: FAILED: {message}", file=sys.stderr)
    raise SystemExit(1)


def import_every_module() -> int:
    import darktower

    count = 0
    for info in pkgutil.walk_packages(darktower.__path__, "darktower."):
        if info.name in NOT_IMPORTABLE:
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if exc.name in OPTIONAL:
                continue
            fail(f"`import {info.name}` needs {exc.name!r}, which no core dependency provides")
        count += 1
    return count


def _ppid_and_cmdline(pid: int) -> tuple[int, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # The command name in parentheses may hold spaces: the fields after the last ")" are fixed.
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    return ppid, argv.replace(b"\0", b" ").decode(errors="replace").strip()


def descendants(root: int) -> dict[int, str]:
    """Every live process below `root` (pid -> command line), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _ppid_and_cmdline(int(entry.name))):
            table[int(entry.name)] = info
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, cmdline) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = cmdline
                frontier.append(pid)
    return found


def still_running(processes: dict[int, str]) -> list[str]:
    """Those of `processes` still alive with the same command line (not a reused pid)."""
    left = []
    for pid, cmdline in processes.items():
        info = _ppid_and_cmdline(pid)
        if info is not None and info[1] == cmdline:
            left.append(f"{pid}: {cmdline}")
    return left


def main() -> None:
    modules = import_every_module()
    print(f"core-only smoke: imported {modules} modules")

    bin_dir = Path(sys.executable).parent
    darktower = str(bin_dir / "darktower")
    # Nothing that names a GC or an MC; the port range of a test session is kept, so the fleet's
    # free ports are drawn where the session's other fleets draw none.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MC_", "GC_", "DARKTOWER_")) or k == "DARKTOWER_PORT_RANGE"
    }
    with tempfile.TemporaryDirectory(prefix="darktower-smoke-") as tmp:
        env["DARKTOWER_DEV_STATE"] = str(Path(tmp) / "state")
        out_path = Path(tmp) / "dev.out"
        with out_path.open("w") as out:
            fleet = subprocess.Popen(
                [darktower, "dev", "--any-port", "--mcs", "2", "--mhs", "2"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        children: dict[int, str] = {}
        try:
            deadline = time.monotonic() + FLEET_UP_SECONDS
            while "Ctrl-C" not in out_path.read_text():
                if fleet.poll() is not None:
                    fail(f"`darktower dev` exited {fleet.returncode}:\n{out_path.read_text()}")
                if time.monotonic() > deadline:
                    fail(f"the fleet was not up in {FLEET_UP_SECONDS:.0f}s")
                time.sleep(0.2)
            joined = subprocess.run(
                [darktower, "join", "smoke"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if joined.returncode != 0:
                fail(f"`darktower join smoke` exited {joined.returncode}: {joined.stderr}")
            answer = json.loads(joined.stdout)
            if answer.get("meeting_id") != "smoke" or not answer.get("mc_id"):
                fail(f"unexpected join answer: {joined.stdout}")
            print(f"core-only smoke: `darktower join smoke` placed it on {answer['mc_id']}")
            children = descendants(fleet.pid)
            if not any(" mc" in c for c in children.values()):
                fail(f"no MC process under the fleet: {children}")
            fleet.send_signal(signal.SIGINT)
            try:
                code = fleet.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                fail(f"the fleet did not stop within {STOP_SECONDS:.0f}s of SIGINT")
            if code != 0:
                fail(f"the fleet exited {code} on SIGINT:\n{out_path.read_text()}")
        finally:
            if fleet.poll() is None:  # failed part-way: take everything down before reporting
                for pid in [*descendants(fleet.pid), fleet.pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                fleet.wait()
        left = still_running(children)
        if left:
            fail("processes left behind:\n" + "\n".join(left))
    print("core-only smoke: fleet up, one join, SIGINT, exit 0, nothing left behind")


if __name__ == "__main__":
    main()
