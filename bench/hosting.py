"""Service processes. Each server under test runs in a process of its own, as in a deployment:
the client that measures it (this process) never shares its event loop or its GIL. They are
forked from a multiprocessing *forkserver* that imported darktower once, because every fresh
interpreter pays seconds of imports on a loaded 2-core machine. A `Host` is one such process:
it builds one service from a factory named "module:function" (`bench.services`), answers
commands over a pipe, and stops on "stop" or when this process goes away (its end of the pipe
closes). Every wait is bounded; nothing outlives the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from darktower.runtime.event_loop import EventLoop, loop_factory
from darktower.runtime.heap import settle_heap

__all__ = [
    "HOST_START_TIMEOUT_S",
    "HOST_STOP_TIMEOUT_S",
    "Host",
    "Service",
    "hosts",
]

HOST_START_TIMEOUT_S = 60.0
HOST_STOP_TIMEOUT_S = 15.0

# Imported once by the forkserver, so that each service process starts without paying them.
_PRELOAD = [
    "bench.services",
    "darktower.mc.server",
    "darktower.gc.server",
    "darktower.mhsim.simulator",
    "fastapi",
    "uvicorn",
]


class Service(Protocol):
    """What a host process runs: `info` goes back to the parent once started."""

    info: dict[str, Any]

    async def command(self, message: Mapping[str, Any]) -> dict[str, Any]: ...

    async def stop(self) -> None: ...


_forkserver: Any = None


def _context() -> Any:
    global _forkserver
    if _forkserver is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        _forkserver = ctx
    return _forkserver


def _resolve(factory: str) -> Callable[[Mapping[str, Any]], Awaitable[Service]]:
    module, _, name = factory.partition(":")
    function: Callable[[Mapping[str, Any]], Awaitable[Service]] = getattr(
        importlib.import_module(module), name
    )
    return function


def _host_main(factory: str, params: dict[str, Any], conn: Connection, uvloop: bool) -> None:
    """Entry point of a host process (runs in the forked child)."""
    logging.basicConfig(
        filename=params["log_file"],
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    choice = EventLoop.UVLOOP if uvloop else EventLoop.ASYNCIO
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        runner.run(_host_loop(factory, params, conn))


async def _host_loop(factory: str, params: dict[str, Any], conn: Connection) -> None:
    try:
        service = await _resolve(factory)(params)
    except BaseException as exc:
        logging.getLogger("bench.host").exception("service did not start")
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    settle_heap()  # as `serve_until_signalled` does once a deployed service has started
    conn.send({"ok": True, "info": service.info, "pid": os.getpid()})
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                message: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
            except (EOFError, OSError):
                return  # the parent is gone
            if message.get("cmd") == "stop":
                return
            try:
                reply = await service.command(message)
            except Exception as exc:
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            conn.send(reply)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(service.stop(), HOST_STOP_TIMEOUT_S)
        with contextlib.suppress(OSError):
            conn.send({"ok": True, "stopped": True})


class Host:
    """One service process (see the module docstring). `await start()`, `call()`, `stop()`;
    `kill()` is SIGKILL (failover)."""

    def __init__(
        self,
        name: str,
        factory: str,
        params: Mapping[str, Any],
        *,
        uvloop: bool = False,
        log_file: Path,
    ) -> None:
        self.name = name
        self.info: dict[str, Any] = {}
        self.log_file = log_file
        ctx = _context()
        self._conn, child = ctx.Pipe()
        full = {**params, "log_file": str(log_file), "name": name}
        self.process = ctx.Process(
            target=_host_main, args=(factory, full, child, uvloop), name=name, daemon=True
        )
        self._child = child
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        pid: int = self.process.pid
        return pid

    async def start(self, timeout: float = HOST_START_TIMEOUT_S) -> Host:
        self.process.start()
        self._child.close()
        reply = await self._receive(timeout, "start")
        if not reply.get("ok"):
            raise RuntimeError(f"{self.name} did not start: {reply.get('error')}")
        self.info = reply["info"]
        return self

    async def _receive(self, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await asyncio.to_thread(self._conn.poll, 0.2):
                try:
                    reply: dict[str, Any] = self._conn.recv()
                except EOFError:
                    break
                return reply
            if not self.process.is_alive():
                break
        tail = self.log_tail()
        raise RuntimeError(f"{self.name}: no answer to {what} within {timeout:.0f}s\n{tail}")

    async def call(self, message: Mapping[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        async with self._lock:
            self._conn.send(dict(message))
            reply = await self._receive(timeout, str(message.get("cmd")))
        if not reply.get("ok"):
            raise RuntimeError(f"{self.name}: {message.get('cmd')} failed: {reply.get('error')}")
        return reply

    async def stop(self, timeout: float = HOST_STOP_TIMEOUT_S) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, RuntimeError):
                self._conn.send({"cmd": "stop"})
                await self._receive(timeout, "stop")
        await asyncio.to_thread(self.process.join, 5)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join, 5)
        self._conn.close()

    def kill(self) -> None:
        self.process.kill()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.asynccontextmanager
async def hosts(*started: Host) -> Any:
    """Start the hosts in parallel; stop all of them on the way out, whatever happened."""
    try:
        await asyncio.gather(*(h.start() for h in started))
        yield started
    finally:
        await asyncio.gather(*(h.stop() for h in started), return_exceptions=True)
