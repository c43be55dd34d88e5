"""The MC's side of webhooks: record each event durably, where it happens, before delivery.

`EventOutbox` is called by a meeting right after the state change it reports was written
(fenced) to Redis: the meeting's start or takeover, a participant joining or leaving, the
meeting's end. One script (`lua/emit.lua`) assigns the meeting's next `seq` and appends the
event to its partition's stream in one step; the GCs deliver from there
(`darktower.webhooks.delivery`). The script also fences the events: an MC that lost the
meeting (an older generation than the one that last started or took it over) records
nothing, and a meeting taken over at a higher generation is told as `meeting_moved` naming
the previous MC.

Recording never fails a meeting: a Redis error is logged (its type only, never the URL) and
counted (`mc_webhook_events_total{type,result="failed"}`), and that event is lost — the state
change itself went through. `result="stale"` counts events refused because the MC had lost
the meeting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Final, Protocol

from prometheus_client import Counter
from redis.exceptions import RedisError

from darktower.common.clock import now_ms
from darktower.fencing import Lease
from darktower.runtime.redis_coalesce import CoalescedScript
from darktower.runtime.redis_connect import RedisLike
from darktower.webhooks.events import (
    EventParticipant,
    EventType,
    body_without_seq,
    new_event_id,
)
from darktower.webhooks.keys import COUNTER_TTL_SECONDS, meeting_key, partition_of, stream_key

__all__ = [
    "DEFAULT_RETENTION_SECONDS",
    "EVENTS",
    "EventOutbox",
    "EventSink",
    "Recorded",
]

log = logging.getLogger(__name__)

DEFAULT_RETENTION_SECONDS: Final = 48 * 3600
"""Stream entries older than this are trimmed, delivered or not (retries last at least 24 h)."""

EVENTS = Counter(
    "mc_webhook_events_total",
    "Webhook events recorded in the outbox by type and result (emitted, stale: the MC had lost "
    "the meeting, failed: Redis did not answer; the event is lost).",
    ["type", "result"],
)
# Every series, made at import (dashboards see zeros) and kept: one lookup per event.
_SERIES = {
    (_type.value, _result): EVENTS.labels(_type.value, _result)
    for _type in EventType
    for _result in ("emitted", "stale", "failed")
}


def _count(event_type: str, result: str) -> None:
    series = _SERIES.get((event_type, result))
    (series if series is not None else EVENTS.labels(event_type, result)).inc()


@dataclass(frozen=True, slots=True)
class Recorded:
    seq: int
    entry_id: str
    type: str


class EventSink(Protocol):
    """What a meeting calls; every method returns None when nothing was recorded."""

    async def meeting_acquired(self, lease: Lease) -> Recorded | None: ...

    async def participant_joined(
        self, lease: Lease, participant: EventParticipant
    ) -> Recorded | None: ...

    async def participant_left(
        self, lease: Lease, participant: EventParticipant, reason: str
    ) -> Recorded | None: ...

    async def meeting_ended(self, lease: Lease, reason: str) -> Recorded | None: ...


def _source() -> str:
    return (resources.files("darktower.webhooks") / "lua" / "emit.lua").read_text("utf-8")


class EventOutbox:
    """Records events in Redis (see the module docstring); `retention_seconds` trims."""

    def __init__(
        self, client: RedisLike, *, retention_seconds: float = DEFAULT_RETENTION_SECONDS
    ) -> None:
        # The events of a burst of meeting starts go to Redis together.
        self._script = CoalescedScript(client, client.register_script(_source()))
        self._retention_ms = int(retention_seconds * 1000)

    def __repr__(self) -> str:
        return "EventOutbox()"

    async def meeting_acquired(self, lease: Lease) -> Recorded | None:
        return await self._emit("acquired", lease, EventType.MEETING_STARTED)

    async def participant_joined(
        self, lease: Lease, participant: EventParticipant
    ) -> Recorded | None:
        return await self._emit(
            "event", lease, EventType.PARTICIPANT_JOINED, participant=participant
        )

    async def participant_left(
        self, lease: Lease, participant: EventParticipant, reason: str
    ) -> Recorded | None:
        return await self._emit(
            "event", lease, EventType.PARTICIPANT_LEFT, participant=participant, reason=reason
        )

    async def meeting_ended(self, lease: Lease, reason: str) -> Recorded | None:
        return await self._emit("ended", lease, EventType.MEETING_ENDED, reason=reason)

    async def _emit(
        self,
        kind: str,
        lease: Lease,
        event_type: EventType,
        *,
        participant: EventParticipant | None = None,
        reason: str | None = None,
    ) -> Recorded | None:
        meeting_id = lease.meeting_id
        partition = partition_of(meeting_id)
        now = now_ms()
        body = body_without_seq(
            event_id=new_event_id(),
            created_at_ms=now,
            meeting_id=meeting_id,
            mc_id=lease.owner,
            generation=lease.generation,
            participant=participant,
            reason=reason,
        )
        args = [
            kind,
            str(lease.generation),
            lease.owner,
            body,
            event_type.value,
            str(max(0, now - self._retention_ms)),
            str(COUNTER_TTL_SECONDS),
        ]
        keys = [stream_key(partition), meeting_key(partition, meeting_id)]
        try:
            reply = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            _count(event_type.value, "failed")
            # The type only: redis-py's connection errors name host and port.
            log.warning(
                "meeting %s: webhook event %s not recorded (%s)",
                meeting_id,
                event_type.value,
                type(exc).__name__,
            )
            return None
        status = _text(reply[0])
        if status != "OK":
            if status == "STALE":
                _count(event_type.value, "stale")
                log.info(
                    "meeting %s: %s not recorded, generation %d is not current",
                    meeting_id,
                    event_type.value,
                    lease.generation,
                )
            return None
        recorded = Recorded(seq=int(reply[1]), entry_id=_text(reply[2]), type=_text(reply[3]))
        _count(recorded.type, "emitted")
        return recorded


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
