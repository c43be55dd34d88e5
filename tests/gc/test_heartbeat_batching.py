"""Heartbeats written behind: one transaction per burst, last values win, NOT_FOUND for
unknown MCs, pending beats flushed before a sweep and at stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from darktower.gc.domain import Health, Heartbeat
from darktower.gc.heartbeats import HeartbeatBatcher
from darktower.gc.store import GcStore, UnknownController
from darktower.gc.sweeper import StalenessSweeper

T0 = datetime(2030, 1, 1, tzinfo=UTC)
REGION = "eu"


def beat(mc_id: str, meetings: int, at: datetime = T0, **extra: Any) -> Heartbeat:
    return Heartbeat(
        mc_id,
        current_meetings=meetings,
        current_participants=meetings * 10,
        max_meetings=100,
        max_participants=1000,
        health=Health.HEALTHY,
        at=at,
        **extra,
    )


class Writes:
    """Counts the write statements sent on the store's engine (an executemany counts once)
    and the COMMITs of begun transactions: a flush is one write transaction, which on
    PostgreSQL is one statement in autocommit (no COMMIT of its own)."""

    def __init__(self, store: GcStore) -> None:
        self.statements = 0
        self.commits = 0
        engine = store.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def _statement(self, _connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"UPDATE", "WITH", "INSERT"}:
            self.statements += 1

    def _commit(self, _connection: Any) -> None:
        self.commits += 1


async def started(store: GcStore, *, interval_s: float) -> HeartbeatBatcher:
    batcher = HeartbeatBatcher(store, interval_s=interval_s, max_pending=500)
    await batcher.start()
    return batcher


@pytest.fixture
async def batcher(store: GcStore) -> AsyncIterator[HeartbeatBatcher]:
    for i in range(100):
        await store.upsert_controller(f"mc-{i}", REGION, f"http://mc-{i}:1", None, 100, 1000, T0)
    # A long interval: the tests flush by hand or through the sweeper.
    batcher = await started(store, interval_s=3600)
    yield batcher
    await batcher.stop()


async def test_a_burst_from_100_mcs_is_one_transaction_and_last_values_win(
    store: GcStore, batcher: HeartbeatBatcher
) -> None:
    writes = Writes(store)
    for round_ in range(3):
        for i in range(100):
            await batcher.submit(beat(f"mc-{i}", round_ + i, T0 + timedelta(seconds=round_)))
    assert writes.statements == 0 and writes.commits == 0 and batcher.pending == 100

    assert await batcher.flush() == 100
    assert writes.statements == 1 and writes.commits <= 1 and batcher.pending == 0
    mc = await store.get_controller("mc-7")
    assert mc is not None
    assert mc.current_meetings == 2 + 7 and mc.health is Health.HEALTHY
    assert mc.last_heartbeat_at == T0 + timedelta(seconds=2)


async def test_older_cpu_and_memory_survive_a_newer_fast_beat(
    store: GcStore, batcher: HeartbeatBatcher
) -> None:
    await batcher.submit(beat("mc-1", 1, cpu_percent=40.0, memory_percent=50.0))
    await batcher.submit(beat("mc-1", 2, T0 + timedelta(seconds=1)))
    await batcher.flush()
    mc = await store.get_controller("mc-1")
    assert mc is not None and (mc.current_meetings, mc.cpu_percent) == (2, 40.0)


async def test_unknown_mc_is_refused_and_a_registration_makes_it_known(
    store: GcStore, batcher: HeartbeatBatcher
) -> None:
    with pytest.raises(UnknownController):
        await batcher.submit(beat("mc-new", 1))
    assert batcher.pending == 0
    await store.upsert_controller("mc-new", REGION, "http://n:1", None, 100, 1000, T0)
    await batcher.submit(beat("mc-new", 1))
    assert batcher.pending == 1


async def test_the_sweep_sees_pending_beats(store: GcStore, batcher: HeartbeatBatcher) -> None:
    late = T0 + timedelta(seconds=60)
    for i in range(100):
        if i != 3:
            await batcher.submit(beat(f"mc-{i}", 1, late))
    sweeper = StalenessSweeper(
        store,
        staleness_s=30,
        interval_s=3600,
        retention_s=3600,
        heartbeats=batcher,
        clock=lambda: late,
    )
    swept = await sweeper.sweep_once()
    assert swept.stale_controllers == ("mc-3",) and batcher.pending == 0


async def test_stop_flushes_pending_beats(database_url: str) -> None:
    store = await GcStore.open(database_url)
    await store.upsert_controller("mc-1", REGION, "http://m:1", None, 100, 1000, T0)
    batcher = await started(store, interval_s=3600)
    await batcher.submit(beat("mc-1", 5))
    await batcher.stop()
    await store.aclose()

    reopened = await GcStore.open(database_url)
    try:
        mc = await reopened.get_controller("mc-1")
        assert mc is not None and mc.current_meetings == 5 and mc.last_heartbeat_at == T0
    finally:
        await reopened.aclose()


async def test_the_background_task_flushes_within_the_interval(store: GcStore) -> None:
    await store.upsert_controller("mc-1", REGION, "http://m:1", None, 100, 1000, T0)
    batcher = await started(store, interval_s=0.05)
    try:
        await batcher.submit(beat("mc-1", 4))
        for _ in range(100):
            mc = await store.get_controller("mc-1")
            assert mc is not None
            if mc.current_meetings == 4:
                break
            await asyncio.sleep(0.02)
        assert mc.current_meetings == 4 and batcher.pending == 0
    finally:
        await batcher.stop()
