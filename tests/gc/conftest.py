"""A fresh, empty database for every GC test that asks for one.

`DARKTOWER_TEST_DATABASE_URL` names a PostgreSQL to use (CI:
`postgresql+asyncpg://postgres@127.0.0.1:5432/test`): each test gets a schema of its own,
`t_<random>`, named in the URL it receives (`?search_path=`) and dropped afterwards, so no
data the test did not create is touched. Without the variable each test gets a SQLite file
in its temporary directory. Tests are written once and run on whichever database this gives.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from darktower.gc.store import GcStore, create_engine, sqlite_url
from tests.support.databases import DATABASE_URL_ENV


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database (no schema yet) that only this test uses."""
    base = os.environ.get(DATABASE_URL_ENV)
    if not base:
        yield sqlite_url(tmp_path / "gc.sqlite3")
        return
    schema = f"t_{secrets.token_hex(8)}"
    admin = create_engine(base)
    try:
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base).update_query_dict({"search_path": schema})
        yield url.render_as_string(hide_password=False)
    finally:
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[GcStore]:
    """A migrated `GcStore` on the test's database, closed afterwards."""
    opened = await GcStore.open(database_url)
    try:
        yield opened
    finally:
        await opened.aclose()
