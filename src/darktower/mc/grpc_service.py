"""The gRPC edge of the MC: protobuf in, a domain call, protobuf out.

Errors become status codes in one place, `status_for`, applied to every RPC by `_edge` (the
same shape as the GC's gRPC edge):

* `InvalidMcRequest` → INVALID_ARGUMENT, "<field>: <reason>"
* anything else      → INTERNAL, `INTERNAL_MESSAGE`; logged with its traceback and counted in
  `mc_grpc_internal_errors_total{method}`. The caller never sees the exception's text.

A refusal for load reasons is not an error: `accepted=false` with a reason. A dependency
failure (`StateUnavailable`, or the controller stopping) is also a refusal, UNHEALTHY, so that
the GC simply tries the next MC. The legacy RPCs answer "not accepted" and change nothing.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio

from darktower.actors import ActorStopped
from darktower.mc.admission import Rejection, rejection_to_proto
from darktower.mc.assign import Assigner
from darktower.mc.errors import InvalidMcRequest, StateUnavailable
from darktower.mc.metrics import ASSIGN_LATENCY, ASSIGNMENTS, GRPC_INTERNAL_ERRORS
from darktower.mc.validation import validate_assign
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["INTERNAL_MESSAGE", "LEGACY_MESSAGE", "MeetingControllerServicer", "status_for"]

log = logging.getLogger(__name__)

LEGACY_MESSAGE = "not accepted, use AssignMeetingWithMh"
INTERNAL_MESSAGE = "internal error"

Context = grpc.aio.ServicerContext[Any, Any]
_S = TypeVar("_S")
_Q = TypeVar("_Q")
_R = TypeVar("_R")


def status_for(exc: Exception) -> tuple[grpc.StatusCode, str, str]:
    """The status code, the caller-safe message and the outcome (`invalid`/`error`) for a
    failed RPC."""
    if isinstance(exc, InvalidMcRequest):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc), "invalid"
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "error"


def _edge(
    method: Callable[[_S, _Q, Context], Awaitable[_R]],
) -> Callable[[_S, _Q, Context], Awaitable[_R]]:
    """Wrap an RPC method: turn its errors into a status, count and log the unexpected ones."""
    rpc = method.__name__

    @functools.wraps(method)
    async def call(self: _S, request: _Q, context: Context) -> _R:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise  # the method already chose its status
        except Exception as exc:
            code, message, outcome = status_for(exc)
            if outcome == "error":
                GRPC_INTERNAL_ERRORS.labels(rpc).inc()
                # The traceback goes to the log only: the caller gets the fixed message.
                log.error("%s failed: %s", rpc, type(exc).__name__, exc_info=exc)
            else:
                log.info("%s refused: %s", rpc, message)
            await context.abort(code, message)

    return call


class MeetingControllerServicer(pb_grpc.MeetingControllerServiceServicer):
    def __init__(self, assigner: Assigner) -> None:
        self._assigner = assigner

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
