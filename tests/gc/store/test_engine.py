"""URLs, SQLite connection settings, and a database that is down."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import QueuePool

from darktower.gc.domain import Health, Heartbeat
from darktower.gc.store import (
    DatabaseUnavailable,
    GcStore,
    create_engine,
    migrate,
    redacted_url,
    sqlite_url,
)
from darktower.gc.store.database import Database
from darktower.gc.store.engine import (
    POSTGRES_MAX_OVERFLOW,
    POSTGRES_POOL_RECYCLE_S,
    POSTGRES_POOL_SIZE,
    normalize_url,
)
from tests.support.databases import DATABASE_URL_ENV

PASSWORD = "s3cr3t-Pa55word"


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres://u:p@db:5432/gc", "postgresql+asyncpg"),
        ("postgresql://u:p@db/gc", "postgresql+asyncpg"),
        ("postgresql+psycopg2://u@db/gc", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@db/gc", "postgresql+asyncpg"),
        ("sqlite:///gc.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///gc.db", "sqlite+aiosqlite"),
    ],
)
def test_normalize_url_pins_the_async_driver(url: str, driver: str) -> None:
    assert normalize_url(url).drivername == driver


@pytest.mark.parametrize("url", [f"mysql://root:{PASSWORD}@db/gc", f"::{PASSWORD}::"])
def test_unusable_url_is_refused_without_quoting_it(url: str) -> None:
    with pytest.raises(ValueError, match="database") as caught:
        create_engine(url)
    assert PASSWORD not in str(caught.value)


def test_redacted_url_hides_the_password() -> None:
    redacted = redacted_url(f"postgresql://gc:{PASSWORD}@db:5432/gc")
    assert PASSWORD not in redacted and redacted == "postgresql://gc:***@db:5432/gc"
    assert PASSWORD not in redacted_url(f"not a url {PASSWORD}")


async def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'nested' / 'gc.db'}")
    try:
        async with engine.connect() as connection:
            pragmas = [
                await connection.scalar(text(f"PRAGMA {name}"))
                for name in ("journal_mode", "busy_timeout", "foreign_keys")
            ]
    finally:
        await engine.dispose()
    assert pragmas == ["wal", 10_000, 1]
    assert (tmp_path / "nested" / "gc.db").exists()


async def test_foreign_keys_are_enforced(store: GcStore) -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    await store.claim_meeting("m", "eu", "gc", now, stale_claim_after=timedelta(seconds=30))
    with pytest.raises(IntegrityError):
        async with store.engine.begin() as connection:
            await connection.execute(
                text("UPDATE meeting_assignments SET state = 'active', mc_id = 'ghost'")
            )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_database_down_is_unavailable_without_the_password() -> None:
    url = f"postgresql://gc:{PASSWORD}@127.0.0.1:{_closed_port()}/gc"

    with pytest.raises(DatabaseUnavailable) as opening:
        await GcStore.open(url)
    with pytest.raises(DatabaseUnavailable) as migrating:
        await migrate(url)

    store = GcStore(create_engine(url))
    try:
        with pytest.raises(DatabaseUnavailable) as beating:
            await store.record_heartbeat(
                Heartbeat(
                    "mc-1",
                    current_meetings=0,
                    current_participants=0,
                    max_meetings=1,
                    max_participants=1,
                    health=Health.HEALTHY,
                    at=datetime.now(UTC),
                )
            )
    finally:
        await store.aclose()

    for caught in (opening, migrating, beating):
        error = caught.value
        assert error.code == "store_unavailable"
        assert PASSWORD not in str(error) and PASSWORD not in repr(error)
        assert "127.0.0.1" not in str(error)
        assert error.__cause__ is not None and PASSWORD not in str(error.__cause__)


async def test_unreachable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DatabaseUnavailable):
        await migrate(sqlite_url(blocker / "gc.db"))


async def test_reads_are_not_blocked_by_an_open_write(store: GcStore) -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    await store.upsert_controller("mc-1", "eu", "http://mc-1:1", None, 1, 1, now)
    async with store.engine.begin() as writer:
        await writer.execute(text("UPDATE controllers SET current_meetings = 1"))
        controllers = await asyncio.wait_for(store.list_controllers(), timeout=2)
        assert [mc.current_meetings for mc in controllers] == [0]


async def test_naive_datetime_is_refused(store: GcStore) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        await store.upsert_controller("mc-1", "eu", "http://mc-1:1", None, 1, 1, datetime.now())
    assert await store.list_controllers() == []


def test_postgres_pool_keeps_a_burst_of_connections() -> None:
    # A join burst must not open and close a PostgreSQL connection per transaction past the
    # pool's size (SQLAlchemy's default keeps 5, and closes every overflow connection when it
    # comes back): the GC keeps every connection it opens, and waits for one past them.
    engine = create_engine("postgresql://u@db/gc")
    try:
        assert isinstance(engine.pool, QueuePool)
        assert engine.pool.size() == POSTGRES_POOL_SIZE >= 32
        assert POSTGRES_MAX_OVERFLOW == 0
    finally:
        engine.sync_engine.dispose()


@pytest.mark.skipif(
    not os.environ.get(DATABASE_URL_ENV), reason="PostgreSQL only (the test command gives one)"
)
async def test_a_burst_reuses_its_connections(store: GcStore) -> None:
    # Two bursts of 20 concurrent transactions on PostgreSQL, more than the old pool kept: the
    # second opens no connection (SQLAlchemy's default pool of 5 opened 7 again of 12; 16 kept
    # and 16 overflow, 23 in all). 20, not the pool's 32: the test PostgreSQL is shared.
    assert store.engine.dialect.name == "postgresql"
    opened: list[object] = []
    event.listen(store.engine.sync_engine, "connect", lambda conn, _record: opened.append(conn))
    burst = 20

    async def hold(inside: list[None], all_in: asyncio.Event, release: asyncio.Event) -> None:
        async with store.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            inside.append(None)
            if len(inside) == burst:
                all_in.set()
            await release.wait()

    for _ in range(2):
        inside: list[None] = []
        all_in, release = asyncio.Event(), asyncio.Event()
        tasks = [asyncio.create_task(hold(inside, all_in, release)) for _ in range(burst)]
        await asyncio.wait_for(all_in.wait(), 30)
        release.set()
        await asyncio.gather(*tasks)
    assert len(opened) <= burst


postgres_only = pytest.mark.skipif(
    not os.environ.get(DATABASE_URL_ENV), reason="PostgreSQL only (the test command gives one)"
)


@postgres_only
async def test_reads_on_postgres_run_without_a_transaction_block(store: GcStore) -> None:
    # A read-only store transaction sends no BEGIN/COMMIT on PostgreSQL (two round trips of
    # each read); a writing one still runs in a transaction block.
    db = Database(store.engine)
    in_block: dict[bool, bool] = {}
    for read_only in (True, False):
        async with db.begin_transaction(read_only=read_only) as session:
            await session.execute(text("SELECT 1"))
            raw = await (await session.connection()).get_raw_connection()
            in_block[read_only] = raw.driver_connection.is_in_transaction()
    assert in_block == {True: False, False: True}
    # The pool's connections go back to the default level: a plain connection is transactional.
    async with store.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        raw = await connection.get_raw_connection()
        assert raw.driver_connection.is_in_transaction()


def test_postgres_pool_does_not_ping_on_checkout() -> None:
    engine = create_engine("postgresql://u@db/gc")
    try:
        assert engine.pool._pre_ping is False
        assert 0 < POSTGRES_POOL_RECYCLE_S <= 3600
        assert engine.pool._recycle == POSTGRES_POOL_RECYCLE_S
    finally:
        engine.sync_engine.dispose()


@postgres_only
async def test_dead_pooled_connections_cost_one_failure_then_the_pool_reconnects(
    store: GcStore,
) -> None:
    # Without a pre-ping, a pooled connection whose backend died is found by the transaction
    # that uses it: that one fails (DatabaseUnavailable), the disconnect invalidates the whole
    # pool, and every later transaction gets a fresh connection.
    await store.list_controllers()
    held = max(4, store.engine.pool.checkedin())  # type: ignore[attr-defined]
    pids: list[int] = []
    release = asyncio.Event()

    async def hold() -> None:
        async with store.engine.connect() as connection:
            pids.append(int(await connection.scalar(text("SELECT pg_backend_pid()"))))
            if len(pids) == held:
                release.set()
            await release.wait()

    await asyncio.gather(*(hold() for _ in range(held)))
    assert store.engine.pool.checkedin() == held  # type: ignore[attr-defined]
    admin = create_engine(os.environ[DATABASE_URL_ENV])
    try:
        async with admin.connect() as connection:
            await connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"),
                {"pids": pids},
            )
    finally:
        await admin.dispose()
    outcomes = []
    for _ in range(held + 1):
        try:
            await store.list_controllers()
            outcomes.append("ok")
        except DatabaseUnavailable:
            outcomes.append("unavailable")
    assert outcomes == ["unavailable"] + ["ok"] * held
