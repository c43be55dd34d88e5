"""The GC's database in a benchmark (`bench_database`): a fresh PostgreSQL database of its own
when the machine has a PostgreSQL (as deployed), else a SQLite file in the work directory —
and the result says which.

The PostgreSQL server is named by `DARKTOWER_BENCH_POSTGRES_URL` (default
`postgresql://postgres@127.0.0.1:5432/postgres`, the maintenance database of a local server
with trust authentication); `DARKTOWER_BENCH_POSTGRES_URL=none` forces SQLite. Each benchmark
creates `dtbench_<name>_<random>` there and drops it afterwards, so runs never share tables
with each other or with the tests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from bench.results import BenchResult

__all__ = ["DEFAULT_POSTGRES_URL", "BenchDatabase", "bench_database", "recorded_database"]

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class BenchDatabase:
    """`url` for the GC (`GcSettings.database_url`); `kind` is "postgresql" or "sqlite";
    `note` says why SQLite was used, when it was."""

    url: str
    kind: str
    note: str = ""


def _admin_url() -> str | None:
    value = os.environ.get("DARKTOWER_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL).strip()
    return None if value.lower() in ("", "none", "sqlite") else value


@asynccontextmanager
async def bench_database(workdir: Path, name: str) -> AsyncIterator[BenchDatabase]:
    """A database for one benchmark's GC processes (shared by all of them), dropped after."""
    admin = _admin_url()
    if admin is None:
        why = "DARKTOWER_BENCH_POSTGRES_URL=none"
    else:
        url = make_url(admin).set(drivername="postgresql+asyncpg")
        engine = create_async_engine(
            url, isolation_level="AUTOCOMMIT", connect_args={"timeout": _CONNECT_TIMEOUT_S}
        )
        try:
            try:
                connection = await engine.connect()
            except (OSError, TimeoutError, OperationalError, InterfaceError, DBAPIError) as exc:
                why = f"PostgreSQL unreachable ({type(exc).__name__})"
            else:
                try:
                    async with _database(connection, name) as database:
                        yield BenchDatabase(
                            url.set(database=database).render_as_string(hide_password=False),
                            "postgresql",
                        )
                finally:
                    await connection.close()
                return
        finally:
            await engine.dispose()
    path = workdir / f"{name}-gc.sqlite3"
    yield BenchDatabase(f"sqlite+aiosqlite:///{path}", "sqlite", f"SQLite: {why}")


@asynccontextmanager
async def recorded_database(
    workdir: Path, name: str, result: BenchResult
) -> AsyncIterator[BenchDatabase]:
    """`bench_database`, with its kind in `result.parameters["database"]` and, when SQLite
    stood in, why in `result.notes`."""
    async with bench_database(workdir, name) as database:
        result.parameters["database"] = database.kind
        if database.note:
            result.notes.append(database.note)
        yield database


@asynccontextmanager
async def _database(connection: AsyncConnection, name: str) -> AsyncIterator[str]:
    database = f"dtbench_{name}_{secrets.token_hex(4)}"
    await connection.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        yield database
    finally:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
