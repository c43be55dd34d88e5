"""What Redis answers, turned into values or the fencing errors: the one translation path.

Everything the adapter gets back from redis-py goes through here:

* a script's status reply (`{'OK', gen}`, `{'FENCED', gen, owner}`, `{'MALFORMED', key}`, see
  `lua/fence_lib.lua`) → a generation, `FencedOut` or `MalformedState` (`decode_reply`);
* a redis-py exception, raised or returned in a pipeline's results → `StoreUnavailable`
  (connection, timeout, failover, cluster outage) or a plain `FencingError` (a refused
  command, a Lua error: a bug or a misconfiguration) (`fencing_error`);
* a stored value that breaks the key contract → `MalformedState` (`stored_*`, `audit_entry`).

`observed` wraps one store call: it times it, counts its failures and raises the translated
error `from` the redis-py one, in a span `redis <op>` when it runs inside a traced request
(`darktower.runtime.tracing.child_span`: an assignment's acquire is in the join's trace);
`outcome` answers the same translation as a value, for the items of a pipeline. Messages
never name the host, port or password: a StoreUnavailable names only the class of the
underlying exception, which stays reachable as `__cause__`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import get_args

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from redis.exceptions import (
    AskError,
    ClusterDownError,
    CrossSlotTransactionError,
    InvalidPipelineStack,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from darktower.fencing.errors import FencedOut, FencingError, MalformedState, StoreUnavailable
from darktower.fencing.metrics import REDIS_ERRORS, REDIS_LATENCY, Op
from darktower.fencing.port import MAX_GENERATION, AuditEntry
from darktower.runtime.tracing import child_span

__all__ = [
    "REDIS_FAILURES",
    "audit_entry",
    "counted",
    "decode_acquire",
    "decode_reply",
    "fencing_error",
    "observed",
    "outcome",
    "parse_generation",
    "stored",
    "stored_generation",
    "stored_hash",
    "stored_text",
    "text",
]

# Everything redis-py raises: its own errors, its cluster client's, and socket errors.
REDIS_FAILURES = (RedisError, RedisClusterException, OSError)

# Server answers that mean "not now" rather than "never": they surface as StoreUnavailable.
# AskError covers MovedError: a slot that kept moving after redis-py's own redirections.
_UNAVAILABLE_REPLIES = (
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
    OutOfMemoryError,
    AskError,
)
# Error codes of those answers, also found inside a script error (Redis < 7 reports a replica's
# READONLY as `... -READONLY ...` in the script's error reply).
_TRANSIENT_REPLY_CODES = ("READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "OOM")
# Errors of redis-py's cluster client that are not RedisErrors. Those two are our bugs (a
# pipeline spanning slots), every other one means "no node can serve this now".
_CLUSTER_BUGS = (CrossSlotTransactionError, InvalidPipelineStack)

_GENERATION = re.compile(r"[0-9]{1,16}")


# -- values -------------------------------------------------------------------------------


def text(value: object) -> str:
    """A reply element as str; clients may or may not be set to decode responses."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string reply, got {type(value).__name__}")


def parse_generation(value: object) -> int | None:
    """A stored generation as int, or None when it breaks the contract (decimal, < 2^53)."""
    try:
        raw = text(value)
    except (TypeError, UnicodeDecodeError):
        return None
    if not _GENERATION.fullmatch(raw):
        return None
    number = int(raw)
    return number if number <= MAX_GENERATION else None


# -- script status words ------------------------------------------------------------------


def decode_reply(meeting_id: str, reply: object) -> int:
    """The generation of an OK reply; raises FencedOut, MalformedState or FencingError."""
    if not isinstance(reply, list) or not reply:
        raise FencingError(f"meeting {meeting_id}: unexpected script reply")
    try:
        status = text(reply[0])
        if status == "OK" and len(reply) == 2:
            generation = parse_generation(reply[1])
            if generation is not None:
                return generation
        elif status == "FENCED" and len(reply) == 3:
            stored_gen, stored_owner = reply[1], reply[2]
            raise FencedOut(
                meeting_id,
                None if stored_gen is None else parse_generation(stored_gen),
                None if stored_owner is None else text(stored_owner),
            )
        elif status == "MALFORMED" and len(reply) == 2:
            raise MalformedState(meeting_id, text(reply[1]))
    except (TypeError, UnicodeDecodeError) as exc:
        raise FencingError(f"meeting {meeting_id}: unexpected script reply") from exc
    raise FencingError(f"meeting {meeting_id}: unexpected script reply")


