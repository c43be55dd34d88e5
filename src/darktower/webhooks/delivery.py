"""The GC's side of webhooks: deliver the recorded events, signed, at least once, in order.

Work is shared by leases. Every `lease_seconds / 3` each GC process tries to take or renew
the lease of each of the `PARTITIONS` event streams (`lua/lease.lua`, SET NX PX); for each
partition it holds it runs one worker per webhook URL. A partition is thus delivered by one
GC at a time (the normal case: no event sent twice), and a GC that dies leaves its leases to
expire and be taken by another after at most `lease_seconds`.

A worker reads its partition through the URL's consumer group (`keys.group_name`) under one
consumer name shared by all GCs: it first re-reads the group's pending entries — read but
never acknowledged, e.g. by a GC killed mid-delivery — then blocks for new ones. Each entry is
POSTed until the URL answers 2xx, then acknowledged (XACK). A failure (timeout, connection
refused, non-2xx, a redirect: redirects are not followed) is retried after an exponential
backoff with jitter (`retry_base_seconds`, doubling, capped at `retry_cap_seconds`) for as
long as the event stays in the stream (its retention, 48 h by default); then it is counted as
`expired` and skipped. Retrying the head entry before reading further keeps each meeting's
events in order per URL (head-of-line per partition and URL: other URLs are not held up).

Duplicates are possible — an acknowledgement lost with a GC killed after the POST, a GC that
stalls past its lease — and receivers dedupe by the event's `id`.

Every request is signed (`signature.sign`) at the time of the attempt. The URL is secret-ish
(it may carry credentials or a token in its query): logs show only its scheme, host, port and
path; the consumer group's name is a digest of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from redis.exceptions import RedisError, ResponseError

from darktower.common.backoff import backoff_bounds
from darktower.runtime.redis_connect import RedisLike
from darktower.webhooks.keys import PARTITIONS, group_name, lease_key, stream_key
from darktower.webhooks.metrics import (
    DELIVERIES,
    FAILURES,
    OLDEST_AGE,
    PARTITIONS_HELD,
    QUEUE_DEPTH,
)
from darktower.webhooks.signature import SIGNATURE_HEADER, sign

__all__ = ["CONSUMER", "DeliverySettings", "DeliveryStats", "WebhookDispatcher", "redacted_url"]

log = logging.getLogger(__name__)

CONSUMER: Final = "darktower"
"""The one consumer name of every GC: pending entries of a dead GC are the next holder's."""
BLOCK_MS: Final = 1000
REDIS_RETRY_SECONDS: Final = 1.0
USER_AGENT: Final = "darktower-webhooks/1"


@dataclass(frozen=True)
class DeliverySettings:
    urls: tuple[str, ...]
    key_id: str
    secret: str = field(repr=False)
    timeout_seconds: float = 5.0
    retry_base_seconds: float = 1.0
    retry_cap_seconds: float = 600.0
    lease_seconds: float = 10.0
    batch: int = 50


@dataclass
class DeliveryStats:
    """What this GC process has delivered and how its backlog looks (the dashboard's panel)."""

    delivered: int = 0
    failed_attempts: int = 0
    last_delivered_at: float | None = None  # unix seconds
    last_failure_reason: str | None = None
    last_failure_at: float | None = None
    queue_depth: int = 0
    oldest_undelivered_age_seconds: float = 0.0
    partitions_held: int = 0


def redacted_url(url: str) -> str:
    """`scheme://host[:port]/path` of `url`: no credentials, no query, no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def classify(response: httpx.Response) -> str | None:
    """None for a delivered event (2xx), else the failure reason of the answer."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return "redirect"
    return "status_4xx" if status < 500 else "status_5xx"


def _lua(name: str) -> str:
    return (resources.files("darktower.webhooks") / "lua" / f"{name}.lua").read_text("utf-8")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


