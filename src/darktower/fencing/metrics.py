"""Prometheus metrics of the fencing store (default registry).

`op` is one of: acquire, set, hset, delete, check, read, ping. A FencedOut is an answer, not
an error, so it is not counted in `mc_redis_errors_total` (the meeting actor counts it as
`mc_fenced_out_total`); StoreUnavailable, MalformedState and unexpected script errors are.
"""

from __future__ import annotations

from typing import Literal, get_args

from prometheus_client import Counter, Histogram

__all__ = ["REDIS_ERRORS", "REDIS_LATENCY", "Op"]

Op = Literal["acquire", "set", "hset", "delete", "check", "read", "ping"]

REDIS_LATENCY = Histogram(
    "mc_redis_latency_seconds",
    "Latency of fencing store calls to Redis, including failed ones.",
    ["op"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
REDIS_ERRORS = Counter(
    "mc_redis_errors_total",
    "Fencing store calls that failed (Redis unavailable, malformed state, script error).",
    ["op"],
)

# Every operation's series start at 0 (alerts see samples before the first error).
for _op in get_args(Op):
    REDIS_ERRORS.labels(op=_op)
    REDIS_LATENCY.labels(op=_op)
