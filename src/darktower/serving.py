"""What every service process shares: the startup error and an in-loop uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from fastapi import FastAPI

__all__ = ["EmbeddedUvicorn", "HttpServer", "StartupError", "parse_bind"]


class StartupError(RuntimeError):
    """The service cannot start with this configuration (the message is safe to print)."""


class EmbeddedUvicorn(uvicorn.Server):
    """A uvicorn server that runs inside our loop and leaves signals to our own handler."""

    def install_signal_handlers(self) -> None:  # older uvicorn
        return

    def capture_signals(self) -> contextlib.nullcontext[None]:  # type: ignore[override]
        return contextlib.nullcontext()


def parse_bind(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) → (host, port); ValueError on anything else."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class HttpServer:
    """A FastAPI app served by uvicorn inside the running loop (signals stay ours)."""

    def __init__(self, app: FastAPI, bind: str, *, what: str) -> None:
        self._bind = bind
        self._what = what
        host, port = parse_bind(bind)
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        self._server = EmbeddedUvicorn(config)
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        """Serve, and return once listening: the bound port (useful with port 0)."""
        self._task = asyncio.get_running_loop().create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                raise StartupError(f"cannot serve {self._what} on {self._bind}")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
