"""The local fleet: a real Redis (embedded unless a URL is given), fresh keys, N real MCs.

Every service is a child process of this one; SIGINT/SIGTERM stop them all (SIGTERM, then
SIGKILL after a grace) and nothing is left behind. The GC, simulated media handlers and the
dashboard join the fleet in later issues; until then the MCs run standalone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from darktower.auth.keys import generate_key_files
from darktower.embedded.redis import EmbeddedRedis, free_port

__all__ = ["Fleet", "McProcess"]

STOP_GRACE_SECONDS = 10.0


@dataclass
class McProcess:
    mc_id: str
    grpc_port: int
    health_port: int
    process: subprocess.Popen[bytes]


class PortInUse(RuntimeError):
    pass


class Fleet:
    def __init__(
        self, mcs: int, redis_url: str | None, *, base_grpc: int, base_health: int
    ) -> None:
        self.count = mcs
        self._redis_url = redis_url
        self._base_grpc = base_grpc
        self._base_health = base_health
        self._tmp = tempfile.TemporaryDirectory(prefix="darktower-dev-")
        self.key_dir = Path(self._tmp.name) / "keys"
        self.redis: EmbeddedRedis | None = None
        self.mcs: list[McProcess] = []

    @property
    def redis_url(self) -> str:
        if self._redis_url:
            return self._redis_url
        assert self.redis is not None
        return self.redis.url

    def _port(self, base: int, index: int) -> int:
        if base == 0:
            return free_port()
        port = base + index
        with contextlib.closing(__import__("socket").socket()) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise PortInUse(
                    f"port {port} is in use (pick other ports with --base-port)"
                ) from None
        return port

    def start(self) -> None:
        generate_key_files(self.key_dir)
        if not self._redis_url:
            self.redis = EmbeddedRedis().start()
        for i in range(self.count):
            mc_id = f"mc-{i + 1}"
            grpc_port = self._port(self._base_grpc, i)
            health_port = self._port(self._base_health, i)
            env = {
                **os.environ,
                "MC_ID": mc_id,
                "MC_REGION": "local",
                "MC_GRPC_BIND": f"127.0.0.1:{grpc_port}",
                "MC_HEALTH_BIND": f"127.0.0.1:{health_port}",
                "MC_REDIS_URL": self.redis_url,
                "MC_GC_ENDPOINT": "",
                "MC_SERVICE_KEY_FILE": str(self.key_dir / "mc.key"),
                "MC_TRUSTED_GC_KEY_FILES": str(self.key_dir / "gc.pub"),
            }
            process = subprocess.Popen(
                [sys.executable, "-m", "darktower", "mc"], env=env, stdin=subprocess.DEVNULL
            )
            self.mcs.append(McProcess(mc_id, grpc_port, health_port, process))
        self._wait_live()

    def _wait_live(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for mc in self.mcs:
            while True:
                if mc.process.poll() is not None:
                    raise RuntimeError(f"{mc.mc_id} exited with code {mc.process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{mc.health_port}/health/live").is_success:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{mc.mc_id} did not come up in {timeout:.0f}s")
                time.sleep(0.1)

    def exited(self) -> list[McProcess]:
        return [mc for mc in self.mcs if mc.process.poll() is not None]

    def stop(self) -> None:
        for mc in self.mcs:
            if mc.process.poll() is None:
                mc.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for mc in self.mcs:
            try:
                mc.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                mc.process.kill()
                mc.process.wait()
        if self.redis is not None:
            self.redis.stop()
        self._tmp.cleanup()
