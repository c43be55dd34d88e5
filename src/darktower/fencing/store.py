"""Meeting state in Redis behind fencing tokens: the `FencedStore` port and its Redis adapter.

A meeting controller (MC) takes a meeting with `acquire`, which issues a new generation and
records the MC as owner. Every later write names (owner, generation) and is applied only if
both still match what Redis holds; otherwise it is refused with `FencedOut` and nothing is
written. Checks and writes run in one Lua script each (`lua/`), so no other client can slip in
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
`string.format('%d')` and this module parses the decimal text. `replica_wait` adds a WAIT after
ownership changes, so that a failover is less likely to lose an acquire at all.

The gen key is never deleted, never expires and never goes down; `fenced_delete` removes owner,
MH list and state only, so the next acquire still goes up. With `audit=True` each acquire and
each applied write also appends {gen, owner, op} to the meeting's audit stream inside the same
script; `audit_log` reads it back (for tests and diagnostics; the stream is never trimmed).

Errors (see `errors.py`): FencedOut, MalformedState (a stored value breaks the key contract;
nothing written), StoreUnavailable (any Redis connection, timeout or failover error; the
message never holds the URL or password), ReplicationTimeout. Every call is timed in
`mc_redis_latency_seconds` and failures are counted in `mc_redis_errors_total`.

Deployments. The client may be a standalone Redis, a Sentinel-managed master or a Redis
Cluster (`darktower.runtime.redis_connect.connect` builds any of them from a URL). Every
script's KEYS are the keys of one meeting, which share a hash slot, so each script runs on the
one node that owns the meeting. On a cluster:

* `fenced_set_many` queues the EVALSHAs in a redis-py cluster pipeline, which groups them by
  node and sends each node its share in one round trip, all nodes in parallel. The pipeline
  cannot load scripts by itself (redis-py's script object does not support cluster
  pipelines), so the items answered NOSCRIPT are run once more after a SCRIPT LOAD on every
  primary.
* `read` is a MULTI/EXEC of the meeting's four keys (one slot, so one node, one round trip).
* With `replica_wait`, the WAIT is routed to the node owning the meeting's slot, in the same
  per-node pipeline as the script, so it counts that node's replicas for that write. If the
  slot moves between the script and the WAIT (MOVED, resharding), redis-py resends the script
  alone and the WAIT answers for the old node: the confirmation is then only best effort.
* `ping` pings every primary; a cluster that cannot serve all slots is not available.

Cluster errors (CLUSTERDOWN, TRYAGAIN, MOVED/ASK left over after redis-py's retries, no
reachable node) and Sentinel failover errors (no master found, READONLY from a demoted master)
are StoreUnavailable like any other connection error.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeAlias, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    ClusterDownError,
    CrossSlotTransactionError,
    InvalidPipelineStack,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from darktower.fencing.errors import (
    FencedOut,
    FencingError,
    MalformedState,
    ReplicationTimeout,
    StoreUnavailable,
)
from darktower.fencing.keys import MeetingKeys
from darktower.fencing.metrics import REDIS_ERRORS, REDIS_LATENCY, Op
from darktower.fencing.scripts import (
    MAX_GENERATION,
    FencingScripts,
    decode_reply,
    parse_generation,
    text,
)
from darktower.runtime.redis_connect import RedisLike

__all__ = [
    "SETTABLE_NAMES",
    "AuditEntry",
    "FencedStore",
    "FencedWrite",
    "MeetingRecord",
    "RedisFencedStore",
]

# String keys `fenced_set` may write, by name (fenced_set.lua maps each to its KEYS slot).
SETTABLE_NAMES: Final = frozenset({"mh"})

# Server answers that mean "not now" rather than "never": they surface as StoreUnavailable.
# AskError covers MovedError: a slot that kept moving after redis-py's own redirections.
_UNAVAILABLE_REPLIES = (
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
    OutOfMemoryError,
    AskError,
)
# Errors of redis-py's cluster client that are not RedisErrors. Those two are our bugs (a
# pipeline spanning slots), every other one means "no node can serve this now".
_CLUSTER_BUGS = (CrossSlotTransactionError, InvalidPipelineStack)
_REDIS_ERRORS = (RedisError, RedisClusterException, OSError)

# One script call: the script, the meeting's keys, the KEYS it is sent, its ARGV.
_Call: TypeAlias = tuple[AsyncScript, MeetingKeys, tuple[str, ...], tuple[str | int, ...]]


@dataclass(frozen=True)
class MeetingRecord:
    """What Redis holds for one meeting; generation 0 and owner None when never acquired."""

    meeting_id: str
    generation: int
    owner: str | None
    mh: str | None
    state: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    """One entry of a meeting's audit stream, in stream order."""

    entry_id: str
    generation: int
    owner: str
    op: str  # acquire | set | hset | delete


