"""failover: how long meetings of a SIGKILLed MC take to be placed elsewhere.

A real fleet (GC with 1 s heartbeats and a 3 s staleness threshold, three MCs, two simulated
MHs). Meetings are joined until the victim MC hosts 20 of them; the victim is SIGKILLed; then
every one of its meetings is joined again every 100 ms until the GC answers another MC. The
time from the kill to that answer is what a client waiting to rejoin sees: at most the
staleness threshold minus the age of the victim's last beat, plus one placement.
"""

from __future__ import annotations

import asyncio
import time

from bench.context import BenchContext
from bench.database import recorded_database
from bench.fleet import BenchFleet
from bench.load import percentile
from bench.results import BenchResult, Metric
from darktower.embedded.redis import EmbeddedRedis

__all__ = ["NAME", "run"]

NAME = "failover"
TIMEOUT_S = (180.0, 40.0)
VICTIM = "mc-1"


async def run(ctx: BenchContext, result: BenchResult) -> None:
    """Fill `result`, metric by metric (what was measured survives a timeout)."""
    meetings: int = ctx.pick(20, 4)
    heartbeat_ms: int = ctx.pick(1000, 500)
    staleness_s: float = ctx.pick(3.0, 1.5)
    poll_s = 0.1
    limit_s = staleness_s * 5 + 5
    result.parameters.update(
        {
            "mcs": 3,
            "victim_meetings": meetings,
            "heartbeat_ms": heartbeat_ms,
            "staleness_s": staleness_s,
            "poll_s": poll_s,
        }
    )
    async with recorded_database(ctx.workdir, NAME, result) as database:
        with EmbeddedRedis() as redis:
            fleet = BenchFleet(
                ctx,
                redis.url,
                mcs=3,
                heartbeat_ms=heartbeat_ms,
                staleness_s=staleness_s,
                database_url=database.url,
            )
            async with fleet:
                on_victim = await fleet.meetings_on(VICTIM, meetings, "fo")
                fleet.mcs[VICTIM].kill()
                killed = time.perf_counter()

                async def moved(meeting_id: str) -> float | None:
                    while time.perf_counter() - killed < limit_s:
                        try:
                            answer = await fleet.join(meeting_id)
                        except Exception:
                            answer = {}
                        if answer.get("mc_id") not in (None, VICTIM):
                            return time.perf_counter() - killed
                        await asyncio.sleep(poll_s)
                    return None

                times = await asyncio.gather(*(moved(m) for m in on_victim))
    done = [t for t in times if t is not None]
    result.add(Metric("p50 to re-placement", percentile(done, 50), "s"))
    result.add(
        Metric(
            "p95 to re-placement",
            percentile(done, 95),
            "s",
            target="≤ 5 s",
            check=lambda m: m.value <= 5.0,
        )
    )
    result.add(Metric("max to re-placement", max(done, default=float("nan")), "s"))
    result.add(
        Metric(
            "not re-placed",
            len(times) - len(done),
            target="0",
            check=lambda m: m.value == 0,
        )
    )
