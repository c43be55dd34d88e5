"""The health an MC reports to the GC (docs/reference.md): a pure decision over its state and load.
(The
registration backoff schedule's tests moved with it to `tests/common/test_backoff.py`.)"""

from __future__ import annotations

from typing import Any

import pytest

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
        # A crashed background task: unhealthy (the MC is not ready), draining still first.
        ({"task_crashed": True}, pb.UNHEALTHY),
        ({"task_crashed": True, "current_meetings": 100}, pb.UNHEALTHY),
        ({"task_crashed": True, "draining": True}, pb.DRAINING),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else pb.HealthStatus.Name(v),
)
def test_derive_health(changes: dict[str, Any], expected: pb.HealthStatus.ValueType) -> None:
    assert derive_health(**(IDLE | changes)) == expected
