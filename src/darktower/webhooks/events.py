"""The webhook events: their types, what each carries, and their JSON body.

An event's body is a JSON object:

    {"seq": 7, "type": "participant_left", "previous_mc_id": "mc-1" (meeting_moved only),
     "id": "evt_3f0c…", "created_at": "2026-11-30T12:00:00.123Z", "meeting_id": "standup",
     "mc_id": "mc-2", "generation": 1764000000000001,
     "participant": {"participant_id": "p-…", "identity": "ada", "name": "Ada", "role": "host"},
     "reason": "voluntary"}

`seq` counts the meeting's events (1, 2, 3, … per meeting id, assigned where the event is
recorded); `id` is unique per event (dedupe by it: delivery is at least once); `participant`
only for participant events; `reason` for participant_left (voluntary, timeout, removed,
meeting_ended) and meeting_ended (last_participant_left, empty_timeout, drained, …).
`body_without_seq` builds everything but `seq`, `type` and `previous_mc_id`, which
`emit.lua` adds when it records the event.
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

__all__ = ["EventParticipant", "EventType", "body_without_seq", "new_event_id"]


class EventType(StrEnum):
    MEETING_STARTED = "meeting_started"
    MEETING_ENDED = "meeting_ended"
    MEETING_MOVED = "meeting_moved"
    PARTICIPANT_JOINED = "participant_joined"
    PARTICIPANT_LEFT = "participant_left"


@dataclass(frozen=True, slots=True)
class EventParticipant:
    participant_id: str
    identity: str
    name: str
    role: str

    def as_json(self) -> dict[str, str]:
        return {
            "participant_id": self.participant_id,
            "identity": self.identity,
            "name": self.name,
            "role": self.role,
        }


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


@functools.lru_cache(maxsize=4)
def _iso_second(second: int) -> str:
    """`2026-11-30T12:00:00.` of a Unix second: the events of one second share it."""
    return datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def _iso(ms: int) -> str:
    return f"{_iso_second(ms // 1000)}{ms % 1000:03d}Z"


def body_without_seq(
    *,
    event_id: str,
    created_at_ms: int,
    meeting_id: str,
    mc_id: str,
    generation: int,
    participant: EventParticipant | None = None,
    reason: str | None = None,
) -> str:
    """The event's JSON object (compact, UTF-8 safe) without `seq`, `type`, `previous_mc_id`."""
    data: dict[str, object] = {
        "id": event_id,
        "created_at": _iso(created_at_ms),
        "meeting_id": meeting_id,
        "mc_id": mc_id,
        "generation": generation,
    }
    if participant is not None:
        data["participant"] = participant.as_json()
    if reason is not None:
        data["reason"] = reason
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True)
