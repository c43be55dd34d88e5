"""MeetingEvents: what one hosted meeting tells the webhook outbox, and when.

The meeting calls it right after the state change it reports has been written (fenced):
`started` once its actor has taken the meeting (a first start, or a takeover: the outbox
tells which, `meeting_started` or `meeting_moved`), `joined` after a new participant's seat
is written, `left` after a departure for good is written, `ended` after the fenced delete —
preceded by a `participant_left` (`meeting_ended`) for each participant still in the roster.
A resumed session or a reclaimed seat is not a new participant and tells nothing. Recording
never raises (`darktower.webhooks.outbox`); without an outbox every call does nothing.
"""

from __future__ import annotations

import asyncio

from darktower.fencing import Lease
from darktower.mc.roster import Member, Roster
from darktower.webhooks.events import EventParticipant
from darktower.webhooks.outbox import EventSink

__all__ = ["MeetingEvents"]


def _participant(member: Member) -> EventParticipant:
    return EventParticipant(
        participant_id=member.participant_id,
        identity=member.user_id,
        name=member.display_name,
        role=member.role,
    )


class MeetingEvents:
    __slots__ = ("_lease", "_sink")

    def __init__(self, sink: EventSink | None, lease: Lease) -> None:
        self._sink = sink
        self._lease = lease

    async def started(self) -> None:
        if self._sink is not None:
            await self._sink.meeting_acquired(self._lease)

    async def joined(self, *members: Member) -> None:
        """New participants (in the order they joined): recorded together, so that the
        outbox sends their events to Redis in one round trip (`webhooks.coalesce`)."""
        if self._sink is not None:
            sink, lease = self._sink, self._lease
            await asyncio.gather(
                *(sink.participant_joined(lease, _participant(m)) for m in members)
            )

    async def left(self, member: Member, reason: str) -> None:
        if self._sink is not None:
            await self._sink.participant_left(self._lease, _participant(member), reason)

    async def ended(self, roster: Roster, reason: str) -> None:
        if self._sink is None:
            return
        for member in list(roster.members.values()):
            await self._sink.participant_left(self._lease, _participant(member), "meeting_ended")
        await self._sink.meeting_ended(self._lease, reason)
