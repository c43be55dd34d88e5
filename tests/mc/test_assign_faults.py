"""Redis failing part-way through an admission: UNHEALTHY, and nothing is left behind.

`FaultyStore` is the real Redis store with one step made to fail the way a dropped connection
does (StoreUnavailable) after the steps before it really ran against Redis.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from darktower.fencing import Lease, RedisFencedStore, StoreUnavailable
from darktower.mc.server import McApp
from darktower.mc.settings import McSettings
from darktower.wire.dark_tower import internal_pb2 as pb
from tests.support.mc import RunningMc

StartMc = Callable[..., Awaitable[RunningMc]]


class FaultyStore(RedisFencedStore):
    def __init__(self, client: aioredis.Redis, fail_on: str) -> None:
        super().__init__(client)
        self.fail_on = fail_on
        self.failures = 0

    def _maybe_fail(self, step: str) -> None:
        if self.fail_on == step:
            self.failures += 1
            raise StoreUnavailable("redis unavailable: ConnectionError")

    async def acquire(
        self, meeting_id: str, owner: str, *, min_generation: int = 0, mh: str | None = None
    ) -> Lease:
        self._maybe_fail("acquire")
        if mh is not None:
            # An admission stores the MH list in the same script as the acquire.
            self._maybe_fail("set")
        return await super().acquire(meeting_id, owner, min_generation=min_generation, mh=mh)

    async def fenced_set(self, *args: Any, **kwargs: Any) -> None:
        self._maybe_fail("set")
        await super().fenced_set(*args, **kwargs)


@pytest.mark.parametrize("step", ["acquire", "set"])
async def test_redis_failing_mid_admission_answers_unhealthy_and_leaves_nothing(
    start_mc: StartMc,
    mc_settings: Callable[..., McSettings],
    redis_client: aioredis.Redis,
    step: str,
) -> None:
    settings = mc_settings(max_meetings=1)
    store = FaultyStore(redis_client, fail_on=step)
    mc = await start_mc(McApp(settings, store=store))
    answer = await mc.assign("fragile")
    assert not answer.accepted
    assert answer.rejection_reason == pb.REJECTION_REASON_UNHEALTHY
    assert store.failures == 1
    # No actor, no reservation, no owner or MH list of this attempt in Redis.
    assert mc.app.controller.meetings == {}
    assert await redis_client.get("meeting:{fragile}:owner") is None
    assert await redis_client.get("meeting:{fragile}:mh") is None
    # The reservation was released: with room for one meeting, the next one fits once Redis is back.
    store.fail_on = ""
    await mc.app.monitor.check()
    answer = await mc.assign("fragile")
    assert answer.accepted
    assert await redis_client.get("meeting:{fragile}:owner") == b"mc-test"
