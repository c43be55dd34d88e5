"""big_meeting: N people join ONE meeting at once; how long until every one sees all N.

One MC process of its own (standalone, its own embedded Redis, client signaling on), one
meeting per size. `PINGERS` participants join first and ping every 100 ms through the storm
(the "others" whose pongs must stay fast); then the rest join at once over the documented
protocol (a WebSocket to the MC's signaling URL, `join` with a join token minted by the GC's
key, at most `IN_FLIGHT` handshakes at a time so that the listen backlog does not drop SYNs).
A client counts the participant ids it knows (join answer, then every roster frame, parsed with
`json`); the time to full roster is from the storm's start until the last client knows all N.
The MC sends every client the very same bytes of a roster frame (encoded once, fanned out), so
the clients of a storm share one parse of each distinct roster frame (`_Parsed`, keyed by the
frame's bytes): a client still learns its ids only from the frames it received, as if it had
parsed them itself, but the benchmark's process no longer parses ~140 MB of JSON on the cores
it shares with the MC (its CPU was as much as the MC's). The benchmark's own cyclic garbage
collector is off while a storm runs (`_collector_paused`, as `timeit` does; collected right
after): its full collections over a thousand clients' objects stopped the process that
measures for 0.1-0.8 s inside the storm (under load), and every pong and roster frame in
flight then counted that pause as the MC's.

Two protocols in the same run: clients announcing `roster_delta` (batched, the default of
`darktower client` and the /join page) at N = 100, 500, 1000, and v1 clients (one frame per
roster change) at N = 100 and 200 as the baseline. Also measured: the MC's RSS per connected
participant (psutil: with everyone connected minus before the storm, / joiners), the frames a
client got, and the pingers' pong latency during the storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.b_assign import AssignClient, gc_tokens
from bench.context import BenchContext
from bench.hosting import Host, hosts
from bench.load import percentile
from bench.results import BenchResult, Metric
from darktower.auth.join_tokens import mint_join_token
from darktower.auth.keys import load_private_key
from darktower.embedded.redis import EmbeddedRedis

__all__ = ["NAME", "run"]

NAME = "big_meeting"
TIMEOUT_S = (1800.0, 90.0)
MC_ID = "mc-big"
PINGERS = 5
# 10 pings a second: under MC_CLIENT_MESSAGE_RATE (20/s), which closes a client that floods.
PING_EVERY_S = 0.1
IN_FLIGHT = 64
KIB = 1024


# What a frame tells a client: its type, the participant ids it adds, those it removes.
_Seen = tuple[str | None, tuple[str, ...], tuple[str, ...]]
# Types whose frames are the same bytes for every client (broadcast, not personal).
_SHARED = frozenset(
    {"roster_delta", "participant_joined", "participant_updated", "participant_left"}
)


class _Parsed:
    """The ids each shared roster frame carries, parsed once per storm for every client that
    receives the same bytes (a frame only counts for the clients that received it)."""

    def __init__(self) -> None:
        self._seen: dict[bytes, _Seen] = {}

    def get(self, frame: bytes) -> _Seen | None:
        return self._seen.get(frame)

    def add(self, frame: bytes, message: dict[str, Any]) -> _Seen:
        seen = _ids(message)
        if seen[0] in _SHARED:
            self._seen[frame] = seen
        return seen


def _ids(message: dict[str, Any]) -> _Seen:
    kind = message.get("type")
    if kind == "join_answer":
        return kind, tuple(p["participant_id"] for p in message["roster"]), ()
    if kind == "roster_delta":
        added = tuple(p["participant_id"] for p in message["participants"])
        return kind, added, tuple(g["participant_id"] for g in message["left"])
    if kind in ("participant_joined", "participant_updated"):
        return kind, (message["participant"]["participant_id"],), ()
    if kind == "participant_left":
        return kind, (), (message["participant_id"],)
    return kind, (), ()


@dataclass
class _Client:
    ws: ClientConnection
    size: int
    parsed: _Parsed
    known: set[str] = field(default_factory=set)
    frames: int = 0
    full_at: float | None = None
    full: asyncio.Event = field(default_factory=asyncio.Event)
    sent: dict[str, float] = field(default_factory=dict)
    pongs: list[float] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def take(self, frame: bytes) -> None:
        self.frames += 1
        seen = self.parsed.get(frame)
        if seen is None:
            message = json.loads(frame)
            if message.get("type") == "pong":
                sent = self.sent.pop(message.get("nonce"), None)
                if sent is not None:
                    self.pongs.append(time.perf_counter() - sent)
                return
            seen = self.parsed.add(frame, message)
        _kind, added, removed = seen
        self.known.update(added)
        self.known.difference_update(removed)
        if self.full_at is None and len(self.known) >= self.size:
            self.full_at = time.perf_counter()
            self.full.set()

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                self.take(await self.ws.recv(decode=False))


@dataclass
class _Storm:
    seconds: float
    frames_per_client: float
    pongs: list[float]
    rss_per_participant_kib: float


async def run(ctx: BenchContext, result: BenchResult) -> None:
    """Fill `result`, metric by metric (what was measured survives a timeout)."""
    sizes: list[int] = ctx.pick([100, 500, 1000], [8, 12])
    v1_sizes: list[int] = ctx.pick([100, 200], [8])
    pingers: int = ctx.pick(PINGERS, 2)
    result.parameters.update(
        {
            "sizes": sizes,
            "v1_sizes": v1_sizes,
            "pingers": pingers,
            "ping_every_s": PING_EVERY_S,
            "handshakes_in_flight": IN_FLIGHT,
            "roster_batch_s": 0.05,
        }
    )
    with EmbeddedRedis() as redis:
        mc = ctx.host(
            "big-mc",
            "bench.services:mc_service",
            {
                "id": MC_ID,
                "redis_url": redis.url,
                "clients": True,
                "binding_secret": secrets.token_urlsafe(32),
                "meeting_touch_seconds": 5.0,
            },
        )
        async with hosts(mc):
            assign = AssignClient(mc.info["grpc_port"], gc_tokens(ctx, MC_ID).metadata())
            try:
                await _measure(ctx, result, mc, assign, sizes, v1_sizes, pingers)
            finally:
                await assign.channel.close(None)


async def _measure(
    ctx: BenchContext,
    result: BenchResult,
    mc: Host,
    assign: AssignClient,
    sizes: list[int],
    v1_sizes: list[int],
    pingers: int,
) -> None:
    url = f"ws://127.0.0.1:{mc.info['client_port']}/v1/signaling"
    key = load_private_key(ctx.keys / "gc.key")
    v1: dict[int, _Storm] = {}
    batched: dict[int, _Storm] = {}
    baselined: dict[int, list[Metric]] = {}
    for n in sizes:  # first: the memory figures on a fresh MC
        with _collector_paused():
            storm = batched[n] = await _storm(
                assign, url, key, mc.pid, f"big-{n}", n, pingers, batched=True
            )
        target, check = "", None
        if n == sizes[-1] and not ctx.smoke:
            target, check = "≤ 3 s", lambda m: m.value <= 3.0
        baselined[n] = [
            result.add(
                Metric(f"full roster, N={n}", storm.seconds, "s", target=target, check=check)
            ),
            result.add(Metric(f"frames per client, N={n}", storm.frames_per_client)),
        ]
        result.add(
            Metric(
                f"pong p99 during the storm, N={n}",
                percentile(storm.pongs, 99) * 1000,
                "ms",
                target="< 100 ms",
                check=lambda m: m.value < 100.0,
            )
        )
        result.add(
            Metric(
                f"MC memory per participant, N={n}",
                storm.rss_per_participant_kib,
                "KiB",
                target="≤ 16 KiB" if n == sizes[-1] else "",
                check=(lambda m: m.value <= 16.0) if n == sizes[-1] else None,
            )
        )
    for n in v1_sizes:  # the baseline: v1 clients, one frame per roster change
        with _collector_paused():
            v1[n] = await _storm(assign, url, key, mc.pid, f"v1-{n}", n, pingers, batched=False)
        result.add(Metric(f"v1 full roster, N={n}", v1[n].seconds, "s"))
        result.add(Metric(f"v1 frames per client, N={n}", v1[n].frames_per_client))
        if n in baselined:
            seconds, frames = baselined[n]
            seconds.baseline, frames.baseline = v1[n].seconds, v1[n].frames_per_client
    low, high = sizes[0], sizes[-1]
    result.add(
        Metric(
            f"t({high})/t({low})",
            batched[high].seconds / batched[low].seconds,
            "x",
            target=f"≤ 15 (N x{high // low})",
            check=lambda m: m.value <= 15.0,
        )
    )
    for n in v1_sizes[1:]:
        result.add(Metric(f"v1 t({n})/t({v1_sizes[0]})", v1[n].seconds / v1[v1_sizes[0]].seconds))


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """This process's cyclic garbage collector off for the block, then one collection (see
    the module docstring: the pauses are the measuring client's, not the MC's)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect()


