"""MH load reports written behind (`LoadReportBatcher`), as heartbeats are: one transaction per
burst, last values win, NOT_FOUND for unknown MHs at once, pending reports flushed before a
sweep judges and at stop, kept on a failed flush."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from darktower.embedded.redis import free_port
from darktower.gc.domain import Health, LoadReport
from darktower.gc.heartbeats import LoadReportBatcher
from darktower.gc.store import GcStore, StoreError, UnknownMediaHandler, create_engine
from darktower.gc.sweeper import StalenessSweeper
from tests.support.waiting import eventually

T0 = datetime(2030, 1, 1, tzinfo=UTC)
REGION = "eu"
SECRET = "s3cret-db-password"


def report(mh_id: str, streams: int, at: datetime = T0, **extra: Any) -> LoadReport:
    return LoadReport(mh_id, current_streams=streams, health=Health.HEALTHY, at=at, **extra)


class Writes:
    """Counts write transactions (COMMITs of a begun transaction) on the store's engine."""

    def __init__(self, store: GcStore) -> None:
        self.commits = 0
        event.listen(store.engine.sync_engine, "commit", self._commit)

    def _commit(self, _connection: Any) -> None:
        self.commits += 1


async def register(store: GcStore, mh_id: str) -> None:
    await store.upsert_media_handler(
        mh_id, REGION, f"https://{mh_id}:1", f"http://{mh_id}:2", 100, T0
    )


@pytest.fixture
async def batcher(store: GcStore) -> AsyncIterator[LoadReportBatcher]:
    for i in range(100):
        await register(store, f"mh-{i}")
    # A long interval: the tests flush by hand or through the sweeper.
    batcher = LoadReportBatcher(store, interval_s=3600, max_pending=500)
    await batcher.start()
    yield batcher
    await batcher.stop()


async def test_a_burst_from_100_mhs_is_one_transaction_and_last_values_win(
    store: GcStore, batcher: LoadReportBatcher
) -> None:
    writes = Writes(store)
    for round_ in range(3):
        for i in range(100):
            await batcher.submit(
                report(f"mh-{i}", round_ + i, T0 + timedelta(seconds=round_), cpu_percent=1.0 * i)
            )
    assert writes.commits == 0 and batcher.pending == 100
    assert batcher.last_heard.at("mh", "mh-7") == T0 + timedelta(seconds=2)

    assert await batcher.flush() == 100
    assert writes.commits == 1 and batcher.pending == 0
    mh = await store.get_media_handler("mh-7")
    assert mh is not None
    assert (mh.current_streams, mh.health, mh.cpu_percent) == (2 + 7, Health.HEALTHY, 7.0)
    assert mh.last_report_at == T0 + timedelta(seconds=2)
    untouched = await store.get_controller("mh-7")
    assert untouched is None  # the MH table only


async def test_unknown_mh_is_refused_at_once_and_a_registration_makes_it_known(
    store: GcStore, batcher: LoadReportBatcher
) -> None:
    with pytest.raises(UnknownMediaHandler):
        await batcher.submit(report("mh-new", 1))
    assert batcher.pending == 0 and batcher.last_heard.at("mh", "mh-new") is None
    # Registered through another GC sharing the database: looked up once, then known.
    await register(store, "mh-new")
    await batcher.submit(report("mh-new", 1))
    assert batcher.pending == 1
    batcher.registered("mh-new")
    assert batcher.last_heard.at("mh", "mh-new") is None  # a new life: old receipts forgotten


async def test_the_sweep_flushes_pending_reports_before_judging(
    store: GcStore, batcher: LoadReportBatcher
) -> None:
    late = T0 + timedelta(seconds=60)
    for i in range(100):
        if i != 3:
            await batcher.submit(report(f"mh-{i}", 1, late))
    # A sweeper without the receipts: only the flush can save the 99 that reported.
    sweeper = StalenessSweeper(
        store,
        staleness_s=30,
        interval_s=3600,
        retention_s=3600,
        load_reports=batcher,
        clock=lambda: late,
    )
    swept = await sweeper.sweep_once()
    assert swept.stale_media_handlers == ("mh-3",) and batcher.pending == 0
    written = await store.get_media_handler("mh-4")
    assert written is not None and written.last_report_at == late


async def test_a_failed_flush_keeps_the_reports_and_stop_drops_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A PostgreSQL that is not there: nothing listens on its port.
    url = f"postgresql+asyncpg://gc:{SECRET}@127.0.0.1:{free_port()}/gc"
    dead = GcStore(create_engine(url))
    try:
        batcher = LoadReportBatcher(dead, interval_s=3600, max_pending=500)
        batcher.registered("mh-1")
        await batcher.submit(report("mh-1", 5))
        with pytest.raises(StoreError):
            await batcher.flush()
        assert batcher.pending == 1
        await batcher.submit(report("mh-1", 6, T0 + timedelta(seconds=1)))
        with pytest.raises(StoreError):
            await batcher.flush()
        assert batcher.pending == 1  # one per MH, the newest
        await batcher.stop()
        assert batcher.pending == 0
        assert "dropping 1 pending load reports at stop" in caplog.text
        assert SECRET not in caplog.text
    finally:
        await dead.aclose()


async def test_stop_flushes_pending_reports(database_url: str) -> None:
    store = await GcStore.open(database_url)
    await register(store, "mh-1")
    batcher = LoadReportBatcher(store, interval_s=3600, max_pending=500)
    await batcher.start()
    await batcher.submit(report("mh-1", 5))
    await batcher.stop()
    await store.aclose()

    reopened = await GcStore.open(database_url)
    try:
        mh = await reopened.get_media_handler("mh-1")
        assert mh is not None and mh.current_streams == 5 and mh.last_report_at == T0
    finally:
        await reopened.aclose()


async def test_the_background_task_flushes_within_the_interval(store: GcStore) -> None:
    await register(store, "mh-1")
    batcher = LoadReportBatcher(store, interval_s=0.05, max_pending=500)
    await batcher.start()
    try:
        await batcher.submit(report("mh-1", 4))

        async def written() -> bool:
            mh = await store.get_media_handler("mh-1")
            return mh is not None and mh.current_streams == 4

        await eventually(
            written, timeout=30, what="the load report written by the background flush"
        )
        assert batcher.pending == 0
    finally:
        await batcher.stop()
