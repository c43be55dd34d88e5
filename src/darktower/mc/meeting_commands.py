"""The GC's commands on a hosted meeting (the meeting API): end it, remove or mute an identity,
read its roster and settings.

Each finds the meeting among the controller's hosted ones; a meeting this MC does not host
(never did, ended, fenced out) answers `NOT_HOSTED` and changes nothing. The commands that
change the meeting go through its mailbox, one at a time with everything else the meeting
does; the roster is read between two messages (same event loop). A store failure raises
`StateUnavailable` (the gRPC edge answers UNAVAILABLE); a meeting lost while the command was
queued answers `NOT_HOSTED`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from darktower.actors import ActorStopped
from darktower.common.meeting_settings import MeetingSettings
from darktower.fencing import FencedOut, FencingError
from darktower.mc.controller import MeetingControllerActor
from darktower.mc.errors import StateUnavailable
from darktower.mc.meeting import EndMeeting, MeetingActor
from darktower.mc.meeting.messages import MeetingMessage, MuteIdentity, RemoveIdentity
from darktower.mc.roster import Member

__all__ = ["ENDED_BY_API", "NOT_HOSTED", "MeetingCommands", "RosterView"]

# How long a roster read waits for a meeting that is starting (its roster loading from Redis).
START_WAIT_SECONDS = 5.0

# The end reason of a meeting ended through the API (NotifyMeetingEnded, metrics, logs).
ENDED_BY_API = "ended_by_api"


@dataclass(frozen=True, slots=True)
class _NotHosted:
    pass


NOT_HOSTED = _NotHosted()


@dataclass(frozen=True, slots=True)
class RosterView:
    members: tuple[Member, ...]
    host_id: str | None
    settings: MeetingSettings
    generation: int


class MeetingCommands:
    def __init__(self, controller: MeetingControllerActor) -> None:
        self._controller = controller

    def _hosted(self, meeting_id: str) -> MeetingActor | None:
        meeting = self._controller.meetings.get(meeting_id)
        return None if meeting is None or meeting.lost else meeting

    async def _ask(self, meeting_id: str, message: MeetingMessage) -> int | _NotHosted:
        meeting = self._hosted(meeting_id)
        if meeting is None:
            return NOT_HOSTED
        try:
            answer = await meeting.ask(message)
        except ActorStopped:
            return NOT_HOSTED
        if isinstance(answer, FencedOut):
            return NOT_HOSTED
        if isinstance(answer, FencingError):
            raise StateUnavailable() from answer
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, int) else 0

    async def end(self, meeting_id: str) -> int | _NotHosted:
        """End the meeting; the number of participants it had."""
        meeting = self._hosted(meeting_id)
        count = 0 if meeting is None else len(meeting.roster)
        answer = await self._ask(meeting_id, EndMeeting(ENDED_BY_API))
        return answer if isinstance(answer, _NotHosted) else count

    async def remove(self, meeting_id: str, identity: str) -> int | _NotHosted:
        return await self._ask(meeting_id, RemoveIdentity(identity))

    async def mute(self, meeting_id: str, identity: str, muted: bool) -> int | _NotHosted:
        return await self._ask(meeting_id, MuteIdentity(identity, muted))

    async def roster(self, meeting_id: str) -> RosterView | _NotHosted:
        """The roster and settings once the meeting has started (loaded its roster and
        decided its settings), waiting at most `START_WAIT_SECONDS` for that."""
        meeting = self._hosted(meeting_id)
        if meeting is None:
            return NOT_HOSTED
        try:
            await asyncio.wait_for(meeting.started.wait(), START_WAIT_SECONDS)
        except TimeoutError:
            raise StateUnavailable() from None  # its roster still loading from Redis
        if meeting.lost:
            return NOT_HOSTED
        roster = meeting.roster
        members = sorted(roster.members.values(), key=lambda m: (m.joined_at_ms, m.participant_id))
        return RosterView(
            members=tuple(members),
            host_id=roster.host_id,
            settings=meeting.settings,
            generation=meeting.lease.generation,
        )
