"""The GC's gRPC edge: errors become status codes in one place, `status_for`, applied to every
RPC by `edge(counter, *labels)` (`darktower.runtime.grpc_edge`, the edge of every service),
which also counts each RPC by outcome; and the identity binding (`require_caller`).

* `InvalidGcRequest`                       → INVALID_ARGUMENT, "<field>: <reason>"
* `CallerMismatch`                         → PERMISSION_DENIED, "caller may not act for this id"
* `UnknownController` / `UnknownMediaHandler` → NOT_FOUND, "unknown controller <id>"
* `StoreError` (incl. `DatabaseUnavailable`), `GcUnavailable` → UNAVAILABLE, `UNAVAILABLE_MESSAGE`
* anything else                            → INTERNAL, "internal error"

The UNAVAILABLE and INTERNAL messages are fixed: no SQL, no URL, no stack trace ever reaches a
caller. An unexpected error is logged by its type only (a store exception's text may hold a
connection string). A refusal for identity is counted in `gc_identity_refusals_total{rpc}` and
logged with the caller (never its token).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from prometheus_client import Counter

from darktower.auth.interceptor import current_claims
from darktower.gc.errors import CallerMismatch, GcUnavailable, InvalidGcRequest
from darktower.gc.store import StoreError, UnknownController, UnknownMediaHandler
from darktower.runtime.grpc_edge import INTERNAL_MESSAGE, EdgeStatus, RpcDecorator, grpc_edge

__all__ = [
    "IDENTITY_REFUSALS",
    "INTERNAL_MESSAGE",
    "UNAVAILABLE_MESSAGE",
    "caller",
    "edge",
    "require_caller",
    "status_for",
]

# The RPCs' log: their refusals and failures are logged where the RPCs are served.
log = logging.getLogger("darktower.gc.grpc_services")

UNAVAILABLE_MESSAGE = "registry database unavailable, retry later"

IDENTITY_REFUSALS = Counter(
    "gc_identity_refusals_total",
    "Requests refused because they act for an id other than the caller's (its token's sub).",
    ["rpc"],
)
for _rpc in (
    "RegisterMC",
    "FastHeartbeat",
    "ComprehensiveHeartbeat",
    "NotifyMeetingEnded",
    "MigrateMeeting",
    "RegisterMH",
    "SendLoadReport",
):
    IDENTITY_REFUSALS.labels(_rpc)


def status_for(exc: Exception) -> EdgeStatus:
    """The status code, the caller-safe message and the metric `result` for a failed RPC."""
    if isinstance(exc, InvalidGcRequest):
        return EdgeStatus(grpc.StatusCode.INVALID_ARGUMENT, str(exc), "invalid")
    if isinstance(exc, CallerMismatch):
        return EdgeStatus(grpc.StatusCode.PERMISSION_DENIED, CallerMismatch.MESSAGE, "denied")
    if isinstance(exc, UnknownController):
        message = f"unknown controller {exc.controller_id}"
        return EdgeStatus(grpc.StatusCode.NOT_FOUND, message, "not_found")
    if isinstance(exc, UnknownMediaHandler):
        message = f"unknown media handler {exc.handler_id}"
        return EdgeStatus(grpc.StatusCode.NOT_FOUND, message, "not_found")
    if isinstance(exc, StoreError | GcUnavailable):
        return EdgeStatus(grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MESSAGE, "unavailable")
    return EdgeStatus(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "error")


def _log_refusal(rpc: str, exc: Exception, status: EdgeStatus) -> None:
    if status.outcome == "denied":
        IDENTITY_REFUSALS.labels(rpc).inc()
        # Who asked, never the token: the claims were verified by the interceptor.
        log.warning("%s refused: caller %s may not act for this id", rpc, caller())
    elif status.outcome == "unavailable":
        # Store messages are clean by contract: they name exception classes only.
        log.warning("%s failed: %s", rpc, exc)
    else:
        log.info("%s refused: %s", rpc, status.message)


def edge(counter: Counter, *labels: str) -> RpcDecorator:
    """Wrap an RPC method: count it by result under `labels`, turn its errors into a status."""

    # Each result's series looked up once: a label lookup takes a lock, every call is counted.
    series: dict[str, Any] = {}

    def count(rpc: str, result: str) -> None:
        child = series.get(result)
        if child is None:
            child = series[result] = counter.labels(*labels, result)
        child.inc()

    return grpc_edge(
        status_for, log=log, on_refusal=_log_refusal, on_result=count, log_traceback=False
    )


def caller() -> str:
    """The verified caller's id (its token's `sub`), or "?" without verified claims."""
    claims = current_claims.get()
    return "?" if claims is None else claims.subject


def require_caller(rpc: str, acted_for: str) -> None:
    """Raise `CallerMismatch` unless the verified caller is `acted_for` (no claims: no check)."""
    claims = current_claims.get()
    if claims is not None and claims.subject != acted_for:
        raise CallerMismatch(rpc)
