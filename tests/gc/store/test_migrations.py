"""Migrations create the schema the models describe, at head, idempotently."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, String, column, inspect, select, table

from darktower.gc.migrations import HEAD, VERSION_TABLE
from darktower.gc.store import create_engine, migrate
from darktower.gc.store.models import Base

TABLES = {"controllers", "media_handlers", "meeting_assignments", VERSION_TABLE}
_VERSIONS = select(column("version_num", String)).select_from(table(VERSION_TABLE))


def _schema(connection: Connection) -> tuple[set[str], dict[str | None, Any]]:
    inspector = inspect(connection)
    indexes = {ix["name"]: ix for ix in inspector.get_indexes("meeting_assignments")}
    return set(inspector.get_table_names()), indexes


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return list(compare_metadata(context, Base.metadata))


async def test_migrate_creates_schema_at_head(database_url: str) -> None:
    await migrate(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables, indexes = await connection.run_sync(_schema)
            version = await connection.scalar(_VERSIONS)
    finally:
        await engine.dispose()
    assert tables == TABLES
    assert version == HEAD
    live = indexes["uq_meeting_assignments_live"]
    assert live["unique"] and live["column_names"] == ["meeting_id", "region"]


async def test_migrate_is_idempotent_and_safe_concurrently(database_url: str) -> None:
    await asyncio.gather(migrate(database_url), migrate(database_url))
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            versions = (await connection.execute(_VERSIONS)).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in versions] == [(HEAD,)]


async def test_models_match_the_migrated_schema(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            diff = await connection.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == []
