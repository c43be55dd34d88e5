"""The discrete-event core: a clock in simulated seconds and a heap of pending events.

Events run in time order, ties in the order they were scheduled; an event is a callable with
its arguments. Nothing here knows about meetings — `darktower.sim.world` schedules its own.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

__all__ = ["EventQueue"]


class EventQueue:
    """`schedule(at, fn, *args)` then `run(until)`; `now` is the time of the current event."""

    def __init__(self) -> None:
        self.now = 0.0
        self.processed = 0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0

    def schedule(self, at: float, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` at simulated time `at` (never before the current time)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(at, self.now), self._seq, fn, args))

    def run(self, until: float) -> None:
        """Run every event due up to and including `until`; the clock ends at `until`."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= until:
            at, _, fn, args = pop(heap)
            self.now = at
            self.processed += 1
            fn(*args)
        self.now = until

    def __len__(self) -> int:
        return len(self._heap)