@dataclass(frozen=True)
class FencedWrite:
    """One item of `fenced_set_many`: the arguments of one `fenced_set`."""

    meeting_id: str
    owner: str
    generation: int
    name: str
    value: str


class FencedStore(Protocol):
    """Meeting ownership and state behind fencing tokens (owner id + generation)."""

    async def acquire(
        self, meeting_id: str, owner: str, *, min_generation: int = 0, mh: str | None = None
    ) -> int:
        """Make `owner` the owner under a new generation, higher than any before; return it.

        With `mh`, also store it as the MH list under that generation, atomically (one round
        trip instead of acquire + fenced_set; audited as an 'acquire' then a 'set' entry)."""
        ...

    async def fenced_set(
        self, meeting_id: str, owner: str, generation: int, name: str, value: str
    ) -> None:
        """Set string key `name` (one of SETTABLE_NAMES) if (owner, generation) still hold."""
        ...

    async def fenced_set_many(self, items: Sequence[FencedWrite]) -> list[FencingError | None]:
        """Many `fenced_set` in one round trip; per item None (applied) or the refusal."""
        ...

    async def fenced_hset(
        self,
        meeting_id: str,
        owner: str,
        generation: int,
        mapping: Mapping[str, str],
        *,
        remove: Iterable[str] = (),
    ) -> None:
        """Set `mapping` and delete `remove` in the state hash if (owner, generation) hold."""
        ...

    async def fenced_delete(self, meeting_id: str, owner: str, generation: int) -> None:
        """Delete owner, MH list and state if (owner, generation) hold; gen stays."""
        ...

    async def fenced_check(self, meeting_id: str, owner: str, generation: int) -> None:
        """Raise FencedOut unless `owner` holds the meeting at `generation`."""
        ...

    async def read(self, meeting_id: str) -> MeetingRecord:
        """Everything stored for the meeting, read atomically."""
        ...

    async def audit_log(self, meeting_id: str) -> list[AuditEntry]:
        """The meeting's audit stream, oldest first (empty unless written with audit on)."""
        ...

    async def ping(self) -> None:
        """Return if the store answers; raise StoreUnavailable otherwise."""
        ...

    async def aclose(self) -> None:
        """Release the connections the store owns."""
        ...


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
    ) -> int:
        keys = MeetingKeys.for_meeting(meeting_id)
        _check_owner(owner)
        if not 0 <= min_generation < MAX_GENERATION:
            raise ValueError(f"min_generation must be in [0, {MAX_GENERATION})")
        args: tuple[str | int, ...] = (self._audit_flag, owner, min_generation)
        if mh is None:
            script_keys = self._audited(keys, keys.gen, keys.owner)
        else:
            script_keys = self._audited(keys, keys.gen, keys.owner, keys.mh)
            args = (*args, mh)
        with _observed("acquire"):
            return await self._replicated(self._scripts.acquire, keys, script_keys, args)

    async def fenced_set(
        self, meeting_id: str, owner: str, generation: int, name: str, value: str
    ) -> None:
        keys, args = self._set_call(FencedWrite(meeting_id, owner, generation, name, value))
        with _observed("set"):
            reply = await self._scripts.fenced_set(keys=keys, args=args)
            decode_reply(meeting_id, reply)

    async def fenced_set_many(self, items: Sequence[FencedWrite]) -> list[FencingError | None]:
        """Pipelined `fenced_set`s, each fenced on its own; one round trip for all.

        Returns, per item in order, None when applied or the FencingError it would have
        raised. Raises StoreUnavailable when the pipeline itself fails (outcomes unknown).
        """
        calls = [self._set_call(item) for item in items]  # validate all before any I/O
        if not calls:
            return []
        with _observed("set"):
            if self._cluster is not None:
                script_calls = [
                    (self._scripts.fenced_set, MeetingKeys.for_meeting(item.meeting_id), keys, args)
                    for item, (keys, args) in zip(items, calls, strict=True)
                ]
                replies = [r[0] for r in await self._cluster_batch(self._cluster, script_calls)]
            else:
                async with cast(aioredis.Redis, self._client).pipeline(transaction=False) as pipe:
                    for keys, args in calls:
                        await self._scripts.fenced_set(keys=keys, args=args, client=pipe)
                    replies = await pipe.execute(raise_on_error=False)
        return [
            _outcome(item.meeting_id, reply) for item, reply in zip(items, replies, strict=True)
        ]

    async def fenced_hset(
        self,
        meeting_id: str,
        owner: str,
        generation: int,
        mapping: Mapping[str, str],
        *,
        remove: Iterable[str] = (),
    ) -> None:
        keys = MeetingKeys.for_meeting(meeting_id)
        _check_owner(owner)
        _check_generation(generation)
        removed = list(remove)
        if overlap := set(mapping) & set(removed):
            raise ValueError(f"fields both set and removed: {sorted(overlap)}")
        pairs = [part for item in mapping.items() for part in item]
        args: tuple[str | int, ...] = (
            self._audit_flag,
            owner,
            generation,
            len(mapping),
            *pairs,
            *removed,
        )
        script_keys = self._audited(keys, keys.gen, keys.owner, keys.state)
        with _observed("hset"):
            reply = await self._scripts.fenced_hset(keys=script_keys, args=args)
            decode_reply(meeting_id, reply)

    async def fenced_delete(self, meeting_id: str, owner: str, generation: int) -> None:
        keys = MeetingKeys.for_meeting(meeting_id)
        _check_owner(owner)
        _check_generation(generation)
        args = (self._audit_flag, owner, generation)
        script_keys = self._audited(keys, keys.gen, keys.owner, keys.mh, keys.state)
        with _observed("delete"):
            await self._replicated(self._scripts.fenced_delete, keys, script_keys, args)

    async def fenced_check(self, meeting_id: str, owner: str, generation: int) -> None:
        keys = MeetingKeys.for_meeting(meeting_id)
        _check_owner(owner)
        _check_generation(generation)
        with _observed("check"):
            reply = await self._scripts.fenced_check(
                keys=(keys.gen, keys.owner), args=("0", owner, generation)
            )
            decode_reply(meeting_id, reply)

    async def read(self, meeting_id: str) -> MeetingRecord:
        keys = MeetingKeys.for_meeting(meeting_id)
        with _observed("read"):
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
                generation=_stored_generation(meeting_id, keys.gen, gen_raw),
                owner=_stored_text(meeting_id, keys.owner, owner_raw),
                mh=_stored_text(meeting_id, keys.mh, mh_raw),
                state=_stored_hash(meeting_id, keys.state, state_raw),
            )

    async def audit_log(self, meeting_id: str) -> list[AuditEntry]:
        keys = MeetingKeys.for_meeting(meeting_id)
        with _observed("read"):
            try:
                entries = await self._client.xrange(keys.audit, "-", "+")
            except ResponseError as exc:
                if isinstance(exc, _UNAVAILABLE_REPLIES):
                    raise
                raise MalformedState(meeting_id, keys.audit) from exc
            return [_audit_entry(meeting_id, keys.audit, e) for e in entries or ()]

    async def ping(self) -> None:
        with _observed("ping"):
            if self._cluster is not None:
                # Every primary: a node that is gone takes its share of the meetings with it.
                await self._cluster.ping(target_nodes=RedisCluster.PRIMARIES)
            else:
                await self._client.ping()

    def _audited(self, keys: MeetingKeys, *used: str) -> tuple[str, ...]:
        """A script's KEYS: the ones it uses, plus the audit stream (last) when auditing."""
        return (*used, keys.audit) if self._audit else used

    def _set_call(self, item: FencedWrite) -> tuple[tuple[str, ...], tuple[str | int, ...]]:
        """fenced_set.lua's KEYS and ARGV for `item`, after checking its arguments."""
        keys = MeetingKeys.for_meeting(item.meeting_id)
        _check_owner(item.owner)
        _check_generation(item.generation)
        if item.name not in SETTABLE_NAMES:
            raise ValueError(f"fenced_set name must be one of {sorted(SETTABLE_NAMES)}")
        args = (self._audit_flag, item.owner, item.generation, item.name, item.value)
        return self._audited(keys, keys.gen, keys.owner, keys.mh), args

    async def _replicated(
        self,
        script: AsyncScript,
        keys: MeetingKeys,
        script_keys: tuple[str, ...],
        args: tuple[str | int, ...],
    ) -> int:
        """Run an ownership-changing script; with replica_wait, WAIT for the replicas too."""
        if self._replica_wait == 0:
            return decode_reply(keys.meeting_id, await script(keys=script_keys, args=args))
        # WAIT counts the writes made on its own connection: a pipeline keeps both on one.
        if self._cluster is not None:
            [(reply, acknowledged)] = await self._cluster_batch(
                self._cluster, [(script, keys, script_keys, args)], wait=True
            )
        else:
            async with cast(aioredis.Redis, self._client).pipeline(transaction=False) as pipe:
                await script(keys=script_keys, args=args, client=pipe)
                pipe.wait(self._replica_wait, self._replica_wait_timeout_ms)
                reply, acknowledged = await pipe.execute(raise_on_error=False)
        for result in (reply, acknowledged):
            if isinstance(result, Exception):
                raise result
        generation = decode_reply(keys.meeting_id, reply)
        if int(acknowledged) < self._replica_wait:
            raise ReplicationTimeout(
                keys.meeting_id,
                self._replica_wait,
                int(acknowledged),
                self._replica_wait_timeout_ms,
            )
        return generation

    async def _cluster_batch(
        self, cluster: RedisCluster, calls: Sequence[_Call], *, wait: bool = False
    ) -> list[list[Any]]:
        """Run script calls in one cluster pipeline; per call its replies, errors included.

        redis-py sends each node its commands in one round trip, all nodes in parallel. With
        `wait`, each script is followed by a WAIT on the node owning its slot, and the call's
        replies are [script reply, acknowledged replicas]; otherwise [script reply]. Calls
        answered NOSCRIPT (a node that never saw the script, or lost its cache in a restart
        or failover) run once more after the script is loaded on every primary.
        """
        width = 2 if wait else 1
        results: list[list[Any]] = [[] for _ in calls]
        pending = list(range(len(calls)))
        for attempt in range(2):
            async with cluster.pipeline(transaction=False) as pipe:
                for i in pending:
                    script, keys, script_keys, args = calls[i]
                    pipe.execute_command(
                        "EVALSHA", script.sha, len(script_keys), *script_keys, *args
                    )
                    if wait:
                        node = cluster.get_node_from_key(keys.gen)
                        pipe.execute_command(
                            "WAIT",
                            self._replica_wait,
                            self._replica_wait_timeout_ms,
                            target_nodes=node,
                        )
                replies = await pipe.execute(raise_on_error=False)
            unknown = []
            for n, i in enumerate(pending):
                results[i] = list(replies[n * width : (n + 1) * width])
                if isinstance(results[i][0], NoScriptError):
                    unknown.append(i)
            if not unknown or attempt:
                break
            for script in {calls[i][0] for i in unknown}:
                await cluster.script_load(script.script)
            pending = unknown
        return results


