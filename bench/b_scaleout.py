"""scaleout: two GC processes sharing one PostgreSQL under thousands of simulated MCs.

Two real GcApps (processes of their own, ids gc-1 and gc-2, token checks on every call) on
one PostgreSQL database (`bench.database`; SQLite only when the machine has none, and the
result says so). The MCs are simulated as in `heartbeat`, in one process per GC (so that the
clients keep pace: their send lateness is reported): each registers with its own id
(RegisterMC) on the GC it belongs to (MC i on gc-(i % 2 + 1)) and then beats it over that
process's one channel: `FastHeartbeat` every `fast_s` and
`ComprehensiveHeartbeat` every `comprehensive_s`, phases spread evenly over the interval.

Phases: 5,000 MCs at the default intervals (10 s fast, 30 s comprehensive) for 30 s, then
1,000 of them at 1 Hz (fast every second, comprehensive every 3 s) for 10 s. Measured per
phase: beats answered (of those scheduled), beat latency p50/p99 as the MC sees it, send
lateness (this client's own pace), each GC's event-loop lag (how late a 10 ms timer in it ran:
p99 and max; a beat p99 far above it is time the GC spent waiting for the machine, not on its
own work), the CPU of each GC process (psutil, all threads) and of each process of simulated
MCs (a load generator near a full core would measure itself). With
`--profile DIR`, py-spy records gc-1 during each phase.
A beat has a 2 s deadline; one due over a second ago is skipped, as an MC that waits for its
previous beat would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.b_heartbeat import _beat, _register, _SimTokens
from bench.context import BenchContext
from bench.database import recorded_database
from bench.hosting import Host, hosts
from bench.load import percentile
from bench.profiling import Profile, cpu_window
from bench.results import BenchResult, Metric
from darktower.auth.keys import load_private_key
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["NAME", "run"]

NAME = "scaleout"
TIMEOUT_S = (420.0, 120.0)
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
    client_cores: list[float] = field(default_factory=list)
    # Each GC's event loop: how late a 10 ms timer ran, each time, in ms (`_LoopLag`).
    loop_lag: list[list[float]] = field(default_factory=list)
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
    async with recorded_database(ctx.workdir, NAME, result) as database:
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
    n = max(p.mcs for p in phases)
    beaters = [
        ctx.host(
            f"scaleout-mcs-{k + 1}",
            "bench.b_scaleout:beater_service",
            {"gc_port": gc.info["grpc_port"], "gc_index": k, "gcs": len(gcs)},
        )
        for k, gc in enumerate(gcs)
    ]
    async with hosts(*beaters):
        registering = time.perf_counter()
        replies = await asyncio.gather(
            *(b.call({"cmd": "register", "n": n}, timeout=300) for b in beaters)
        )
        took = time.perf_counter() - registering
        result.add(Metric(f"register {n} MCs (8 at a time per GC)", took, "s"))
        retries = sum(int(r["retries"]) for r in replies)
        if retries:
            result.notes.append(f"registration: {retries} calls retried (timeout)")
        for k, phase in enumerate(phases):
            # py-spy on gc-1 (only with --profile): the phase as measured, profiler included.
            profile = Profile(ctx, f"scaleout-gc-1-phase{k + 1}", gcs[0].pid)
            await profile.start()
            await asyncio.gather(*(gc.call({"cmd": "lag_start"}) for gc in gcs))
            start_at = time.time() + 1.0
            message = {"cmd": "beat", "phase": asdict(phase), "start_at": start_at}
            with (
                cpu_window(gcs[0].pid) as first,
                cpu_window(gcs[1].pid) as second,
                cpu_window(beaters[0].pid) as mcs_first,
                cpu_window(beaters[1].pid) as mcs_second,
            ):
                parts = await asyncio.gather(
                    *(b.call(message, timeout=phase.seconds + 60) for b in beaters)
                )
            lags = await asyncio.gather(*(gc.call({"cmd": "lag"}) for gc in gcs))
            await profile.stop()
            if ctx.profile_dir is not None:
                result.profile[f"gc_1_phase{k + 1}"] = profile.summary()
            window = _Window(
                cores=[first["cores"], second["cores"]],
                client_cores=[mcs_first["cores"], mcs_second["cores"]],
                loop_lag=[lag["late_ms"] for lag in lags],
            )
            for part in parts:
                window.scheduled += int(part["scheduled"])
                window.latencies += part["latencies"]
                window.lateness += part["lateness"]
                window.errors += int(part["errors"])
                window.skipped += int(part["skipped"])
                window.cut = window.cut or bool(part["cut"])
            _add_window(result, phase, window)


class _Beater:
    """The simulated MCs of one GC, in a process of their own (`beater_service`)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{params['gc_port']}")
        self._stub = pb_grpc.GlobalControllerServiceStub(self._channel)
        self._tokens = _SimTokens(load_private_key(Path(params["keys"]) / "mc.key"))
        self._index = int(params["gc_index"])
        self._gcs = int(params["gcs"])
        self.info: dict[str, Any] = {}

    def _ids(self, n: int) -> list[int]:
        return [i for i in range(n) if i % self._gcs == self._index]

    async def command(self, message: Mapping[str, Any]) -> dict[str, Any]:
        if message["cmd"] == "register":
            retries = await _register(
                self._stub, self._tokens, self._ids(int(message["n"])), deadline_s=240
            )
            return {"ok": True, "retries": retries}
        if message["cmd"] == "beat":
            phase = _Phase(**message["phase"])
            loop_start = asyncio.get_running_loop().time() + (message["start_at"] - time.time())
            window = await _beat_for(
                self._stub, self._tokens, phase, self._ids(phase.mcs), loop_start
            )
            return {"ok": True, **asdict(window)}
        raise ValueError(f"unknown command {message['cmd']}")

    async def stop(self) -> None:
        await self._channel.close(None)


