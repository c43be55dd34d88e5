"""An MH's load reports are measured, and follow the publishers: with nobody in the meeting
its report says no streams and no bitrate; with one headless Chromium page publishing, one
publisher and a bitrate (Janus's per-handle stats, `handle_info`); with two pages publishing
and receiving each other, two publishers, two subscriptions and a higher bitrate; after one
page has gone, one publisher and its bitrate. Each report's bandwidth share is the
measured bitrate against the MH's `max_bitrate_mbps`.

As `test_media_browser`, the scenario (`tests.mh.load_scenario`) runs in a network namespace of
its own (`unshare --net`): WebRTC cannot reach anything off it. Skipped without chromium,
janus, `unshare` or `ip` on a developer's machine; never in CI (`CI` set).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.mh.load_scenario import MAX_BITRATE_MBPS
from tests.mh.media_scenario import NAMESPACE_SETUP
from tests.mh.test_media_browser import _MISSING
from tests.support.netns import run_isolated

pytestmark = [
    pytest.mark.skipif(
        bool(_MISSING) and not os.environ.get("CI"),
        reason=f"missing: {', '.join(_MISSING)} (CI has them)",
    ),
    pytest.mark.timeout(300),
]


def _phase(result: dict[str, Any], name: str, publishers: int, subscribers: int) -> float:
    """Every sample of the phase has its publishers and subscriptions, a report whose
    streams and bandwidth share are those figures; the phase's median bitrate."""
    phase = result[name]
    for sample in phase["samples"]:
        assert (sample["publishers"], sample["subscribers"]) == (publishers, subscribers), phase
        assert sample["current_streams"] == publishers + subscribers, phase
        share = min(100.0, 100.0 * sample["bitrate_bps"] / (MAX_BITRATE_MBPS * 1e6))
        assert sample["bandwidth_usage_percent"] == pytest.approx(share, rel=1e-5), phase
    median: float = phase["median_bitrate_bps"]
    return median


def test_load_reports_follow_the_publishers_with_measured_bitrates(tmp_path: Path) -> None:
    result = run_isolated("tests.mh.load_scenario", tmp_path, setup=NAMESPACE_SETUP, timeout=280)
    assert "failed" not in result, result
    assert result["errors"] == []
    nobody = _phase(result, "nobody", 0, 0)
    one = _phase(result, "one_publisher", 1, 0)
    two = _phase(result, "two_publishers", 2, 2)
    after = _phase(result, "after_one_left", 1, 0)
    print(
        f"measured bitrate (median of 3 reports): nobody {nobody:.0f} b/s, one publisher "
        f"{one:.0f}, two {two:.0f} ({two / one:.1f}x), one left {after:.0f}"
    )
    assert nobody == 0
    assert one > 0
    assert two > one  # two uplinks against one
    # One publisher is left (its count is checked above). Its bitrate is not compared with the
    # two-page phase: a publisher's uplink grows for tens of seconds as the browser's bandwidth
    # estimate ramps up, so one ramped-up uplink can carry more than two fresh ones.
    assert after > 0
