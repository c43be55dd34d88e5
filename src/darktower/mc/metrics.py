"""Prometheus metrics of the Meeting Controller (default registry).

Also exported, from their own subsystems: `mc_redis_latency_seconds` (fencing),
`mc_actor_panic_total` / `mc_actor_mailbox_depth` (actors), `service_auth_failures_total` (auth).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ASSIGNMENTS",
    "ASSIGN_LATENCY",
    "FENCED_OUT",
    "HEARTBEATS",
    "HEARTBEAT_LATENCY",
    "MEETINGS_ACTIVE",
    "MEETINGS_ADMITTING",
    "MEETING_END_NOTICES",
    "PARTICIPANTS_ACTIVE",
    "READY",
    "REGISTERED",
    "REGISTRATION_ATTEMPTS",
]

MEETINGS_ACTIVE = Gauge("mc_meetings_active", "Meetings hosted by this MC.")
MEETINGS_ADMITTING = Gauge("mc_meetings_admitting", "Admissions in flight.")
PARTICIPANTS_ACTIVE = Gauge("mc_participants_active", "Participants connected to this MC.")
ASSIGNMENTS = Counter(
    "mc_assignments_total",
    "AssignMeetingWithMh answers by result (accepted/rejected/invalid/error) and reason.",
    ["result", "reason"],
)
ASSIGN_LATENCY = Histogram(
    "mc_assign_latency_seconds",
    "Time to decide and carry out an AssignMeetingWithMh.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
FENCED_OUT = Counter(
    "mc_fenced_out_total",
    "Meetings this MC lost because another MC took them over (a fenced write was refused).",
)
READY = Gauge("mc_ready", "1 when the MC takes new meetings (Redis reachable, not draining).")

HEARTBEATS = Counter(
    "mc_heartbeats_total",
    "Heartbeats sent to the GC by type (fast/comprehensive) and result (ok or a gRPC code).",
    ["type", "result"],
)
HEARTBEAT_LATENCY = Histogram(
    "mc_heartbeat_latency_seconds", "Round trip of a heartbeat to the GC.", ["type"]
)
REGISTRATION_ATTEMPTS = Counter(
    "mc_registration_attempts_total",
    "RegisterMC calls by result (accepted/refused/error).",
    ["result"],
)
REGISTERED = Gauge("mc_registered", "1 while the GC has accepted this MC's registration.")
MEETING_END_NOTICES = Counter(
    "mc_meeting_end_notices_total", "NotifyMeetingEnded reports by result (ok/failed).", ["result"]
)
