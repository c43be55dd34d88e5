"""The dev fleet's supervisor: looks at every child, says what died, restarts MCs and MHs when
asked, and tells the caller when the fleet cannot go on (its Redis or its GC died).

The decisions are `darktower.dev.supervision`'s pure functions; this module polls and acts.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from darktower.dev.fleet import Fleet, Service
from darktower.dev.supervision import (
    describe_exit,
    is_fatal,
    restart_attempt,
    restart_delay,
)

__all__ = ["POLL_SECONDS", "Supervisor"]

POLL_SECONDS = 0.5


class Supervisor:
    """Call `check()` periodically (every `wait_seconds()` at most) from one thread."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        restart: bool,
        say: Callable[[str], None],
        on_restart: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fleet = fleet
        self._restart = restart
        self._say = say
        self._on_restart = on_restart
        self._clock = clock
        self._due: dict[str, float] = {}  # name -> when to restart it (clock time)
        self._in_a_row: dict[str, int] = {}  # name -> restarts since it last stayed up a while
        self._left_dead: set[str] = set()
        self.restarts = 0

    def check(self) -> str | None:
        """Look at every process once; None while the fleet can go on, else why it cannot."""
        now = self._clock()
        redis = self._fleet.redis
        if redis is not None and (code := redis.poll()) is not None:
            return f"the embedded Redis (pid {redis.pid}) died: {describe_exit(code)}"
        for service in self._fleet.services:
            code = service.process.poll()
            if code is None or service.name in self._due or service.name in self._left_dead:
                continue
            death = (
                f"{service.name} (pid {service.process.pid}) died: {describe_exit(code)}; "
                f"log {service.log}"
            )
            if is_fatal(service.kind):
                return death
            if service.kind == "mc" and code == 0:
                # Drained (`darktower drain`, `darktower roll`): its meetings moved to other
                # MCs and it exited 0. In a dev fleet it comes back at once, as a rolling
                # upgrade restarts each MC it drained.
                self._in_a_row.setdefault(service.name, 0)
                self._due[service.name] = now
                self._say(
                    f"{service.name} (pid {service.process.pid}) drained and exited 0; "
                    "restarting it"
                )
                continue
            if self._restart:
                attempt = restart_attempt(
                    self._in_a_row.get(service.name, 0), now - service.started_at
                )
                self._in_a_row[service.name] = attempt
                delay = restart_delay(attempt)
                self._due[service.name] = now + delay
                self._say(f"{death}; restarting it in {delay:g}s")
            else:
                self._left_dead.add(service.name)
                self._say(f"{death}; the fleet goes on without it")
        for name, due in list(self._due.items()):
            if due <= now:
                self._restart_now(self._service(name), now)
        return None

    def wait_seconds(self) -> float:
        """How long the caller may wait before the next `check()`."""
        soonest = min(self._due.values(), default=float("inf")) - self._clock()
        return max(0.05, min(POLL_SECONDS, soonest))

    def _service(self, name: str) -> Service:
        return next(s for s in self._fleet.services if s.name == name)

    def _restart_now(self, service: Service, now: float) -> None:
        old = f"pid {service.process.pid}, {describe_exit(service.process.returncode or 0)}"
        try:
            self._fleet.restart(service, note=f"restarted after {old}")
        except OSError as exc:
            attempt = self._in_a_row[service.name] = self._in_a_row[service.name] + 1
            delay = restart_delay(attempt)
            self._due[service.name] = now + delay
            self._say(f"cannot restart {service.name} ({exc}); trying again in {delay:g}s")
            return
        del self._due[service.name]
        self._in_a_row[service.name] += 1
        self.restarts += 1
        self._say(f"restarted {service.name}: pid {service.process.pid} (same id and ports)")
        self._on_restart()
