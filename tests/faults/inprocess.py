"""In-process servers for the property tests: they must outlive a synchronous test call
(hypothesis, schemathesis), so they run on an asyncio loop in a daemon thread; plus the
database, MC and token helpers both modules need."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import make_url

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import load_private_key
from darktower.auth.tokens import SERVICE_PROFILES
from darktower.gc.store import create_engine, sqlite_url
from darktower.mc.server import McApp
from darktower.mc.settings import McSettings
from tests.support.databases import DATABASE_URL_ENV

__all__ = [
    "BackgroundLoop",
    "Database",
    "admin",
    "create_database",
    "drop_database",
    "make_mc",
    "token_provider",
]

_T = TypeVar("_T")


class BackgroundLoop:
    """An asyncio loop in a daemon thread; `run` submits a coroutine and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 30.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        async def drain() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        self.run(drain(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@dataclass
class Database:
    """A GC database of the test's own: a SQLite file, or a fresh PostgreSQL schema."""

    url: str
    schema: str | None


async def admin(base: str, statement: str) -> None:
    engine = create_engine(base)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def create_database(tmp_path: Path) -> Database:
    """PostgreSQL when DARKTOWER_TEST_DATABASE_URL is set (a new schema), else SQLite."""
    base = os.environ.get(DATABASE_URL_ENV)
    if not base:
        return Database(sqlite_url(tmp_path / "gc.sqlite3"), None)
    schema = f"t_{secrets.token_hex(8)}"
    await admin(base, f'CREATE SCHEMA "{schema}"')
    url = make_url(base).update_query_dict({"search_path": schema})
    return Database(url.render_as_string(hide_password=False), schema)


async def drop_database(database: Database) -> None:
    """Drop the schema `create_database` made (nothing to do for SQLite)."""
    if database.schema is not None:
        await admin(
            os.environ[DATABASE_URL_ENV], f'DROP SCHEMA IF EXISTS "{database.schema}" CASCADE'
        )


async def make_mc(settings: McSettings) -> McApp:
    return McApp(settings)  # built on the loop: grpc.aio binds its server to it


def token_provider(
    key_dir: Path, service: str, *, issuer: str | None = None, audience: str | None = None
) -> ServiceTokenProvider:
    """Tokens of `service` from the legacy `key_dir/<service>.key` (the fuzzed servers opt in to
    unbound keys), naming `issuer` (also `sub`) and `audience`."""
    service_type, scope = SERVICE_PROFILES[service]
    return ServiceTokenProvider(
        load_private_key(key_dir / f"{service}.key"),
        service_type=service_type,
        scope=scope,
        issuer=issuer or f"fuzz-{service}",
        audience=audience,
    )
