"""`HeartbeatBatcher`: MC heartbeats written behind, in batches, by the GC service.

The gRPC edge submits each beat and answers at once; the latest beat per MC is kept in memory
and all pending beats are written every `interval_s` (and as soon as `max_pending` MCs have
one) in ONE transaction (`GcStore.record_heartbeats`), by task `gc-heartbeats`.

The consistency window: what readers of the database see of an MC's load, health and
`last_heartbeat_at` is at most one flush interval (plus one write) behind what it reported.
So whoever acts on that data asks the batcher to `flush()` first: the staleness sweeper before
judging staleness, a registration before re-registering an MC (a beat of the MC's previous
life must not land after it). `stop()` flushes what is pending, before the store is closed.
Beats that could not be written (database down) stay pending, under any newer beat, for the
next flush. An unknown MC is refused at once (`UnknownController`, NOT_FOUND at the edge).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace

from darktower.gc.domain import Heartbeat
from darktower.gc.last_heard import LastHeard
from darktower.gc.store import GcStore, StoreError, UnknownController
from darktower.runtime.supervisor import TaskSupervisor

__all__ = ["HeartbeatBatcher"]

log = logging.getLogger(__name__)


class HeartbeatBatcher:
    """Write-behind for MC heartbeats into `store` (see the module docstring).

    `submit` answers at once: NOT_FOUND-worthy ids are told from an in-memory set of known MC
    ids (loaded at `start`, grown by `registered`; an id missing from it is looked up in the
    database once, for MCs registered through another GC). A background task flushes every
    `interval_s`, or early once `max_pending` MCs have a beat pending; `stop` flushes the rest.
    """

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
        # Each accepted beat's receipt time, at once: staleness does not wait for the flush.
        self.last_heard = last_heard or LastHeard()
        self._interval = interval_s
        self._max_pending = max_pending
        self._pending: dict[str, Heartbeat] = {}
        self._known: set[str] = set()
        # One flush at a time: two concurrent ones could commit an older batch last.
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self, tasks: TaskSupervisor | None = None) -> None:
        """Load the known MC ids, then flush in task `gc-heartbeats` of `tasks` (a private
        supervisor if None). Raises `StoreError` if the ids cannot be read. A `StoreError` in
        a flush is logged and retried; any other error ends the task (the supervisor logs it
        and makes the GC not ready)."""
        if self._task is not None:
            raise RuntimeError("heartbeat batching is already running")
        self._known |= await self._store.controller_ids()
        tasks = tasks or TaskSupervisor(["gc-heartbeats"])
        self._task = tasks.spawn("gc-heartbeats", self._run())

    def registered(self, controller_id: str) -> None:
        """`controller_id` was just registered: its beats are accepted from now on."""
        self._known.add(controller_id)
        self.last_heard.forget("mc", controller_id)

    async def submit(self, beat: Heartbeat) -> None:
        """Keep `beat` as its MC's latest (CPU, memory and meeting loads it lacks are kept
        from a pending older beat) and note its receipt time (`beat.at`) in `last_heard`.
        Raises `UnknownController` for an unregistered MC."""
        mc_id = beat.controller_id
        if mc_id not in self._known:
            if await self._store.get_controller(mc_id) is None:
                raise UnknownController(mc_id)
            self._known.add(mc_id)
        self.last_heard.heard("mc", mc_id, beat.at)
        older = self._pending.get(mc_id)
        self._pending[mc_id] = beat if older is None else _merged(older, beat)
        if len(self._pending) >= self._max_pending:
            self._wake.set()

    async def flush(self) -> int:
        """Write every pending beat in one transaction; return how many. On failure they stay
        pending (under any newer beat) and the `StoreError` is raised."""
        async with self._lock:
            batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                await self._store.record_heartbeats(list(batch.values()))
            except BaseException:
                for mc_id, beat in batch.items():
                    newer = self._pending.get(mc_id)
                    self._pending[mc_id] = beat if newer is None else _merged(beat, newer)
                raise
            return len(batch)

    async def stop(self) -> None:
        """Stop the background flushes, then flush what is pending; a database that is down by
        then loses those beats (logged; the next heartbeats bring them back). Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # A crash was reported by the supervisor already: not raised again here.
            await asyncio.gather(task, return_exceptions=True)
        try:
            await self.flush()
        except StoreError as exc:
            log.warning("dropping %d pending heartbeats at stop: %s", len(self._pending), exc)
            self._pending.clear()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except StoreError as exc:
                log.warning("heartbeat flush failed, kept for the next one: %s", exc)


def _merged(older: Heartbeat, newer: Heartbeat) -> Heartbeat:
    """`newer`, with what only comprehensive beats carry taken from `older` where it lacks it."""
    return replace(
        newer,
        cpu_percent=older.cpu_percent if newer.cpu_percent is None else newer.cpu_percent,
        memory_percent=(
            older.memory_percent if newer.memory_percent is None else newer.memory_percent
        ),
        meeting_loads=older.meeting_loads if newer.meeting_loads is None else newer.meeting_loads,
    )
