"""Reload on SIGHUP: one signal handler per service, a list of reload hooks behind it.

A service's parts that can take new files without a restart (the GC's API keys, trusted key
files) each `add` a hook; `install()` makes SIGHUP run them all, in the order added, inside the
event loop. A hook that raises is logged and the others still run: a reload never stops a
service. asyncio keeps one handler per signal, so a service installs one `ReloadHooks` and
every part adds to it rather than installing its own handler.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

__all__ = ["ReloadHooks"]

log = logging.getLogger(__name__)


class ReloadHooks:
    def __init__(self) -> None:
        self._hooks: list[Callable[[], object]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, hook: Callable[[], object]) -> None:
        self._hooks.append(hook)

    def run(self) -> None:
        """Run every hook now (what SIGHUP does)."""
        log.info("reloading (%d parts)", len(self._hooks))
        for hook in self._hooks:
            try:
                hook()
            except Exception:
                log.exception("a reload failed; the service keeps what it had")

    def install(self) -> None:
        """Run the hooks on SIGHUP in the running loop (until `uninstall`). A loop that cannot
        take signals (one outside the main thread: a service embedded in a test or a tool)
        keeps running without reload, said once in the log; `run()` still works."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self.run)
        except (ValueError, RuntimeError, NotImplementedError) as exc:
            log.warning("no reload on SIGHUP in this event loop (%s)", exc)
            return
        self._loop = loop

    def uninstall(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_signal_handler(signal.SIGHUP)
        self._loop = None
