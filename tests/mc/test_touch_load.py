"""A thousand hosted meetings: touches and EndAll stay within the MC's Redis connection bound
and never make the MC unready (issue 7: bursts used to pass the socket timeout)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from darktower.fencing.metrics import REDIS_ERRORS
from darktower.mc.controller import EndAll
from darktower.mc.validation import AssignRequest, MhRole, MhTarget
from darktower.runtime.redis_connect import DEFAULT_MAX_CONNECTIONS
from tests.support.mc import RunningMc

StartMc = Callable[..., Awaitable[RunningMc]]

MEETINGS = 1000
TOUCH_SECONDS = 0.5
MHS = (MhTarget("mh-0", "https://mh-0.example:4433", MhRole.PRIMARY),)


def _errors() -> float:
    return sum(
        sample.value
        for metric in REDIS_ERRORS.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


@pytest.mark.alone  # judges latency under load: run by itself (scripts/test.sh)
@pytest.mark.timeout(60)
async def test_thousand_meetings_are_touched_within_the_pool_and_the_mc_stays_ready(
    start_mc: StartMc, redis_client: aioredis.Redis
) -> None:
    mc = await start_mc(
        max_meetings=MEETINGS, meeting_touch_seconds=TOUCH_SECONDS, redis_check_seconds=0.1
    )
    app = mc.app
    gate = asyncio.Semaphore(64)

    async def assign(i: int) -> None:
        async with gate:
            assert await app.assigner.assign(AssignRequest(f"load-{i}", MHS, "gc-test")) is None

    db = int(redis_client.connection_pool.connection_kwargs.get("db", 0))
    errors_before = _errors()
    unready: list[str] = []
    peak_clients = 0
    stop = asyncio.Event()

    async def watch() -> None:
        nonlocal peak_clients
        while not stop.is_set():
            ready, why = app.ready()
            if not ready:
                unready.append(why)
            # Only the connections to this test's database: other test runs may share the server.
            clients = [c for c in await redis_client.client_list() if int(c["db"]) == db]
            peak_clients = max(peak_clients, len(clients))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(assign(i) for i in range(MEETINGS)))
            assert len(app.controller.meetings) == MEETINGS
            started = await redis_client.time()
            await asyncio.sleep(3 * TOUCH_SECONDS)
            # Every meeting was touched since: the touches reached Redis.
            since_ms = started[0] * 1000 + started[1] // 1000
            async with redis_client.pipeline(transaction=False) as pipe:
                for i in range(MEETINGS):
                    pipe.hget(f"meeting:{{load-{i}}}:state", "touched_at_ms")
                touched = await pipe.execute()
            stale = [i for i, t in enumerate(touched) if t is None or int(t) < since_ms]
            assert stale == []
            app.controller.send(EndAll("test"))
            assert await app.controller.wait_empty(20)
            assert await redis_client.keys("meeting:*:owner") == []
    finally:
        stop.set()
        await watcher
    assert unready == []
    assert _errors() == errors_before
    # The MC's pool, plus this test's client and a few for the monitor's view of Redis.
    assert peak_clients <= DEFAULT_MAX_CONNECTIONS + 4