def _check_owner(owner: str) -> None:
    if not owner:
        raise ValueError("owner must not be empty")


def _check_generation(generation: int) -> None:
    if isinstance(generation, bool) or not 1 <= generation <= MAX_GENERATION:
        raise ValueError(f"generation must be in [1, {MAX_GENERATION}]")


def _stored(meeting_id: str, key: str, raw: object) -> object:
    """A pipeline result, with a per-command error (WRONGTYPE) turned into MalformedState."""
    if isinstance(raw, _UNAVAILABLE_REPLIES) or (
        isinstance(raw, Exception) and not isinstance(raw, ResponseError)
    ):
        raise raw
    if isinstance(raw, ResponseError):
        raise MalformedState(meeting_id, key) from raw
    return raw


def _stored_generation(meeting_id: str, key: str, raw: object) -> int:
    value = _stored(meeting_id, key, raw)
    if value is None:
        return 0
    generation = parse_generation(value)
    if generation is None:
        raise MalformedState(meeting_id, key)
    return generation


def _stored_text(meeting_id: str, key: str, raw: object) -> str | None:
    value = _stored(meeting_id, key, raw)
    if value is None:
        return None
    try:
        return text(value)
    except (TypeError, UnicodeDecodeError) as exc:
        raise MalformedState(meeting_id, key) from exc


