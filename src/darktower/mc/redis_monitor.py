"""Watches Redis reachability: the MC is not ready (and refuses with UNHEALTHY) while it is down.

A ping every `interval` seconds sets `healthy`; a failed store call reported through
`mark_unhealthy` flips it at once, and the next successful ping restores it — no restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from darktower.fencing import FencingError

__all__ = ["RedisMonitor"]

log = logging.getLogger(__name__)


class RedisMonitor:
    def __init__(self, ping: Callable[[], Awaitable[None]], *, interval: float = 1.0) -> None:
        self._ping = ping
        self._interval = interval
        self.healthy = False
        self._task: asyncio.Task[None] | None = None

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
        """A store call failed: not ready until the next successful ping."""
        if self.healthy:
            log.warning("redis unreachable (a store call failed): not ready")
        self.healthy = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="redis-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self._interval)
