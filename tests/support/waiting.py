"""Bounded waits: poll a condition until it holds or a deadline passes, naming what was awaited.

Waiting in a test is this or an explicit event, never a bare sleep: a poll returns as soon as
the condition holds (fast on an idle machine) and still passes on a loaded one within a
generous timeout.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

__all__ = ["POLL_SECONDS", "eventually", "wait_until"]

POLL_SECONDS = 0.05


def wait_until(
    condition: Callable[[], object],
    *,
    timeout: float,
    what: str,
    interval: float = POLL_SECONDS,
) -> float:
    """Poll `condition` every `interval` seconds until it is truthy; the seconds it took.
    AssertionError naming `what` after `timeout` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not {what} within {timeout:g}s")
        time.sleep(interval)
    return time.monotonic() - started


async def eventually(
    condition: Callable[[], object] | Callable[[], Awaitable[object]],
    *,
    timeout: float,
    what: str,
    interval: float = POLL_SECONDS,
) -> float:
    """`wait_until` for the event loop: `condition` may be a plain or an async callable, and
    the loop keeps running between polls. The seconds it took."""
    started = time.monotonic()
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not {what} within {timeout:g}s")
        await asyncio.sleep(interval)
