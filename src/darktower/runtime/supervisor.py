"""Background tasks that are watched: a crash is loud, a shutdown says what it stopped.

Each service owns one `TaskSupervisor` and starts its long-running loops through `spawn`. A task
that ends with an exception — or, unless it was spawned with `may_finish=True`, ends at all
before `stop` — is a crash: logged once at ERROR with its traceback, counted in the service's
`<service>_task_crashes_total{task}`, and named by `not_ready_reason()` so the service reports
itself not ready. A crash is a bug: nothing is restarted.

`stop(deadline)` cancels what still runs, waits at most `deadline` seconds, and returns a
`StopReport` of how every spawned task ended; a task that ignores its cancellation is reported
as still running rather than waited for. (After arq's `Worker`.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import Counter

__all__ = ["StopReport", "TaskSupervisor"]

log = logging.getLogger(__name__)

Outcome = Literal["finished", "cancelled", "failed"]


@dataclass(frozen=True, slots=True)
class StopReport:
    """How the spawned tasks ended, by name (a name once per task), as of `stop`."""

    finished: tuple[str, ...] = ()
    cancelled: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    still_running: tuple[str, ...] = ()

    def summary(self) -> str:
        """`3 cancelled, 0 failed, 1 finished, 0 still running (gc-link)`: counts, then the
        names of the failed and still running tasks, if any."""
        counts = (
            f"{len(self.cancelled)} cancelled, {len(self.failed)} failed, "
            f"{len(self.finished)} finished, {len(self.still_running)} still running"
        )
        troubled = self.failed + self.still_running
        return f"{counts} ({', '.join(troubled)})" if troubled else counts


class TaskSupervisor:
    """Spawns and watches the named background tasks of one service (see the module doc).

    `names` are every task name the service may spawn: each gets its crash counter series at
    0 now (so `rate()` has samples from the start), and another name is refused."""

    def __init__(self, names: Iterable[str], *, crashes: Counter | None = None) -> None:
        self._names = frozenset(names)
        self._crashes = crashes
        if crashes is not None:
            for name in self._names:
                crashes.labels(name)
        self._tasks: dict[asyncio.Task[None], str] = {}
        self._may_finish: set[asyncio.Task[None]] = set()
        self._outcomes: dict[asyncio.Task[None], Outcome] = {}
        self._failed: list[str] = []
        self._stopping = False

    def spawn(
        self, name: str, coroutine: Coroutine[Any, Any, None], *, may_finish: bool = False
    ) -> asyncio.Task[None]:
        """Run `coroutine` as task `name` on the running loop. `may_finish`: a normal return is
        not a crash (its owner decides when it ends); otherwise only a cancellation or a return
        during `stop` is."""
        if name not in self._names:
            coroutine.close()
            raise ValueError(f"unknown background task {name!r}")
        if self._stopping:
            coroutine.close()
            raise RuntimeError(f"cannot start {name}: background tasks are stopping")
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks[task] = name
        if may_finish:
            self._may_finish.add(task)
        task.add_done_callback(self._reap)
        return task

    @property
    def failed(self) -> tuple[str, ...]:
        """The names of the tasks that crashed, in the order they did."""
        return tuple(self._failed)

    def not_ready_reason(self) -> str | None:
        """`background task gc-link crashed` while any task has crashed, else None."""
        if not self._failed:
            return None
        names = ", ".join(dict.fromkeys(self._failed))
        plural = "s" if len(set(self._failed)) > 1 else ""
        return f"background task{plural} {names} crashed"

    def _reap(self, task: asyncio.Task[None]) -> None:
        if task in self._outcomes:
            return
        name = self._tasks[task]
        if task.cancelled():
            self._outcomes[task] = "cancelled"
            return
        exc = task.exception()
        if exc is None and (task in self._may_finish or self._stopping):
            self._outcomes[task] = "finished"
            return
        self._outcomes[task] = "failed"
        self._failed.append(name)
        if self._crashes is not None:
            self._crashes.labels(name).inc()
        if exc is None:
            log.error("background task %s ended by itself: not ready", name)
        else:
            log.error(
                "background task %s crashed (%s): not ready", name, type(exc).__name__, exc_info=exc
            )

    async def stop(self, deadline: float) -> StopReport:
        """Cancel every task still running, wait up to `deadline` seconds for them, and report
        how each spawned task ended. No task is spawned afterwards."""
        self._stopping = True
        running = [task for task in self._tasks if not task.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=max(0.0, deadline))
        by_outcome: dict[str, list[str]] = {
            "finished": [],
            "cancelled": [],
            "failed": [],
            "still_running": [],
        }
        for task, name in self._tasks.items():
            if task.done():
                self._reap(task)
                by_outcome[self._outcomes[task]].append(name)
            else:
                by_outcome["still_running"].append(name)
        return StopReport(**{outcome: tuple(names) for outcome, names in by_outcome.items()})
