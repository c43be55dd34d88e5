"""Meeting ownership and state in Redis behind fencing tokens (docs/reference.md "Fencing").

port          the `FencedStore` protocol, the `Lease` that `acquire` returns, the records
redis_store   `RedisFencedStore`, the port on Redis (standalone, Sentinel or Cluster)
cluster       script calls batched in per-node pipelines on a Redis Cluster
scripts       the Lua scripts (`lua/`, contract in each header), registered on a client
translate     the one path from Redis answers to values and errors
keys          every Redis key, errors the error tree, metrics the Prometheus metrics

lease = await store.acquire("standup", "mc-eu-1")
await store.fenced_hset(lease, {"touched_at_ms": "1764000000000"})
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
from darktower.fencing.port import (
    MAX_GENERATION,
    SETTABLE_NAMES,
    AuditEntry,
    FencedStore,
    FencedWrite,
    Lease,
    MeetingRecord,
)
from darktower.fencing.redis_store import RedisFencedStore

__all__ = [
    "MAX_GENERATION",
    "SETTABLE_NAMES",
    "AuditEntry",
    "FencedOut",
    "FencedStore",
    "FencedWrite",
    "FencingError",
    "Lease",
    "MalformedState",
    "MeetingKeys",
    "MeetingRecord",
    "RedisFencedStore",
    "ReplicationTimeout",
    "StoreUnavailable",
]
