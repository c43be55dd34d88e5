"""The simulated things: an MC (its true state and the GC's view of it), an MH, a meeting.

Plain mutable records with slots; `darktower.sim.world` owns every rule that changes them.
"""

from __future__ import annotations

import math

from redis.crc import key_slot

__all__ = ["NEVER", "Meeting", "SimMc", "SimMh"]

NEVER = -math.inf
"""The time of an event that never happened (an MC that never beat)."""

_CLUSTER_SLOTS = 16384


class SimMc:
    """One MC: its true state, and the GC's view of it (`rep_*`, `since`, `health`)."""

    __slots__ = (
        "alive",
        "anchor",
        "beat_pending",
        "crash_kind",
        "health",
        "hosted",
        "id",
        "idx",
        "in_index",
        "incarnation",
        "known",
        "last_beat",
        "meetings",
        "participants",
        "registered_at",
        "registering",
        "rep_meetings",
        "rep_participants",
        "since",
        "version",
        "zone",
    )

    def __init__(self, idx: int, zone: int) -> None:
        self.idx = idx
        self.id = f"mc-{idx + 1}"
        self.zone = zone
        self.alive = True
        self.crash_kind = ""
        self.known = False
        self.health = "pending"
        self.hosted = 0
        self.participants = 0
        self.rep_meetings = 0
        self.rep_participants = 0
        self.since = 0
        self.anchor = 0.0
        self.last_beat = NEVER
        self.registered_at = 0.0
        self.version = 0
        self.in_index = False
        self.beat_pending = False
        self.registering = False
        self.incarnation = 0
        self.meetings: set[int] = set()


class SimMh:
    """One MH: its zone, whether it is alive, and the streams of the meetings it carries."""

    __slots__ = ("alive", "died_at", "id", "streams", "zone")

    def __init__(self, idx: int, zone: int) -> None:
        self.id = f"mh-{idx + 1}"
        self.zone = zone
        self.alive = True
        self.died_at = 0.0
        self.streams = 0


class Meeting:
    """One meeting: where it really is (`mc`) and what the GC's store says (`gc_mc`)."""

    __slots__ = (
        "answer",
        "attempts",
        "burst",
        "call_latency",
        "ended",
        "epoch",
        "gc_mc",
        "id",
        "lost_at",
        "mc",
        "mh",
        "placed_at",
        "sent_at",
        "shard",
        "size",
        "started",
        "unreachable",
    )

    def __init__(self, num: int, size: int, shards: int, started: float) -> None:
        self.id = num
        self.size = size
        slot = key_slot(f"meeting:{{m-{num}}}:gen".encode())
        self.shard = slot * shards // _CLUSTER_SLOTS
        self.mc = -1
        self.gc_mc = -1
        self.epoch = -1
        self.mh = -1
        self.placed_at = 0.0
        self.ended = False
        self.lost_at: float | None = None
        self.started = started
        self.sent_at = started
        self.answer = -1
        self.attempts = 0
        self.unreachable = -1
        self.call_latency = 0.0
        self.burst = False
