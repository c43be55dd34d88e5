"""`RegistryCache`: the region's MCs and MHs as placement last read them, reused for a moment.

Every new meeting needs the placement candidates. Read from the database per join, they were
two statements and seven ORM rows of a join's work; under a burst of joins the same rows were
read hundreds of times a second. The cache answers from one read for up to `max_age_s`, and one
read serves every join that asks while it runs (single flight).

What an answer may miss, and why placement stays right:

* freshness: placement judges it on this GC's receipts (`LastHeard`) as before; a cached
  heartbeat time is never newer than the stored one, so a silent MC looks no fresher;
* load: a placement this GC makes counts on its cached MC at once (`assigned`), as the
  database's `assignments_since_heartbeat` does, so a burst still spreads; placements by
  another GC sharing the database and reported loads are seen with the next read;
* health the database learnt meanwhile (a DRAINING beat, a mark): the MC, which checks its own
  admission exactly, refuses the meeting and the next MC is tried; placement also drops the
  answer (`invalidate`) when a join finds its meeting's MC unfit or an MC down, and reads
  afresh (`get(fresh=True)`) before it answers that no MC or MH is available.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import replace

from darktower.gc.domain import Registry

__all__ = ["DEFAULT_MAX_AGE_S", "REFRESH_AHEAD", "RegistryCache"]

DEFAULT_MAX_AGE_S = 0.5
"""How long one read of the registry serves placements (seconds)."""

REFRESH_AHEAD = 0.5
"""The fraction of `max_age_s` after which a `get` starts the next read in the background."""


class RegistryCache:
    """The registry `read` returns, reused for up to `max_age_s` (0: every `get` reads)."""

    def __init__(
        self,
        read: Callable[[], Awaitable[Registry]],
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age_s < 0:
            raise ValueError("max_age_s must not be negative")
        self._read = read
        self._max_age_s = max_age_s
        self._clock = clock
        self._registry: Registry | None = None
        self._read_at = 0.0
        self._reading: asyncio.Future[Registry] | None = None
        # Bumped by `invalidate`: a read begun before it must not be kept as current.
        self._generation = 0
        self._reading_generation = 0

    async def get(self, *, fresh: bool = False) -> Registry:
        """The registry: the cached one while young enough (never with `fresh`), else the
        answer of a read — the one under way, when it began after the last `invalidate`.
        A cached answer past `REFRESH_AHEAD` of its age starts the next read (not awaited)."""
        if not fresh and self._registry is not None:
            age = self._clock() - self._read_at
            if age <= self._max_age_s:
                if age > self._max_age_s * REFRESH_AHEAD:
                    self._under_way()
                return self._registry
        reading = self._start_read() if fresh else self._under_way()
        # Shielded: a caller that gives up does not cancel the read the others wait for.
        return await asyncio.shield(reading)

    def assigned(self, mc_id: str) -> None:
        """This GC just placed a meeting on `mc_id`: count it on the cached MC."""
        if self._registry is None:
            return
        self._registry = Registry(
            [
                replace(c, assignments_since_heartbeat=c.assignments_since_heartbeat + 1)
                if c.id == mc_id
                else c
                for c in self._registry.controllers
            ],
            self._registry.media_handlers,
        )

    def _under_way(self) -> asyncio.Future[Registry]:
        """The read under way that began after the last `invalidate`; else a new one."""
        if self._reading is not None and self._reading_generation == self._generation:
            return self._reading
        return self._start_read()

    def _start_read(self) -> asyncio.Future[Registry]:
        reading = asyncio.ensure_future(self._read_and_keep(self._generation))
        reading.add_done_callback(_retrieve)
        self._reading, self._reading_generation = reading, self._generation
        return reading

    def invalidate(self) -> None:
        """Forget the cached registry; the next `get` reads."""
        self._registry = None
        self._generation += 1

    async def _read_and_keep(self, generation: int) -> Registry:
        started = self._clock()
        try:
            registry = await self._read()
        finally:
            if self._reading is asyncio.current_task():
                self._reading = None
        # Not over a newer answer: a read ahead may end after a `fresh` read begun later.
        if generation == self._generation and started >= self._read_at:
            self._registry, self._read_at = registry, started
        return registry


def _retrieve(future: asyncio.Future[Registry]) -> None:
    # The callers see the error; this only keeps asyncio from logging it as never retrieved.
    with suppress(asyncio.CancelledError):
        future.exception()
