"""Prometheus metrics of the GC's registry side (default registry).

The gRPC edge (`grpc_edge`) counts every RPC by its outcome (`RESULTS`); the sweeper
counts sweeps and marks and refreshes the fleet gauges. Placement metrics
(`gc_placements_total`, `gc_mc_call_latency_seconds`, ...) live in `darktower.gc.join.metrics`;
service-token checks in `service_auth_failures_total` (auth).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge

from darktower.gc.domain import Health

__all__ = [
    "CONTROLLERS",
    "HEARTBEATS",
    "HTTP_LIMITS",
    "HTTP_REFUSALS",
    "MEDIA_HANDLERS",
    "MEETING_END_NOTICES",
    "RATE_LIMIT_KEYS",
    "REGISTRATIONS",
    "RESULTS",
    "SWEEPER_LATENESS",
    "SWEEPER_MARKS",
    "SWEEPS",
    "TASKS",
    "TASK_CRASHES",
    "set_health_gauge",
]

RESULTS = ("ok", "invalid", "not_found", "unavailable", "error")
"""The `result` label of the RPC counters: success, or the failure's status class."""

CONTROLLERS = Gauge(
    "gc_controllers", "Registered meeting controllers by health (as of the last sweep).", ["health"]
)
MEDIA_HANDLERS = Gauge(
    "gc_media_handlers", "Registered media handlers by health (as of the last sweep).", ["health"]
)
HEARTBEATS = Counter(
    "gc_heartbeats_total",
    "MC heartbeats and MH load reports received, by type (fast/comprehensive/mh_load) and result.",
    ["type", "result"],
)
REGISTRATIONS = Counter(
    "gc_registrations_total",
    "RegisterMC / RegisterMH calls by kind (mc/mh) and result.",
    ["kind", "result"],
)
SWEEPER_MARKS = Counter(
    "gc_sweeper_marks_total", "MCs / MHs marked unhealthy for silence, by kind (mc/mh).", ["kind"]
)
SWEEPER_LATENESS = Gauge(
    "gc_sweeper_lateness_seconds",
    "The longest recent delay of the sweeper's own wake-ups (a busy GC); the staleness "
    "threshold is extended by it.",
)
SWEEPS = Counter("gc_sweeps_total", "Staleness sweeps by result (ok/failed).", ["result"])
MEETING_END_NOTICES = Counter(
    "gc_meeting_end_notices_total", "NotifyMeetingEnded calls by result.", ["result"]
)
HTTP_LIMITS = ("body", "join_ip", "join_api_key")
"""The `limit` label of the HTTP limit metrics (`darktower.gc.limits`)."""
HTTP_REFUSALS = Counter(
    "gc_http_refusals_total",
    "HTTP requests refused by a limit: body (413, over GC_MAX_BODY_BYTES), join_ip / "
    "join_api_key (429, a join rate limit).",
    ["limit"],
)
RATE_LIMIT_KEYS = Gauge(
    "gc_rate_limit_keys",
    "Join rate-limit buckets held in memory, by limit (at most GC_RATE_LIMIT_MAX_KEYS each).",
    ["limit"],
)
TASKS = (
    "gc-sweeper",
    "gc-heartbeats",
    "gc-load-reports",
    "gc-http",
    "gc-health-http",
    "grpc-health",
)
"""The GC's supervised background tasks (`darktower.runtime.supervisor`)."""
TASK_CRASHES = Counter(
    "gc_task_crashes_total",
    "Background tasks that crashed (the GC is not ready after one), by task.",
    ["task"],
)

# Every series exists from the start, so dashboards and tests see zeros, not gaps.
for _health in Health:
    CONTROLLERS.labels(_health.value)
    MEDIA_HANDLERS.labels(_health.value)
for _result in RESULTS:
    for _type in ("fast", "comprehensive", "mh_load"):
        HEARTBEATS.labels(_type, _result)
    for _kind in ("mc", "mh"):
        REGISTRATIONS.labels(_kind, _result)
    MEETING_END_NOTICES.labels(_result)
for _kind in ("mc", "mh"):
    SWEEPER_MARKS.labels(_kind)
for _result in ("ok", "failed"):
    SWEEPS.labels(_result)
for _limit in HTTP_LIMITS:
    HTTP_REFUSALS.labels(_limit)
    RATE_LIMIT_KEYS.labels(_limit)
for _task in TASKS:
    TASK_CRASHES.labels(_task)


def set_health_gauge(gauge: Gauge, counts: Mapping[Health, int]) -> None:
    """Set `gauge{health}` to each health's count (0 for the absent ones)."""
    for health in Health:
        gauge.labels(health.value).set(counts.get(health, 0))