def _stored_hash(meeting_id: str, key: str, raw: object) -> dict[str, str]:
    value = _stored(meeting_id, key, raw)
    if not isinstance(value, dict):
        raise MalformedState(meeting_id, key)
    try:
        return {text(k): text(v) for k, v in value.items()}
    except (TypeError, UnicodeDecodeError) as exc:
        raise MalformedState(meeting_id, key) from exc


def _audit_entry(meeting_id: str, key: str, entry: object) -> AuditEntry:
    """One XRANGE item, (entry id, {field: value}), as an AuditEntry."""
    try:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            raise ValueError("entry")
        entry_id, fields = entry
        if not isinstance(fields, dict):
            raise ValueError("fields")
        decoded = {text(k): text(v) for k, v in fields.items()}
        generation = parse_generation(decoded["gen"])
        if generation is None:
            raise ValueError("gen")
        return AuditEntry(text(entry_id), generation, decoded["owner"], decoded["op"])
    except (TypeError, ValueError, KeyError) as exc:
        raise MalformedState(meeting_id, key) from exc


def _outcome(meeting_id: str, reply: object) -> FencingError | None:
    """One pipelined script result as None (applied) or the error it stands for."""
    try:
        if isinstance(reply, Exception):
            raise reply
        decode_reply(meeting_id, reply)
    except FencedOut as exc:
        return exc
    except FencingError as exc:
        REDIS_ERRORS.labels(op="set").inc()
        return exc
    except _REDIS_ERRORS as exc:
        REDIS_ERRORS.labels(op="set").inc()
        error = _translate(exc)
        error.__cause__ = exc
        return error
    return None


