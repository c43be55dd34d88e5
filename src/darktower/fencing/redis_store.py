"""`RedisFencedStore`: the `FencedStore` port on Redis, one Lua script per operation.

Checks and writes run in one Lua script each (`lua/`), so no other client can slip in
between them.

How generations are chosen. acquire sets

    new = max(stored + 1, min_generation + 1, Redis TIME in microseconds since the epoch)

`stored + 1` makes generations strictly increasing while Redis keeps its data. The clock term
covers Redis losing the gen key (a restart without persistence, a failover to a replica that
had not seen the last writes): an empty Redis still issues a generation above every one it
issued before, provided its clock has not stepped back (and generations were not handed out
faster than one per microsecond, which a script call per acquire rules out in practice).
`min_generation` lets a caller that remembers a higher generation (say, the last one it saw)
demand more than both. Generations are therefore large (about 1.8e15 today) and always below
2^53, where Lua's double-precision numbers stop being exact; scripts print them with
`string.format('%d')` and `translate` parses the decimal text. `replica_wait` adds a WAIT after
ownership changes, so that a failover is less likely to lose an acquire at all.

The gen key is never deleted, never expires and never goes down; `fenced_delete` removes owner,
MH list and state only, so the next acquire still goes up. With `audit=True` each acquire and
each applied write also appends {gen, owner, op} to the meeting's audit stream inside the same
script; `audit_log` reads it back (for tests and diagnostics; the stream is never trimmed).

Errors (see `errors`, translated in `translate`): FencedOut, MalformedState (a stored value
breaks the key contract; nothing written), StoreUnavailable (any Redis connection, timeout or
failover error; the message never holds the URL or password), ReplicationTimeout. Every call
is timed in `mc_redis_latency_seconds` and failures are counted in `mc_redis_errors_total`.

Deployments. The client may be a standalone Redis, a Sentinel-managed master or a Redis
Cluster (`darktower.runtime.redis_connect.connect` builds any of them from a URL). Every
script's KEYS are the keys of one meeting, which share a hash slot, so each script runs on the
one node that owns the meeting. On a cluster, `fenced_set_many` and the WAIT of `replica_wait`
go through per-node pipelines (`cluster`); `read` is a MULTI/EXEC of the meeting's four keys
(one slot, so one node, one round trip); `ping` pings every primary, since a cluster that
cannot serve all slots is not available. Cluster errors (CLUSTERDOWN, TRYAGAIN, MOVED/ASK left
over after redis-py's retries, no reachable node) and Sentinel failover errors (no master
found, READONLY from a demoted master) are StoreUnavailable like any other connection error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from darktower.fencing.cluster import ReplicaWait, ScriptCall, run_batch
from darktower.fencing.errors import FencingError, ReplicationTimeout
from darktower.fencing.keys import MeetingKeys
from darktower.fencing.port import (
    MAX_GENERATION,
    SETTABLE_NAMES,
    AuditEntry,
    FencedWrite,
    Lease,
    MeetingRecord,
)
from darktower.fencing.scripts import FencingScripts
from darktower.fencing.translate import (
    audit_entry,
    decode_acquire,
    decode_reply,
    observed,
    outcome,
    stored,
    stored_generation,
    stored_hash,
    stored_text,
)
from darktower.runtime.redis_coalesce import CoalescedScript
from darktower.runtime.redis_connect import RedisLike

__all__ = ["ENDED_GEN_TTL_SECONDS", "RedisFencedStore"]

# How long an ended meeting's gen key is kept (see lua/fenced_delete.lua): an hour in which a
# re-acquire does not depend on the Redis clock; afterwards the meeting leaves no key behind.
ENDED_GEN_TTL_SECONDS = 3600


class RedisFencedStore:
    """`FencedStore` on a standalone Redis, a Sentinel-managed primary or a Redis Cluster.

    `audit` appends every acquire and applied write to the meeting's audit stream.
    `replica_wait` > 0 makes acquire and fenced_delete wait (WAIT) for that many replicas,
    up to `replica_wait_timeout_ms`, raising ReplicationTimeout (write applied) when fewer
    acknowledged.
    """

    def __init__(
        self,
        client: RedisLike,
        *,
        audit: bool = False,
        replica_wait: int = 0,
        replica_wait_timeout_ms: int = 500,
    ) -> None:
        if replica_wait < 0 or replica_wait_timeout_ms < 0:
            raise ValueError("replica_wait and replica_wait_timeout_ms must be >= 0")
        self._client = client
        self._cluster: RedisCluster | None = client if isinstance(client, RedisCluster) else None
        self._scripts = FencingScripts.register(client)
        # The ownership changes of one loop turn (a burst of admissions, of ends) go to Redis
        # in one pipeline; with replica_wait each is sent with its own WAIT instead.
        self._acquire = CoalescedScript(client, self._scripts.acquire)
        self._delete = CoalescedScript(client, self._scripts.fenced_delete)
        self._audit = audit
        self._audit_flag = "1" if audit else "0"
        self._replica_wait = replica_wait
        self._replica_wait_timeout_ms = replica_wait_timeout_ms
        self._owns_client = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        audit: bool = False,
        replica_wait: int = 0,
        replica_wait_timeout_ms: int = 500,
        **client_options: Any,
    ) -> RedisFencedStore:
        """A store on a client of its own, built by `redis.asyncio.Redis.from_url`.

        For a standalone `redis://` URL only; for Sentinel and Cluster URLs build the client
        with `darktower.runtime.redis_connect.connect` and pass it to the constructor.

        `client_options` go to redis-py (e.g. `socket_timeout`, `retry`); `aclose()` closes
        the client. The URL is not kept on the store and never shown by its repr.
        """
        client = aioredis.Redis.from_url(url, **client_options)
        store = cls(
            client,
            audit=audit,
            replica_wait=replica_wait,
            replica_wait_timeout_ms=replica_wait_timeout_ms,
        )
        store._owns_client = True
        return store

    def __repr__(self) -> str:
        return (
            f"RedisFencedStore(audit={self._audit}, replica_wait={self._replica_wait}, "
            f"replica_wait_timeout_ms={self._replica_wait_timeout_ms})"
        )

    async def aclose(self) -> None:
        """Close the client if `from_url` created it; a client passed in stays the caller's."""
        if self._owns_client:
            await self._client.aclose()

    async def acquire(
        self, meeting_id: str, owner: str, *, min_generation: int = 0, mh: str | None = None
    ) -> Lease:
        keys = MeetingKeys.for_meeting(meeting_id)
        if not owner:
            raise ValueError("owner must not be empty")
        if not 0 <= min_generation < MAX_GENERATION:
            raise ValueError(f"min_generation must be in [0, {MAX_GENERATION})")
        args: tuple[str | int, ...] = (self._audit_flag, owner, min_generation)
        if mh is None:
            script_keys = self._audited(keys, keys.gen, keys.owner)
        else:
            # The state hash too, only to tell whether there is any (the lease's `fresh`).
            script_keys = self._audited(keys, keys.gen, keys.owner, keys.mh, keys.state)
            args = (*args, mh)
        with observed("acquire"):
            call = ScriptCall(self._scripts.acquire, keys, script_keys, args)
            reply = await self._replicated(call, self._acquire)
            generation, fresh = decode_acquire(meeting_id, reply)
        return Lease(meeting_id, owner, generation, fresh=fresh)

    async def fenced_set(self, lease: Lease, name: str, value: str) -> None:
        keys, args = self._set_call(FencedWrite(lease, name, value))
        with observed("set"):
            reply = await self._scripts.fenced_set(keys=keys, args=args)
            decode_reply(lease.meeting_id, reply)

    async def fenced_set_many(self, items: Sequence[FencedWrite]) -> list[FencingError | None]:
        """Pipelined `fenced_set`s, each fenced on its own; one round trip for all.

        Returns, per item in order, None when applied or the FencingError it would have
        raised. Raises StoreUnavailable when the pipeline itself fails (outcomes unknown).
        """
        calls = [self._set_call(item) for item in items]  # validate all before any I/O
        if not calls:
            return []
        with observed("set"):
            if self._cluster is not None:
                script_calls = [
                    ScriptCall(self._scripts.fenced_set, item.lease.keys, keys, args)
                    for item, (keys, args) in zip(items, calls, strict=True)
                ]
                replies = [r[0] for r in await run_batch(self._cluster, script_calls)]
            else:
                async with cast(aioredis.Redis, self._client).pipeline(transaction=False) as pipe:
                    for keys, args in calls:
                        await self._scripts.fenced_set(keys=keys, args=args, client=pipe)
                    replies = await pipe.execute(raise_on_error=False)
        return [
            outcome(item.meeting_id, reply, "set")
            for item, reply in zip(items, replies, strict=True)
        ]

    async def fenced_hset(
        self, lease: Lease, mapping: Mapping[str, str], *, remove: Iterable[str] = ()
    ) -> None:
        keys = lease.keys
        removed = list(remove)
        if overlap := set(mapping) & set(removed):
            raise ValueError(f"fields both set and removed: {sorted(overlap)}")
        pairs = [part for item in mapping.items() for part in item]
        args: tuple[str | int, ...] = (
            self._audit_flag,
            lease.owner,
            lease.generation,
            len(mapping),
            *pairs,
            *removed,
        )
        script_keys = self._audited(keys, keys.gen, keys.owner, keys.state)
        with observed("hset"):
            reply = await self._scripts.fenced_hset(keys=script_keys, args=args)
            decode_reply(lease.meeting_id, reply)

    async def fenced_delete(self, lease: Lease) -> None:
        keys = lease.keys
        args = (self._audit_flag, lease.owner, lease.generation, ENDED_GEN_TTL_SECONDS)
        script_keys = self._audited(keys, keys.gen, keys.owner, keys.mh, keys.state)
        with observed("delete"):
            call = ScriptCall(self._scripts.fenced_delete, keys, script_keys, args)
            await self._replicated(call, self._delete)

    async def fenced_check(self, lease: Lease) -> None:
        keys = lease.keys
        with observed("check"):
            reply = await self._scripts.fenced_check(
                keys=(keys.gen, keys.owner), args=("0", lease.owner, lease.generation)
            )
            decode_reply(lease.meeting_id, reply)

    async def read(self, meeting_id: str) -> MeetingRecord:
        keys = MeetingKeys.for_meeting(meeting_id)
        with observed("read"):
            # MULTI/EXEC: one round trip and a consistent view of the four keys (one slot, so
            # redis-py's cluster pipeline accepts it as a transaction too).
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.get(keys.gen)
                pipe.get(keys.owner)
                pipe.get(keys.mh)
                pipe.hgetall(keys.state)
                gen_raw, owner_raw, mh_raw, state_raw = await pipe.execute(raise_on_error=False)
            return MeetingRecord(
                meeting_id=meeting_id,
                generation=stored_generation(meeting_id, keys.gen, gen_raw),
                owner=stored_text(meeting_id, keys.owner, owner_raw),
                mh=stored_text(meeting_id, keys.mh, mh_raw),
                state=stored_hash(meeting_id, keys.state, state_raw),
            )

    async def audit_log(self, meeting_id: str) -> list[AuditEntry]:
        keys = MeetingKeys.for_meeting(meeting_id)
        with observed("read"):
            try:
                entries = await self._client.xrange(keys.audit, "-", "+")
            except ResponseError as exc:
                stored(meeting_id, keys.audit, exc)  # MalformedState (WRONGTYPE) or re-raised
                raise
            return [audit_entry(meeting_id, keys.audit, e) for e in entries or ()]

    async def ping(self) -> None:
        with observed("ping"):
            if self._cluster is not None:
                # Every primary: a node that is gone takes its share of the meetings with it.
                await self._cluster.ping(target_nodes=RedisCluster.PRIMARIES)
            else:
                await self._client.ping()

    def _audited(self, keys: MeetingKeys, *used: str) -> tuple[str, ...]:
        """A script's KEYS: the ones it uses, plus the audit stream (last) when auditing."""
        return (*used, keys.audit) if self._audit else used

    def _set_call(self, item: FencedWrite) -> tuple[tuple[str, ...], tuple[str | int, ...]]:
        """fenced_set.lua's KEYS and ARGV for `item`, after checking its name."""
        if item.name not in SETTABLE_NAMES:
            raise ValueError(f"fenced_set name must be one of {sorted(SETTABLE_NAMES)}")
        keys, lease = item.lease.keys, item.lease
        args = (self._audit_flag, lease.owner, lease.generation, item.name, item.value)
        return self._audited(keys, keys.gen, keys.owner, keys.mh), args

    async def _replicated(self, call: ScriptCall, coalesced: CoalescedScript) -> object:
        """Run an ownership-changing script (`coalesced`: the same script, coalescing the
        calls of a loop turn); with replica_wait, WAIT for the replicas too. Answers the
        script's reply once it is known to be no refusal (`decode_reply`)."""
        meeting_id = call.keys.meeting_id
        if self._replica_wait == 0:
            reply = await coalesced(keys=call.script_keys, args=call.args)
            decode_acquire(meeting_id, reply)
            return reply
        # WAIT counts the writes made on its own connection: a pipeline keeps both on one.
        if self._cluster is not None:
            wait = ReplicaWait(self._replica_wait, self._replica_wait_timeout_ms)
            [(reply, acknowledged)] = await run_batch(self._cluster, [call], wait=wait)
        else:
            async with cast(aioredis.Redis, self._client).pipeline(transaction=False) as pipe:
                await call.script(keys=call.script_keys, args=call.args, client=pipe)
                pipe.wait(self._replica_wait, self._replica_wait_timeout_ms)
                reply, acknowledged = await pipe.execute(raise_on_error=False)
        for result in (reply, acknowledged):
            if isinstance(result, Exception):
                raise result
        decode_acquire(meeting_id, reply)
        if int(acknowledged) < self._replica_wait:
            raise ReplicationTimeout(
                meeting_id, self._replica_wait, int(acknowledged), self._replica_wait_timeout_ms
            )
        return reply
