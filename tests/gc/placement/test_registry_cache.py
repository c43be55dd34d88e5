"""`RegistryCache`: one read of the MCs and MHs serves placements for a moment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from darktower.gc.domain import Controller, Health, Registry
from darktower.gc.join.registry_cache import RegistryCache

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _mc(id: str, since: int = 0) -> Controller:
    return Controller(
        id=id,
        region="eu",
        grpc_endpoint=f"http://{id}:1",
        webtransport_endpoint=None,
        max_meetings=10,
        max_participants=100,
        current_meetings=0,
        current_participants=0,
        health=Health.HEALTHY,
        cpu_percent=None,
        memory_percent=None,
        registered_at=T0,
        last_heartbeat_at=T0,
        assignments_since_heartbeat=since,
    )


class Source:
    """A registry read that counts its calls; `gate` (when set) holds each read until opened."""

    def __init__(self) -> None:
        self.reads = 0
        self.mcs = ["mc-1"]
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def read(self) -> Registry:
        self.reads += 1
        mcs = list(self.mcs)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return Registry([_mc(m) for m in mcs], [])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _ids(registry: Registry) -> list[str]:
    return [c.id for c in registry.controllers]


async def test_one_read_serves_until_it_is_older_than_max_age() -> None:
    source, clock = Source(), Clock()
    cache = RegistryCache(source.read, max_age_s=0.5, clock=clock)

    assert _ids(await cache.get()) == ["mc-1"]
    source.mcs = ["mc-1", "mc-2"]
    clock.now += 0.5
    assert _ids(await cache.get()) == ["mc-1"] and source.reads == 1
    clock.now += 0.01
    assert _ids(await cache.get()) == ["mc-1", "mc-2"] and source.reads == 2


async def test_max_age_zero_reads_every_time_and_fresh_always_reads() -> None:
    source, clock = Source(), Clock()
    every = RegistryCache(source.read, max_age_s=0, clock=clock)
    await every.get()
    clock.now += 0.001
    await every.get()
    assert source.reads == 2

    cached = RegistryCache(source.read, max_age_s=60, clock=clock)
    await cached.get()
    source.mcs = ["mc-3"]
    assert _ids(await cached.get(fresh=True)) == ["mc-3"]
    assert _ids(await cached.get()) == ["mc-3"] and source.reads == 4
    with pytest.raises(ValueError, match="negative"):
        RegistryCache(source.read, max_age_s=-1)


async def test_concurrent_gets_share_one_read() -> None:
    source = Source()
    source.gate = asyncio.Event()
    cache = RegistryCache(source.read, max_age_s=0.5)

    waiters = [asyncio.create_task(cache.get()) for _ in range(20)]
    await asyncio.sleep(0.01)
    source.gate.set()
    answers = await asyncio.gather(*waiters)

    assert source.reads == 1 and all(_ids(a) == ["mc-1"] for a in answers)


async def test_a_caller_that_gives_up_does_not_cancel_the_others_read() -> None:
    source = Source()
    source.gate = asyncio.Event()
    cache = RegistryCache(source.read, max_age_s=0.5)

    impatient = asyncio.create_task(cache.get())
    patient = asyncio.create_task(cache.get())
    await asyncio.sleep(0.01)
    impatient.cancel()
    source.gate.set()

    assert _ids(await patient) == ["mc-1"] and source.reads == 1
    assert impatient.cancelled()


async def test_invalidate_forgets_and_a_read_begun_before_it_is_not_kept() -> None:
    source = Source()
    cache = RegistryCache(source.read, max_age_s=60)
    await cache.get()
    cache.invalidate()
    source.mcs = ["mc-2"]
    assert _ids(await cache.get()) == ["mc-2"] and source.reads == 2

    source.gate = asyncio.Event()
    cache.invalidate()
    during = asyncio.create_task(cache.get())
    await asyncio.sleep(0.01)
    cache.invalidate()  # e.g. an MC found down while the read was under way
    source.gate.set()
    await during
    source.gate = None
    source.mcs = ["mc-4"]
    assert _ids(await cache.get()) == ["mc-4"]


async def test_a_failed_read_is_raised_to_every_waiter_and_not_kept() -> None:
    source = Source()
    source.gate = asyncio.Event()
    source.fail = OSError("database down")
    cache = RegistryCache(source.read, max_age_s=60)

    waiters = [asyncio.create_task(cache.get()) for _ in range(3)]
    await asyncio.sleep(0.01)
    source.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results) and source.reads == 1

    source.fail, source.gate = None, None
    assert _ids(await cache.get()) == ["mc-1"] and source.reads == 2


async def test_assigned_counts_on_the_cached_mc_only() -> None:
    source = Source()
    source.mcs = ["mc-1", "mc-2"]
    cache = RegistryCache(source.read, max_age_s=60)
    cache.assigned("mc-1")  # nothing cached yet: nothing to count on
    await cache.get()

    cache.assigned("mc-2")
    cache.assigned("mc-2")
    cache.assigned("mc-ghost")
    counts = {c.id: c.assignments_since_heartbeat for c in (await cache.get()).controllers}
    assert counts == {"mc-1": 0, "mc-2": 2} and source.reads == 1


async def test_past_half_its_age_the_answer_is_served_and_the_next_read_starts_behind() -> None:
    source, clock = Source(), Clock()
    cache = RegistryCache(source.read, max_age_s=0.5, clock=clock)
    await cache.get()
    source.mcs = ["mc-2"]
    source.gate = asyncio.Event()

    clock.now += 0.25
    assert _ids(await cache.get()) == ["mc-1"] and source.reads == 1  # young: no read
    clock.now += 0.05
    # Answered at once although the read it started is held: the join does not wait for it.
    answer = await asyncio.wait_for(cache.get(), 1.0)
    await asyncio.sleep(0)
    assert _ids(answer) == ["mc-1"] and source.reads == 2
    assert _ids(await asyncio.wait_for(cache.get(), 1.0)) == ["mc-1"] and source.reads == 2

    source.gate.set()
    await asyncio.sleep(0.01)
    clock.now += 0.21  # past the first read's max age, not half the second's
    assert _ids(await asyncio.wait_for(cache.get(), 1.0)) == ["mc-2"] and source.reads == 2


async def test_a_read_ahead_that_fails_keeps_the_answer_until_its_max_age() -> None:
    source, clock = Source(), Clock()
    cache = RegistryCache(source.read, max_age_s=0.5, clock=clock)
    await cache.get()
    source.fail = OSError("database down")

    clock.now += 0.4
    assert _ids(await cache.get()) == ["mc-1"]
    await asyncio.sleep(0.01)
    assert source.reads == 2 and _ids(await cache.get()) == ["mc-1"]
    clock.now += 0.2
    with pytest.raises(OSError, match="database down"):
        await cache.get()


async def test_a_get_after_invalidate_does_not_take_a_read_begun_before_it() -> None:
    source = Source()
    source.gate = asyncio.Event()
    cache = RegistryCache(source.read, max_age_s=60)
    before = asyncio.create_task(cache.get())
    await asyncio.sleep(0.01)
    cache.invalidate()  # e.g. an MC found down while that read was under way
    source.mcs = ["mc-2"]
    after = asyncio.create_task(cache.get())
    await asyncio.sleep(0.01)
    source.gate.set()

    assert _ids(await before) == ["mc-1"]
    assert _ids(await after) == ["mc-2"] and source.reads == 2
