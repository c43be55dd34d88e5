"""The health an MC reports to the GC, derived by one pure function (docs/reference.md)."""

from __future__ import annotations

from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = ["DEGRADED_FRACTION", "derive_health"]

# At or above this share of either limit the MC reports DEGRADED: still placeable, but the GC
# should prefer others, and an operator should look.
DEGRADED_FRACTION = 0.8


def derive_health(
    *,
    draining: bool,
    redis_ok: bool,
    current_meetings: int,
    max_meetings: int,
    current_participants: int,
    max_participants: int,
    task_crashed: bool = False,
) -> pb.HealthStatus.ValueType:
    """DRAINING, then UNHEALTHY (Redis unreachable, or a background task crashed — the MC is
    not ready then either), then DEGRADED (≥ 80 % of either limit,
    a limit of 0 counting as full), else HEALTHY."""
    if draining:
        return pb.DRAINING
    if not redis_ok or task_crashed:
        return pb.UNHEALTHY
    for current, limit in (
        (current_meetings, max_meetings),
        (current_participants, max_participants),
    ):
        if limit <= 0 or current >= DEGRADED_FRACTION * limit:
            return pb.DEGRADED
    return pb.HEALTHY
