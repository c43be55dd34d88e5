"""The gRPC edge of the GC: `GlobalControllerService` (MCs) and `MediaHandlerRegistryService`
(MHs). Protobuf in, validation, one store call, protobuf out.

Errors become status codes in one place, `darktower.gc.grpc_edge` (`status_for`, applied to
every RPC by `edge`; INVALID_ARGUMENT, PERMISSION_DENIED, NOT_FOUND, UNAVAILABLE, INTERNAL with
fixed messages); every RPC is counted by outcome (`darktower.gc.metrics`). Who may call is
`darktower.gc.grpc_auth` (`auth_interceptor`).

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

import logging
from datetime import datetime

import grpc.aio

from darktower.auth.interceptor import current_claims
from darktower.common.clock import Clock, utcnow
from darktower.gc.domain import Heartbeat, LoadReport
from darktower.gc.errors import CallerMismatch, GcUnavailable
from darktower.gc.grpc_edge import caller, edge, require_caller
from darktower.gc.heartbeats import HeartbeatBatcher, LoadReportBatcher
from darktower.gc.last_heard import LastHeard
from darktower.gc.metrics import HEARTBEATS, MEETING_END_NOTICES, REGISTRATIONS
from darktower.gc.migration import MIGRATION_REQUESTS, MigrationService, validate_migration
from darktower.gc.store import GcStore
from darktower.gc.validation import (
    McHeartbeat,
    validate_comprehensive_heartbeat,
    validate_fast_heartbeat,
    validate_load_report,
    validate_meeting_ended,
    validate_register_mc,
    validate_register_mh,
)
from darktower.runtime.grpc_edge import Context
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["GlobalControllerServicer", "MediaHandlerRegistryServicer", "add_gc_services"]

log = logging.getLogger(__name__)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


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

    @edge(REGISTRATIONS, "mc")
    async def RegisterMC(
        self, request: pb.RegisterMCRequest, context: Context
    ) -> pb.RegisterMCResponse:
        """Upsert the MC as PENDING (until its first heartbeat); answer the intervals."""
        reg = validate_register_mc(request)
        require_caller("RegisterMC", reg.id)
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

    @edge(HEARTBEATS, "fast")
    async def FastHeartbeat(
        self, request: pb.FastHeartbeatRequest, context: Context
    ) -> pb.HeartbeatResponse:
        """Record counts and health; NOT_FOUND for an MC this GC does not know."""
        valid = validate_fast_heartbeat(request)
        require_caller("FastHeartbeat", valid.controller_id)
        return await self._record(valid)

    @edge(HEARTBEATS, "comprehensive")
    async def ComprehensiveHeartbeat(
        self, request: pb.ComprehensiveHeartbeatRequest, context: Context
    ) -> pb.HeartbeatResponse:
        """As `FastHeartbeat`, with cpu and memory usage and the participants per meeting
        (stored on this MC's live assignments only)."""
        valid = validate_comprehensive_heartbeat(request)
        require_caller("ComprehensiveHeartbeat", valid.controller_id)
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

    @edge(MEETING_END_NOTICES)
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
        who = caller()
        if ended:
            log.info("meeting %s in %s ended on %s", end.meeting_id, end.region, who)
        else:
            log.debug("meeting %s in %s: no live assignment on %s", end.meeting_id, end.region, who)
        return pb.NotifyMeetingEndedResponse(acknowledged=True)

    @edge(MIGRATION_REQUESTS)
    async def MigrateMeeting(
        self, request: pb.MigrateMeetingRequest, context: Context
    ) -> pb.MigrateMeetingResponse:
        """Place a meeting of the calling (draining) MC on another MC (`darktower.gc.migration`);
        only the MC the meeting is live on may ask (`CallerMismatch`)."""
        controller_id, meeting_id, joiners = validate_migration(request)
        require_caller("MigrateMeeting", controller_id)
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

    @edge(REGISTRATIONS, "mh")
    async def RegisterMH(
        self, request: pb.RegisterMHRequest, context: Context
    ) -> pb.RegisterMHResponse:
        """Upsert the MH as PENDING (until its first load report); answer the interval."""
        reg = validate_register_mh(request)
        require_caller("RegisterMH", reg.id)
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

    @edge(HEARTBEATS, "mh_load")
    async def SendLoadReport(
        self, request: pb.MHLoadReportRequest, context: Context
    ) -> pb.MHLoadReportResponse:
        """Record the MH's load; NOT_FOUND for an MH this GC does not know."""
        report = validate_load_report(request)
        require_caller("SendLoadReport", report.handler_id)
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