def decode_acquire(meeting_id: str, reply: object) -> tuple[int, bool]:
    """An acquire's generation, and whether it found no state (`{'OK', gen, fresh}`, the
    reply of an acquire with an MH list; `{'OK', gen}` is never fresh); errors as
    `decode_reply`."""
    if not (isinstance(reply, list) and len(reply) == 3 and reply[0] in (b"OK", "OK")):
        return decode_reply(meeting_id, reply), False
    if reply[2] not in (b"0", b"1", "0", "1"):
        raise FencingError(f"meeting {meeting_id}: unexpected script reply")
    return decode_reply(meeting_id, reply[:2]), reply[2] in (b"1", "1")


# -- redis-py exceptions ------------------------------------------------------------------


def _is_unavailable_reply(exc: ResponseError) -> bool:
    """True for an error reply that means "not now" (a failover, a loading server)."""
    if isinstance(exc, _UNAVAILABLE_REPLIES):
        return True
    message = str(exc)
    return any(
        f"-{code} " in message or message.startswith(code) for code in _TRANSIENT_REPLY_CODES
    )


def fencing_error(exc: BaseException) -> FencingError:
    """The store error for a redis-py exception (a FencingError is answered as it is).

    Connection-side errors become StoreUnavailable naming only the exception class: their
    redis-py messages carry host and port. An error reply (Lua error, NOPERM, ...) is the
    server's own text, which holds no connection details, and becomes a plain FencingError.
    """
    if isinstance(exc, FencingError):
        return exc
    if isinstance(exc, ResponseError) and not _is_unavailable_reply(exc):
        # A Lua error or a refused command: a bug or a misconfiguration, not an outage.
        first_line = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return FencingError(f"redis refused the command ({type(exc).__name__}): {first_line}")
    if isinstance(exc, _CLUSTER_BUGS):
        return FencingError(f"redis cluster refused the call ({type(exc).__name__})")
    return StoreUnavailable(f"redis unavailable: {type(exc).__name__}")


# Each op's series, looked up once: a label lookup costs more than the count or observation.
_ERRORS = {op: REDIS_ERRORS.labels(op=op) for op in get_args(Op)}
_LATENCY = {op: REDIS_LATENCY.labels(op=op) for op in get_args(Op)}


@contextmanager
def counted(op: Op) -> Iterator[None]:
    """Count the enclosed call's failures (not FencedOut: an answer) and translate redis-py
    errors, raised `from` the original."""
    try:
        yield
    except FencedOut:
        raise
    except FencingError:
        _ERRORS[op].inc()
        raise
    except REDIS_FAILURES as exc:
        _ERRORS[op].inc()
        raise fencing_error(exc) from exc


@contextmanager
def observed(op: Op) -> Iterator[None]:
    """Time the enclosed store call, count its failures and translate redis-py errors; a
    span of the current trace, if any."""
    started = time.perf_counter()
    try:
        if not trace.get_current_span().get_span_context().is_valid:
            with counted(op):  # untraced (most calls): no span to open
                yield
            return
        attributes = {"db.system.name": "redis", "db.operation.name": op}
        with child_span(f"redis {op}", attributes, kind=SpanKind.CLIENT), counted(op):
            yield
    finally:
        _LATENCY[op].observe(time.perf_counter() - started)


def outcome(meeting_id: str, result: object, op: Op) -> FencingError | None:
    """One pipelined script result (a reply or the exception in its place) as None (applied)
    or the error it stands for, counted like a raised one."""
    try:
        with counted(op):
            if isinstance(result, Exception):
                raise result
            decode_reply(meeting_id, result)
    except FencingError as exc:
        return exc
    return None


# -- stored values ------------------------------------------------------------------------


def stored(meeting_id: str, key: str, raw: object) -> object:
    """A pipeline result, with a per-command error reply (WRONGTYPE) turned into
    MalformedState; every other exception is raised for `observed` to translate."""
    if isinstance(raw, ResponseError) and not _is_unavailable_reply(raw):
        raise MalformedState(meeting_id, key) from raw
    if isinstance(raw, Exception):
        raise raw
    return raw


def stored_generation(meeting_id: str, key: str, raw: object) -> int:
    value = stored(meeting_id, key, raw)
    if value is None:
        return 0
    generation = parse_generation(value)
    if generation is None:
        raise MalformedState(meeting_id, key)
    return generation


def stored_text(meeting_id: str, key: str, raw: object) -> str | None:
    value = stored(meeting_id, key, raw)
    if value is None:
        return None
    try:
        return text(value)
    except (TypeError, UnicodeDecodeError) as exc:
        raise MalformedState(meeting_id, key) from exc


def stored_hash(meeting_id: str, key: str, raw: object) -> dict[str, str]:
    value = stored(meeting_id, key, raw)
    if not isinstance(value, dict):
        raise MalformedState(meeting_id, key)
    try:
        return {text(k): text(v) for k, v in value.items()}
    except (TypeError, UnicodeDecodeError) as exc:
        raise MalformedState(meeting_id, key) from exc


def audit_entry(meeting_id: str, key: str, entry: object) -> AuditEntry:
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
