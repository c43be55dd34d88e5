"""The Global Controller's store: registry of MCs and MHs, and meeting assignments, in SQL.

PostgreSQL in production (several GC processes may share it), a SQLite file as the embedded
default. `GcStore.open(url)` connects and migrates; see `repository` for the claim protocol
that makes concurrent joins agree on one MC.
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
    StoreError,
    StoreUnavailable,
    UnknownController,
    UnknownMediaHandler,
)
from darktower.gc.store.models import (
    Assignment,
    AssignmentState,
    Claim,
    Controller,
    Health,
    MediaHandler,
)
from darktower.gc.store.repository import GcStore

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "Assignment",
    "AssignmentState",
    "Claim",
    "ClaimLost",
    "Controller",
    "GcStore",
    "Health",
    "MediaHandler",
    "StoreError",
    "StoreUnavailable",
    "UnknownController",
    "UnknownMediaHandler",
    "create_engine",
    "migrate",
    "redacted_url",
    "sqlite_url",
]
