"""herding: 1000 joins at once over 4 equal MCs; how evenly do they spread?

A real fleet (GC with 1 s heartbeats, four MCs with equal limits, two simulated MHs). 1000
distinct meetings are joined with 64 in flight, far faster than heartbeats report the MCs'
new load: the GC must spread them by itself (assignments since the last heartbeat count in
its ranking, and it draws among the best). Measured: max / mean meetings per MC from the
answers (1.0 is a perfect spread), and the burst's throughput and latency as a by-product.
"""

from __future__ import annotations

from collections import Counter

from bench.context import BenchContext
from bench.database import recorded_database
from bench.fleet import BenchFleet
from bench.load import error_notes, run_load
from bench.results import BenchResult, Metric
from darktower.embedded.redis import EmbeddedRedis

__all__ = ["NAME", "run"]

NAME = "herding"
TIMEOUT_S = (240.0, 40.0)
MCS = 4


async def run(ctx: BenchContext, result: BenchResult) -> None:
    """Fill `result`, metric by metric (what was measured survives a timeout)."""
    joins: int = ctx.pick(1000, 40)
    in_flight: int = ctx.pick(64, 16)
    result.parameters.update(
        {"mcs": MCS, "joins": joins, "in_flight": in_flight, "heartbeat_ms": 1000}
    )
    placed: Counter[str] = Counter()
    async with recorded_database(ctx.workdir, NAME, result) as database:
        with EmbeddedRedis() as redis:
            fleet = BenchFleet(
                ctx, redis.url, mcs=MCS, heartbeat_ms=1000, database_url=database.url
            )
            async with fleet:

                async def join(i: int) -> None:
                    answer = await fleet.join(f"herd-{i}")
                    placed[answer["mc_id"]] += 1

                run = await run_load(join, concurrency=in_flight, max_calls=joins, max_seconds=180)
    counts = [placed.get(f"mc-{i + 1}", 0) for i in range(MCS)]
    mean = sum(counts) / MCS
    result.parameters["per_mc"] = dict(
        zip((f"mc-{i + 1}" for i in range(MCS)), counts, strict=True)
    )
    result.add(
        Metric(
            "max/mean per MC",
            max(counts) / mean if mean else float("nan"),
            target="≤ 1.2",
            check=lambda m: m.value <= 1.2,
        )
    )
    result.add(Metric("min/mean per MC", min(counts) / mean if mean else float("nan")))
    result.add(Metric("throughput", run.throughput, "/s"))
    result.add(Metric("p99", run.ms(99), "ms"))
    result.add(Metric("errors", run.errors, target="0", check=lambda m: m.value == 0))
    result.notes += error_notes([run])
