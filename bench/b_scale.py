"""scale: MC resident memory per hosted idle meeting, and per connection actor.

An MC process of its own (standalone, its own embedded Redis) is measured with psutil: its
RSS once started with no meeting (the baseline), then after N meetings were assigned through
gRPC (N = 1k, then 10k), then after ConnectionActors (no-op outbox) were attached under every
meeting in-process. Per meeting = (RSS at N - RSS empty) / N; the marginal figure from 1k to
10k leaves out one-time costs (code paths warmed by the first assignments, allocator arenas).
At each size, 200 assignments one at a time also give the admission latency as a function
of the meetings hosted. The meeting touch is set to an hour so that no burst of touches runs
while measuring; RSS is read after a short settle.
"""

from __future__ import annotations

import asyncio

import psutil

from bench.b_assign import AssignClient, gc_tokens
from bench.context import BenchContext
from bench.hosting import hosts
from bench.load import run_load
from bench.results import BenchResult, Metric
from darktower.embedded.redis import EmbeddedRedis

__all__ = ["NAME", "run"]

NAME = "scale"
TIMEOUT_S = (300.0, 40.0)
KIB = 1024
SETTLE_S = 1.0


async def _rss(pid: int) -> int:
    await asyncio.sleep(SETTLE_S)
    rss: int = psutil.Process(pid).memory_info().rss
    return rss


async def run(ctx: BenchContext, result: BenchResult) -> None:
    """Fill `result`, metric by metric (what was measured survives a timeout)."""
    sizes: list[int] = ctx.pick([1000, 10000], [100])
    per_meeting = 2
    probes: int = ctx.pick(200, 10)
    result.parameters.update({"meetings": sizes, "connections_per_meeting": per_meeting, "mhs": 2})
    with EmbeddedRedis() as redis:
        mc = ctx.host(
            "scale-mc",
            "bench.services:mc_service",
            {
                "id": "mc-scale",
                "redis_url": redis.url,
                "max_meetings": 10**6,
                "meeting_touch_seconds": 3600,
            },
        )
        async with hosts(mc):
            client = AssignClient(mc.info["grpc_port"], gc_tokens(ctx, "mc-scale").metadata())
            try:
                empty = await _rss(mc.pid)
                result.add(Metric("RSS empty MC", empty / 2**20, "MiB"))
                # One-at-a-time assignments as the MC fills up: admission cost vs hosted.
                probe = await run_load(
                    client.caller("p0"), concurrency=1, max_calls=probes, max_seconds=60
                )
                result.add(Metric("assign p50, ~0 hosted", probe.ms(50), "ms"))
                hosted = probes
                rss_at: dict[int, int] = {}
                for n in sizes:
                    bulk = await run_load(
                        client.caller(f"s{n}"),
                        concurrency=32,
                        max_calls=n - hosted - probes,
                        max_seconds=240,
                    )
                    probe = await run_load(
                        client.caller(f"p{n}"), concurrency=1, max_calls=probes, max_seconds=60
                    )
                    hosted = (await mc.call({"cmd": "meetings"}))["meetings"]
                    if bulk.errors or probe.errors or hosted != n:
                        kinds = bulk.error_kinds + probe.error_kinds
                        raise RuntimeError(f"hosting {hosted} meetings of {n}: {dict(kinds)}")
                    result.add(Metric(f"assign p50, {n:,} hosted", probe.ms(50), "ms"))
                    rss_at[n] = await _rss(mc.pid)
                    result.add(
                        Metric(
                            f"per meeting at {n:,}",
                            (rss_at[n] - empty) / n / KIB,
                            "KiB",
                            target="≤ 20 KiB",
                            check=lambda m: m.value <= 20.0,
                        )
                    )
                if len(sizes) > 1:
                    low, high = sizes[0], sizes[-1]
                    marginal = (rss_at[high] - rss_at[low]) / (high - low) / KIB
                    result.add(Metric(f"per meeting {low:,}→{high:,}", marginal, "KiB"))
                result.add(Metric(f"RSS at {sizes[-1]:,}", rss_at[sizes[-1]] / 2**20, "MiB"))
                before = rss_at[sizes[-1]]
                reply = await mc.call({"cmd": "connections", "per_meeting": per_meeting})
                added = sizes[-1] * per_meeting
                if reply["connections"] < added:
                    raise RuntimeError(f"only {reply['connections']} connections attached")
                after = await _rss(mc.pid)
                result.add(Metric("per connection actor", (after - before) / added / KIB, "KiB"))
            finally:
                await client.channel.close(None)