async def beater_service(params: Mapping[str, Any]) -> _Beater:
    """Params gc_port, gc_index, gcs: simulates the MCs i with i % gcs == gc_index."""
    return _Beater(params)


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
    stub: pb_grpc.GlobalControllerServiceAsyncStub,
    tokens: _SimTokens,
    phase: _Phase,
    ids: list[int],
    start: float,
) -> _Window:
    """The MCs `ids` (of `phase.mcs`) beat for `phase.seconds` from loop time `start`: fast and
    comprehensive beats, each kind at its interval, phases spread evenly over it."""
    n = phase.mcs
    fast_count = round(phase.seconds / phase.fast_s)
    comprehensive_count = round(phase.seconds / phase.comprehensive_s)
    window = _Window(scheduled=len(ids) * (fast_count + comprehensive_count))
    loop = asyncio.get_running_loop()

    async def beats(i: int, interval: float, count: int, comprehensive: bool) -> None:
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
    beating = asyncio.gather(
        *(beats(i, phase.fast_s, fast_count, False) for i in ids),
        *(beats(i, phase.comprehensive_s, comprehensive_count, True) for i in ids),
    )
    try:
        await asyncio.wait_for(beating, phase.seconds + 15)
    except TimeoutError:  # the per-beat deadline and the skips make this a safety net
        window.cut = True
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
    # A GC that answers late with an event loop that was never held up long waited for the
    # machine (a core, the network stack), not for its own work.
    for k, late in enumerate(window.loop_lag):
        result.add(Metric(f"{label}: gc-{k + 1} loop lag p99", percentile(late, 99), "ms"))
        result.add(Metric(f"{label}: gc-{k + 1} loop lag max", max(late, default=0.0), "ms"))
    result.add(Metric(f"{label}: send lateness p99", percentile(window.lateness, 99), "ms"))
    # The load generator's own CPU: near a core, its figures (lateness, latency) are its own.
    for k, cores in enumerate(window.client_cores):
        result.add(Metric(f"{label}: MCs of gc-{k + 1} CPU", cores, "cores"))
    if window.errors or window.skipped or window.cut:
        result.notes.append(
            f"{label}: {window.errors} beats failed (2 s deadline), {window.skipped} skipped "
            f"(over 1 s late){', window cut at its deadline' if window.cut else ''}"
        )
