"""What the shared health states (`HealthStatus` on the wire) mean for placement."""

from __future__ import annotations

__all__ = ["PLACEABLE_HEALTH"]

PLACEABLE_HEALTH: frozenset[str] = frozenset({"healthy", "degraded"})
"""Health values (lower-case wire names) of an MC or MH that may take new work: a degraded one
is loaded but still placeable; pending, unhealthy and draining ones are not."""