class WebhookDispatcher:
    """Delivers every partition this process holds a lease on (see the module docstring).

    `run()` is the long-running loop (one supervised task); `stop()` cancels the workers and
    gives the leases back so that another GC takes over at once."""

    def __init__(
        self,
        client: RedisLike,
        settings: DeliverySettings,
        *,
        holder: str,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._redis = client
        self._settings = settings
        self._holder = holder
        self._http = http or httpx.AsyncClient(
            timeout=settings.timeout_seconds, follow_redirects=False, trust_env=False
        )
        self._lease = client.register_script(_lua("lease"))
        self._release = client.register_script(_lua("release"))
        self._workers: dict[tuple[int, str], asyncio.Task[None]] = {}
        self._held: set[int] = set()
        self.stats = DeliveryStats()
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography

    def __repr__(self) -> str:
        return f"WebhookDispatcher(urls={len(self._settings.urls)}, holder={self._holder!r})"

    @property
    def urls(self) -> tuple[str, ...]:
        return self._settings.urls

    @property
    def held(self) -> frozenset[int]:
        return frozenset(self._held)

    # -- leases ----------------------------------------------------------------------------

    async def run(self) -> None:
        interval = self._settings.lease_seconds / 3
        try:
            while True:
                await self._round()
                await asyncio.sleep(interval)
        finally:
            await self._stop_workers(set(self._workers))

    async def _round(self) -> None:
        self._reap()
        lease_ms = str(int(self._settings.lease_seconds * 1000))
        try:
            held = set()
            for partition in range(PARTITIONS):
                got = await self._lease(keys=[lease_key(partition)], args=[self._holder, lease_ms])
                if int(got) == 1:
                    held.add(partition)
        except (RedisError, OSError) as exc:
            # Unable to renew: another GC may take the partitions over when they expire, so
            # stop delivering now rather than risk sending the same events twice.
            log.warning("webhooks: event store unreachable (%s)", type(exc).__name__)
            held = set()
        if held != self._held:
            log.info("webhooks: delivering partitions %s", sorted(held) or "none")
        self._held = held
        self.stats.partitions_held = len(held)
        PARTITIONS_HELD.set(len(held))
        wanted = {(p, url) for p in held for url in self._settings.urls}
        await self._stop_workers(set(self._workers) - wanted)
        for key in sorted(wanted - set(self._workers)):
            partition, url = key
            self._workers[key] = asyncio.create_task(
                self._work(partition, url), name=f"webhook-{partition}"
            )
        await self._measure()

    def _reap(self) -> None:
        """A worker only ends by cancellation; one that ended otherwise crashed: raise it."""
        for key, task in list(self._workers.items()):
            if task.done():
                del self._workers[key]
                if not task.cancelled() and task.exception() is not None:
                    raise RuntimeError(f"webhook worker {key[0]} crashed") from task.exception()

    async def _stop_workers(self, keys: set[tuple[int, str]]) -> None:
        tasks = [self._workers.pop(key) for key in keys if key in self._workers]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def stop(self) -> None:
        """Stop delivering and give back the leases held."""
        await self._stop_workers(set(self._workers))
        for partition in sorted(self._held):
            with contextlib.suppress(RedisError, OSError):
                await self._release(keys=[lease_key(partition)], args=[self._holder])
        self._held = set()
        self.stats.partitions_held = 0
        PARTITIONS_HELD.set(0)
        await self._http.aclose()

    # -- one partition, one URL ------------------------------------------------------------

    async def _work(self, partition: int, url: str) -> None:
        stream, group = stream_key(partition), group_name(url)
        while True:
            try:
                await self._ensure_group(stream, group)
                while True:
                    await self._drain(stream, group, url)
            except (RedisError, OSError) as exc:
                log.warning(
                    "webhooks: partition %d: event store error (%s)", partition, type(exc).__name__
                )
                await asyncio.sleep(REDIS_RETRY_SECONDS)

    async def _ensure_group(self, stream: str, group: str) -> None:
        try:
            await self._redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _drain(self, stream: str, group: str, url: str) -> None:
        """Deliver this group's pending entries (own or a dead GC's), else wait for new ones."""
        batch = self._settings.batch
        reply = await self._redis.xreadgroup(group, CONSUMER, {stream: "0"}, count=batch)
        entries = _entries(reply)
        if not entries:
            reply = await self._redis.xreadgroup(
                group, CONSUMER, {stream: ">"}, count=batch, block=BLOCK_MS
            )
            entries = _entries(reply)
        for entry_id, body in entries:
            if body is not None:
                await self._deliver(stream, url, entry_id, body)
            else:  # trimmed while pending: past its retention
                FAILURES.labels("expired").inc()
            await self._redis.xack(stream, group, entry_id)

    async def _deliver(self, stream: str, url: str, entry_id: str, body: bytes) -> None:
        """POST until 2xx, or until the entry leaves the stream (trimmed: expired)."""
        attempt = 0
        while True:
            reason = await self._post(url, body)
            if reason is None:
                DELIVERIES.inc()
                self.stats.delivered += 1
                self.stats.last_delivered_at = time.time()
                return
            FAILURES.labels(reason).inc()
            self.stats.failed_attempts += 1
            self.stats.last_failure_reason = reason
            self.stats.last_failure_at = time.time()
            attempt += 1
            low, high = backoff_bounds(
                attempt,
                base=self._settings.retry_base_seconds,
                cap=self._settings.retry_cap_seconds,
            )
            delay = self._rng.uniform(low, high)
            log.warning(
                "webhooks: delivery to %s failed (%s), attempt %d, next in %.1f s",
                redacted_url(url),
                reason,
                attempt,
                delay,
            )
            await asyncio.sleep(delay)
            if not await self._redis.xrange(stream, min=entry_id, max=entry_id):
                FAILURES.labels("expired").inc()
                log.warning("webhooks: event %s expired undelivered", entry_id)
                return

    async def _post(self, url: str, body: bytes) -> str | None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(self._settings.secret, body),
            "Darktower-Key-Id": self._settings.key_id,
        }
        try:
            # Streamed and never read: only the status counts, and a receiver's huge answer
            # costs nothing here.
            async with self._http.stream("POST", url, content=body, headers=headers) as response:
                return classify(response)
        except httpx.TimeoutException:
            return "timeout"
        except httpx.ConnectError:
            return "connect"
        except (httpx.HTTPError, OSError):
            return "error"

    # -- gauges ----------------------------------------------------------------------------

    async def _measure(self) -> None:
        depth, oldest_ms = 0, None
        try:
            for partition in sorted(self._held):
                stream = stream_key(partition)
                for url in self._settings.urls:
                    count, first = await self._backlog(stream, group_name(url))
                    depth += count
                    if first is not None:
                        oldest_ms = first if oldest_ms is None else min(oldest_ms, first)
        except (RedisError, OSError):
            return
        QUEUE_DEPTH.set(depth)
        age = 0.0 if oldest_ms is None else max(0.0, time.time() - oldest_ms / 1000)
        OLDEST_AGE.set(age)
        self.stats.queue_depth = depth
        self.stats.oldest_undelivered_age_seconds = age

    async def _backlog(self, stream: str, group: str) -> tuple[int, int | None]:
        """(undelivered entries, ms of the oldest) of one group: pending + not yet read."""
        groups = await self._redis.xinfo_groups(stream)
        info = next((g for g in groups if _text(g.get("name")) == group), None)
        if info is None:
            return 0, None
        pending = int(info.get("pending") or 0)
        last = _text(info.get("last-delivered-id") or "0-0")
        unread = await self._redis.xrange(stream, min=f"({last}", max="+", count=1) or []
        lag = info.get("lag")
        count = pending + (int(lag) if lag is not None else len(unread))
        first: int | None = None
        if pending:
            summary = await self._redis.xpending(stream, group)
            low = summary.get("min")
            if low is not None:
                first = _entry_ms(_text(low))
        if first is None and unread:
            first = _entry_ms(_text(unread[0][0]))
        return count, first


def _entries(reply: Any) -> list[tuple[str, bytes | None]]:
    """[(entry id, body or None when trimmed)] of one stream's XREADGROUP reply (a list of
    [stream, entries] pairs; a dict stream -> entries with RESP3)."""
    pairs = reply.items() if isinstance(reply, dict) else (reply or [])
    result: list[tuple[str, bytes | None]] = []
    for _stream, items in pairs:
        for entry_id, fields in items:
            body = fields.get(b"e") if fields else None
            result.append((_text(entry_id), body))
    return result
