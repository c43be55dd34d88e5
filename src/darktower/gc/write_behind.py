"""`WriteBehind`: reports from the fleet answered at once and written to the database behind,
in batches — the shape shared by MC heartbeats and MH load reports (`darktower.gc.heartbeats`).

The gRPC edge submits each report and answers at once; the latest report per id is kept in
memory (merged with a pending older one, for what only some reports carry) and every pending
report is written every `interval_s` (and as soon as `max_pending` ids have one) in ONE
transaction, by the batcher's background task.

Why: a report awaited through its own transaction queues behind every other transaction of
the GC (a join flood's, say); a sender that waits for the answer before its next report then
reports late, and its receipt times space out by the database's queueing delay (issue 18: an
MH marked unhealthy during a 300-join burst). Written behind, the answer never waits for the
database.

The consistency window: what readers of the database see of a report is at most one flush
interval (plus one write) behind what was received. So whoever acts on that data asks the
batcher to `flush()` first: the staleness sweeper before judging staleness, a registration
before re-registering an id (a report of its previous life must not land after it). `stop()`
flushes what is pending, before the store is closed. Reports that could not be written
(database down) stay pending, under any newer one, for the next flush. An unknown id is
refused at once (the subclass's unknown error, NOT_FOUND at the edge) from an in-memory set
of known ids, loaded at `start` and grown by `registered`; an id missing from it is looked up
in the database once (registered through another GC).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Generic, TypeVar

from darktower.gc.last_heard import Kind, LastHeard
from darktower.gc.store import GcStore, StoreError
from darktower.runtime.supervisor import TaskSupervisor

__all__ = ["WriteBehind"]

log = logging.getLogger(__name__)

R = TypeVar("R")


class WriteBehind(ABC, Generic[R]):
    """Write-behind of reports `R` into `store` (see the module docstring).

    A subclass says what its reports are: `kind` (for `LastHeard`), `task_name` (its
    background task), `noun` (for logs), and the hooks `_id`, `_at`, `_merged`, `_write`,
    `_known_ids`, `_exists` and `_unknown`.
    """

    kind: Kind
    task_name: str
    noun: str

    def __init__(
        self,
        store: GcStore,
        *,
        interval_s: float,
        max_pending: int,
        last_heard: LastHeard | None = None,
    ) -> None:
        if not interval_s > 0 or max_pending < 1:
            raise ValueError("interval_s must be positive and max_pending at least 1")
        self._store = store
        # Each accepted report's receipt time, at once: staleness does not wait for the flush.
        self.last_heard = last_heard or LastHeard()
        self._interval = interval_s
        self._max_pending = max_pending
        self._pending: dict[str, R] = {}
        self._known: set[str] = set()
        # One flush at a time: two concurrent ones could commit an older batch last.
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- what a subclass says ----------------------------------------------------------------

    @staticmethod
    @abstractmethod
    def _id(report: R) -> str: ...

    @staticmethod
    @abstractmethod
    def _at(report: R) -> datetime: ...

    @staticmethod
    @abstractmethod
    def _merged(older: R, newer: R) -> R:
        """`newer`, completed from `older` where it lacks what only some reports carry."""

    @abstractmethod
    async def _write(self, batch: Sequence[R]) -> None:
        """Write `batch` (one report per id) in one transaction; ids not registered skipped."""

    @abstractmethod
    async def _known_ids(self) -> set[str]: ...

    @abstractmethod
    async def _exists(self, id: str) -> bool: ...

    @staticmethod
    @abstractmethod
    def _unknown(id: str) -> Exception: ...

    # --- the component -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self, tasks: TaskSupervisor | None = None) -> None:
        """Load the known ids, then flush in task `task_name` of `tasks` (a private supervisor
        if None). Raises `StoreError` if the ids cannot be read. A `StoreError` in a flush is
        logged and retried; any other error ends the task (the supervisor logs it and makes
        the GC not ready)."""
        if self._task is not None:
            raise RuntimeError(f"{self.noun} batching is already running")
        self._known |= await self._known_ids()
        tasks = tasks or TaskSupervisor([self.task_name])
        self._task = tasks.spawn(self.task_name, self._run())

    def registered(self, id: str) -> None:
        """`id` was just registered: its reports are accepted from now on, and what was heard
        from its previous life no longer counts."""
        self._known.add(id)
        self.last_heard.forget(self.kind, id)

    async def submit(self, report: R) -> None:
        """Keep `report` as its id's latest (merged with a pending older one) and note its
        receipt time in `last_heard`. Raises the subclass's unknown error for an id that is
        not registered."""
        id = self._id(report)
        if id not in self._known:
            if not await self._exists(id):
                raise self._unknown(id)
            self._known.add(id)
        self.last_heard.heard(self.kind, id, self._at(report))
        older = self._pending.get(id)
        self._pending[id] = report if older is None else self._merged(older, report)
        if len(self._pending) >= self._max_pending:
            self._wake.set()

    async def flush(self) -> int:
        """Write every pending report in one transaction; return how many. On failure they
        stay pending (under any newer one) and the `StoreError` is raised."""
        async with self._lock:
            batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                await self._write(list(batch.values()))
            except BaseException:
                for id, report in batch.items():
                    newer = self._pending.get(id)
                    self._pending[id] = report if newer is None else self._merged(report, newer)
                raise
            return len(batch)

    async def stop(self) -> None:
        """Stop the background flushes, then flush what is pending; a database that is down by
        then loses those reports (logged; the next ones bring them back). Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # A crash was reported by the supervisor already: not raised again here.
            await asyncio.gather(task, return_exceptions=True)
        try:
            await self.flush()
        except StoreError as exc:
            log.warning("dropping %d pending %ss at stop: %s", len(self._pending), self.noun, exc)
            self._pending.clear()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except StoreError as exc:
                log.warning("%s flush failed, kept for the next one: %s", self.noun, exc)
