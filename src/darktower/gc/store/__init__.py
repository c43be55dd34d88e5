"""The Global Controller's store: registry of MCs and MHs, and meeting assignments, in SQL.

PostgreSQL in production (several GC processes may share it), a SQLite file as the embedded
default. `GcStore.open(url)` connects and migrates. The package, one concept a module:

    repository   GcStore, the facade its callers use, composed of:
    registry     RegistryStore: MCs and MHs (register, heartbeats, load reports, marks)
    assignments  AssignmentStore: the claim protocol (claim, activate, release, end, purge)
    views        ReadViews: what the join path, the HTTP API and the dashboard read
    database     Database: the shared engine and how a transaction is begun
    models       the tables (ORM rows), turned into `darktower.gc.domain` values
    engine       engines, URLs and `migrate`
    errors       the store's error tree

The values the store takes and returns live in `darktower.gc.domain`.
"""

from __future__ import annotations

from darktower.gc.store.engine import (
    DEFAULT_SQLITE_PATH,
    create_engine,
    migrate,
    redacted_url,
    sqlite_url,
)
from darktower.gc.store.errors import (
    ClaimLost,
    DatabaseUnavailable,
    StoreError,
    UnknownController,
    UnknownMediaHandler,
)
from darktower.gc.store.repository import GcStore

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "ClaimLost",
    "DatabaseUnavailable",
    "GcStore",
    "StoreError",
    "UnknownController",
    "UnknownMediaHandler",
    "create_engine",
    "migrate",
    "redacted_url",
    "sqlite_url",
]
