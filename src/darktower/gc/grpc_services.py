"""The gRPC edge of the GC: `GlobalControllerService` (MCs) and `MediaHandlerRegistryService`
(MHs). Protobuf in, validation, one store call, protobuf out.

Errors become status codes in one place, `status_for`, applied to every RPC by `_edge`:

* `InvalidGcRequest`                       → INVALID_ARGUMENT, "<field>: <reason>"
* `CallerMismatch`                         → PERMISSION_DENIED, "caller may not act for this id"
* `UnknownController` / `UnknownMediaHandler` → NOT_FOUND, "unknown controller <id>"
* `StoreError` (incl. `DatabaseUnavailable`), `GcUnavailable` → UNAVAILABLE, `UNAVAILABLE_MESSAGE`
* anything else                            → INTERNAL, "internal error"

The UNAVAILABLE and INTERNAL messages are fixed: no SQL, no URL, no stack trace ever reaches a
caller. Every RPC is counted by outcome (`darktower.gc.metrics`).

Decisions at this edge:

* An MC registering from a region other than this GC's is accepted: the registry is shared,
  placement filters by region.
* Heartbeats are written behind when the servicer has a `HeartbeatBatcher` (the GC app gives
  it one unless `GC_HEARTBEAT_FLUSH_MS=0`): the beat is answered at once — NOT_FOUND from the
  batcher's set of known MC ids — and reaches the database with the next flush, within the
  flush interval (the consistency window, see `darktower.gc.heartbeats`). A registration
  asks the batcher to flush first, so a beat of the MC's previous life cannot land after it.
  Without one, each beat is one transaction before it is answered. MH load reports the same,
  through a `LoadReportBatcher` (NOT_FOUND from its set of known MH ids; a registration
  flushes it first): an MH that awaits each answer before its next report must not report
  late because the database is queueing a join flood's transactions.
* Identity binding: a request acts for the caller its token names (`sub`, which a bound key
  vouches for) or is refused with `CallerMismatch` — PERMISSION_DENIED, one fixed message,
  counted in `gc_identity_refusals_total{rpc}`, the store untouched. `RegisterMC.id` and the
  heartbeats' `controller_id` must be the calling MC, `RegisterMH.handler_id` and
  `SendLoadReport.handler_id` the calling MH. The check follows validation (a malformed id is
  INVALID_ARGUMENT first). Without verified claims (no interceptor, in-process tests) there is
  nobody to compare with and nothing is refused.
* `NotifyMeetingEnded` ends the meeting's live assignment only if it is on the calling MC. A
  notice for a meeting live on another MC is refused (`CallerMismatch`) and the meeting stays
  live; one for a meeting with no live assignment is acknowledged (idempotent: a late or
  repeated notice). Without verified claims it ends the live assignment as is.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import grpc
import grpc.aio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import Counter

from darktower.auth.interceptor import ServiceAuthInterceptor, current_claims
from darktower.auth.keys import TrustedKey
from darktower.auth.tokens import (
    ALLOW_UNBOUND_KEYS_DEFAULT,
    GC_AUDIENCE,
    SCOPE_GC,
    ServiceType,
    TokenVerifier,
)
from darktower.common.clock import Clock, utcnow
from darktower.gc.domain import Heartbeat, LoadReport
from darktower.gc.errors import CallerMismatch, GcUnavailable, InvalidGcRequest
from darktower.gc.heartbeats import HeartbeatBatcher, LoadReportBatcher
from darktower.gc.last_heard import LastHeard
from darktower.gc.metrics import HEARTBEATS, MEETING_END_NOTICES, REGISTRATIONS
from darktower.gc.migration import MIGRATION_REQUESTS, MigrationService, validate_migration
from darktower.gc.store import GcStore, StoreError, UnknownController, UnknownMediaHandler
from darktower.gc.validation import (
    McHeartbeat,
    validate_comprehensive_heartbeat,
    validate_fast_heartbeat,
    validate_load_report,
    validate_meeting_ended,
    validate_register_mc,
    validate_register_mh,
)
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = [
    "GC_SERVICE_PREFIX",
    "IDENTITY_REFUSALS",
    "INTERNAL_MESSAGE",
    "MH_REGISTRY_PREFIX",
    "UNAVAILABLE_MESSAGE",
    "GlobalControllerServicer",
    "MediaHandlerRegistryServicer",
    "add_gc_services",
    "auth_interceptor",
    "status_for",
]

log = logging.getLogger(__name__)

GC_SERVICE_PREFIX = "/dark_tower.internal.GlobalControllerService/"
MH_REGISTRY_PREFIX = "/dark_tower.internal.MediaHandlerRegistryService/"
UNAVAILABLE_MESSAGE = "registry database unavailable, retry later"
INTERNAL_MESSAGE = "internal error"

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

Context = grpc.aio.ServicerContext[Any, Any]
_S = TypeVar("_S")
_Q = TypeVar("_Q")
_R = TypeVar("_R")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def status_for(exc: Exception) -> tuple[grpc.StatusCode, str, str]:
    """The status code, the caller-safe message and the metric `result` for a failed RPC."""
    if isinstance(exc, InvalidGcRequest):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc), "invalid"
    if isinstance(exc, CallerMismatch):
        return grpc.StatusCode.PERMISSION_DENIED, CallerMismatch.MESSAGE, "denied"
    if isinstance(exc, UnknownController):
        return grpc.StatusCode.NOT_FOUND, f"unknown controller {exc.controller_id}", "not_found"
    if isinstance(exc, UnknownMediaHandler):
        return grpc.StatusCode.NOT_FOUND, f"unknown media handler {exc.handler_id}", "not_found"
    if isinstance(exc, StoreError | GcUnavailable):
        return grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MESSAGE, "unavailable"
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "error"


def _edge(
    counter: Counter, *labels: str
) -> Callable[
    [Callable[[_S, _Q, Context], Awaitable[_R]]], Callable[[_S, _Q, Context], Awaitable[_R]]
]:
    """Wrap an RPC method: count it by result under `labels`, turn its errors into a status."""

    def decorate(
        method: Callable[[_S, _Q, Context], Awaitable[_R]],
    ) -> Callable[[_S, _Q, Context], Awaitable[_R]]:
        rpc = method.__name__

        @functools.wraps(method)
        async def call(self: _S, request: _Q, context: Context) -> _R:
            try:
                response = await method(self, request, context)
            except Exception as exc:
                code, message, result = status_for(exc)
                counter.labels(*labels, result).inc()
                if result == "error":
                    # The type only: an unexpected exception's text may hold anything.
                    log.error("%s failed: %s", rpc, type(exc).__name__)
                elif result == "denied":
                    IDENTITY_REFUSALS.labels(rpc).inc()
                    # Who asked, never the token: the claims were verified by the interceptor.
                    log.warning("%s refused: caller %s may not act for this id", rpc, _caller())
                elif result == "unavailable":
                    # Store messages are clean by contract: they name exception classes only.
                    log.warning("%s failed: %s", rpc, exc)
                else:
                    log.info("%s refused: %s", rpc, message)
                await context.abort(code, message)
            counter.labels(*labels, "ok").inc()
            return response

        return call

    return decorate


def _caller() -> str:
    claims = current_claims.get()
    return "?" if claims is None else claims.subject


def _require_caller(rpc: str, acted_for: str) -> None:
    """Raise `CallerMismatch` unless the verified caller is `acted_for` (no claims: no check)."""
    claims = current_claims.get()
    if claims is not None and claims.subject != acted_for:
        raise CallerMismatch(rpc)


class GlobalControllerServicer(pb_grpc.GlobalControllerServiceServicer):
    """Registration, heartbeats and meeting-end notices of MCs (docs/reference.md)."""

    def __init__(
        self,
        store: GcStore,
        *,
        region: str,
        fast_heartbeat_ms: int,
        comprehensive_heartbeat_ms: int,
        clock: Clock = utcnow,
        heartbeats: HeartbeatBatcher | None = None,
    ) -> None:
        self._store = store
        self._heartbeats = heartbeats
        self._region = region
        self._fast_ms = fast_heartbeat_ms
        self._comprehensive_ms = comprehensive_heartbeat_ms
        self._clock = clock
        # Live migration of a draining MC's meetings; None (answered UNAVAILABLE) until the
        # GC's placement runs.
        self.migrations: MigrationService | None = None

    @_edge(REGISTRATIONS, "mc")
    async def RegisterMC(
        self, request: pb.RegisterMCRequest, context: Context
    ) -> pb.RegisterMCResponse:
        """Upsert the MC as PENDING (until its first heartbeat); answer the intervals."""
        reg = validate_register_mc(request)
        _require_caller("RegisterMC", reg.id)
        if self._heartbeats is not None:
            await self._heartbeats.flush()
        await self._store.upsert_controller(
            reg.id,
            reg.region,
            reg.grpc_endpoint,
            reg.webtransport_endpoint,
            reg.max_meetings,
            reg.max_participants,
            self._clock(),
        )
        if self._heartbeats is not None:
            self._heartbeats.registered(reg.id)
        log.info(
            "MC %s registered: region=%s endpoint=%s max_meetings=%d max_participants=%d%s",
            reg.id,
            reg.region,
            reg.grpc_endpoint,
            reg.max_meetings,
            reg.max_participants,
            "" if reg.region == self._region else " (not this GC's placement region)",
        )
        return pb.RegisterMCResponse(
            accepted=True,
            message="registered",
            fast_heartbeat_interval_ms=self._fast_ms,
            comprehensive_heartbeat_interval_ms=self._comprehensive_ms,
        )

    @_edge(HEARTBEATS, "fast")
    async def FastHeartbeat(
        self, request: pb.FastHeartbeatRequest, context: Context
    ) -> pb.HeartbeatResponse:
        """Record counts and health; NOT_FOUND for an MC this GC does not know."""
        valid = validate_fast_heartbeat(request)
        _require_caller("FastHeartbeat", valid.controller_id)
        return await self._record(valid)

    @_edge(HEARTBEATS, "comprehensive")
    async def ComprehensiveHeartbeat(
        self, request: pb.ComprehensiveHeartbeatRequest, context: Context
    ) -> pb.HeartbeatResponse:
        """As `FastHeartbeat`, with cpu and memory usage and the participants per meeting
        (stored on this MC's live assignments only)."""
        valid = validate_comprehensive_heartbeat(request)
        _require_caller("ComprehensiveHeartbeat", valid.controller_id)
        return await self._record(valid)

    async def _record(self, valid: McHeartbeat) -> pb.HeartbeatResponse:
        now = self._clock()
        beat = Heartbeat(
            valid.controller_id,
            current_meetings=valid.current_meetings,
            current_participants=valid.current_participants,
            max_meetings=valid.max_meetings,
            max_participants=valid.max_participants,
            health=valid.health,
            at=now,
            cpu_percent=valid.cpu_percent,
            memory_percent=valid.memory_percent,
            meeting_loads=valid.meeting_loads,
        )
        if self._heartbeats is not None:
            await self._heartbeats.submit(beat)
        else:
            await self._store.record_heartbeat(beat)
        return pb.HeartbeatResponse(acknowledged=True, timestamp=_ms(now))

    @_edge(MEETING_END_NOTICES)
    async def NotifyMeetingEnded(
        self, request: pb.NotifyMeetingEndedRequest, context: Context
    ) -> pb.NotifyMeetingEndedResponse:
        """End the meeting's live assignment on the calling MC; acknowledged if there is none,
        refused (`CallerMismatch`) if it is live on another MC."""
        end = validate_meeting_ended(request)
        claims = current_claims.get()
        now = self._clock()
        if claims is None:
            ended = await self._store.end_assignment(end.meeting_id, end.region, now)
        else:
            ended = await self._store.end_assignment_if(
                end.meeting_id, end.region, claims.subject, now
            )
            if not ended:
                live = await self._store.active_assignment(end.meeting_id, end.region)
                if live is not None and live.mc_id != claims.subject:
                    raise CallerMismatch("NotifyMeetingEnded")
        caller = _caller()
        if ended:
            log.info("meeting %s in %s ended on %s", end.meeting_id, end.region, caller)
        else:
            log.debug(
                "meeting %s in %s: no live assignment on %s", end.meeting_id, end.region, caller
            )
        return pb.NotifyMeetingEndedResponse(acknowledged=True)

    @_edge(MIGRATION_REQUESTS)
    async def MigrateMeeting(
        self, request: pb.MigrateMeetingRequest, context: Context
    ) -> pb.MigrateMeetingResponse:
        """Place a meeting of the calling (draining) MC on another MC (`darktower.gc.migration`);
        only the MC the meeting is live on may ask (`CallerMismatch`)."""
        controller_id, meeting_id, joiners = validate_migration(request)
        _require_caller("MigrateMeeting", controller_id)
        if self.migrations is None:
            raise GcUnavailable("placement is not running yet")
        result = await self.migrations.migrate(controller_id, meeting_id, joiners)
        return pb.MigrateMeetingResponse(
            placed=result.placed,
            mc_id=result.mc_id,
            signaling_url=result.signaling_url,
            join_tokens=result.join_tokens,
            reason=result.reason,
        )


class MediaHandlerRegistryServicer(pb_grpc.MediaHandlerRegistryServiceServicer):
    """Registration and load reports of MHs."""

    def __init__(
        self,
        store: GcStore,
        *,
        load_report_ms: int,
        clock: Clock = utcnow,
        last_heard: LastHeard | None = None,
        load_reports: LoadReportBatcher | None = None,
    ) -> None:
        """`load_reports`: write reports behind through it (it notes their receipt); else each
        is one transaction, its receipt noted in `last_heard` first."""
        self._store = store
        self._load_report_ms = load_report_ms
        self._clock = clock
        self._last_heard = last_heard
        self._load_reports = load_reports

    @_edge(REGISTRATIONS, "mh")
    async def RegisterMH(
        self, request: pb.RegisterMHRequest, context: Context
    ) -> pb.RegisterMHResponse:
        """Upsert the MH as PENDING (until its first load report); answer the interval."""
        reg = validate_register_mh(request)
        _require_caller("RegisterMH", reg.id)
        if self._load_reports is not None:
            await self._load_reports.flush()
        await self._store.upsert_media_handler(
            reg.id,
            reg.region,
            reg.webtransport_endpoint,
            reg.grpc_endpoint,
            reg.max_streams,
            self._clock(),
            zone=reg.zone,
        )
        if self._load_reports is not None:
            self._load_reports.registered(reg.id)
        if self._last_heard is not None:
            self._last_heard.forget("mh", reg.id)
        log.info(
            "MH %s registered: region=%s zone=%s endpoint=%s max_streams=%d",
            reg.id,
            reg.region,
            reg.zone or "-",
            reg.webtransport_endpoint,
            reg.max_streams,
        )
        return pb.RegisterMHResponse(
            accepted=True, message="registered", load_report_interval_ms=self._load_report_ms
        )

    @_edge(HEARTBEATS, "mh_load")
    async def SendLoadReport(
        self, request: pb.MHLoadReportRequest, context: Context
    ) -> pb.MHLoadReportResponse:
        """Record the MH's load; NOT_FOUND for an MH this GC does not know."""
        report = validate_load_report(request)
        _require_caller("SendLoadReport", report.handler_id)
        now = self._clock()
        if self._load_reports is not None:
            await self._load_reports.submit(
                LoadReport(
                    report.handler_id,
                    current_streams=report.current_streams,
                    health=report.health,
                    at=now,
                    cpu_percent=report.cpu_percent,
                    memory_percent=report.memory_percent,
                    bandwidth_percent=report.bandwidth_percent,
                )
            )
            return pb.MHLoadReportResponse(acknowledged=True, timestamp=_ms(now))
        if self._last_heard is not None:
            # Received now, whenever the write below gets through (no false staleness).
            self._last_heard.heard("mh", report.handler_id, now)
        await self._store.record_load_report(
            report.handler_id,
            current_streams=report.current_streams,
            health=report.health,
            cpu_percent=report.cpu_percent,
            memory_percent=report.memory_percent,
            bandwidth_percent=report.bandwidth_percent,
            now=now,
        )
        return pb.MHLoadReportResponse(acknowledged=True, timestamp=_ms(now))


TrustedKeys = Sequence[Ed25519PublicKey | TrustedKey]


def auth_interceptor(
    mc_keys: TrustedKeys,
    mh_keys: TrustedKeys,
    gc_keys: TrustedKeys = (),
    *,
    audience: str | Sequence[str] = GC_AUDIENCE,
    allow_unbound_keys: bool = ALLOW_UNBOUND_KEYS_DEFAULT,
) -> ServiceAuthInterceptor:
    """The GC server's token check: MCs only on GlobalControllerService, MHs only on the
    MH registry, scope `service.write.gc` and `aud` one of `audience` on both; other methods
    are checked as MC calls.

    Each key is trusted for its own service type only, so an MH-signed token claiming to be an
    MC's is UNAUTHENTICATED; a bound key (`TrustedKey` from `load_trusted_keys`) only for its
    own instance (`sub`), and an unbound one only with `allow_unbound_keys`. Trusting
    `gc_keys` turns a peer GC's (scope-gc) token into a clear PERMISSION_DENIED instead of
    UNAUTHENTICATED; it grants nothing. Raises ValueError if no key at all is given, or one
    key is given for two types.
    """
    key_sets: dict[ServiceType, TrustedKeys] = {
        ServiceType.MEETING_CONTROLLER: list(mc_keys),
        ServiceType.MEDIA_HANDLER: list(mh_keys),
    }
    if gc_keys:
        key_sets[ServiceType.GLOBAL_CONTROLLER] = list(gc_keys)

    def verifier(caller: ServiceType) -> TokenVerifier:
        return TokenVerifier.from_key_sets(
            key_sets,
            required_scope=SCOPE_GC,
            allowed_callers={caller},
            audience=audience,
            allow_unbound_keys=allow_unbound_keys,
        )

    mc_verifier = verifier(ServiceType.MEETING_CONTROLLER)
    return ServiceAuthInterceptor(
        mc_verifier,
        service="gc",
        routes={
            GC_SERVICE_PREFIX: mc_verifier,
            MH_REGISTRY_PREFIX: verifier(ServiceType.MEDIA_HANDLER),
        },
    )


def add_gc_services(
    server: grpc.aio.Server,
    store: GcStore,
    *,
    region: str,
    fast_heartbeat_ms: int,
    comprehensive_heartbeat_ms: int,
    load_report_ms: int,
    clock: Clock = utcnow,
    heartbeats: HeartbeatBatcher | None = None,
    last_heard: LastHeard | None = None,
    load_reports: LoadReportBatcher | None = None,
) -> GlobalControllerServicer:
    """Register both GC servicers on `server` (which should carry `auth_interceptor(...)`);
    MC heartbeats go through `heartbeats` and MH load reports through `load_reports` when
    given (written behind); without a batcher, load reports are noted in `last_heard` as they
    are received. Answers the MCs' servicer (its `migrations` is set once placement runs)."""
    mc_servicer = GlobalControllerServicer(
        store,
        region=region,
        fast_heartbeat_ms=fast_heartbeat_ms,
        comprehensive_heartbeat_ms=comprehensive_heartbeat_ms,
        clock=clock,
        heartbeats=heartbeats,
    )
    pb_grpc.add_GlobalControllerServiceServicer_to_server(mc_servicer, server)
    pb_grpc.add_MediaHandlerRegistryServiceServicer_to_server(
        MediaHandlerRegistryServicer(
            store,
            load_report_ms=load_report_ms,
            clock=clock,
            last_heard=last_heard,
            load_reports=load_reports,
        ),
        server,
    )
    return mc_servicer
