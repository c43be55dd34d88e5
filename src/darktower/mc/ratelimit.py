"""Per-connection message rate: what the signaling edge does with a client's next frame.

Two token buckets, plain data over a caller-supplied clock (pure, tested with tables):

* frames: `rate` tokens a second, at most `burst` at once. A frame that finds a token is
  passed on (ALLOW).
* strikes: a frame without a token is dropped and costs a strike (REFUSE: the client is told
  `rate_limited`). Strikes hold `burst` and come back at half the frame rate, so a client that
  keeps sending faster than 1.5 x `rate` runs out of them and is closed (CLOSE: code 1008),
  while one that slips over the rate now and then is only refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["FrameLimiter", "TokenBucket", "Verdict"]


class Verdict(StrEnum):
    ALLOW = "allow"
    REFUSE = "refuse"
    CLOSE = "close"


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second up to `burst`; starts full at `now`."""

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        return cls(rate, burst, burst, now)

    def take(self, now: float) -> bool:
        """Take one token if there is one (after refilling up to `now`)."""
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class FrameLimiter:
    __slots__ = ("_frames", "_strikes")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._frames = TokenBucket.full(rate, burst, now)
        self._strikes = TokenBucket.full(rate / 2, burst, now)

    def check(self, now: float) -> Verdict:
        """The verdict on a frame received at `now` (seconds, monotonic)."""
        if self._frames.take(now):
            return Verdict.ALLOW
        if self._strikes.take(now):
            return Verdict.REFUSE
        return Verdict.CLOSE
