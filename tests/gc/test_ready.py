"""`GcApp.ready()`: a database that cannot be reached is "database unreachable"; any other
failure of the check is "readiness check failed", logged with its traceback, never swallowed.
Real engines: SQLite files, a PostgreSQL URL on a loopback port nobody listens on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from darktower.auth.keys import generate_key_files
from darktower.embedded.redis import free_port
from darktower.gc.server import GcApp
from darktower.gc.settings import GcSettings
from darktower.gc.store import GcStore, create_engine, sqlite_url
from tests.support.services import gc_values


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[GcApp]:
    """A GC that is not started; each test gives it the store to check."""
    generate_key_files(tmp_path)
    values = gc_values(tmp_path, tmp_path)
    gc = GcApp(GcSettings(**{k.removeprefix("GC_").lower(): v for k, v in values.items()}))
    try:
        yield gc
    finally:
        if gc.store is not None:
            await gc.store.aclose()


def readiness_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "darktower.gc.server"]


async def test_ready_with_a_reachable_database(app: GcApp, tmp_path: Path) -> None:
    assert await app.ready() == (False, "starting")
    app.store = await GcStore.open(sqlite_url(tmp_path / "gc.sqlite3"))
    assert await app.ready() == (True, "")


def sqlite_on_a_file_that_is_not_a_database(tmp_path: Path) -> AsyncEngine:
    # sqlite3.DatabaseError (a DBAPIError): "file is not a database".
    (tmp_path / "gc.sqlite3").write_bytes(b"not a database, " * 64)
    return create_engine(sqlite_url(tmp_path / "gc.sqlite3"))


def postgres_nobody_listens_on(tmp_path: Path) -> AsyncEngine:
    # ConnectionRefusedError (an OSError) from the driver.
    return create_engine(f"postgresql+asyncpg://gc:secret-pw@127.0.0.1:{free_port()}/gc")


@pytest.mark.parametrize(
    "make_engine", [sqlite_on_a_file_that_is_not_a_database, postgres_nobody_listens_on]
)
async def test_an_unreachable_database_is_not_ready_without_a_traceback(
    app: GcApp,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    make_engine: Callable[[Path], AsyncEngine],
) -> None:
    app.store = GcStore(make_engine(tmp_path))
    with caplog.at_level(logging.DEBUG, logger="darktower.gc.server"):
        assert await app.ready() == (False, "database unreachable")
    [record] = readiness_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert "secret-pw" not in caplog.text and "127.0.0.1" not in caplog.text


async def test_an_unexpected_failure_is_logged_with_its_traceback(
    app: GcApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(sqlite_url(tmp_path / "gc.sqlite3"))

    @event.listens_for(engine.sync_engine, "connect")
    def broken_setup(connection: Any, record: Any) -> None:
        raise LookupError("a bug in the connection setup")

    app.store = GcStore(engine)
    with caplog.at_level(logging.DEBUG, logger="darktower.gc.server"):
        assert await app.ready() == (False, "readiness check failed")
    [record] = readiness_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is LookupError
    assert "broken_setup" in caplog.text  # the traceback
