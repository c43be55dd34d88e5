"""MeetingLimits: the per-meeting limits a MeetingActor enforces (from `MC_*` settings).

empty_timeout_seconds         no connected participant this long (including a meeting
                              nobody ever joined): the meeting ends, reason `empty_timeout`
max_participants              roster size; a new participant beyond it is refused
                              `meeting_full` (reconnects and reclaimed seats are not new)
coalesce_seconds              a participant's self_mute flips within this window become one
                              fenced write and one broadcast, the last value winning
roster_batch_seconds          roster changes within this window reach `roster_delta`
                              clients as one frame (`fanout.py`); 0: each at once
"""

from __future__ import annotations

from dataclasses import dataclass

from darktower.mc.meeting.join import JoinRefusal
from darktower.signaling.protocol import ErrorCode

__all__ = ["EMPTY_TIMEOUT", "MEETING_FULL", "MeetingLimits"]

# The end reason of a meeting that had nobody connected for empty_timeout_seconds.
EMPTY_TIMEOUT = "empty_timeout"


MEETING_FULL = JoinRefusal(ErrorCode.MEETING_FULL, "the meeting is full", "meeting_full")


@dataclass(frozen=True, slots=True)
class MeetingLimits:
    empty_timeout_seconds: float = 300.0
    max_participants: int = 1000
    coalesce_seconds: float = 0.05
    roster_batch_seconds: float = 0.05
