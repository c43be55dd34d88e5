"""Watches Redis reachability: the MC is not ready (and refuses with UNHEALTHY) while it is down.

A ping every `interval` seconds sets `healthy`: one failed ping makes the MC not ready, the
next successful one makes it ready again — no restart. A failed store call reported through
`mark_unhealthy` does not flip it by itself (one timeout under load must not make the GC move
the MC's meetings): it starts a ping at once, and that ping decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from darktower.fencing import FencingError
from darktower.runtime.supervisor import TaskSupervisor

__all__ = ["RedisMonitor"]

log = logging.getLogger(__name__)


class RedisMonitor:
    def __init__(self, ping: Callable[[], Awaitable[None]], *, interval: float = 1.0) -> None:
        self._ping = ping
        self._interval = interval
        self.healthy = False
        self._task: asyncio.Task[None] | None = None
        self._confirming: asyncio.Task[bool] | None = None
        self._stopping = False

    async def check(self) -> bool:
        try:
            await asyncio.wait_for(self._ping(), timeout=max(self._interval, 1.0))
        except (FencingError, TimeoutError) as exc:
            if self.healthy:
                log.warning("redis unreachable (%s): not ready", type(exc).__name__)
            self.healthy = False
        else:
            if not self.healthy:
                log.info("redis reachable: ready")
            self.healthy = True
        return self.healthy

    def mark_unhealthy(self) -> None:
        """A store call failed: ping now (at most one such ping at a time); a failed ping
        makes the MC not ready. Must be called from the event loop."""
        if self._confirming is not None and not self._confirming.done():
            return
        self._confirming = asyncio.get_running_loop().create_task(
            self.check(), name="redis-monitor-confirm"
        )

    def start(self, tasks: TaskSupervisor) -> None:
        """Ping every interval in task `redis-monitor` of `tasks`; it ends (normally) only
        when `stop` asks it to, so an unexpected error is a crash."""
        self._task = tasks.spawn("redis-monitor", self._loop(), may_finish=True)

    async def stop(self) -> None:
        # Also a flag: Python 3.11's wait_for (in `check`) can swallow a cancellation that
        # arrives as the ping completes, and the loop would sleep on, never to be reaped.
        self._stopping = True
        tasks = [t for t in (self._task, self._confirming) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping:
            await self.check()
            if not self._stopping:
                await asyncio.sleep(self._interval)
