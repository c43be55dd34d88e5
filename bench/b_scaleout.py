"""scaleout: two GC processes sharing one PostgreSQL under thousands of simulated MCs.

Two real GcApps (processes of their own, ids gc-1 and gc-2, token checks on every call) on
one PostgreSQL database (`bench.database`; SQLite only when the machine has none, and the
result says so). The MCs are simulated in this process, as in `heartbeat`: each registers
with its own id (RegisterMC, half on each GC) and then beats the GC it belongs to (MC i on
gc-(i % 2 + 1)) over one channel per GC: `FastHeartbeat` every `fast_s` and
`ComprehensiveHeartbeat` every `comprehensive_s`, phases spread evenly over the interval.

Phases: 5,000 MCs at the default intervals (10 s fast, 30 s comprehensive) for 30 s, then
1,000 of them at 1 Hz (fast every second, comprehensive every 3 s) for 10 s. Measured per
phase: beats answered (of those scheduled), beat latency p50/p99 as the MC sees it, send
lateness (this client's own pace), and the CPU of each GC process (psutil, all threads).
A beat has a 2 s deadline; one due over a second ago is skipped, as an MC that waits for its
previous beat would.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field

import grpc

from bench.b_heartbeat import REGISTER_ATTEMPTS, _beat, _SimTokens
from bench.context import REGION, BenchContext
from bench.database import bench_database
from bench.hosting import Host, hosts
from bench.load import percentile
from bench.profiling import cpu_window
from bench.results import BenchResult, Metric
from darktower.auth.keys import load_private_key
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["NAME", "run"]

NAME = "scaleout"
TIMEOUT_S = (420.0, 60.0)
GCS = 2
P99_TARGET_MS = 50.0


@dataclass(frozen=True)
class _Phase:
    label: str
    mcs: int
    fast_s: float
    comprehensive_s: float
    seconds: float


@dataclass
class _Window:
    scheduled: int = 0
    latencies: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    errors: int = 0
    skipped: int = 0
    cores: list[float] = field(default_factory=list)
    cut: bool = False


async def run(ctx: BenchContext, result: BenchResult) -> None:
    """Fill `result`, metric by metric (what was measured survives a timeout)."""
    phases: list[_Phase] = ctx.pick(
        [_Phase("default", 5000, 10.0, 30.0, 30.0), _Phase("1 Hz", 1000, 1.0, 3.0, 10.0)],
        [_Phase("default", 40, 1.0, 2.0, 2.0), _Phase("1 Hz", 20, 0.5, 1.0, 1.0)],
    )
    result.parameters.update(
        {
            "gcs": GCS,
            "phases": [asdict(p) for p in phases],
            "deadline_s": 2.0,
            "channels": "one per GC",
        }
    )
    async with bench_database(ctx.workdir, NAME) as database:
        result.parameters["database"] = database.kind
        if database.note:
            result.notes.append(database.note)
        gcs = [
            ctx.host(
                f"scaleout-gc-{k + 1}",
                "bench.services:gc_service",
                {"id": f"gc-{k + 1}", "database_url": database.url},
            )
            for k in range(GCS)
        ]
        # One after the other: the first migrates the schema (the second would wait anyway).
        await gcs[0].start()
        async with hosts(*gcs[1:]):
            try:
                await _measure(ctx, result, gcs, phases)
            finally:
                await gcs[0].stop()


async def _measure(
    ctx: BenchContext, result: BenchResult, gcs: list[Host], phases: list[_Phase]
) -> None:
    tokens = _SimTokens(load_private_key(ctx.keys / "mc.key"))
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{gc.info['grpc_port']}") for gc in gcs]
    stubs = [pb_grpc.GlobalControllerServiceStub(c) for c in channels]
    try:
        n = max(p.mcs for p in phases)
        registering = time.perf_counter()
        retries = await _register(stubs, tokens, n)
        took = time.perf_counter() - registering
        result.add(Metric(f"register {n} MCs (16 at a time)", took, "s"))
        if retries:
            result.notes.append(f"registration: {retries} calls retried (timeout)")
        for phase in phases:
            window = await _beat_for(stubs, tokens, phase, [gc.pid for gc in gcs])
            _add_window(result, phase, window)
    finally:
        for channel in channels:
            await channel.close(None)


async def _register(
    stubs: list[pb_grpc.GlobalControllerServiceAsyncStub], tokens: _SimTokens, n: int
) -> int:
    """Register sim-0 .. sim-(n-1), each on its own GC, 16 at a time; a call that times out
    or finds the GC unavailable is retried (as an MC retries); returns the retries."""
    pending = iter(range(n))
    retries = 0

    async def register(i: int) -> None:
        nonlocal retries
        request = pb.RegisterMCRequest(
            id=f"sim-{i}",
            region=REGION,
            grpc_endpoint=f"http://sim-{i}.bench.invalid:50052",
            max_meetings=1000,
            max_participants=10000,
        )
        for attempt in range(REGISTER_ATTEMPTS):
            try:
                answer = await stubs[i % len(stubs)].RegisterMC(
                    request, metadata=tokens.metadata(i), timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                retryable = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
                if exc.code() not in retryable or attempt == REGISTER_ATTEMPTS - 1:
                    raise
                retries += 1
                continue
            if not answer.accepted:
                raise RuntimeError(f"sim-{i} not registered: {answer.message}")
            return

    async def worker() -> None:
        for i in pending:
            await register(i)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(16))), 240)
    return retries


def _comprehensive(mc_id: str, meetings: int) -> pb.ComprehensiveHeartbeatRequest:
    fast = _beat(mc_id, meetings)
    return pb.ComprehensiveHeartbeatRequest(
        controller_id=mc_id,
        capacity=fast.capacity,
        health=pb.HEALTHY,
        cpu_usage_percent=20.0,
        memory_usage_percent=30.0,
        meetings=[pb.MeetingLoad(meeting_id=f"{mc_id}-m{k}", participants=10) for k in range(5)],
    )


async def _beat_for(
    stubs: list[pb_grpc.GlobalControllerServiceAsyncStub],
    tokens: _SimTokens,
    phase: _Phase,
    gc_pids: list[int],
) -> _Window:
    """`phase.mcs` MCs beat their GC for `phase.seconds`: fast and comprehensive beats, each
    kind at its interval, phases spread evenly over it."""
    n = phase.mcs
    fast_count = round(phase.seconds / phase.fast_s)
    comprehensive_count = round(phase.seconds / phase.comprehensive_s)
    window = _Window(scheduled=n * (fast_count + comprehensive_count))
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5

    async def beats(i: int, interval: float, count: int, comprehensive: bool) -> None:
        stub = stubs[i % len(stubs)]
        mc_id = f"sim-{i}"
        offset = interval * ((i / n + (0.5 if comprehensive else 0.0)) % 1.0)
        for k in range(count):
            due = start + offset + k * interval
            if loop.time() - due > 1.0:
                window.skipped += 1
                continue
            await asyncio.sleep(max(0.0, due - loop.time()))
            window.lateness.append((loop.time() - due) * 1000)
            sent = time.perf_counter()
            try:
                if comprehensive:
                    request = _comprehensive(mc_id, i % 100)
                    await stub.ComprehensiveHeartbeat(
                        request, metadata=tokens.metadata(i), timeout=2
                    )
                else:
                    await stub.FastHeartbeat(
                        _beat(mc_id, i % 100), metadata=tokens.metadata(i), timeout=2
                    )
            except grpc.aio.AioRpcError:
                window.errors += 1
                continue
            window.latencies.append(time.perf_counter() - sent)

    await asyncio.sleep(max(0.0, start - loop.time()))
    with cpu_window(gc_pids[0]) as first, cpu_window(gc_pids[1]) as second:
        beating = asyncio.gather(
            *(beats(i, phase.fast_s, fast_count, False) for i in range(n)),
            *(beats(i, phase.comprehensive_s, comprehensive_count, True) for i in range(n)),
        )
        try:
            await asyncio.wait_for(beating, phase.seconds + 15)
        except TimeoutError:  # the per-beat deadline and the skips make this a safety net
            window.cut = True
    window.cores = [first["cores"], second["cores"]]
    return window


def _add_window(result: BenchResult, phase: _Phase, window: _Window) -> None:
    label = f"{phase.mcs} MCs {phase.label}"
    result.add(
        Metric(
            f"{label}: p99",
            percentile(window.latencies, 99) * 1000,
            "ms",
            target=f"< {P99_TARGET_MS:.0f} ms",
            check=lambda m: m.value < P99_TARGET_MS,
        )
    )
    result.add(Metric(f"{label}: p50", percentile(window.latencies, 50) * 1000, "ms"))
    answered = 100 * len(window.latencies) / window.scheduled if window.scheduled else 0.0
    result.add(
        Metric(
            f"{label}: beats answered",
            answered,
            "%",
            target="100 %",
            check=lambda m: m.value >= 100.0,
        )
    )
    result.add(Metric(f"{label}: beats/s", window.scheduled / phase.seconds, "/s"))
    for k, cores in enumerate(window.cores):
        result.add(Metric(f"{label}: gc-{k + 1} CPU", cores, "cores"))
    result.add(Metric(f"{label}: send lateness p99", percentile(window.lateness, 99), "ms"))
    if window.errors or window.skipped or window.cut:
        result.notes.append(
            f"{label}: {window.errors} beats failed (2 s deadline), {window.skipped} skipped "
            f"(over 1 s late){', window cut at its deadline' if window.cut else ''}"
        )
