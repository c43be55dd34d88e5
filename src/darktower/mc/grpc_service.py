"""The gRPC edge of the MC: protobuf in, a domain call, protobuf out.

Domain errors become status codes here and only here: InvalidArgument → INVALID_ARGUMENT
(naming the field). A refusal for load reasons is not an error: `accepted=false` with a
reason. A dependency failure (StateUnavailable) is also a refusal, UNHEALTHY, so that the GC
simply tries the next MC. The legacy RPCs answer "not accepted" and change nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc

from darktower.actors import ActorStopped
from darktower.mc.admission import Rejection, rejection_to_proto
from darktower.mc.assign import Assigner
from darktower.mc.errors import InvalidArgument, StateUnavailable
from darktower.mc.metrics import ASSIGN_LATENCY, ASSIGNMENTS
from darktower.mc.validation import validate_assign
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["LEGACY_MESSAGE", "MeetingControllerServicer"]

log = logging.getLogger(__name__)

LEGACY_MESSAGE = "not accepted, use AssignMeetingWithMh"


class MeetingControllerServicer(pb_grpc.MeetingControllerServiceServicer):
    def __init__(self, assigner: Assigner) -> None:
        self._assigner = assigner

    async def AssignMeetingWithMh(
        self, request: pb.AssignMeetingWithMhRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AssignMeetingWithMhResponse:
        started = time.perf_counter()
        try:
            assign = validate_assign(request)
        except InvalidArgument as exc:
            ASSIGNMENTS.labels("invalid", exc.field.split("[")[0]).inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
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

    async def RegisterController(
        self, request: pb.RegisterMeetingController, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RegistrationResponse:
        return pb.RegistrationResponse(accepted=False, controller_id="")

    async def SendHeartbeat(
        self, request: pb.Heartbeat, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HeartbeatResponse:
        return pb.HeartbeatResponse(acknowledged=False, timestamp=int(time.time() * 1000))

    async def Assign(
        self, request: pb.AssignMeeting, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AssignMeetingResponse:
        return pb.AssignMeetingResponse(accepted=False, reason=LEGACY_MESSAGE)
