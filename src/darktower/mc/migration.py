"""Live migration of a draining MC's meetings (README "Rolling upgrades").

When the MC drains with a GC to ask, `Migrator.migrate_all` moves every hosted meeting to
another MC before the drain's deadline, `concurrency` meetings at a time. For each meeting:

1. `Freeze` it (`darktower.mc.meeting.handoff`): it writes nothing from now on, and answers
   its connected participants;
2. ask the GC, `MigrateMeeting{controller_id, meeting_id, participants}`: the GC places the
   meeting with its normal placement (never on this MC), the MC it chose takes it over at a
   higher generation (roster, host, settings and MH list read from Redis), and the GC answers
   that MC's signaling URL and one fresh join token per participant;
3. placed: `HandOff` — each client gets a `redirect` and the actor stops without ending the
   meeting (no fenced delete, no NotifyMeetingEnded). Not placed (no MC with room, the GC
   unreachable): `Thaw`, and try again `retry_seconds` later, until `until`.

What is still hosted at `until` is the drain's to end (`EndAll`, reported to the GC). An
answer lost on the way (a timeout after the GC placed it) is safe: the new owner's generation
fences this MC's next write out, and its clients are told `moved` and ask the GC again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from darktower.actors import ActorStopped
from darktower.mc.controller import MeetingControllerActor
from darktower.mc.meeting import MeetingActor
from darktower.mc.meeting.handoff import Traveller
from darktower.mc.meeting.messages import Freeze, HandOff, Thaw
from darktower.mc.metrics import MIGRATIONS
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = ["DEFAULT_CONCURRENCY", "DrainReport", "MigrationGc", "Migrator"]

log = logging.getLogger(__name__)

# Meetings migrated at once: each is one GC call (which calls the target MC).
DEFAULT_CONCURRENCY = 8
# Wait between two tries of a meeting nobody could take.
DEFAULT_RETRY_SECONDS = 1.0
# Longest one MigrateMeeting call may take (the GC's own MC call timeout is 10 s).
CALL_TIMEOUT_SECONDS = 10.0


class MigrationGc(Protocol):
    """The GC call migration needs (`darktower.mc.gc_client.GcClient`)."""

    async def migrate_meeting(
        self, request: pb.MigrateMeetingRequest, *, timeout: float | None = None
    ) -> pb.MigrateMeetingResponse: ...


@dataclass(slots=True)
class DrainReport:
    """What became of the meetings a drain found: migrated to another MC, ended at the
    deadline (with the last reason none took it), or failed (neither: lost on the way)."""

    migrated: list[str] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    redirected_clients: int = 0
    # The longest a migrated meeting was frozen (Freeze to the redirects queued): its clients'
    # frames were not acted on meanwhile.
    longest_handoff_s: float = 0.0

    def summary(self) -> str:
        return (
            f"{len(self.migrated)} migrated, {len(self.ended)} ended, {len(self.failed)} failed"
            f" ({self.redirected_clients} clients redirected, longest hand-off"
            f" {self.longest_handoff_s * 1000:.0f} ms)"
        )


class Migrator:
    def __init__(
        self,
        controller: MeetingControllerActor,
        gc: MigrationGc,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self._controller = controller
        self._gc = gc
        self._concurrency = max(1, concurrency)
        self._retry_seconds = retry_seconds
        # Why each meeting not (yet) migrated was not: its last try's reason.
        self.not_placed: dict[str, str] = {}

    async def migrate_all(self, until: float) -> DrainReport:
        """Migrate every hosted meeting, trying each until `until` (time.monotonic()); the
        meetings still hosted then are left to the caller (see `not_placed` for why)."""
        report = DrainReport()
        meetings = [m for m in self._controller.meetings.values() if not m.lost]
        if not meetings:
            return report
        log.info("drain: migrating %d meetings", len(meetings))
        gate = asyncio.Semaphore(self._concurrency)

        async def one(meeting: MeetingActor) -> None:
            async with gate:
                await self._migrate(meeting, until, report)

        await asyncio.gather(*(one(m) for m in meetings))
        return report

    async def _migrate(self, meeting: MeetingActor, until: float, report: DrainReport) -> None:
        meeting_id = meeting.meeting_id
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            frozen_at = time.monotonic()
            try:
                travellers: list[Traveller] = await meeting.ask(Freeze())
            except ActorStopped:
                return  # ended by itself meanwhile (nothing to migrate)
            if not isinstance(travellers, list):  # lost before the freeze (fenced out, ended)
                return
            reason = await self._try(meeting, travellers, left, report)
            if reason is None:
                self.not_placed.pop(meeting_id, None)
                handoff = time.monotonic() - frozen_at
                report.longest_handoff_s = max(report.longest_handoff_s, handoff)
                return
            self.not_placed[meeting_id] = reason
            try:
                await meeting.ask(Thaw())
            except ActorStopped:
                return
            log.info("meeting %s not migrated (%s): retrying", meeting_id, reason)
            await asyncio.sleep(min(self._retry_seconds, max(0.0, until - time.monotonic())))

    async def _try(
        self,
        meeting: MeetingActor,
        travellers: list[Traveller],
        left: float,
        report: DrainReport,
    ) -> str | None:
        """One try: None when the meeting was handed off, else why not."""
        request = pb.MigrateMeetingRequest(
            controller_id=meeting.lease.owner,
            meeting_id=meeting.meeting_id,
            participants=[
                pb.MigrationParticipant(user_id=t.user_id, display_name=t.display_name, role=t.role)
                for t in travellers
            ],
        )
        try:
            answer = await self._gc.migrate_meeting(
                request, timeout=min(CALL_TIMEOUT_SECONDS, left)
            )
        except grpc.aio.AioRpcError as exc:
            MIGRATIONS.labels("gc_error").inc()
            return f"GC: {exc.code().name}"
        if not answer.placed:
            MIGRATIONS.labels("not_placed").inc()
            return answer.reason or "not placed"
        if len(answer.join_tokens) != len(travellers):
            MIGRATIONS.labels("gc_error").inc()
            return "GC answered a wrong number of join tokens"
        tokens = tuple(
            (t.participant_id, token)
            for t, token in zip(travellers, answer.join_tokens, strict=True)
        )
        try:
            redirected = await meeting.ask(HandOff(answer.signaling_url, tokens, answer.mc_id))
        except ActorStopped:
            redirected = 0
        MIGRATIONS.labels("migrated").inc()
        report.migrated.append(meeting.meeting_id)
        report.redirected_clients += redirected if isinstance(redirected, int) else 0
        log.info(
            "meeting %s migrated to %s (%d clients redirected)",
            meeting.meeting_id,
            answer.mc_id,
            redirected,
        )
        return None
