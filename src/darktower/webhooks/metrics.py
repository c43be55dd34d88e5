"""Prometheus metrics of webhook delivery on the GC (default registry).

The MC counts what it records in `mc_webhook_events_total` (`darktower.webhooks.outbox`).
The queue gauges cover the partitions this GC process delivers right now: summed over the GCs
they give the whole backlog.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "DELIVERIES",
    "FAILURES",
    "FAILURE_REASONS",
    "OLDEST_AGE",
    "PARTITIONS_HELD",
    "QUEUE_DEPTH",
]

FAILURE_REASONS = ("timeout", "connect", "redirect", "status_4xx", "status_5xx", "error", "expired")
"""`reason` of a failed attempt; `expired`: given up, the event left the stream's retention."""

DELIVERIES = Counter(
    "gc_webhook_deliveries_total",
    "Webhook events delivered (answered 2xx) by this GC.",
)
FAILURES = Counter(
    "gc_webhook_delivery_failures_total",
    "Failed webhook delivery attempts by reason (each is retried with backoff, except expired).",
    ["reason"],
)
QUEUE_DEPTH = Gauge(
    "gc_webhook_retry_queue_depth",
    "Events not yet delivered (pending or not yet read), summed over the URLs and the "
    "partitions this GC delivers.",
)
OLDEST_AGE = Gauge(
    "gc_webhook_oldest_undelivered_age_seconds",
    "Age of the oldest event not yet delivered in the partitions this GC delivers (0: none).",
)
PARTITIONS_HELD = Gauge(
    "gc_webhook_partitions_held", "Event partitions this GC delivers right now (leases held)."
)

for _reason in FAILURE_REASONS:
    FAILURES.labels(_reason)
