"""Prometheus metrics of placement (default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["MC_CALLS", "MC_CALL_LATENCY", "PLACEMENTS"]

PLACEMENTS = Counter(
    "gc_placements_total",
    "Join answers by result (reused/placed/replaced/failed) and reason.",
    ["result", "reason"],
)
MC_CALLS = Counter(
    "gc_mc_calls_total",
    "AssignMeetingWithMh calls to MCs by outcome (accepted or the refusal reason).",
    ["outcome"],
)
MC_CALL_LATENCY = Histogram(
    "gc_mc_call_latency_seconds",
    "Round trip of AssignMeetingWithMh to an MC.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# The known answers start at 0, so `rate()` and the alerts see samples before the first join.
for _result, _reasons in (
    ("reused", ("",)),
    ("placed", ("",)),
    (
        "failed",
        (
            "none_registered",
            "all_draining",
            "all_at_capacity",
            "none_healthy",
            "all_refused",
            "no_media_handler",
            "claim_lost",
        ),
    ),
):
    for _reason in _reasons:
        PLACEMENTS.labels(_result, _reason)
for _outcome in ("accepted", "at_capacity", "draining", "unhealthy", "timeout", "unavailable"):
    MC_CALLS.labels(_outcome)
