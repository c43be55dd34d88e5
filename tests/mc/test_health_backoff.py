"""The pure decisions behind the GC link: the health an MC reports and the registration backoff
schedule (SPEC §3, §7)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from tenacity import RetryCallState

from darktower.mc.backoff import RegistrationBackoff, backoff_bounds
from darktower.mc.health import derive_health
from darktower.wire.dark_tower import internal_pb2 as pb

IDLE: dict[str, Any] = {
    "draining": False,
    "redis_ok": True,
    "current_meetings": 0,
    "max_meetings": 100,
    "current_participants": 0,
    "max_participants": 1000,
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, pb.HEALTHY),
        # Precedence: draining beats Redis down beats degraded.
        ({"draining": True}, pb.DRAINING),
        ({"draining": True, "redis_ok": False, "current_meetings": 100}, pb.DRAINING),
        ({"redis_ok": False}, pb.UNHEALTHY),
        ({"redis_ok": False, "current_meetings": 100}, pb.UNHEALTHY),
        # Meetings: 79 % healthy, 80 % and over degraded.
        ({"current_meetings": 79}, pb.HEALTHY),
        ({"current_meetings": 80}, pb.DEGRADED),
        ({"current_meetings": 100}, pb.DEGRADED),
        ({"current_meetings": 150}, pb.DEGRADED),
        ({"current_meetings": 3, "max_meetings": 5}, pb.HEALTHY),
        ({"current_meetings": 4, "max_meetings": 5}, pb.DEGRADED),
        # Participants, the same threshold.
        ({"current_participants": 799}, pb.HEALTHY),
        ({"current_participants": 800}, pb.DEGRADED),
        ({"current_participants": 800, "current_meetings": 10}, pb.DEGRADED),
        # A limit of 0 is full.
        ({"max_meetings": 0}, pb.DEGRADED),
        ({"max_participants": 0}, pb.DEGRADED),
        ({"max_meetings": 0, "draining": True}, pb.DRAINING),
        ({"max_participants": 0, "redis_ok": False}, pb.UNHEALTHY),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else pb.HealthStatus.Name(v),
)
def test_derive_health(changes: dict[str, Any], expected: pb.HealthStatus.ValueType) -> None:
    assert derive_health(**(IDLE | changes)) == expected


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
