"""`Database`: the engine the store's parts share, and how they run a transaction.

Every store method is one short transaction opened by `begin_transaction`: database failures
inside it surface as `DatabaseUnavailable` / `StoreError` (see `engine.database_errors`), with
messages free of SQL, parameters and the URL. A read-only transaction is begun deferred on
SQLite (see `engine`): in WAL mode it neither waits for nor blocks the writer; on PostgreSQL
it runs in autocommit, without BEGIN and COMMIT. So does, on PostgreSQL, a "transaction" of
one writing statement (`one_statement=True`): a statement is atomic by itself, and BEGIN and
COMMIT would be two round trips of the three; on SQLite it is an ordinary write transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from darktower.gc.store.engine import READ_ONLY, database_errors
from darktower.gc.store.models import Base

__all__ = ["ORM_BULK", "Database"]

ORM_BULK: Mapping[str, Any] = {"synchronize_session": False}
"""Execution options of a bulk UPDATE/DELETE: each runs in a fresh session, so there is no
identity map to synchronise."""

_Row = TypeVar("_Row", bound=Base)


class Database:
    """Sessions on `engine` (which the caller owns and disposes)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        read_options: dict[str, Any] = {READ_ONLY: True}
        if engine.dialect.name == "postgresql":
            # Under READ COMMITTED (PostgreSQL's default) every statement takes its own
            # snapshot, in a transaction or not: a read-only one gains nothing from BEGIN and
            # COMMIT but their two round trips.
            read_options["isolation_level"] = "AUTOCOMMIT"
        self._read_engine = engine.execution_options(**read_options)
        self._read_sessions = async_sessionmaker(self._read_engine, expire_on_commit=False)
        self._one_statement_sessions = self._sessions
        self._autocommit: AsyncEngine | None = None
        if self.is_postgresql:
            self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
            self._one_statement_sessions = async_sessionmaker(
                self._autocommit, expire_on_commit=False
            )

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def begin_transaction(
        self, *, read_only: bool = False, one_statement: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed on exit (rolled back if the body raises).

        `read_only`: the body only reads. `one_statement`: the body sends one statement (that
        may write), atomic by itself: on PostgreSQL it runs in autocommit (see the module
        docstring), so a failure of that statement leaves nothing written either way.
        """
        if read_only:
            sessions = self._read_sessions
        elif one_statement:
            sessions = self._one_statement_sessions
        else:
            sessions = self._sessions
        with database_errors():
            async with sessions.begin() as session:
                yield session

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for Core reads, as `begin_transaction(read_only=True)` but without an
        ORM session around it."""
        with database_errors():
            async with self._read_engine.begin() as connection:
                yield connection

    @asynccontextmanager
    async def one_statement_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one Core statement, as `begin_transaction(one_statement=True)` but
        without an ORM session around it (its set-up cost more CPU than a short statement)."""
        with database_errors():
            if self._autocommit is not None:
                async with self._autocommit.connect() as connection:
                    yield connection
            else:
                async with self.engine.begin() as connection:
                    yield connection

    def insert(self, row: type[Base] | Table) -> Any:
        """The dialect's INSERT of `row` (it has `on_conflict_do_*` on both databases); of its
        `Table`, a Core INSERT (no ORM bulk-insert machinery around it)."""
        dialect = postgresql if self.is_postgresql else sqlite
        return dialect.insert(row)

    async def upsert(
        self, session: AsyncSession, row: type[_Row], id: str, values: dict[str, Any]
    ) -> _Row:
        """Insert the row `id` with `values`, or overwrite them if it exists; return it."""
        statement = (
            self.insert(row)
            .values(id=id, **values)
            .on_conflict_do_update(index_elements=["id"], set_=values)
            .returning(row)
        )
        result = await session.scalars(statement, execution_options={"populate_existing": True})
        upserted: _Row = result.one()
        return upserted
