"""The registration backoff schedule (docs/reference.md): the pure bounds and the jittered tenacity
wait."""

from __future__ import annotations

import random

import pytest
from tenacity import RetryCallState

from darktower.common.backoff import RegistrationBackoff, backoff_bounds


@pytest.mark.parametrize(
    ("attempt", "bounds"),
    [
        (1, (0.5, 1.0)),
        (2, (1.0, 2.0)),
        (3, (2.0, 4.0)),
        (5, (8.0, 16.0)),
        (6, (15.0, 30.0)),
        (7, (15.0, 30.0)),
        (100, (15.0, 30.0)),
        (10_000, (15.0, 30.0)),
    ],
)
def test_backoff_bounds(attempt: int, bounds: tuple[float, float]) -> None:
    assert backoff_bounds(attempt) == bounds


def test_backoff_bounds_follow_base_and_cap() -> None:
    assert backoff_bounds(1, base=0.05, cap=0.2) == (0.025, 0.05)
    assert backoff_bounds(4, base=0.05, cap=0.2) == (0.1, 0.2)


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_numbers_start_at_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        backoff_bounds(attempt)


def retry_state(attempt: int) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return state


@pytest.mark.parametrize("attempt", [1, 2, 4, 6, 50])
def test_registration_backoff_draws_stay_within_bounds_and_spread(attempt: int) -> None:
    backoff = RegistrationBackoff(rng=random.Random(1234))
    low, high = backoff_bounds(attempt)
    draws = [backoff(retry_state(attempt)) for _ in range(1000)]
    assert all(low <= d <= high for d in draws)
    # Jitter: spread over the band, not one value (a fleet must not retry in step).
    assert len(set(draws)) > 900
    assert min(draws) < low + (high - low) * 0.1
    assert max(draws) > high - (high - low) * 0.1


def test_registration_backoff_uses_its_base_and_cap() -> None:
    backoff = RegistrationBackoff(base=0.05, cap=0.2, rng=random.Random(7))
    draws = [backoff(retry_state(10)) for _ in range(1000)]
    assert all(0.1 <= d <= 0.2 for d in draws)
    assert len(set(draws)) > 900
