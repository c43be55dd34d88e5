"""The GC tier as a queue: `processes` servers sharing one FIFO line (an M/G/c-like model).

A request waits for a free process; its handler runs when one is free, and the decision it
makes (reuse, place, register) is made at that moment, against the state then — as in the
real GC, where a queued join decides on the registry it reads when its turn comes. The demand
of a handler is its measured cost (`darktower.sim.costs`), stretched by the share of the
processes taken by the work the simulator does not model one by one (heartbeats, the re-joins
of a meeting's other participants, the process's own idle load): with a background share rho, a
handler of cost s occupies its process for s / (1 - rho). Calls the handler makes to MCs do not
hold the process (the GC awaits them); their latency is added to the answer by the caller.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from darktower.sim.engine import EventQueue

__all__ = ["GcPool", "Job"]

MAX_STRETCH = 50.0
"""A saturated background (rho ≥ 0.98) stretches handlers 50-fold; the run reports it."""


@dataclass(slots=True)
class Job:
    """A request to the GC. `decide(start)` runs when a process takes it and returns the cost
    of its handler (seconds of one process); `reply(finish)` is then told when the handler is
    done (after the stretch), and schedules what follows."""

    arrived: float
    decide: Callable[[float], float]
    reply: Callable[[float], None]


class GcPool:
    """`processes` GC processes; `submit` queues a job; `down_until` refuses arrivals."""

    def __init__(self, events: EventQueue, processes: int) -> None:
        self._events = events
        self.processes = processes
        self.free = processes
        self.queue: deque[Job] = deque()
        self.background_share = 0.0
        self.busy_s = 0.0  # process-seconds of modelled handlers, since the last `take_busy`
        self.max_queue = 0

    def stretch(self) -> float:
        """How much longer a handler takes than its cost, given the background share."""
        return min(MAX_STRETCH, 1.0 / max(1.0 - self.background_share, 1.0 / MAX_STRETCH))

    def submit(self, job: Job) -> None:
        """Queue `job`; it starts at once if a process is free."""
        self.queue.append(job)
        self.max_queue = max(self.max_queue, len(self.queue))
        self._start_next()

    def _start_next(self) -> None:
        while self.free and self.queue:
            job = self.queue.popleft()
            self.free -= 1
            now = self._events.now
            demand = job.decide(now) * self.stretch()
            self.busy_s += demand
            self._events.schedule(now + demand, self._done)
            job.reply(now + demand)

    def _done(self) -> None:
        self.free += 1
        self._start_next()

    def set_processes(self, processes: int) -> None:
        """Change the number of processes (a zone's GCs lost); a busy one finishes its job."""
        self.free += processes - self.processes
        self.processes = processes
        self._start_next()

    def take_busy(self) -> float:
        """Process-seconds of modelled handlers since the last call."""
        busy, self.busy_s = self.busy_s, 0.0
        return busy
