"""The registration backoff schedule (docs/reference.md): 1 s base, doubling, 30 s cap, jitter, no
try limit.

`backoff_bounds(attempt)` is the pure schedule; `RegistrationBackoff` is the tenacity wait
strategy built on it. Jitter is "equal jitter": the delay is drawn uniformly from the upper half
of the exponential step, [d/2, d] with d = min(cap, base * 2^(attempt-1)). Waits therefore never
collapse to zero (a GC that is down is not hammered) and never synchronise at the cap (a
fleet that lost its GC does not come back in one burst). Used by the MC and mh-sim to register
with the GC; `darktower dev` restarts a dead child on the same steps (`backoff_bounds`' upper
bound, without jitter).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tenacity import RetryCallState
from tenacity.wait import wait_base

__all__ = ["RegistrationBackoff", "backoff_bounds"]

BASE_SECONDS = 1.0
FACTOR = 2.0
CAP_SECONDS = 30.0


def backoff_bounds(
    attempt: int, *, base: float = BASE_SECONDS, factor: float = FACTOR, cap: float = CAP_SECONDS
) -> tuple[float, float]:
    """(lowest, highest) wait after failed attempt number `attempt` (1-based)."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    # Cap the exponent too, so attempt 10_000 does not overflow a float.
    step = min(cap, base * factor ** min(attempt - 1, 64))
    return step / 2, step


@dataclass(frozen=True)
class RegistrationBackoff(wait_base):
    base: float = BASE_SECONDS
    factor: float = FACTOR
    cap: float = CAP_SECONDS
    rng: random.Random = random.Random()  # noqa: RUF009, S311 - jitter, not cryptography

    def __call__(self, retry_state: RetryCallState) -> float:
        low, high = backoff_bounds(
            retry_state.attempt_number, base=self.base, factor=self.factor, cap=self.cap
        )
        return self.rng.uniform(low, high)
