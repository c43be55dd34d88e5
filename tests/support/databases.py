"""The test databases: `DATABASE_URL_ENV` names the PostgreSQL server the GC's tests use
(`postgresql+asyncpg://…`); without it they run on SQLite files. Each test gets a database of
its own (a fresh schema or file: the `conftest.py` fixtures, `tests.e2e.fleet.fresh_database`)."""

from __future__ import annotations

__all__ = ["DATABASE_URL_ENV"]

DATABASE_URL_ENV = "DARKTOWER_TEST_DATABASE_URL"
