"""The GC host's event-loop lag probe (`bench.services._LoopLag`, reported by `scaleout`): a
loop held up shows as a late timer, an idle one does not, and it measures only while started."""

from __future__ import annotations

import asyncio
import time

from bench.services import _LoopLag


def _hold_up(seconds: float) -> None:
    """Keep the running loop from running anything for `seconds` (a long callback)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_a_held_up_loop_shows_as_a_late_timer() -> None:
    lag = _LoopLag(period_s=0.005)
    lag.start()
    await asyncio.sleep(0.05)
    _hold_up(0.08)
    await asyncio.sleep(0.05)
    late = await lag.stop()
    assert max(late) >= 60
    assert sorted(late)[len(late) // 2] < 30  # the other timers ran about on time


async def test_it_measures_only_between_start_and_stop() -> None:
    lag = _LoopLag(period_s=0.005)
    assert await lag.stop() == []
    lag.start()
    await asyncio.sleep(0.03)
    first = await lag.stop()
    assert first and all(late >= 0 for late in first)
    await asyncio.sleep(0.02)
    assert len(first) == len(await lag.stop())
