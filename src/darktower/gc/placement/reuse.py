"""Reuse or move: may a meeting stay on the MC its live assignment names? (docs/reference.md)

A pure function over plain snapshots. The join use case (`darktower.gc.join`) reads the live
assignment and the MC's registry row, calls `decide_reuse` with the staleness threshold and its
clock's now, and acts on the answer:

* `PlaceNew` — no live assignment: claim the meeting and place it;
* `Reuse` — the MC is placeable (healthy or degraded), heard from within the threshold (an age
  exactly at it is still fresh) and has not registered again since the meeting was placed on it;
* `Move(reason)` — end the assignment and place the meeting anew. The reason, checked in this
  order: ``gone`` (no longer registered), ``restarted`` (registered after the meeting was placed:
  a new process under the same id that holds none of its predecessor's meetings), ``stale``
  (placeable health but silent past the threshold, not yet swept), else the MC's health itself
  (``unhealthy``, ``draining``; ``pending`` in principle, though a re-registration that resets
  health also makes the MC ``restarted``).

`describe_move` words a move for the log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from darktower.common.health import PLACEABLE_HEALTH

__all__ = [
    "ExistingAssignment",
    "McRecord",
    "Move",
    "PlaceNew",
    "Reuse",
    "ReuseDecision",
    "decide_reuse",
    "describe_move",
]


@dataclass(frozen=True, slots=True)
class ExistingAssignment:
    """The meeting's live (active) assignment: on which MC, placed when."""

    mc_id: str
    placed_at: datetime  # when the MC accepted it (or, lacking that, when it was claimed)


@dataclass(frozen=True, slots=True)
class McRecord:
    """What the registry holds about that MC."""

    health: str  # lower-case wire name: "healthy", "degraded", "unhealthy", "draining", ...
    last_heartbeat_at: datetime | None
    registered_at: datetime


@dataclass(frozen=True, slots=True)
class Reuse:
    """Answer the MC of the live assignment as it is."""


@dataclass(frozen=True, slots=True)
class Move:
    """Take the meeting off `previous_mc_id` for `reason` and place it anew."""

    previous_mc_id: str
    reason: str  # "gone", "restarted", "stale", or the MC's health ("unhealthy", "draining")


@dataclass(frozen=True, slots=True)
class PlaceNew:
    """No live assignment: place the meeting."""


ReuseDecision = Reuse | Move | PlaceNew


def decide_reuse(
    assignment: ExistingAssignment | None,
    mc: McRecord | None,
    *,
    staleness_s: float,
    now: datetime,
) -> ReuseDecision:
    """Reuse, move (with the reason) or place anew; see the module docstring for the rules."""
    if assignment is None:
        return PlaceNew()
    if mc is None:
        return Move(assignment.mc_id, "gone")
    if mc.registered_at > assignment.placed_at:
        return Move(assignment.mc_id, "restarted")
    if mc.health not in PLACEABLE_HEALTH:
        return Move(assignment.mc_id, mc.health)
    if mc.last_heartbeat_at is None or (now - mc.last_heartbeat_at).total_seconds() > staleness_s:
        return Move(assignment.mc_id, "stale")
    return Reuse()


def describe_move(move: Move, mc: McRecord | None, *, staleness_s: float, now: datetime) -> str:
    """A move's reason as the log says it: a stale MC with how long it has been silent."""
    if move.reason == "stale" and mc is not None:
        silent = (
            "never heard from"
            if mc.last_heartbeat_at is None
            else f"silent for {max(0.0, (now - mc.last_heartbeat_at).total_seconds()):.1f} s"
        )
        return f"stale ({silent}, over the {staleness_s:g} s threshold)"
    if move.reason == "gone":
        return "gone (no longer registered)"
    if move.reason == "restarted":
        return "restarted since the meeting was placed (it no longer holds it)"
    return move.reason
