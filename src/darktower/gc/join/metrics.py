"""Prometheus metrics of placement (default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = [
    "EVIDENCE_CHECKS",
    "EVIDENCE_MARKS",
    "EVIDENCE_REPORTS",
    "MC_CALLS",
    "MC_CALL_LATENCY",
    "PLACEMENTS",
]

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
EVIDENCE_REPORTS = Counter(
    "gc_evidence_reports_total",
    "Joins naming an MC the client could not reach (`unreachable_mc_id`), by what the GC made "
    "of it: not_hosting (the meeting is not live on that MC: ignored), already_unhealthy, "
    "alive (checked: it answers, the meeting stays), down (checked: it does not answer).",
    ["outcome"],
)
for _outcome in ("not_hosting", "already_unhealthy", "alive", "down"):
    EVIDENCE_REPORTS.labels(_outcome)
EVIDENCE_CHECKS = Counter(
    "gc_evidence_checks_total",
    "Checks of an MC the GC made on clients' evidence (at most one per MC at a time and per "
    "cache period, however many clients report it), by result: alive or down.",
    ["result"],
)
for _result in ("alive", "down"):
    EVIDENCE_CHECKS.labels(_result)
EVIDENCE_MARKS = Counter(
    "gc_evidence_marks_total",
    "MCs marked UNHEALTHY because the GC's own check, on a client's evidence, found them down.",
)
