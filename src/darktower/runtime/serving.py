"""What every service process shares: the startup error, listening sockets that fail with one
clear line, an in-loop uvicorn server, and serving until a signal.

A port that cannot be listened on is a `StartupError` naming the address, what it is for and
the system's reason (`cannot listen on 127.0.0.1:50052 (MC gRPC): address already in use`).
HTTP servers listen on a socket we bind ourselves (uvicorn would log its own line and call
`sys.exit`); gRPC binds inside grpc's core, so its port is first tried here, where the reason
is known, and grpc's own refusal is still caught for the port taken in between.

With a `TlsConfig` that has a certificate, gRPC ports are TLS (mTLS when it requires client
certificates) and HTTP servers are HTTPS with the same certificate and key. Each request an
`HttpServer` serves runs in a server span (`darktower.runtime.tracing_http`).

`serve_until_signalled(start, stop)` is a service's whole life: start, settle the heap
(`darktower.runtime.heap`), wait for SIGTERM or SIGINT, and stop — in a `finally`, so the
service is stopped however the wait ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable

import grpc
import uvicorn
from fastapi import FastAPI

from darktower.runtime.heap import settle_heap
from darktower.runtime.supervisor import TaskSupervisor
from darktower.runtime.tls import TlsConfig
from darktower.runtime.tracing_http import TracedHttpApp

__all__ = [
    "GRPC_LISTEN_OPTIONS",
    "EmbeddedUvicorn",
    "HttpServer",
    "StartupError",
    "add_grpc_port",
    "cannot_listen",
    "listen_socket",
    "parse_bind",
    "serve_until_signalled",
]

log = logging.getLogger(__name__)

# grpc's core sets SO_REUSEPORT by default, so a second server on a taken port "shares" it
# silently and gets a share of the calls; off, the second bind fails as it should.
GRPC_LISTEN_OPTIONS: tuple[tuple[str, int], ...] = (("grpc.so_reuseport", 0),)
LISTEN_BACKLOG = 2048  # uvicorn's default


class StartupError(RuntimeError):
    """The service cannot start with this configuration (the message is safe to print)."""


def parse_bind(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) → (host, port); ValueError on anything else."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _reason(exc: OSError) -> str:
    """The system's reason alone (`address already in use`): the libraries wrap it in text
    of their own that repeats the address."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror or exc})"
    text = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return text[:1].lower() + text[1:]


def cannot_listen(bind: str, what: str, exc: OSError | None = None) -> StartupError:
    """`cannot listen on <bind> (<what>): <reason>` — one line, nothing secret in it."""
    reason = _reason(exc) if exc is not None else "the server library could not bind it"
    return StartupError(f"cannot listen on {bind} ({what}): {reason}")


def listen_socket(bind: str, what: str) -> socket.socket:
    """A TCP socket bound to `bind` and listening (SO_REUSEADDR, never SO_REUSEPORT);
    `StartupError` via `cannot_listen` when the address is taken, foreign or unresolvable."""
    host, port = parse_bind(bind)
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        server = socket.create_server(address[:2], family=family, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        raise cannot_listen(bind, what, exc) from None
    # `create_server` leaves the protocol 0, and so do the connections accepted from it; asyncio
    # sets TCP_NODELAY only on sockets whose protocol says TCP. Without it an HTTP answer
    # written in two parts (head, body) waited for the client's delayed ACK: ~40 ms on every
    # request (`GET /health/live` took 44 ms where plain uvicorn takes 2).
    return socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=server.detach())


def add_grpc_port(
    server: grpc.aio.Server, bind: str, what: str, *, tls: TlsConfig | None = None
) -> int:
    """Add a port to a server built with `GRPC_LISTEN_OPTIONS` — TLS when `tls` has a
    certificate, else plaintext; the bound port.

    The address is first bound here and released at once: that gives the real reason when it
    is taken (grpc's core only logs it) and keeps grpc's own error line off stderr."""
    host, port = parse_bind(bind)
    listen_socket(bind, what).close()
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if tls is not None and tls.serving:
            bound = server.add_secure_port(address, tls.server_credentials())
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise cannot_listen(bind, what)
    return bound


class EmbeddedUvicorn(uvicorn.Server):
    """A uvicorn server that runs inside our loop and leaves signals to our own handler."""

    def install_signal_handlers(self) -> None:  # older uvicorn
        return

    def capture_signals(self) -> contextlib.nullcontext[None]:  # type: ignore[override]
        return contextlib.nullcontext()


class HttpServer:
    """A FastAPI app served by uvicorn inside the running loop (signals stay ours), on a
    socket bound by `listen_socket` — so a taken port is one `StartupError` line. It serves
    in task `task_name` of `tasks`: uvicorn ending before `stop` is a crash. HTTPS with the
    certificate and key of `tls` when it has them (no client certificate is asked for)."""

    def __init__(
        self,
        app: FastAPI,
        bind: str,
        *,
        what: str,
        tasks: TaskSupervisor,
        task_name: str,
        tls: TlsConfig | None = None,
    ) -> None:
        self._bind = bind
        self._what = what
        self._tasks = tasks
        self._task_name = task_name
        host, port = parse_bind(bind)
        self.host = host
        self._tls = tls if tls is not None and tls.serving else None
        config = uvicorn.Config(
            TracedHttpApp(app),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            ssl_certfile=self._tls.cert_file if self._tls else None,
            ssl_keyfile=self._tls.key_file if self._tls else None,
        )
        self._server = EmbeddedUvicorn(config)
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self._crashed = False
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> int:
        """Listen, serve, and return once serving: the bound port (useful with port 0)."""
        sock = self._socket = listen_socket(self._bind, self._what)
        self.port = sock.getsockname()[1]
        self._task = self._tasks.spawn(self._task_name, self._serve(sock), may_finish=True)
        while not self._server.started:
            if self._task.done():
                sock.close()
                raise StartupError(f"cannot serve {self._what} on {self._bind}")
            await asyncio.sleep(0.01)
        log.info("serving %s on %s", self._what, self.url)
        return self.port

    async def _serve(self, sock: socket.socket) -> None:
        try:
            await self._server.serve(sockets=[sock])
        except Exception:
            self._crashed = True
            raise
        if not self._server.should_exit:
            raise RuntimeError(f"{self._what} stopped serving by itself")

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            if self._crashed and self._socket is not None:
                # uvicorn skips its shutdown when its main loop fails: its listener (which
                # still answers) and connections are closed here.
                await self._server.shutdown(sockets=[self._socket])


async def serve_until_signalled(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    *,
    signalled: asyncio.Event | None = None,
) -> None:
    """Run `start()`, wait for SIGTERM or SIGINT (or `signalled` set by the service itself,
    e.g. an operator's drain), then `stop()` — also when the wait ends any other way. `start`
    must leave nothing running when it raises (it is not followed by `stop`): the error goes to
    the caller (a `StartupError` is one line and exit 2)."""
    signalled = signalled or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, signalled.set)
    try:
        await start()
        settle_heap()  # what the start made lives for good: no collection scans it again
        try:
            await signalled.wait()
            log.info("signal or stop request received: stopping")
        finally:
            await stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