_TRANSIENT_REPLY_CODES = ("READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "OOM")


def _is_transient_reply(message: str) -> bool:
    """True for an error reply that means "not now" (a failover, a loading server), also when
    Redis < 7 reports it inside a script error as `-READONLY ...`."""
    return any(
        f"-{code} " in message or message.startswith(code) for code in _TRANSIENT_REPLY_CODES
    )


def _translate(exc: BaseException) -> FencingError:
    """The store error for a redis-py exception.

    Connection-side errors become StoreUnavailable naming only the exception class: their
    redis-py messages carry host and port. An error reply (Lua error, NOPERM, ...) is the
    server's own text, which holds no connection details, and becomes a plain FencingError.
    """
    if isinstance(exc, ResponseError) and _is_transient_reply(str(exc)):
        # Redis before 7 wraps a replica's READONLY (and the like) inside the script error.
        return StoreUnavailable(f"redis unavailable: {type(exc).__name__}")
    if isinstance(exc, ResponseError) and not isinstance(exc, _UNAVAILABLE_REPLIES):
        # A Lua error or a refused command: a bug or a misconfiguration, not an outage.
        first_line = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return FencingError(f"redis refused the command ({type(exc).__name__}): {first_line}")
    if isinstance(exc, _CLUSTER_BUGS):
        return FencingError(f"redis cluster refused the call ({type(exc).__name__})")
    return StoreUnavailable(f"redis unavailable: {type(exc).__name__}")


@contextmanager
def _observed(op: Op) -> Iterator[None]:
    """Time the enclosed Redis call, count its failures and translate redis-py errors."""
    started = time.perf_counter()
    try:
        yield
    except FencedOut:
        raise
    except FencingError:
        REDIS_ERRORS.labels(op=op).inc()
        raise
    except _REDIS_ERRORS as exc:
        REDIS_ERRORS.labels(op=op).inc()
        raise _translate(exc) from exc
    finally:
        REDIS_LATENCY.labels(op=op).observe(time.perf_counter() - started)
