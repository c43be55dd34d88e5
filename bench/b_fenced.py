"""fenced: fenced writes per second through `RedisFencedStore` against a one-line SET script.

The store's `fenced_set` checks owner and generation in Lua, then writes; the baseline is
redis-py's script object running `return redis.call('SET', KEYS[1], ARGV[1])` on the same
key with the same value, by EVALSHA, on the same client: the difference is the store's own
cost (validation, the fencing check in Lua, reply decoding, metrics). Three shapes: one write
at a time (a round trip each), 16 writers at once (what many meeting actors do), and
pipelined batches of 100 (`fenced_set_many` vs the script queued on a pipeline). Rounds
alternate between the two so that the machine's background load falls on both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from bench.context import BenchContext
from bench.load import LoadRun, run_load
from bench.results import BenchResult, Metric
from darktower.embedded.redis import EmbeddedRedis
from darktower.fencing import FencedWrite, MeetingKeys, RedisFencedStore

__all__ = ["NAME", "run"]

NAME = "fenced"
TIMEOUT_S = (240.0, 30.0)

OWNER = "mc-bench"
MEETINGS = 100
BATCH = 100
# About what the MC stores at meeting:{id}:mh: two ranked MHs and the assignment time.
VALUE = (
    '{"assigned_at_ms":1760000000000,"mhs":['
    '{"mh_id":"mh-1","endpoint":"https://mh-1.bench.invalid:4433","role":"primary"},'
    '{"mh_id":"mh-2","endpoint":"https://mh-2.bench.invalid:4433","role":"backup"}]}'
)
SET_SCRIPT = "return redis.call('SET', KEYS[1], ARGV[1])"


async def run(ctx: BenchContext, result: BenchResult) -> None:
    """Fill `result`, metric by metric (what was measured survives a timeout)."""
    rounds = ctx.pick(6, 1)  # short alternating rounds: background load falls on both
    max_s = ctx.pick(1.5, 0.5)
    max_calls = ctx.pick(10**6, 60)
    result.parameters.update(
        {
            "rounds": rounds,
            "seconds_per_round": max_s,
            "meetings": MEETINGS,
            "batch": BATCH,
            "value_bytes": len(VALUE),
        }
    )
    with EmbeddedRedis() as server:
        client = aioredis.Redis.from_url(server.url)
        try:
            store = RedisFencedStore(client)
            script = client.register_script(SET_SCRIPT)
            meetings = [f"fenced-{i}" for i in range(MEETINGS)]
            leases = [await store.acquire(m, OWNER) for m in meetings]
            mh_keys = [MeetingKeys.for_meeting(m).mh for m in meetings]

            async def store_single(i: int) -> None:
                await store.fenced_set(leases[i % MEETINGS], "mh", VALUE)

            async def base_single(i: int) -> None:
                await script(keys=[mh_keys[i % MEETINGS]], args=[VALUE])

            batch = [FencedWrite(leases[k % MEETINGS], "mh", VALUE) for k in range(BATCH)]

            async def store_many(_i: int) -> None:
                outcomes = await store.fenced_set_many(batch)
                if any(o is not None for o in outcomes):
                    raise RuntimeError(f"refused: {next(o for o in outcomes if o)}")

            async def base_many(_i: int) -> None:
                async with client.pipeline(transaction=False) as pipe:
                    for k in range(BATCH):
                        await script(keys=[mh_keys[k % MEETINGS]], args=[VALUE], client=pipe)
                    await pipe.execute()

            shapes: dict[str, tuple[Callable[[int], Awaitable[None]], ...]] = {
                "single": (store_single, base_single),
                "single c16": (store_single, base_single),
                "pipelined": (store_many, base_many),
            }
            concurrency = {"single": 1, "single c16": 16, "pipelined": 1}
            runs: dict[tuple[str, str], LoadRun] = {}
            for shape, (subject, baseline) in shapes.items():
                for fn in (subject, baseline):  # warm-up (loads the scripts too)
                    await run_load(fn, concurrency=1, max_calls=20, max_seconds=5)
                for r in range(rounds):
                    pair = (("store", subject), ("baseline", baseline))
                    for who, fn in pair if r % 2 == 0 else pair[::-1]:
                        run = await run_load(
                            fn,
                            concurrency=concurrency[shape],
                            max_calls=max_calls,
                            max_seconds=max_s,
                        )
                        key = (shape, who)
                        runs[key] = runs[key].merge(run) if key in runs else run
        finally:
            await client.aclose()
    for shape in shapes:
        per_call = BATCH if shape == "pipelined" else 1
        subject_run, base_run = runs[shape, "store"], runs[shape, "baseline"]
        result.add(
            Metric(
                f"{shape} writes/s",
                subject_run.throughput * per_call,
                "/s",
                base_run.throughput * per_call,
                target="≥ 0.8x baseline",
                check=lambda m: (m.ratio or 0) >= 0.8,
            )
        )
        if shape == "single":
            result.add(Metric("single p50", subject_run.ms(50), "ms", base_run.ms(50)))
    errors = sum(r.errors for r in runs.values())
    result.add(Metric("errors", errors, target="0", check=lambda m: m.value == 0))
