"""`darktower dev` as a user runs it: a subprocess in its own session, its output in a file, its
state directory under the test's tmp dir, bounded waits, and nothing left behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

from darktower.embedded.redis import PORT_RANGE_ENV

DARKTOWER = [sys.executable, "-m", "darktower"]
START_WITHIN_S = 90.0
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], within: float, every: float = 0.2) -> T:
    """Poll `probe` until it returns something truthy, for at most `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        if result := probe():
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        time.sleep(every)


def dev_env(state_dir: Path) -> dict[str, str]:
    """Our environment without anything naming a GC or an MC, with the fleets' state in
    `state_dir` (created by the fleet, 0700). `DARKTOWER_PORT_RANGE` stays: `--any-port` then
    picks the shard's ports, below the kernel's ephemeral range, where an outgoing connection
    can take a port between the fleet's pick and its service's bind (a CI run lost an MC so:
    "cannot listen on 127.0.0.1:35039 (MC gRPC): address already in use")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "GC_", "DARKTOWER_"))}
    if PORT_RANGE_ENV in os.environ:
        env[PORT_RANGE_ENV] = os.environ[PORT_RANGE_ENV]
    env["DARKTOWER_DEV_STATE"] = str(state_dir)
    return env


def cli(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DARKTOWER, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class DevFleet:
    """One `darktower dev` subprocess. `close()` (always called by the fixtures) kills whatever
    it started if it is still running.

    Its MHs are simulated (`--mh-sim`) unless `media=True`: the control plane's tests need no
    Janus per MH (tests/dev/test_dev_media.py runs the fleet with real ones)."""

    def __init__(
        self,
        env: dict[str, str],
        out: Path,
        *args: str,
        argv: Sequence[str] = DARKTOWER,
        cwd: Path | None = None,
        media: bool = False,
    ) -> None:
        self.env = env
        self.state_dir = Path(env["DARKTOWER_DEV_STATE"])
        self.out = out
        self._out_file = out.open("w")
        self.proc = subprocess.Popen(
            [*argv, "dev", "--any-port", *([] if media else ["--mh-sim"]), *args],
            env=env,
            cwd=cwd,
            stdout=self._out_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.state_file = self.state_dir / f"{self.proc.pid}.json"
        self._seen: set[int] = set()
        wait_for("darktower dev to come up", self._up, START_WITHIN_S)
        self.pids()

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"darktower dev exited {self.proc.returncode}:\n{self.output()}")
        return self.state_file.exists() and "Ctrl-C" in self.output()

    def output(self) -> str:
        return self.out.read_text()

    def state(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.state_file.read_text())
        return data

    def pids(self) -> dict[str, int]:
        processes = self.state()["processes"]
        assert isinstance(processes, dict)
        self._seen.update(processes.values())
        return processes

    def logs(self) -> Path:
        match = re.search(r"^logs: (\S+)", self.output(), re.MULTILINE)
        assert match, self.output()
        return Path(match.group(1))

    def wait_output(self, pattern: str, within: float = 30.0) -> re.Match[str]:
        return wait_for(
            f"{pattern!r} in the output", lambda: re.search(pattern, self.output()), within
        )

    def interrupt(self, within: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=within)

    def children_left(self) -> list[int]:
        return [pid for pid in self._seen if not gone(pid)]

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    child.kill()
                self.proc.kill()
            self.proc.wait(timeout=30)
            for pid in self.children_left():  # e.g. a child the fleet had no time to stop
                with contextlib.suppress(psutil.Error):
                    child = psutil.Process(pid)
                    if any(w in " ".join(child.cmdline()) for w in ("darktower", "redis")):
                        child.kill()
        finally:
            self._out_file.close()


StartFleet = Callable[..., DevFleet]
