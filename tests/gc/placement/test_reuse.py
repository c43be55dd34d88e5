"""`decide_reuse`: reuse the live assignment, move the meeting (and why), or place it anew."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from darktower.gc.placement import (
    ExistingAssignment,
    McRecord,
    Move,
    PlaceNew,
    Reuse,
    ReuseDecision,
    decide_reuse,
    describe_move,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
STALENESS_S = 30.0
PLACED = NOW - timedelta(minutes=5)
LIVE = ExistingAssignment("mc-1", placed_at=PLACED)


def _mc(
    health: str = "healthy",
    *,
    silent_s: float | None = 1.0,
    registered: datetime = PLACED - timedelta(minutes=1),
) -> McRecord:
    beat = None if silent_s is None else NOW - timedelta(seconds=silent_s)
    return McRecord(health=health, last_heartbeat_at=beat, registered_at=registered)


@pytest.mark.parametrize(
    ("assignment", "mc", "expected"),
    [
        pytest.param(None, _mc(), PlaceNew(), id="no-live-assignment"),
        pytest.param(None, None, PlaceNew(), id="no-live-assignment-no-mc"),
        pytest.param(LIVE, _mc(), Reuse(), id="healthy-fresh"),
        pytest.param(LIVE, _mc("degraded"), Reuse(), id="degraded-is-placeable"),
        pytest.param(LIVE, _mc(silent_s=STALENESS_S), Reuse(), id="age-at-threshold-is-fresh"),
        pytest.param(LIVE, _mc(registered=PLACED), Reuse(), id="registered-when-placed"),
        pytest.param(LIVE, None, Move("mc-1", "gone"), id="gone"),
        pytest.param(LIVE, _mc(silent_s=30.5), Move("mc-1", "stale"), id="stale"),
        pytest.param(LIVE, _mc(silent_s=None), Move("mc-1", "stale"), id="never-heard-from"),
        pytest.param(LIVE, _mc("unhealthy"), Move("mc-1", "unhealthy"), id="unhealthy"),
        pytest.param(LIVE, _mc("draining"), Move("mc-1", "draining"), id="draining"),
        pytest.param(
            LIVE,
            _mc("draining", silent_s=99.0),
            Move("mc-1", "draining"),
            id="draining-before-stale",
        ),
        pytest.param(
            LIVE,
            _mc(registered=PLACED + timedelta(seconds=1)),
            Move("mc-1", "restarted"),
            id="restarted",
        ),
        pytest.param(
            LIVE,
            _mc("pending", silent_s=None, registered=PLACED + timedelta(seconds=1)),
            Move("mc-1", "restarted"),
            id="restarted-before-health",
        ),
        pytest.param(
            LIVE,
            _mc("unhealthy", silent_s=99.0, registered=PLACED + timedelta(seconds=1)),
            Move("mc-1", "restarted"),
            id="restarted-before-unhealthy",
        ),
    ],
)
def test_decide_reuse(
    assignment: ExistingAssignment | None, mc: McRecord | None, expected: ReuseDecision
) -> None:
    assert decide_reuse(assignment, mc, staleness_s=STALENESS_S, now=NOW) == expected


@pytest.mark.parametrize(
    ("move", "mc", "expected"),
    [
        (
            Move("mc-1", "stale"),
            _mc(silent_s=40.0),
            "stale (silent for 40.0 s, over the 30 s threshold)",
        ),
        (
            Move("mc-1", "stale"),
            _mc(silent_s=None),
            "stale (never heard from, over the 30 s threshold)",
        ),
        (Move("mc-1", "gone"), None, "gone (no longer registered)"),
        (
            Move("mc-1", "restarted"),
            _mc(),
            "restarted since the meeting was placed (it no longer holds it)",
        ),
        (Move("mc-1", "unhealthy"), _mc("unhealthy"), "unhealthy"),
        (Move("mc-1", "draining"), _mc("draining"), "draining"),
    ],
)
def test_describe_move(move: Move, mc: McRecord | None, expected: str) -> None:
    assert describe_move(move, mc, staleness_s=STALENESS_S, now=NOW) == expected
