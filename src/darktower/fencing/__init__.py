"""Meeting ownership and state in Redis behind fencing tokens (SPEC §3 "Fencing").

`RedisFencedStore` implements the `FencedStore` port with Lua scripts (`lua/`); key names
live in `keys`, errors in `errors`, metrics in `metrics`. See `store` for how generations
are chosen.
"""

from __future__ import annotations

from darktower.fencing.errors import (
    FencedOut,
    FencingError,
    MalformedState,
    ReplicationTimeout,
    StoreUnavailable,
)
from darktower.fencing.keys import MeetingKeys
from darktower.fencing.store import (
    SETTABLE_NAMES,
    AuditEntry,
    FencedStore,
    FencedWrite,
    MeetingRecord,
    RedisFencedStore,
)

__all__ = [
    "SETTABLE_NAMES",
    "AuditEntry",
    "FencedOut",
    "FencedStore",
    "FencedWrite",
    "FencingError",
    "MalformedState",
    "MeetingKeys",
    "MeetingRecord",
    "RedisFencedStore",
    "ReplicationTimeout",
    "StoreUnavailable",
]
