"""The gRPC edge of the MH: MediaHandlerService, for MCs only (the auth interceptor admits
MC tokens addressed to this MH; see `server`).

Errors become status codes in `status_for`, applied to every RPC by `_edge`
(`darktower.runtime.grpc_edge`, the edge of every service):

* `InvalidMhRequest` → INVALID_ARGUMENT, "<field>: <reason>"
* `MhAtCapacity`     → RESOURCE_EXHAUSTED
* `MediaUnavailable` → UNAVAILABLE, "media server unavailable" (Janus's answer is logged only)
* anything else      → INTERNAL, "internal error", logged with its traceback and counted in
  `mh_grpc_internal_errors_total{method}`.

`RouteMedia` and `StreamTelemetry` are not served (UNIMPLEMENTED, `NOT_SERVED_MESSAGE`):
Janus routes the media inside a meeting's room by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc
from prometheus_client import Counter

from darktower.mh.errors import InvalidMhRequest, MediaUnavailable, MhAtCapacity
from darktower.mh.rooms import MediaRooms
from darktower.runtime.grpc_edge import INTERNAL_MESSAGE, Context, EdgeStatus, grpc_edge
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = [
    "GRPC_INTERNAL_ERRORS",
    "INTERNAL_MESSAGE",
    "MAX_STREAMS_PER_REGISTRATION",
    "UNAVAILABLE_MESSAGE",
    "MediaHandlerServicer",
    "status_for",
]

log = logging.getLogger(__name__)

UNAVAILABLE_MESSAGE = "media server unavailable"
NOT_SERVED_MESSAGE = "not served: Janus routes the media of a room by itself"
MAX_STREAMS_PER_REGISTRATION = 16


def status_for(exc: Exception) -> EdgeStatus:
    """The status code, the caller-safe message and the outcome for a failed RPC."""
    if isinstance(exc, InvalidMhRequest):
        return EdgeStatus(grpc.StatusCode.INVALID_ARGUMENT, str(exc), "invalid")
    if isinstance(exc, MhAtCapacity):
        return EdgeStatus(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), "at_capacity")
    if isinstance(exc, MediaUnavailable):
        return EdgeStatus(grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MESSAGE, "unavailable")
    return EdgeStatus(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "error")


GRPC_INTERNAL_ERRORS = Counter(
    "mh_grpc_internal_errors_total",
    "gRPC calls answered INTERNAL (an unexpected exception, logged with its traceback), by method.",
    ["method"],
)
for _method in ("Register", "EndMeeting", "MuteParticipant"):
    GRPC_INTERNAL_ERRORS.labels(_method)


def _count_internal(rpc: str) -> None:
    GRPC_INTERNAL_ERRORS.labels(rpc).inc()


# Every RPC: errors become a status; the unexpected ones are logged with their traceback and
# counted; a refusal is logged with the exception (Janus's answer stays in the log, never in
# the status).
_edge = grpc_edge(status_for, log=log, on_internal=_count_internal)


class MediaHandlerServicer(pb_grpc.MediaHandlerServiceServicer):
    def __init__(self, rooms: MediaRooms, media_url: Callable[[], str]) -> None:
        """`media_url()`: the client-facing Janus WebSocket URL."""
        self._rooms = rooms
        self._media_url = media_url

    @_edge
    async def Register(
        self, request: pb.RegisterParticipant, context: Context
    ) -> pb.RegisterParticipantResponse:
        if len(request.streams) > MAX_STREAMS_PER_REGISTRATION:
            raise InvalidMhRequest(
                "streams", f"at most {MAX_STREAMS_PER_REGISTRATION} streams are allowed"
            )
        registration = await self._rooms.register(
            request.meeting_id, request.participant_id, keep_token=request.keep_token
        )
        return pb.RegisterParticipantResponse(
            connection_token=registration.token,
            media_handler_url=self._media_url(),
            room=str(registration.room),
        )

    async def RouteMedia(
        self, request: pb.RouteMediaCommand, context: Context
    ) -> pb.RouteMediaResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_SERVED_MESSAGE)

    async def StreamTelemetry(
        self, request_iterator: AsyncIterator[pb.MediaTelemetry], context: Context
    ) -> pb.TelemetryAck:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_SERVED_MESSAGE)

    @_edge
    async def EndMeeting(
        self, request: pb.EndMediaMeetingRequest, context: Context
    ) -> pb.EndMediaMeetingResponse:
        ended = await self._rooms.end(request.meeting_id, request.participant_id)
        return pb.EndMediaMeetingResponse(ended=ended)

    @_edge
    async def MuteParticipant(
        self, request: pb.MuteMediaRequest, context: Context
    ) -> pb.MuteMediaResponse:
        # Shielded: a caller's deadline that passes mid-way must not leave a mute half applied
        # (or an unmute half lifted, which the sweep would not finish).
        streams = await asyncio.shield(
            self._rooms.mute(request.meeting_id, request.participant_id, request.muted)
        )
        return pb.MuteMediaResponse(streams=streams)
