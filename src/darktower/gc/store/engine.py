"""Async engines for the GC store and `migrate` (schema to head).

PostgreSQL (asyncpg) in production, SQLite (aiosqlite) as the embedded default.

The database URL is a secret (it may carry a password): it is never logged, and the only form
of it that may appear in a message is `redacted_url(url)`. Engines are built with
`hide_parameters=True` so that SQLAlchemy errors do not echo bound values either.

SQLite gets, on every new connection: WAL (readers do not block the writer), a busy timeout
(writers queue instead of failing), foreign keys on. Every SQLite transaction starts with
`BEGIN IMMEDIATE`: it takes the write lock up front, so two transactions that both read then
write cannot deadlock on a lock upgrade; the busy timeout makes the second one wait. Only
connections with the `READ_ONLY` execution option begin a plain (deferred) transaction, which
in WAL mode neither waits for nor blocks the writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from darktower.gc.migrations import alembic_config
from darktower.gc.store.errors import DatabaseUnavailable, StoreError

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "READ_ONLY",
    "create_engine",
    "database_errors",
    "migrate",
    "normalize_url",
    "redacted_url",
    "sqlite_url",
]

DEFAULT_SQLITE_PATH = Path("darktower-gc.sqlite3")
"""The embedded default database file (relative to the working directory)."""

READ_ONLY = "darktower_read_only"
"""Execution option: the transaction only reads, so SQLite may start it without the write lock."""

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Arbitrary constant naming the PostgreSQL advisory lock that serialises schema upgrades.
_MIGRATION_LOCK_KEY = 0x6463_6763
POSTGRES_CONNECT_TIMEOUT_S = 10.0
# Connections a GC process keeps open, and none beyond: a checkout past them waits for one to
# come back. An overflow connection is closed as soon as it is returned to a full pool, so a
# burst with more transactions at once than the pool holds opened and closed a PostgreSQL
# connection (a server process, a TLS probe, the driver's set-up queries) for many of its
# transactions: 64 joins in flight on 16 kept + 16 overflow opened 88-111 connections per 400
# joins and cost the GC ~1.5 ms of CPU more per join. The most a GC holds stays 32.
POSTGRES_POOL_SIZE = 32
POSTGRES_MAX_OVERFLOW = 0
# No pre-ping: asyncpg's costs three round trips (BEGIN, `;`, ROLLBACK) per checkout, three of
# the ~ten a new-meeting join took. A pooled connection that died (PostgreSQL restarted, the
# backend terminated) fails the one transaction that finds it (DatabaseUnavailable); that
# disconnect invalidates the whole pool, so the next checkouts connect afresh. Connections are
# also replaced after this many seconds, before a server or middlebox idle timeout drops them.
POSTGRES_POOL_RECYCLE_S = 1800

_POSTGRES_NAMES = frozenset({"postgres", "postgresql"})


def sqlite_url(path: Path | str = DEFAULT_SQLITE_PATH) -> str:
    """The aiosqlite URL of a database file."""
    return f"sqlite+aiosqlite:///{path}"


def normalize_url(url: str) -> URL:
    """Parse `url` and pin the async driver: asyncpg for PostgreSQL, aiosqlite for SQLite.

    Accepts `postgres://`, `postgresql://`, `postgresql+<driver>://`, `sqlite://` and
    `sqlite+<driver>://`. Raises ValueError, never quoting the URL, for anything else.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError("could not parse the database URL") from exc
    backend = parsed.get_backend_name()
    if backend in _POSTGRES_NAMES:
        return parsed.set(drivername="postgresql+asyncpg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValueError(f"unsupported database backend {backend!r}: use postgresql or sqlite")


def redacted_url(url: str | URL) -> str:
    """`url` with its password replaced by `***`: the only form of it fit for logs."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable database URL>"
    return parsed.render_as_string(hide_password=True)


def create_engine(url: str, *, connect_args: Mapping[str, Any] | None = None) -> AsyncEngine:
    """An AsyncEngine for `url` (see `normalize_url`); the caller disposes it.

    A `search_path` query parameter on a PostgreSQL URL (`...?search_path=gc`) puts the
    store's tables in that schema, e.g. to share one database. `connect_args` go to the
    driver's connect call as they are. A SQLite file's parent directory is created if missing
    (`DatabaseUnavailable` if it cannot be).
    """
    parsed = normalize_url(url)
    args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            with database_errors():
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        args.update(connect_args or {})
        engine = create_async_engine(parsed, hide_parameters=True, connect_args=args)
        _configure_sqlite(engine)
        return engine
    args["timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    search_path = parsed.query.get("search_path")
    if isinstance(search_path, str):
        # libpq has no such URL parameter; asyncpg takes it as a server setting.
        parsed = parsed.difference_update_query(["search_path"])
        args["server_settings"] = {"search_path": search_path}
    args.update(connect_args or {})
    return create_async_engine(
        parsed,
        hide_parameters=True,
        pool_pre_ping=False,
        pool_recycle=POSTGRES_POOL_RECYCLE_S,
        pool_size=POSTGRES_POOL_SIZE,
        max_overflow=POSTGRES_MAX_OVERFLOW,
        connect_args=args,
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module: it would not emit one before SELECTs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # Switching to WAL needs an exclusive lock and fails at once, without the busy
            # timeout, while another connection does the same switch: the mode is stored in
            # the file, so that connection's switch serves this one too.
            with suppress(sqlite3.OperationalError):
                cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


async def migrate(target: str | AsyncEngine) -> None:
    """Upgrade the database at `target` (a URL or an engine) to the newest revision.

    Idempotent, and safe when several GC processes start at once on one PostgreSQL: the
    upgrade runs in one transaction behind a transaction-scoped advisory lock (PostgreSQL DDL
    is transactional), so a second process waits, then finds the schema at head. An engine
    passed in is left open; one built from a URL is disposed. Raises `DatabaseUnavailable` when
    the database cannot be reached.
    """
    if isinstance(target, AsyncEngine):
        await _upgrade(target)
        return
    engine = create_engine(target)
    try:
        await _upgrade(engine)
    finally:
        await engine.dispose()


async def _upgrade(engine: AsyncEngine) -> None:
    with database_errors():
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            await connection.run_sync(_run_upgrade)


def _run_upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn driver and SQLAlchemy failures into `StoreError`s with clean messages.

    Connection-level failures (refused, reset, timed out, SQLite locked, pool exhausted)
    become `DatabaseUnavailable`; a value refused by a bind processor is re-raised as its
    ValueError / TypeError; anything else from SQLAlchemy becomes `StoreError`. Messages
    name only exception classes, never SQL, parameters or the URL; the original stays
    reachable as `__cause__`.
    """
    try:
        yield
    except StoreError:
        raise
    except (OperationalError, InterfaceError, PoolTimeout, OSError, TimeoutError) as exc:
        raise DatabaseUnavailable(f"database unavailable ({_describe(exc)})") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseUnavailable(f"database unavailable ({_describe(exc)})") from exc
        raise StoreError(f"database error ({_describe(exc)})") from exc
    except StatementError as exc:
        # A value refused before it reached the database (e.g. a naive datetime): the
        # caller's mistake, reported as such with our own message.
        if isinstance(exc.orig, ValueError | TypeError):
            raise type(exc.orig)(str(exc.orig)) from exc
        raise StoreError(f"database error ({_describe(exc)})") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"database error ({_describe(exc)})") from exc


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    name = type(exc).__name__
    return f"{name}: {type(orig).__name__}" if orig is not None else name
