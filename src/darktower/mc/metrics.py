"""Prometheus metrics of the Meeting Controller (default registry).

Also exported, from their own subsystems: `mc_redis_latency_seconds` (fencing),
`mc_actor_panic_total` / `mc_actor_mailbox_depth` (actors), `service_auth_failures_total` (auth).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ASSIGNMENTS",
    "ASSIGN_LATENCY",
    "BINDING_REFUSALS",
    "FENCED_OUT",
    "GRPC_INTERNAL_ERRORS",
    "HEARTBEATS",
    "HEARTBEAT_LATENCY",
    "JOIN_REFUSALS",
    "MEETINGS_ACTIVE",
    "MEETINGS_ADMITTING",
    "MEETINGS_ENDED",
    "MEETING_END_NOTICES",
    "MIGRATIONS",
    "PARTICIPANTS_ACTIVE",
    "READY",
    "REGISTERED",
    "REGISTRATION_ATTEMPTS",
    "SIGNALING_CONNECTIONS",
    "SIGNALING_CUTOFFS",
    "SIGNALING_MESSAGES",
    "SIGNALING_RATE_LIMITED",
    "STATE_UPDATES_COALESCED",
    "TASKS",
    "TASK_CRASHES",
]

MEETINGS_ACTIVE = Gauge("mc_meetings_active", "Meetings hosted by this MC.")
MEETINGS_ADMITTING = Gauge("mc_meetings_admitting", "Admissions in flight.")
PARTICIPANTS_ACTIVE = Gauge(
    "mc_participants_active",
    "Participants in the rosters of this MC's meetings (connected or within their grace period).",
)
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
GRPC_INTERNAL_ERRORS = Counter(
    "mc_grpc_internal_errors_total",
    "gRPC calls answered INTERNAL (an unexpected exception, logged with its traceback), by method.",
    ["method"],
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
MEETINGS_ENDED = Counter(
    "mc_meetings_ended_total",
    "Meetings this MC ended, by reason (last_participant_left, empty_timeout, ...).",
    ["reason"],
)
MIGRATIONS = Counter(
    "mc_migrations_total",
    "Tries to move a meeting off this draining MC, by result (migrated, not_placed, gc_error).",
    ["result"],
)
for _result in ("migrated", "not_placed", "gc_error"):
    MIGRATIONS.labels(_result)
MEETING_END_NOTICES = Counter(
    "mc_meeting_end_notices_total", "NotifyMeetingEnded reports by result (ok/failed).", ["result"]
)

SIGNALING_CONNECTIONS = Gauge(
    "mc_signaling_connections", "Open client signaling WebSocket connections."
)
SIGNALING_MESSAGES = Counter(
    "mc_signaling_messages_total",
    "Client signaling frames received, by message type (`invalid` for unparseable ones).",
    ["type"],
)
SIGNALING_RATE_LIMITED = Counter(
    "mc_signaling_rate_limited_total",
    "Client frames dropped for exceeding MC_CLIENT_MESSAGE_RATE.",
)
SIGNALING_CUTOFFS = Counter(
    "mc_signaling_cutoffs_total",
    "Client connections the MC closed to protect itself, by reason "
    "(rate_limited: 1008, slow_consumer: send queue full, connection_cap: 1013).",
    ["reason"],
)
for _reason in ("rate_limited", "slow_consumer", "connection_cap"):
    SIGNALING_CUTOFFS.labels(_reason)
STATE_UPDATES_COALESCED = Counter(
    "mc_state_updates_coalesced_total",
    "self_mute frames merged into a later one within MC_STATE_COALESCE_SECONDS "
    "(no Redis write or broadcast of their own).",
)
BINDING_REFUSALS = Counter(
    "mc_binding_refusals_total",
    "Reconnects refused for their binding token, by reason "
    "(malformed/forged/expired/replayed/other_user).",
    ["reason"],
)
JOIN_REFUSALS = Counter(
    "mc_join_refusals_total",
    "Client joins refused, by reason (the error code sent, or at_capacity).",
    ["reason"],
)

TASKS = (
    "gc-link",
    "redis-monitor",
    "touch-loop",
    "health-http",
    "jwks-refresh",
    "grpc-health",
    "media-watch",
)
"""The MC's supervised background tasks (`darktower.runtime.supervisor`)."""
TASK_CRASHES = Counter(
    "mc_task_crashes_total",
    "Background tasks that crashed (the MC is not ready after one), by task.",
    ["task"],
)
for _task in TASKS:
    TASK_CRASHES.labels(_task)

# Every series whose label values are known in advance exists from the start at 0, so that
# `rate()` and the alerts (deploy/prometheus/) see samples before the first event. Values only
# known when they happen (the field of an invalid request, an unexpected gRPC code, a client
# message type) appear when first counted.
for _result, _reasons in (
    ("accepted", ("",)),
    ("rejected", ("draining", "unhealthy", "at_capacity")),
    ("error", ("state_unavailable",)),
):
    for _reason in _reasons:
        ASSIGNMENTS.labels(_result, _reason)
for _type in ("fast", "comprehensive"):
    HEARTBEAT_LATENCY.labels(_type)
    for _result in ("ok", "unavailable", "deadline_exceeded", "not_found", "unauthenticated"):
        HEARTBEATS.labels(_type, _result)
for _result in ("accepted", "refused", "error"):
    REGISTRATION_ATTEMPTS.labels(_result)
for _result in ("ok", "failed"):
    MEETING_END_NOTICES.labels(_result)
for _reason in ("last_participant_left", "empty_timeout", "drained", "fenced_out", "crashed"):
    MEETINGS_ENDED.labels(_reason)
for _reason in ("malformed", "forged", "expired", "replayed", "other_user"):
    BINDING_REFUSALS.labels(_reason)
for _reason in ("at_capacity", "join_timeout"):
    JOIN_REFUSALS.labels(_reason)
for _type in ("join", "self_mute", "host_mute", "leave", "ping", "invalid"):
    SIGNALING_MESSAGES.labels(_type)
GRPC_INTERNAL_ERRORS.labels("AssignMeetingWithMh")
