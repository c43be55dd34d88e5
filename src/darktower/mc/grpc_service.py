"""The gRPC edge of the MC: protobuf in, a domain call, protobuf out.

Errors become status codes in one place, `status_for`, applied to every RPC by `_edge`
(`darktower.runtime.grpc_edge`, the edge of every service):

* `InvalidMcRequest` → INVALID_ARGUMENT, "<field>: <reason>"
* anything else      → INTERNAL, `INTERNAL_MESSAGE`; logged with its traceback and counted in
  `mc_grpc_internal_errors_total{method}`. The caller never sees the exception's text.

A refusal for load reasons is not an error: `accepted=false` with a reason. A dependency
failure (`StateUnavailable`, or the controller stopping) is also a refusal, UNHEALTHY, so that
the GC simply tries the next MC. The legacy RPCs answer "not accepted" and change nothing.

The meeting API's commands (`EndMeeting`, `RemoveParticipant`, `MuteParticipant`,
`GetMeetingRoster`, `darktower.mc.meeting_commands`): a meeting id or identity that breaks its
rule is INVALID_ARGUMENT; a meeting this MC does not host is `hosted=false`; a store failure
is UNAVAILABLE ("meeting state store unavailable").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc

from darktower.actors import ActorStopped
from darktower.common.errors import invalid_field_as
from darktower.common.ids import validate_id
from darktower.common.names import validate_user_id
from darktower.mc.admission import Rejection, rejection_to_proto
from darktower.mc.assign import Assigner
from darktower.mc.errors import InvalidMcRequest, StateUnavailable
from darktower.mc.meeting_commands import NOT_HOSTED, MeetingCommands, RosterView
from darktower.mc.metrics import ASSIGN_LATENCY, ASSIGNMENTS, GRPC_INTERNAL_ERRORS
from darktower.mc.validation import validate_assign
from darktower.runtime.grpc_edge import INTERNAL_MESSAGE, Context, EdgeStatus, grpc_edge
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["INTERNAL_MESSAGE", "LEGACY_MESSAGE", "MeetingControllerServicer", "status_for"]

log = logging.getLogger(__name__)

LEGACY_MESSAGE = "not accepted, use AssignMeetingWithMh"


def status_for(exc: Exception) -> EdgeStatus:
    """The status code, the caller-safe message and the outcome (`invalid`/`error`) for a
    failed RPC."""
    if isinstance(exc, InvalidMcRequest):
        return EdgeStatus(grpc.StatusCode.INVALID_ARGUMENT, str(exc), "invalid")
    if isinstance(exc, StateUnavailable):
        return EdgeStatus(grpc.StatusCode.UNAVAILABLE, str(exc), "invalid")
    return EdgeStatus(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "error")


def _count_internal(rpc: str) -> None:
    GRPC_INTERNAL_ERRORS.labels(rpc).inc()


# Every RPC: errors become a status; the unexpected ones are logged with their traceback and
# counted.
_edge = grpc_edge(status_for, log=log, on_internal=_count_internal)


class MeetingControllerServicer(pb_grpc.MeetingControllerServiceServicer):
    def __init__(
        self,
        assigner: Assigner,
        commands: MeetingCommands | None = None,
        *,
        drain: Callable[[], int] | None = None,
    ) -> None:
        """`commands` None: the meeting API's RPCs answer `hosted=false`. `drain()` starts
        the MC's drain (an operator's, through the GC) and answers the meetings it hosts; None:
        `DrainController` is not accepted."""
        self._assigner = assigner
        self._commands = commands
        self._drain = drain

    @_edge
    async def DrainController(
        self, request: pb.DrainControllerRequest, context: Context
    ) -> pb.DrainControllerResponse:
        """Start draining, as on SIGTERM (README "Rolling upgrades"); idempotent."""
        if self._drain is None:
            return pb.DrainControllerResponse(accepted=False)
        meetings = self._drain()
        log.info("drain requested by GC %s (%d meetings)", request.requesting_gc_id[:64], meetings)
        return pb.DrainControllerResponse(accepted=True, meetings=meetings)

    @_edge
    async def EndMeeting(
        self, request: pb.MeetingCommandRequest, context: Context
    ) -> pb.MeetingCommandResponse:
        meeting_id, _ = _command(request, identity=False)
        if self._commands is None:
            return pb.MeetingCommandResponse(hosted=False)
        return _answer(await self._commands.end(meeting_id))

    @_edge
    async def RemoveParticipant(
        self, request: pb.MeetingCommandRequest, context: Context
    ) -> pb.MeetingCommandResponse:
        meeting_id, identity = _command(request, identity=True)
        if self._commands is None:
            return pb.MeetingCommandResponse(hosted=False)
        return _answer(await self._commands.remove(meeting_id, identity))

    @_edge
    async def MuteParticipant(
        self, request: pb.MeetingCommandRequest, context: Context
    ) -> pb.MeetingCommandResponse:
        meeting_id, identity = _command(request, identity=True)
        if self._commands is None:
            return pb.MeetingCommandResponse(hosted=False)
        return _answer(await self._commands.mute(meeting_id, identity, request.muted))

    @_edge
    async def GetMeetingRoster(
        self, request: pb.MeetingCommandRequest, context: Context
    ) -> pb.MeetingRosterResponse:
        meeting_id, _ = _command(request, identity=False)
        view = NOT_HOSTED if self._commands is None else await self._commands.roster(meeting_id)
        if not isinstance(view, RosterView):
            return pb.MeetingRosterResponse(hosted=False)
        settings = view.settings
        return pb.MeetingRosterResponse(
            hosted=True,
            participants=[
                pb.RosterParticipant(
                    participant_id=m.participant_id,
                    user_id=m.user_id,
                    display_name=m.display_name,
                    role=m.role,
                    muted=m.muted,
                    host_muted=m.host_muted,
                    connected=m.connected,
                    joined_at_ms=m.joined_at_ms,
                )
                for m in view.members
            ],
            host_id=view.host_id or "",
            settings=pb.MeetingSettings(
                max_participants=settings.max_participants or 0,
                empty_timeout_seconds=settings.empty_timeout_seconds or 0,
                metadata=settings.metadata or "",
            ),
            generation=view.generation,
        )

    @_edge
    async def AssignMeetingWithMh(
        self, request: pb.AssignMeetingWithMhRequest, context: Context
    ) -> pb.AssignMeetingWithMhResponse:
        started = time.perf_counter()
        try:
            assign = validate_assign(request)
        except InvalidMcRequest as exc:
            ASSIGNMENTS.labels("invalid", exc.field.split("[")[0]).inc()
            raise
        try:
            rejection = await self._assigner.assign(assign)
        except (StateUnavailable, ActorStopped) as exc:
            log.warning("meeting %s refused: %s", assign.meeting_id, type(exc).__name__)
            rejection = Rejection.UNHEALTHY
            ASSIGNMENTS.labels("error", "state_unavailable").inc()
        else:
            ASSIGNMENTS.labels(
                "accepted" if rejection is None else "rejected",
                "" if rejection is None else rejection.value,
            ).inc()
        ASSIGN_LATENCY.observe(time.perf_counter() - started)
        if rejection is None:
            return pb.AssignMeetingWithMhResponse(accepted=True)
        return pb.AssignMeetingWithMhResponse(
            accepted=False, rejection_reason=rejection_to_proto(rejection)
        )

    @_edge
    async def RegisterController(
        self, request: pb.RegisterMeetingController, context: Context
    ) -> pb.RegistrationResponse:
        return pb.RegistrationResponse(accepted=False, controller_id="")

    @_edge
    async def SendHeartbeat(self, request: pb.Heartbeat, context: Context) -> pb.HeartbeatResponse:
        return pb.HeartbeatResponse(acknowledged=False, timestamp=int(time.time() * 1000))

    @_edge
    async def Assign(self, request: pb.AssignMeeting, context: Context) -> pb.AssignMeetingResponse:
        return pb.AssignMeetingResponse(accepted=False, reason=LEGACY_MESSAGE)


def _command(request: pb.MeetingCommandRequest, *, identity: bool) -> tuple[str, str]:
    """The request's meeting id (and identity), checked; InvalidMcRequest names the field."""
    with invalid_field_as(InvalidMcRequest):
        meeting_id = validate_id(request.meeting_id, "meeting_id")
        who = validate_user_id(request.identity, "identity") if identity else ""
        if request.requesting_gc_id:
            validate_id(request.requesting_gc_id, "requesting_gc_id")
    return meeting_id, who


def _answer(outcome: object) -> pb.MeetingCommandResponse:
    if isinstance(outcome, int):
        return pb.MeetingCommandResponse(hosted=True, affected=outcome)
    return pb.MeetingCommandResponse(hosted=False)
