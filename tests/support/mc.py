"""An in-process MC as the tests hold it (`RunningMc`, made by the `start_mc` fixture) and the
assignment request a GC would send."""

from __future__ import annotations

from dataclasses import dataclass

from darktower.mc.server import McApp
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["RunningMc", "assign_request"]


@dataclass
class RunningMc:
    app: McApp
    stub: pb_grpc.MeetingControllerServiceAsyncStub
    metadata: tuple[tuple[str, str], ...]
    health_url: str

    async def assign(
        self, meeting_id: str, *, mhs: int = 1, timeout: float = 10
    ) -> pb.AssignMeetingWithMhResponse:
        return await self.stub.AssignMeetingWithMh(
            assign_request(meeting_id, mhs=mhs), metadata=self.metadata, timeout=timeout
        )


def assign_request(meeting_id: str, *, mhs: int = 1) -> pb.AssignMeetingWithMhRequest:
    """An AssignMeetingWithMh for `meeting_id` from "gc-test" with `mhs` MHs (the first one
    primary)."""
    return pb.AssignMeetingWithMhRequest(
        meeting_id=meeting_id,
        mh_assignments=[
            pb.MhAssignment(
                mh_id=f"mh-{i}",
                webtransport_endpoint=f"https://mh-{i}.example:4433",
                role=pb.MH_ROLE_PRIMARY if i == 0 else pb.MH_ROLE_BACKUP,
            )
            for i in range(mhs)
        ],
        requesting_gc_id="gc-test",
    )
