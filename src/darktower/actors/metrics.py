"""Prometheus metrics of the actor runtime (default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "ACTORS_ALIVE",
    "ACTOR_PANICS",
    "ACTOR_TYPES",
    "MAILBOX_DEPTH",
    "MAILBOX_OVER_THRESHOLD",
    "MAILBOX_THRESHOLD",
]

ACTOR_PANICS = Counter(
    "mc_actor_panic_total",
    "Actors that ended with an unhandled exception, noticed by their parent.",
    ["actor_type"],
)
ACTORS_ALIVE = Gauge("mc_actors_alive", "Actors currently running.", ["actor_type"])
MAILBOX_DEPTH = Gauge(
    "mc_actor_mailbox_depth",
    "Deepest mailbox among the live actors of a type, read at scrape time.",
    ["actor_type"],
)
MAILBOX_THRESHOLD = Gauge(
    "mc_actor_mailbox_threshold",
    "Mailbox depth above which an actor of this type is in the warning / critical band.",
    ["actor_type", "level"],
)
MAILBOX_OVER_THRESHOLD = Counter(
    "mc_actor_mailbox_over_threshold_total",
    "Times a mailbox grew past its warning or critical threshold.",
    ["actor_type", "level"],
)

ACTOR_TYPES = ("controller", "meeting", "connection")
"""The MC's actor types (`Actor.actor_type`): their series start at 0."""
for _actor_type in ACTOR_TYPES:
    ACTOR_PANICS.labels(_actor_type)
    for _level in ("warning", "critical"):
        MAILBOX_OVER_THRESHOLD.labels(_actor_type, _level)
