"""`UncalledMcRpcs`: a base for test MC servicers that implement only the RPCs their tests
call; the MC RPCs added later (the meeting API, an operator's drain) fail loudly if called."""

from __future__ import annotations

from typing import Any

import grpc.aio

from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["UncalledMcRpcs"]

Context = grpc.aio.ServicerContext[Any, Any]


class UncalledMcRpcs(pb_grpc.MeetingControllerServiceServicer):
    async def EndMeeting(
        self, request: pb.MeetingCommandRequest, context: Context
    ) -> pb.MeetingCommandResponse:
        raise AssertionError("not called in these tests")

    async def RemoveParticipant(
        self, request: pb.MeetingCommandRequest, context: Context
    ) -> pb.MeetingCommandResponse:
        raise AssertionError("not called in these tests")

    async def MuteParticipant(
        self, request: pb.MeetingCommandRequest, context: Context
    ) -> pb.MeetingCommandResponse:
        raise AssertionError("not called in these tests")

    async def GetMeetingRoster(
        self, request: pb.MeetingCommandRequest, context: Context
    ) -> pb.MeetingRosterResponse:
        raise AssertionError("not called in these tests")

    async def DrainController(
        self, request: pb.DrainControllerRequest, context: Context
    ) -> pb.DrainControllerResponse:
        raise AssertionError("not called in these tests")
