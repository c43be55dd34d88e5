"""The staleness sweeper: marks silent MCs and MHs UNHEALTHY, purges old ended assignments.

docs/reference.md "Staleness". Every `interval_s` one sweep, in this order:

1. heartbeats still pending in the GC's `HeartbeatBatcher` are flushed, then MCs whose last
   heartbeat (or registration, if they never beat) is more than `staleness_s` old are marked
   UNHEALTHY — DRAINING and already-UNHEALTHY ones are left alone (the store's rule), and so
   is every MC this GC RECEIVED a beat from since the threshold (`LastHeard`), whatever the
   database has yet: under a join flood the writes queue behind the joins' transactions, and
   a beat received on time must not look late (no false failover). Each marked id is logged
   at WARNING and counted (`gc_sweeper_marks_total`);
   The threshold is also extended by how late this GC itself has been (the longest delay of
   the sweeper's own wake-ups over the last `staleness_s`): a GC whose event loop is
   saturated handles beats late too, and must not blame the MCs for its own lateness;
2. the same for MHs, by their last load report received or stored (load reports still pending
   in the GC's `LoadReportBatcher` flushed first);
3. assignments that ended more than `retention_s` ago are deleted;
4. the fleet gauges `gc_controllers{health}` / `gc_media_handlers{health}` are refreshed.

Every GC process sharing a database may run one: each step is a single idempotent statement.
A failing sweep raises out of `sweep_once` and is counted (`gc_sweeps_total{result="failed"}`).
The loop logs a `StoreError` (the database is down) and carries on; any other error is a bug:
it ends the loop's task `gc-sweeper`, whose supervisor logs it and makes the GC not ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta

from darktower.common.clock import Clock, utcnow
from darktower.gc.heartbeats import HeartbeatBatcher, LoadReportBatcher
from darktower.gc.last_heard import LastHeard
from darktower.gc.metrics import (
    CONTROLLERS,
    MEDIA_HANDLERS,
    SWEEPER_LATENESS,
    SWEEPER_MARKS,
    SWEEPS,
    set_health_gauge,
)
from darktower.gc.store import GcStore, StoreError
from darktower.runtime.supervisor import TaskSupervisor

__all__ = ["StalenessSweeper", "SweepResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep did: the ids it marked UNHEALTHY (sorted) and how many rows it purged."""

    stale_controllers: tuple[str, ...]
    stale_media_handlers: tuple[str, ...]
    purged_assignments: int


class StalenessSweeper:
    """Runs `sweep_once` every `interval_s` seconds between `start()` and `stop()`."""

    def __init__(
        self,
        store: GcStore,
        *,
        staleness_s: float,
        interval_s: float,
        retention_s: float,
        heartbeats: HeartbeatBatcher | None = None,
        last_heard: LastHeard | None = None,
        clock: Clock = utcnow,
        load_reports: LoadReportBatcher | None = None,
    ) -> None:
        """`last_heard`: the receipts the GC's edge notes (the batcher's if None and
        `heartbeats` is given; none: the database alone decides)."""
        for name, value in (
            ("staleness_s", staleness_s),
            ("interval_s", interval_s),
            ("retention_s", retention_s),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self._store = store
        self._heartbeats = heartbeats
        self._load_reports = load_reports
        self._last_heard = last_heard or (heartbeats.last_heard if heartbeats else None)
        self._staleness = timedelta(seconds=staleness_s)
        self._interval = interval_s
        self._retention = timedelta(seconds=retention_s)
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        # (monotonic time, seconds late) of the loop's wake-ups within the last staleness_s.
        self._lateness: deque[tuple[float, float]] = deque()

    def note_lateness(self, late_s: float, *, at: float | None = None) -> None:
        """This GC woke up `late_s` seconds later than it asked to (its loop was busy)."""
        now = time.monotonic() if at is None else at
        if late_s > 0:
            self._lateness.append((now, late_s))
        self._forget_lateness(now)

    def lateness_allowance(self, *, at: float | None = None) -> float:
        """Seconds the staleness threshold is extended by: the longest recent lateness."""
        self._forget_lateness(time.monotonic() if at is None else at)
        return max((late for _, late in self._lateness), default=0.0)

    def _forget_lateness(self, now: float) -> None:
        horizon = now - self._staleness.total_seconds()
        while self._lateness and self._lateness[0][0] < horizon:
            self._lateness.popleft()

    async def sweep_once(self) -> SweepResult:
        """One sweep (see the module docstring). Raises `StoreError` if the database fails;
        marks made before the failure stay made, logged and counted."""
        try:
            now = self._clock()
            allowance = self.lateness_allowance()
            SWEEPER_LATENESS.set(allowance)
            older_than = now - self._staleness - timedelta(seconds=allowance)
            if self._heartbeats is not None:
                await self._heartbeats.flush()
            heard = self._last_heard
            controllers = await self._store.mark_stale_controllers(
                older_than, heard=heard.heard_since("mc", older_than) if heard else ()
            )
            self._marked("mc", "meeting controller", controllers)
            if self._load_reports is not None:
                await self._load_reports.flush()
            handlers = await self._store.mark_stale_media_handlers(
                older_than, heard=heard.heard_since("mh", older_than) if heard else ()
            )
            self._marked("mh", "media handler", handlers)
            purged = await self._store.purge_ended(now - self._retention)
            if purged:
                log.info("purged %d ended meeting assignments", purged)
            set_health_gauge(CONTROLLERS, await self._store.controller_health_counts())
            set_health_gauge(MEDIA_HANDLERS, await self._store.media_handler_health_counts())
        except Exception:
            SWEEPS.labels("failed").inc()
            raise
        SWEEPS.labels("ok").inc()
        return SweepResult(tuple(controllers), tuple(handlers), purged)

    def _marked(self, kind: str, noun: str, ids: list[str]) -> None:
        SWEEPER_MARKS.labels(kind).inc(len(ids))
        for marked in ids:
            log.warning(
                "%s %s marked unhealthy: silent for more than %.1f s",
                noun,
                marked,
                self._staleness.total_seconds(),
            )

    def start(self, tasks: TaskSupervisor | None = None) -> None:
        """Start sweeping now and every `interval_s` after, as task `gc-sweeper` of `tasks`
        (the GC's; a private supervisor if None)."""
        if self._task is not None:
            raise RuntimeError("the sweeper is already running")
        tasks = tasks or TaskSupervisor(["gc-sweeper"])
        self._task = tasks.spawn("gc-sweeper", self._run())

    async def stop(self) -> None:
        """Cancel the loop and wait for it (a sweep in flight is abandoned). Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # A crash was reported by the supervisor already: not raised again here.
        await asyncio.gather(task, return_exceptions=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except StoreError as exc:
                log.warning("staleness sweep failed: %s", exc)
            asked = time.monotonic()
            await asyncio.sleep(self._interval)
            self.note_lateness(time.monotonic() - asked - self._interval)
