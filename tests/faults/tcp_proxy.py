"""A loopback TCP proxy the test controls: the partition of the fault-injection suite.

    client ──▶ TcpProxy(127.0.0.1:<free port>) ──▶ target (host:port)

The proxy runs its own asyncio loop in a daemon thread, so it keeps forwarding while the test
blocks (in `time.sleep`, in a synchronous HTTP call, in `wait_until`). Every control call
(`cut`, `heal`, `close`) is run on that loop and waits for it, bounded, so when it returns the
fault is in place.

* `cut("reset")` (the default) aborts every open connection with a TCP RST (SO_LINGER 0) and
  resets every new one as soon as it is accepted: the peer sees "connection reset" at once,
  like a firewall that rejects.
* `cut("blackhole")` keeps connections open but drops every byte in both directions, and new
  connections are accepted and never forwarded: the peer sees nothing until its own deadline,
  like a cable pulled out. `heal()` resets the blackholed connections so their peers reconnect.
* `heal()` forwards new connections again.

Counters (`accepted`, `refused`, `forwarded`) say what the proxy did, for assertions that a
fault really was in the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

__all__ = ["CutMode", "TcpProxy"]

CutMode = Literal["reset", "blackhole"]

_T = TypeVar("_T")
CONTROL_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
_CHUNK = 65536


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN: the peer's next read or write fails at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Pair:
    """One proxied connection: the client side and (unless blackholed) the target side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    blackholed: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def reset(self) -> None:
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port` until cut; see the module doc."""

    def __init__(self, target_host: str, target_port: int, *, listen_port: int = 0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = "127.0.0.1"
        self.port = listen_port
        self.mode: CutMode | None = None  # None: forwarding
        self.accepted = 0
        self.refused = 0
        self.forwarded = 0
        self._pairs: set[_Pair] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = asyncio.Event()  # created unbound; used only on the proxy's loop

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The proxy as a gRPC endpoint URL (`http://127.0.0.1:<port>`)."""
        return f"http://{self.address}"

    @property
    def cut_now(self) -> bool:
        return self.mode is not None

    # -- lifecycle (called from the test's thread) -----------------------------------------

    def start(self) -> TcpProxy:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(started, failure))
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"tcp-proxy-{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(CONTROL_TIMEOUT_S):
            raise RuntimeError("the TCP proxy did not start listening")
        if failure:
            raise failure[0]
        return self

    def cut(self, mode: CutMode = "reset") -> None:
        """Partition: from now on nothing passes (see the module doc for the two modes)."""
        self._call(self._cut(mode))

    def heal(self) -> None:
        """Forward new connections again (blackholed ones are reset so peers reconnect)."""
        self._call(self._heal())

    def close(self) -> None:
        """Stop listening, reset every connection, end the thread. Idempotent."""
        if self._thread is None or self._loop is None or self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop already gone
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(CONTROL_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the TCP proxy is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(CONTROL_TIMEOUT_S)

    # -- on the proxy's loop ---------------------------------------------------------------

    async def _serve(self, started: threading.Event, failure: list[BaseException]) -> None:
        self._stopped = asyncio.Event()
        try:
            self._server = await asyncio.start_server(self._accept, self.host, self.port)
        except OSError as exc:
            failure.append(exc)
            started.set()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        started.set()
        try:
            await self._stopped.wait()
        finally:
            self._server.close()
            for pair in list(self._pairs):
                pair.reset()
            tasks = [t for pair in self._pairs for t in pair.tasks]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _cut(self, mode: CutMode) -> None:
        self.mode = mode
        for pair in list(self._pairs):
            if mode == "reset":
                pair.reset()
            else:
                pair.blackholed = True

    async def _heal(self) -> None:
        self.mode = None
        for pair in list(self._pairs):
            if pair.blackholed:
                pair.reset()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "reset":
            self.refused += 1
            _reset(writer)
            return
        pair = _Pair(writer)
        self._pairs.add(pair)
        try:
            if self.mode == "blackhole":
                pair.blackholed = True
                await self._run(pair, self._drain(reader))
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target_host, self.target_port),
                    CONNECT_TIMEOUT_S,
                )
            except (OSError, TimeoutError):
                self.refused += 1
                _reset(writer)
                return
            pair.upstream = up_writer
            if self.mode is not None:  # cut while we were connecting
                pair.reset()
                return
            self.forwarded += 1
            await self._run(
                pair, self._pump(reader, up_writer, pair), self._pump(up_reader, writer, pair)
            )
        finally:
            self._pairs.discard(pair)
            pair.reset()

    async def _run(self, pair: _Pair, *coros: Coroutine[Any, Any, None]) -> None:
        """Run the pair's pumps until the first one ends (EOF, reset, cut), then stop the rest."""
        tasks = {asyncio.ensure_future(c) for c in coros}
        pair.tasks |= tasks
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: _Pair
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_CHUNK):
                if pair.blackholed:
                    continue  # dropped on the floor, like a lost packet
                writer.write(data)
                await writer.drain()

    async def _drain(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(_CHUNK):
                pass
