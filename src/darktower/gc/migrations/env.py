"""Alembic environment: runs on the connection `darktower.gc.migrations.migrate` hands over.

Offline mode (`--sql`) renders PostgreSQL DDL unless `dialect` is set in the main options.
"""

from __future__ import annotations

from alembic import context

from darktower.gc.store.models import Base

config = context.config
version_table = config.get_main_option("version_table") or "alembic_version"


def run_offline() -> None:
    context.configure(
        dialect_name=config.get_main_option("dialect") or "postgresql",
        target_metadata=Base.metadata,
        version_table=version_table,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run GC migrations through darktower.gc.migrations.migrate()")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=version_table,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
