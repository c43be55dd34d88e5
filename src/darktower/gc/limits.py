"""Request limits of the GC's HTTP API: the body cap and the join rate limits (issue 14).

Both are plain ASGI middleware, outside routing and body parsing, so a refused request costs
no JSON decoding, no database and no placement:

* `BodyLimit`: a request whose body exceeds `max_bytes` is answered 413 `payload_too_large`,
  before routing, so every path and method is covered. A declared `Content-Length` over the
  cap is refused before one byte is read (the server delivers no more than it declares); a
  chunked body is read here, counted as it streams in and refused at the first chunk over, so
  memory never holds more than the cap plus one chunk.
* `JoinRateLimit`: `POST /v1/meetings/{id}/join` is charged to one token bucket per key that
  each of its `RateRule`s gives (the client's IP, then the API key that signed its access
  token); an empty bucket answers 429 `rate_limited` with `Retry-After` (whole seconds). The
  IP rule comes first, so a flood from one address is refused before its tokens are verified.

`TokenBuckets` is the pure decision (an injected clock, no I/O): buckets per key, refilled at
`rate` per second up to `burst`, at most `max_keys` of them kept (least recently used first
out; a bucket evicted that way was idle longest, and a new one starts full, which is what an
idle bucket refills to anyway).

Refusals are counted in `gc_http_refusals_total{limit}` (`body`, `join_ip`, `join_api_key`).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from darktower.gc.metrics import HTTP_REFUSALS, RATE_LIMIT_KEYS
from darktower.gc.settings import GcSettings

__all__ = [
    "JOIN_PATH",
    "BodyLimit",
    "HttpLimits",
    "JoinRateLimit",
    "KeyFunction",
    "RateRule",
    "TokenBuckets",
    "api_key_of",
    "client_ip",
    "install_limits",
    "limits_from",
]

JOIN_PATH = re.compile(r"^/v1/meetings/[^/]+/join/?$")
"""The join route: the only one rate limited (placing meetings is what costs the fleet)."""

KeyFunction = Callable[[Scope], str | None]
"""The bucket a request is charged to, from its ASGI scope; None: this rule does not apply."""


class TokenBuckets:
    """Token buckets by key: each holds up to `burst` tokens and regains `rate` per second.

    `take(key)` spends one token and answers 0.0, or — the bucket empty — the seconds until a
    token will be there (nothing spent). At most `max_keys` buckets are kept.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_keys: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be positive, burst and max_keys at least 1")
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        # key -> (tokens, as of monotonic time); most recently used last.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        now = self._clock()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait


@dataclass(frozen=True, slots=True)
class RateRule:
    """One join limit: `limit` names it (metric label), `key` picks the bucket."""

    limit: str
    key: KeyFunction
    buckets: TokenBuckets


def client_ip(scope: Scope) -> str | None:
    """The peer's address as the server saw it (behind a proxy: the proxy's, unless the server
    is told to trust its forwarded headers)."""
    client = scope.get("client")
    return f"ip:{client[0]}" if client else None


def api_key_of(key_id: Callable[[str | None], str | None]) -> KeyFunction:
    """The rule key of a request's API key: `key_id` is given its `Authorization` header and
    answers the id of the key that signed a valid access token (None: no valid token; such a
    join is refused by access itself, and still counts against its IP)."""

    def key(scope: Scope) -> str | None:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                found = key_id(value.decode("latin-1"))
                return None if found is None else f"key:{found}"
        return None

    return key


def _error_body(error: str, reason: str, message: str) -> bytes:
    """The GC's documented error shape (`ErrorOut` in `darktower.gc.http`)."""
    return json.dumps({"error": error, "reason": reason, "message": message}).encode()


async def _answer(
    send: Send, status: int, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: bodies over `max_bytes` → 413 (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._body = _error_body(
            "payload_too_large", "body", f"request bodies are limited to {max_bytes} bytes"
        )

    async def _refuse(self, send: Send) -> None:
        HTTP_REFUSALS.labels("body").inc()
        # The rest of the body is never read: the connection cannot be reused.
        await _answer(send, 413, self._body, [(b"connection", b"close")])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            # The server delivers exactly the declared length: the header is the whole check.
            if declared > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        if not _has_header(scope, b"transfer-encoding"):
            await self.app(scope, receive, send)  # no body
            return
        # Chunked: read it here, before routing (a route that never reads its body would
        # not be cut off), at most the cap plus one chunk, then hand it on as it came.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _has_header(scope: Scope, wanted: bytes) -> bool:
    return any(name == wanted for name, _ in scope.get("headers", ()))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class JoinRateLimit:
    """ASGI middleware: joins over a `RateRule`'s budget → 429 with `Retry-After`."""

    def __init__(self, app: ASGIApp, *, rules: Sequence[RateRule]) -> None:
        self.app = app
        self.rules = tuple(rules)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and JOIN_PATH.match(scope["path"]):
            for rule in self.rules:
                key = rule.key(scope)
                if key is None:
                    continue
                wait = rule.buckets.take(key)
                RATE_LIMIT_KEYS.labels(rule.limit).set(len(rule.buckets))
                if wait > 0:
                    HTTP_REFUSALS.labels(rule.limit).inc()
                    retry_after = max(1, math.ceil(wait))
                    body = _error_body(
                        "rate_limited", rule.limit, f"too many joins; retry after {retry_after} s"
                    )
                    await _answer(send, 429, body, [(b"retry-after", str(retry_after).encode())])
                    return
        await self.app(scope, receive, send)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The limits' numbers (`GC_MAX_BODY_BYTES`, `GC_JOIN_RATE_PER_IP`, ...; the defaults are
    the settings' defaults). A class of 60 behind one NAT address joins at once (the burst),
    then two joins a second per address; one API key's users 1000 at once, then 50 a second."""

    max_body_bytes: int = 65_536
    join_rate_per_ip: float = 2.0
    join_burst_per_ip: int = 60
    join_rate_per_api_key: float = 50.0
    join_burst_per_api_key: int = 1000
    rate_limit_max_keys: int = 10_000


def limits_from(settings: GcSettings) -> HttpLimits:
    """The limits `settings` set (`GC_MAX_BODY_BYTES`, `GC_JOIN_RATE_PER_IP`, ...)."""
    return HttpLimits(
        max_body_bytes=settings.max_body_bytes,
        join_rate_per_ip=settings.join_rate_per_ip,
        join_burst_per_ip=settings.join_burst_per_ip,
        join_rate_per_api_key=settings.join_rate_per_api_key,
        join_burst_per_api_key=settings.join_burst_per_api_key,
        rate_limit_max_keys=settings.rate_limit_max_keys,
    )


def install_limits(
    app: Starlette, limits: HttpLimits, *, api_key: KeyFunction | None = None
) -> None:
    """Wrap `app` in the join rate limits (per client IP; per API key when `api_key` tells
    a request's key) and, outermost, the body cap."""
    rules = [
        RateRule(
            "join_ip",
            client_ip,
            TokenBuckets(
                rate=limits.join_rate_per_ip,
                burst=limits.join_burst_per_ip,
                max_keys=limits.rate_limit_max_keys,
            ),
        )
    ]
    if api_key is not None:
        rules.append(
            RateRule(
                "join_api_key",
                api_key,
                TokenBuckets(
                    rate=limits.join_rate_per_api_key,
                    burst=limits.join_burst_per_api_key,
                    max_keys=limits.rate_limit_max_keys,
                ),
            )
        )
    # Starlette runs the middleware added last first: the body cap sees every request first.
    app.add_middleware(JoinRateLimit, rules=rules)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
