"""Clients of one connection each, lent one per call (`ClientPool`).

One `httpx.AsyncClient` shared by many calls in flight costs the benchmark's own process more
CPU per request the more connections its pool holds: httpcore looks at every pooled connection
(whether it expired, whether it is idle: a system call and several attribute look-ups each) to
place every request. With 64 joins in flight the shared client spent 6-7 ms of CPU per join,
more than the GC (16 in flight: ~2 ms), on the two cores the GC shares with it. A client of one
connection per call in flight places each request at once.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

__all__ = ["ClientPool"]

# One connection, dropped by the client after 4 s idle: before the servers' own keep-alive
# timeout (uvicorn's 5 s) can close it just as a request is sent on it ("Server disconnected
# without sending a response": 16 of 16 clients idle ~5 s between two load phases).
_LIMITS = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=4.0)


class ClientPool:
    """Single-connection keep-alive clients of `base_url`, one lent to each call in flight
    (`lend`), made when none is free and kept for the next call until `aclose`."""

    def __init__(self, base_url: str, *, timeout: float = 15.0) -> None:
        self._base_url = base_url
        self._timeout = timeout
        # One TLS context for all the clients (each building its own cost ~24 ms of CPU).
        self._tls = ssl.create_default_context()
        self._free: list[httpx.AsyncClient] = []
        self._all: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lend(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._free:
            client = self._free.pop()
        else:
            client = httpx.AsyncClient(
                base_url=self._base_url, timeout=self._timeout, limits=_LIMITS, verify=self._tls
            )
            self._all.append(client)
        try:
            yield client
        finally:
            self._free.append(client)

    async def post(self, path: str) -> httpx.Response:
        """POST `path` on a lent client."""
        async with self.lend() as client:
            return await client.post(path)

    async def aclose(self) -> None:
        for client in self._all:
            await client.aclose()
        self._all.clear()
        self._free.clear()
