"""Real `darktower mc` processes for tests: start one, wait until it is live, stop it.

Each process is a `darktower.runtime.processes.ManagedProcess`: a session of its own, its
output in a file a test can read afterwards, and gone with the test run even if that is
SIGKILLed. `McProcesses.close()` kills whatever is still running, so no MC outlives a test
even when it fails.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from darktower.embedded.redis import free_port
from darktower.runtime.processes import ManagedProcess, ProcessError

__all__ = ["McProcess", "McProcesses", "mc_command", "mc_env"]

LIVE_TIMEOUT_SECONDS = 30.0  # generous: a loaded 2-core CI machine starts Python slowly


def mc_command() -> list[str]:
    return [sys.executable, "-m", "darktower", "mc"]


def mc_env(values: Mapping[str, str]) -> dict[str, str]:
    """This environment without any inherited `MC_*` variable, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MC_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


@dataclass
class McProcess:
    proc: ManagedProcess
    log_path: Path
    mc_id: str
    grpc_target: str
    health_url: str

    def log(self) -> str:
        return self.proc.log()

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.health_url}{path}", timeout=2.0)

    def status(self, path: str) -> int | None:
        """HTTP status of `path`, None while nothing answers."""
        try:
            return self.get(path).status_code
        except httpx.TransportError:
            return None

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the whole session (the MC and anything it started); reap it."""
        if self.proc.running:
            self.proc.kill()


@dataclass
class McProcesses:
    """Starts MCs on free loopback ports; `close()` kills every one still running."""

    tmp_path: Path
    trusted_key_file: Path
    started: list[McProcess] = field(default_factory=list)

    def start(self, redis_url: str, **settings: str) -> McProcess:
        """An MC (standalone: no GC) on `redis_url`, live on /health/live; `settings` are
        extra MC_* values by lower-case field name (`drain_seconds="5"`)."""
        # The id the `gc_metadata` fixture's tokens are for (aud), unless a test names another.
        mc_id = settings.pop("id", "mc-test")
        grpc_port, health_port = free_port(), free_port()
        values = {
            "MC_ID": mc_id,
            "MC_REGION": "test",
            "MC_GRPC_BIND": f"127.0.0.1:{grpc_port}",
            "MC_HEALTH_BIND": f"127.0.0.1:{health_port}",
            "MC_CLIENT_BIND": f"127.0.0.1:{free_port()}",
            "MC_BINDING_TOKEN_SECRET": "test-binding-secret-3f9a1c",
            "MC_REDIS_URL": redis_url,
            "MC_GC_ENDPOINT": "",
            "MC_TRUSTED_GC_KEY_FILES": str(self.trusted_key_file),
            "MC_ALLOW_UNBOUND_KEYS": "true",  # the legacy trio's gc.key, by opt-in
        }
        values.update({f"MC_{k.upper()}": v for k, v in settings.items()})
        log_path = self.tmp_path / f"{mc_id}-{len(self.started)}.stderr.log"
        proc = ManagedProcess.start(
            mc_command(), log_path=log_path, name=mc_id, env=mc_env(values), truncate_log=True
        )
        mc = McProcess(
            proc=proc,
            log_path=log_path,
            mc_id=mc_id,
            grpc_target=f"127.0.0.1:{grpc_port}",
            health_url=f"http://127.0.0.1:{health_port}",
        )
        self.started.append(mc)
        try:
            proc.wait_ready(
                lambda: mc.status("/health/live") == 200,
                timeout=LIVE_TIMEOUT_SECONDS,
                what="live",
                interval=0.05,
            )
        except ProcessError as exc:
            raise AssertionError(str(exc)) from None
        return mc

    def close(self) -> None:
        for mc in self.started:
            mc.kill()
