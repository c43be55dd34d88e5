"""mh-sim keeps its load report cadence start to start: a slow answer from the GC is taken off
the wait for the next report instead of added to it."""

from __future__ import annotations

import pytest

from darktower.mhsim.simulator import next_report_delay


@pytest.mark.parametrize(
    ("interval", "took", "delay"),
    [
        pytest.param(0.5, 0.0, 0.5, id="an instant answer waits the whole interval"),
        pytest.param(0.5, 0.2, 0.3, id="a slow answer shortens the wait"),
        pytest.param(0.5, 0.5, 0.0, id="an answer as long as the interval: next at once"),
        pytest.param(0.5, 3.0, 0.0, id="a longer one: next at once, never a negative wait"),
    ],
)
def test_next_report_delay(interval: float, took: float, delay: float) -> None:
    assert next_report_delay(interval, took) == pytest.approx(delay)