async def _storm(
    assign: AssignClient,
    url: str,
    key: Ed25519PrivateKey,
    pid: int,
    meeting_id: str,
    n: int,
    pinger_count: int,
    *,
    batched: bool,
) -> _Storm:
    await assign.call(meeting_id)
    features = ["roster_delta"] if batched else []
    parsed = _Parsed()

    async def join(i: int) -> _Client:
        token = mint_join_token(
            key,
            meeting_id=meeting_id,
            user_id=f"u{i}",
            display_name=f"User {i}",
            issuer="gc-bench",
        )
        ws = await connect(
            url, open_timeout=60, compression=None, proxy=None, ping_interval=None, max_size=2**20
        )
        frame = {"v": 1, "type": "join", "token": token, "features": features}
        await ws.send(json.dumps(frame))
        client = _Client(ws, n, parsed)
        client.take(await asyncio.wait_for(ws.recv(decode=False), 60))
        if not client.known:
            await ws.close()
            raise RuntimeError(f"join {meeting_id} u{i} refused")
        client.reader = asyncio.create_task(client.read())
        return client

    pingers = [await join(i) for i in range(pinger_count)]
    clients = list(pingers)
    process = psutil.Process(pid)
    await asyncio.sleep(0.5)
    rss_before = process.memory_info().rss
    stop = asyncio.Event()

    async def ping(client: _Client) -> None:
        k = 0
        while not stop.is_set():
            k += 1
            nonce = f"p{k}"
            client.sent[nonce] = time.perf_counter()
            await client.ws.send(json.dumps({"v": 1, "type": "ping", "nonce": nonce}))
            await asyncio.sleep(PING_EVERY_S)

    pinging = [asyncio.create_task(ping(c)) for c in pingers]
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def gated(i: int) -> _Client:
        async with gate:
            return await join(i)

    started = time.perf_counter()
    try:
        clients += await asyncio.gather(*(gated(i) for i in range(pinger_count, n)))
        try:
            async with asyncio.timeout(300):
                await asyncio.gather(*(c.full.wait() for c in clients))
        except TimeoutError:
            short = [len(c.known) for c in clients if c.full_at is None]
            raise RuntimeError(f"{len(short)} clients never saw all {n}: {short[:10]}") from None
        done_at = max(c.full_at or 0.0 for c in clients)
        stop.set()
        await asyncio.gather(*pinging, return_exceptions=True)
        await asyncio.sleep(1.0)
        rss_after = process.memory_info().rss
        joiners = clients[pinger_count:]
        frames = sum(c.frames for c in joiners) / max(1, len(joiners))
        return _Storm(
            seconds=done_at - started,
            frames_per_client=frames,
            pongs=[x for c in pingers for x in c.pongs],
            rss_per_participant_kib=(rss_after - rss_before) / max(1, len(joiners)) / KIB,
        )
    finally:
        stop.set()
        await asyncio.gather(*pinging, return_exceptions=True)
        await asyncio.gather(*(_close(c) for c in clients))


async def _close(client: _Client) -> None:
    with contextlib.suppress(Exception):
        await client.ws.close()
    if client.reader is not None:
        client.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await client.reader
