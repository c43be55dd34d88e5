"""What the dev fleet decides when one of its processes exits: pure functions over plain data.

* `describe_exit`: a return code as people read it ("exit status 1", "killed by SIGKILL").
* `is_fatal`: the fleet cannot go on without its Redis or its GC; MCs and MHs are expendable
  (their death is the failover the tour shows).
* `restart_delay`: the backoff before restarting a dead MC/MH with `--restart`: 1 s, doubling,
  30 s cap (the registration schedule's steps, `darktower.common.backoff`, without jitter); a
  child that had stayed up for a full cap starts again from 1 s.
"""

from __future__ import annotations

import signal

from darktower.common.backoff import backoff_bounds

__all__ = [
    "RESTART_BASE_SECONDS",
    "RESTART_CAP_SECONDS",
    "describe_exit",
    "is_fatal",
    "restart_attempt",
    "restart_delay",
]

RESTART_BASE_SECONDS = 1.0
RESTART_CAP_SECONDS = 30.0

FATAL_KINDS = frozenset({"redis", "gc"})


def describe_exit(returncode: int) -> str:
    """`Popen.returncode` in words: negative codes are the signal that killed the process."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}"


def is_fatal(kind: str) -> bool:
    """Whether the fleet must stop when a process of this kind ("redis", "gc", "mc", "mh") dies."""
    return kind in FATAL_KINDS


def restart_delay(
    attempt: int, base: float = RESTART_BASE_SECONDS, cap: float = RESTART_CAP_SECONDS
) -> float:
    """Seconds to wait before restart number `attempt` (0 for the first) of one child."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    return backoff_bounds(attempt + 1, base=base, cap=cap)[1]


def restart_attempt(
    restarts_in_a_row: int, uptime_seconds: float, cap: float = RESTART_CAP_SECONDS
) -> int:
    """The attempt number (for `restart_delay`) of the restart of a child that just died after
    `uptime_seconds`: the restarts in a row so far, or 0 once it had stayed up as long as the
    cap (it was well; this is a new failure, not the same one again)."""
    return 0 if uptime_seconds >= cap else restarts_in_a_row
