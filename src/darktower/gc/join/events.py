"""The recent-placements log's lines (`GET /v1/placements/recent`, the dashboard)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["PlacementEvent"]


@dataclass(frozen=True, slots=True)
class PlacementEvent:
    """One line of the recent-placements log (for operators and the dashboard)."""

    at: datetime
    meeting_id: str
    mc_id: str | None
    outcome: str  # "accepted", "reused", "moved", or the refusal / failure reason
    detail: str = ""
    # On "moved" (the meeting left `mc_id`) and on the "accepted" that placed it anew: the
    # MC it left and why ("unhealthy", "draining", "stale", "gone", "restarted").
    previous_mc_id: str | None = None
    move_reason: str | None = None
