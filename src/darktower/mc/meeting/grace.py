"""Grace timers: how long a disconnected participant keeps its seat.

One timer per participant, on the running loop. Each start gets a new epoch; when a timer runs
out, `expire(participant_id, epoch)` is called (the meeting turns it into a `GraceExpired`
message). By the time that message is handled the grace may have been cancelled (the client
came back) or restarted (it dropped again): `is_current` tells a live expiry from a stale one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable

__all__ = ["GraceTimers"]


class GraceTimers:
    __slots__ = ("_epochs", "_expire", "_timers", "seconds")

    def __init__(self, seconds: float, expire: Callable[[str, int], None]) -> None:
        """`expire(participant_id, epoch)` runs on the loop when a grace of `seconds` ends."""
        self.seconds = seconds
        self._expire = expire
        self._timers: dict[str, tuple[int, asyncio.TimerHandle]] = {}
        self._epochs = itertools.count(1)

    def start(self, participant_ids: Iterable[str]) -> None:
        """Start (or restart) the grace of each participant."""
        loop = asyncio.get_running_loop()
        for participant_id in participant_ids:
            self.cancel(participant_id)
            epoch = next(self._epochs)
            timer = loop.call_later(self.seconds, self._expire, participant_id, epoch)
            self._timers[participant_id] = (epoch, timer)

    def cancel(self, participant_id: str) -> None:
        entry = self._timers.pop(participant_id, None)
        if entry is not None:
            entry[1].cancel()

    def is_current(self, participant_id: str, epoch: int) -> bool:
        """True when `epoch` is the participant's running grace (not cancelled, not replaced)."""
        entry = self._timers.get(participant_id)
        return entry is not None and entry[0] == epoch

    def cancel_all(self) -> None:
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
