"""The per-connection frame limiter as tables (pure: the clock is a number)."""

from __future__ import annotations

import pytest

from darktower.mc.ratelimit import FrameLimiter, TokenBucket, Verdict

A, R, C = Verdict.ALLOW, Verdict.REFUSE, Verdict.CLOSE


@pytest.mark.parametrize(
    ("rate", "burst", "times", "expected"),
    [
        # a full bucket passes a burst at once, then nothing until it refills
        (10, 3, [0, 0, 0, 0], [True, True, True, False]),
        # one token back every 1/rate seconds
        (10, 1, [0, 0.05, 0.1, 0.15, 0.2], [True, False, True, False, True]),
        # refills never beyond the burst
        (10, 2, [0, 0, 100, 100, 100], [True, True, True, True, False]),
        # a clock that goes back refills nothing
        (10, 1, [5, 4, 5.05], [True, False, False]),
    ],
)
def test_token_bucket(rate: float, burst: int, times: list[float], expected: list[bool]) -> None:
    bucket = TokenBucket.full(rate, burst, times[0])
    assert [bucket.take(t) for t in times] == expected


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0)])
def test_token_bucket_refuses_nonsense(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket.full(rate, burst, 0)


@pytest.mark.parametrize(
    ("rate", "burst", "times", "expected"),
    [
        # within the burst: everything passes
        (10, 3, [0, 0, 0], [A, A, A]),
        # over it: refused while strikes last (burst of them), then closed
        (10, 2, [0] * 6, [A, A, R, R, C, C]),
        # just under the rate for ever: never refused
        (10, 1, [i * 0.101 for i in range(50)], [A] * 50),
        # at 1.25 x the rate, strikes come back (rate / 2) faster than they go: refused, open
        (10, 2, [i * 0.08 for i in range(100)], None),
    ],
)
def test_frame_limiter(
    rate: float, burst: int, times: list[float], expected: list[Verdict] | None
) -> None:
    limiter = FrameLimiter(rate, burst, times[0])
    verdicts = [limiter.check(t) for t in times]
    if expected is None:
        assert C not in verdicts and R in verdicts
    else:
        assert verdicts == expected


def test_a_sustained_flood_at_twice_the_rate_is_closed_within_a_bounded_time() -> None:
    limiter = FrameLimiter(20, 40, 0.0)
    t = 0.0
    for _ in range(10_000):
        if limiter.check(t) is C:
            break
        t += 1 / 40  # twice the rate
    else:
        raise AssertionError("never closed")
    # 40 burst frames, then 20/s net excess against 40 strikes refilling at 10/s: about 4 s.
    assert 3.0 < t < 6.0, t
