"""participants: one MC holding thousands of connected participants that ping it.

A real fleet (a GC on PostgreSQL, one MC serving client signaling, two simulated MHs, one
embedded Redis). 50 meetings are placed on the MC through the GC, then 5,000 participants
(100 a meeting) join them over the documented protocol: a WebSocket to the MC's signaling
URL, `join` with a join token (announcing `roster_delta`), the `join_answer`. The join tokens
are minted here with the fleet GC's key, as its join answer would carry them: the GC's join
path (`join`, `scaleout`) would otherwise pace the MC's (a first version asked the GC for
each and connected 1,611 participants in 300 s on a loaded machine). The clients are lean
and spread over 4 processes (one could not keep pace: pong p50 1.3 s while the MC used 0.06
cores), one reader task per socket that only looks for `pong` frames (the roster frames are
read and dropped).

Held for a window in which every participant pings every 10 s (phases spread), as the
terminal client does. Measured: pong latency p50/p99 (ping sent → its pong read), pings
missed (no pong within 5 s, or the MC closed the socket), the MC's CPU over the window and
its RSS per connected participant (psutil: after the joins minus before, / participants),
and the join time per participant.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.context import BenchContext
from bench.database import recorded_database
from bench.fleet import BenchFleet
from bench.hosting import hosts
from bench.load import percentile, run_load
from bench.profiling import cpu_window
from bench.results import BenchResult, Metric
from darktower.auth.join_tokens import mint_join_token
from darktower.auth.keys import load_private_key
from darktower.embedded.redis import EmbeddedRedis

__all__ = ["NAME", "run"]

NAME = "participants"
TIMEOUT_S = (600.0, 90.0)
PONG_DEADLINE_S = 5.0
PONG_TARGET_MS = 100.0
MC = "mc-1"
CROWDS = 4  # client processes: one could not read 5,000 sockets' roster frames and keep pace
JOIN_CONCURRENCY = 8  # per client process
GC_ID = "gc-bench"  # the fleet GC's id: the issuer its join tokens name


@dataclass
class _Client:
    ws: ClientConnection
    sent: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    closed: bool = False
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        try:
            async for frame in self.ws:
                if isinstance(frame, str) and '"pong"' in frame:
                    nonce = json.loads(frame).get("nonce")
                    sent = self.sent.pop(nonce, None)
                    if sent is not None:
                        self.latencies.append(time.perf_counter() - sent)
        except ConnectionClosed:
            pass
        self.closed = True


@dataclass
class _Window:
    latencies: list[float] = field(default_factory=list)
    pings: int = 0
    missed: int = 0
    closed: int = 0
    cores: float = 0.0


async def run(ctx: BenchContext, result: BenchResult) -> None:
    """Fill `result`, metric by metric (what was measured survives a timeout)."""
    meetings: int = ctx.pick(50, 2)
    per_meeting: int = ctx.pick(100, 5)
    interval: float = ctx.pick(10.0, 0.5)
    seconds: float = ctx.pick(30.0, 1.0)
    result.parameters.update(
        {
            "mcs": 1,
            "meetings": meetings,
            "participants_per_meeting": per_meeting,
            "ping_interval_s": interval,
            "window_s": seconds,
            "pong_deadline_s": PONG_DEADLINE_S,
        }
    )
    async with recorded_database(ctx.workdir, NAME, result) as database:
        with EmbeddedRedis() as redis:
            fleet = BenchFleet(
                ctx,
                redis.url,
                mcs=1,
                mhs=2,
                mc_params={
                    "clients": True,
                    "binding_secret": secrets.token_urlsafe(32),
                    "max_meetings": 1000,
                    "max_participants": 100_000,
                },
                database_url=database.url,
            )
            async with fleet:
                await _measure(ctx, result, fleet, meetings, per_meeting, interval, seconds)


async def _measure(
    ctx: BenchContext,
    result: BenchResult,
    fleet: BenchFleet,
    meetings: int,
    per_meeting: int,
    interval: float,
    seconds: float,
) -> None:
    ids = [f"many-{k}" for k in range(meetings)]
    urls: dict[str, str] = {}
    for meeting_id in ids:
        answer = await fleet.join(meeting_id)
        if answer["mc_id"] != MC:
            raise RuntimeError(f"{meeting_id} placed on {answer['mc_id']}")
        urls[meeting_id] = answer["signaling_url"]
    gc_key = load_private_key(ctx.keys / "gc.key")
    total = meetings * per_meeting
    joins = [
        (
            urls[ids[i % meetings]],
            mint_join_token(
                gc_key,
                meeting_id=ids[i % meetings],
                user_id=f"u{i}",
                display_name=f"u{i}",
                issuer=GC_ID,
                ttl_seconds=900,
            ),
            ids[i % meetings],
        )
        for i in range(total)
    ]
    crowds_n: int = ctx.pick(CROWDS, 2)
    crowds = [
        ctx.host(f"participants-crowd-{c}", "bench.b_participants:crowd_service")
        for c in range(crowds_n)
    ]
    mc = psutil.Process(fleet.mcs[MC].pid)
    rss_before = mc.memory_info().rss
    async with hosts(*crowds):
        joined = await asyncio.gather(
            *(
                crowd.call(
                    {"cmd": "join", "joins": joins[c::crowds_n], "max_seconds": 300},
                    timeout=360,
                )
                for c, crowd in enumerate(crowds)
            )
        )
        latencies = [x for j in joined for x in j["latencies"]]
        connected = sum(int(j["connected"]) for j in joined)
        errors = [e for j in joined for e in j["errors"]]
        if errors:
            result.notes.append(f"{len(errors)} joins failed; first: {errors[:3]}")
        result.add(
            Metric(
                "participants connected",
                connected,
                target=f"{total}",
                check=lambda m: m.value == total,
            )
        )
        result.add(Metric("join p50", percentile(latencies, 50) * 1000, "ms"))
        result.add(Metric("join p99", percentile(latencies, 99) * 1000, "ms"))
        await asyncio.sleep(ctx.pick(3.0, 0.5))  # the last roster frames settle
        rss_after = mc.memory_info().rss
        result.add(Metric("MC RSS before the joins", rss_before / 2**20, "MiB"))
        result.add(Metric("MC RSS with everyone connected", rss_after / 2**20, "MiB"))
        per = (rss_after - rss_before) / max(1, connected) / 1024
        result.add(Metric("MC memory per participant", per, "KiB"))
        start_at = time.time() + 1.0
        message = {"cmd": "ping", "interval": interval, "seconds": seconds, "start_at": start_at}
        with cpu_window(mc.pid) as cpu:
            parts = await asyncio.gather(
                *(crowd.call(message, timeout=seconds + 60) for crowd in crowds)
            )
        window = _Window(cores=cpu["cores"])
        for part in parts:
            window.latencies += part["latencies"]
            window.pings += int(part["pings"])
            window.missed += int(part["missed"])
            window.closed += int(part["closed"])
        _add_window(result, window)


class _Crowd:
    """Participants in a process of their own (`crowd_service`): `join` connects the ones it
    is given, `ping` runs the window, `stop` closes them."""

    def __init__(self) -> None:
        self.clients: list[_Client] = []
        self.info: dict[str, Any] = {}

    async def command(self, message: Mapping[str, Any]) -> dict[str, Any]:
        if message["cmd"] == "join":
            joins = message["joins"]
            latencies: list[float] = []
            errors: list[str] = []

            async def join(i: int) -> None:
                url, token, meeting_id = joins[i]
                started = time.perf_counter()
                try:
                    self.clients.append(await _join(url, token, meeting_id))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    return
                latencies.append(time.perf_counter() - started)

            await run_load(
                join,
                concurrency=JOIN_CONCURRENCY,
                max_calls=len(joins),
                max_seconds=float(message["max_seconds"]),
            )
            return {
                "ok": True,
                "latencies": latencies,
                "errors": errors,
                "connected": len(self.clients),
            }
        if message["cmd"] == "ping":
            start = asyncio.get_running_loop().time() + (message["start_at"] - time.time())
            window = await _ping_for(
                self.clients, float(message["interval"]), float(message["seconds"]), start
            )
            return {"ok": True, **asdict(window)}
        raise ValueError(f"unknown command {message['cmd']}")

    async def stop(self) -> None:
        await asyncio.gather(*(_close(c) for c in self.clients))


async def crowd_service(params: Mapping[str, Any]) -> _Crowd:
    """A process of participants (see `_Crowd`)."""
    del params
    return _Crowd()


async def _join(url: str, token: str, meeting_id: str) -> _Client:
    ws = await connect(
        url,
        open_timeout=30,
        compression=None,
        proxy=None,
        ping_interval=None,  # the protocol's own pings are what is measured
        max_size=2**20,
    )
    try:
        join = {
            "v": 1,
            "type": "join",
            "token": token,
            "meeting_id": meeting_id,
            "features": ["roster_delta"],
        }
        await ws.send(json.dumps(join))
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if first.get("type") != "join_answer":
            raise RuntimeError(f"join {meeting_id}: {first.get('type')} {first.get('code')}")
    except BaseException:
        await ws.close()
        raise
    client = _Client(ws)
    client.reader = asyncio.create_task(client.read())
    return client


async def _ping_for(
    clients: list[_Client], interval: float, seconds: float, start: float
) -> _Window:
    """Every client pings every `interval` for `seconds` from loop time `start`, phases
    spread; a ping without its pong within PONG_DEADLINE_S (or on a closed socket) is missed."""
    window = _Window()
    loop = asyncio.get_running_loop()
    count = max(1, round(seconds / interval))
    n = len(clients)

    async def pinger(i: int, client: _Client) -> None:
        for k in range(count):
            due = start + interval * (k + i / n)
            await asyncio.sleep(max(0.0, due - loop.time()))
            nonce = f"{i}-{k}"
            window.pings += 1
            client.sent[nonce] = time.perf_counter()
            try:
                await client.ws.send(json.dumps({"v": 1, "type": "ping", "nonce": nonce}))
            except ConnectionClosed:
                client.sent.pop(nonce, None)
                window.missed += 1

    await asyncio.gather(*(pinger(i, c) for i, c in enumerate(clients)))
    await asyncio.sleep(PONG_DEADLINE_S)
    now = time.perf_counter()
    for client in clients:
        late = [s for s in client.sent.values() if now - s >= PONG_DEADLINE_S]
        window.missed += len(late)
        window.latencies += [x for x in client.latencies if x <= PONG_DEADLINE_S]
        window.missed += sum(x > PONG_DEADLINE_S for x in client.latencies)
        window.closed += client.closed
        client.latencies.clear()
    return window


def _add_window(result: BenchResult, window: _Window) -> None:
    result.add(Metric("pings sent", window.pings))
    result.add(Metric("pings missed", window.missed, target="0", check=lambda m: m.value == 0))
    result.add(
        Metric("sockets closed by the MC", window.closed, target="0", check=lambda m: m.value == 0)
    )
    result.add(Metric("pong p50", percentile(window.latencies, 50) * 1000, "ms"))
    result.add(
        Metric(
            "pong p99",
            percentile(window.latencies, 99) * 1000,
            "ms",
            target=f"< {PONG_TARGET_MS:.0f} ms",
            check=lambda m: m.value < PONG_TARGET_MS,
        )
    )
    result.add(Metric("MC CPU while pinging", window.cores, "cores"))


async def _close(client: _Client) -> None:
    with contextlib.suppress(Exception):
        await client.ws.close()
    if client.reader is not None:
        client.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await client.reader
