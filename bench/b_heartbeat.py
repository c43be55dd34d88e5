"""heartbeat: a GC process under N simulated MCs beating once a second.

The GC is a real GcApp in a process of its own (SQLite, token checks on every call). The MCs
are simulated in this process: N asyncio tasks sharing one channel, each registered with its
own id (RegisterMC) and then sending FastHeartbeat once a second, their phases spread evenly
over the second, for a bounded time. Measured: each beat's latency as the MC sees it, the
lateness of the sends (if this client could not keep the pace its own figures would be
suspect), and the GC's CPU over the window (psutil, all its threads).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.context import REGION, BenchContext
from bench.hosting import hosts
from bench.load import percentile
from bench.profiling import Profile, cpu_window
from bench.results import BenchResult, Metric
from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import load_private_key
from darktower.auth.tokens import GC_AUDIENCE, SERVICE_PROFILES
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["NAME", "run"]

NAME = "heartbeat"
TIMEOUT_S = (300.0, 40.0)
REGISTER_ATTEMPTS = 5


def _beat(mc_id: str, meetings: int) -> pb.FastHeartbeatRequest:
    return pb.FastHeartbeatRequest(
        controller_id=mc_id,
        capacity=pb.ControllerCapacity(
            max_meetings=1000,
            current_meetings=meetings,
            max_participants=10000,
            current_participants=meetings * 10,
        ),
        health=pb.HEALTHY,
    )


async def run(ctx: BenchContext, result: BenchResult) -> None:
    """Fill `result`, metric by metric (what was measured survives a timeout)."""
    sizes: list[int] = ctx.pick([250, 500, 1000], [20])
    seconds: int = ctx.pick(10, 2)
    result.parameters.update({"mcs": sizes, "seconds": seconds, "interval_s": 1.0, "channels": 1})
    gc = ctx.host("heartbeat-gc", "bench.services:gc_service", {"fast_ms": 1000})
    async with hosts(gc):
        tokens = _SimTokens(load_private_key(ctx.keys / "mc.key"))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gc.info['grpc_port']}")
        stub = pb_grpc.GlobalControllerServiceStub(channel)
        try:
            registering = time.perf_counter()
            retries = await _register(stub, tokens, range(max(sizes)))
            if retries:
                result.notes.append(f"registration: {retries} calls retried (timeout)")
            result.add(Metric(f"register {max(sizes)} MCs", time.perf_counter() - registering, "s"))
            for n in sizes:
                profile = Profile(ctx, f"heartbeat-gc-{n}", gc.pid)
                await profile.start()
                _add_window(result, n, await _beat_for(stub, tokens, n, seconds, gc.pid))
                await profile.stop()
                if ctx.profile_dir is not None:
                    result.profile[f"gc_{n}"] = profile.summary()
        finally:
            await channel.close(None)


def _add_window(result: BenchResult, n: int, window: _Window) -> None:
    judged = n == 1000
    result.add(
        Metric(
            f"{n} MCs p99",
            percentile(window.latencies, 99) * 1000,
            "ms",
            target="< 50 ms" if judged else "",
            check=(lambda m: m.value < 50.0) if judged else None,
        )
    )
    result.add(Metric(f"{n} MCs p50", percentile(window.latencies, 50) * 1000, "ms"))
    result.add(
        Metric(
            f"{n} MCs GC CPU",
            window.gc_cores,
            "cores",
            target="< 1 core" if judged else "",
            check=(lambda m: m.value < 1.0) if judged else None,
        )
    )
    answered = 100 * len(window.latencies) / window.scheduled if window.scheduled else 0.0
    result.add(
        Metric(
            f"{n} MCs beats answered",
            answered,
            "%",
            target="100 %",
            check=lambda m: m.value >= 100.0,
        )
    )
    result.add(Metric(f"{n} MCs send lateness p99", percentile(window.lateness, 99), "ms"))
    if window.errors or window.skipped or window.cut:
        result.notes.append(
            f"{n} MCs: {window.errors} beats failed (2 s deadline), {window.skipped} skipped "
            f"(over 1 s late){', window cut at its deadline' if window.cut else ''}"
        )


class _SimTokens:
    """A token per simulated MC `sim-<i>`, from the shared legacy mc.key (the bench GC opts in
    to unbound keys): each acts as itself (`sub`), as the GC's identity binding requires."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._providers: dict[int, ServiceTokenProvider] = {}

    def metadata(self, i: int) -> tuple[tuple[str, str], ...]:
        provider = self._providers.get(i)
        if provider is None:
            service_type, scope = SERVICE_PROFILES["mc"]
            provider = self._providers[i] = ServiceTokenProvider(
                self._key,
                service_type=service_type,
                scope=scope,
                issuer=f"sim-{i}",
                audience=GC_AUDIENCE,
            )
        return provider.metadata()


async def _register(
    stub: pb_grpc.GlobalControllerServiceAsyncStub,
    tokens: _SimTokens,
    ids: Iterable[int],
    *,
    deadline_s: float = 180,
) -> int:
    """Register sim-<i> for each of `ids`, 8 at a time; a call that times out or finds the GC
    unavailable is retried (up to 5 times, as an MC retries); returns the retries."""
    pending = iter(ids)
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
                answer = await stub.RegisterMC(request, metadata=tokens.metadata(i), timeout=10)
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

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(8))), deadline_s)
    return retries


@dataclass
class _Window:
    """One run of n MCs: beat latencies (s), send lateness (ms), beats that failed or were
    skipped (over a second late, as an MC that waits for its previous beat would), the GC's
    CPU, whether the window had to be cut at its deadline."""

    scheduled: int = 0
    latencies: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    errors: int = 0
    skipped: int = 0
    gc_cores: float = 0.0
    cut: bool = False


async def _beat_for(
    stub: pb_grpc.GlobalControllerServiceAsyncStub,
    tokens: _SimTokens,
    n: int,
    seconds: int,
    gc_pid: int,
) -> _Window:
    """n MCs beat once a second for `seconds`, phases spread over the second."""
    window = _Window(scheduled=n * seconds)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5

    async def mc(i: int) -> None:
        request = _beat(f"sim-{i}", i % 100)
        for k in range(seconds):
            due = start + k + i / n
            if loop.time() - due > 1.0:
                window.skipped += 1
                continue
            await asyncio.sleep(max(0.0, due - loop.time()))
            window.lateness.append((loop.time() - due) * 1000)
            sent = time.perf_counter()
            try:
                await stub.FastHeartbeat(request, metadata=tokens.metadata(i), timeout=2)
            except grpc.aio.AioRpcError:
                window.errors += 1
                continue
            window.latencies.append(time.perf_counter() - sent)

    await asyncio.sleep(max(0.0, start - loop.time()))
    with cpu_window(gc_pid) as cpu:
        beating = asyncio.gather(*(mc(i) for i in range(n)))
        try:
            await asyncio.wait_for(beating, seconds + 15)
        except TimeoutError:  # the per-beat deadline and the skips make this a safety net
            window.cut = True
    window.gc_cores = cpu["cores"]
    return window
