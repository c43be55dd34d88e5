"""Starting Janus, noticing when it dies, and starting it again.

`JanusKeeper.run()` is a loop: start `janus` with the private configuration, wait until its
admin API answers, then check it every `check_interval` seconds (process alive and admin API
answering). When either fails, the keeper marks Janus down (the MH is not ready and reports
UNHEALTHY), calls `on_restart` (the rooms and tokens died with it), stops what is left of the
process and starts a new one after a pause that grows from 0.5 s to 10 s while starts keep
failing. The process runs in a session of its own and dies with the MH (`ManagedProcess`).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from darktower.mh.janus_admin import JanusAdmin, JanusError, JanusUnavailable
from darktower.mh.janus_config import JanusConfig, write_config
from darktower.runtime.processes import ManagedProcess

__all__ = ["JanusKeeper", "find_janus", "restart_delay"]

log = logging.getLogger(__name__)


def find_janus() -> str | None:
    """The `janus` binary on PATH, or None."""
    return shutil.which("janus")


def restart_delay(failures: int) -> float:
    """The pause before start number `failures + 1` after `failures` failed ones in a row."""
    return min(10.0, 0.5 * 2 ** max(0, failures - 1)) if failures else 0.5


class JanusKeeper:
    """`binary` None: attach to a Janus run by someone else — only watch its admin API, and
    treat its coming back after an outage as a restart (its rooms and tokens are gone)."""

    def __init__(
        self,
        binary: str | None,
        config: JanusConfig,
        folder: Path,
        admin: JanusAdmin,
        *,
        on_restart: Callable[[], None],
        check_interval: float = 1.0,
        start_timeout: float = 20.0,
    ) -> None:
        self._binary = binary
        self._config = config
        self._folder = folder
        self._admin = admin
        self._on_restart = on_restart
        self._check_interval = check_interval
        self._start_timeout = start_timeout
        self.process: ManagedProcess | None = None
        self.up = False
        self.starts = 0
        self._up_event = asyncio.Event()

    @property
    def log_path(self) -> Path:
        return self._folder / "janus.log"

    async def wait_up(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._up_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _answers(self) -> bool:
        try:
            await self._admin.ping()
        except (JanusUnavailable, JanusError):
            return False
        return True

    def _start(self) -> ManagedProcess:
        assert self._binary is not None
        janus_cfg = write_config(self._config, self._folder)
        self.starts += 1
        return ManagedProcess.start(
            [self._binary, "-C", str(janus_cfg), "-F", str(self._folder)],
            log_path=self.log_path,
            name="janus",
        )

    async def _start_and_wait(self) -> bool:
        if self._binary is None:
            return await self._answers()
        # Started from the loop's thread, not a worker thread: the child's parent-death signal
        # is tied to the thread that forked it (`darktower.runtime.processes`).
        self.process = self._start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        while loop.time() < deadline:
            if not self.process.running:
                log.error(
                    "janus exited with %s at start; log %s", self.process.poll(), self.log_path
                )
                return False
            if await self._answers():
                return True
            await asyncio.sleep(0.1)
        log.error("janus did not answer within %.0fs; log %s", self._start_timeout, self.log_path)
        return False

    async def run(self) -> None:
        failures = 0
        try:
            while True:
                if await self._start_and_wait():
                    failures = 0
                    self._set_up(True)
                    log.info("janus running (pid %d)", self.process.pid if self.process else 0)
                    await self._watch()
                    self._set_up(False)
                    self._on_restart()
                else:
                    failures += 1
                await asyncio.to_thread(self._stop_process)
                await asyncio.sleep(restart_delay(failures))
        finally:
            self._set_up(False)
            await asyncio.to_thread(self._stop_process)

    async def _watch(self) -> None:
        """Return when Janus died or stopped answering (two missed checks in a row)."""
        missed = 0
        while True:
            await asyncio.sleep(self._check_interval)
            if self.process is not None and not self.process.running:
                code = self.process.poll()
                log.error("janus died (exit %s): restarting", code)
                return
            if await self._answers():
                missed = 0
                continue
            missed += 1
            if missed >= 2:
                log.error("janus stopped answering its admin API")
                return

    def _set_up(self, up: bool) -> None:
        self.up = up
        if up:
            self._up_event.set()
        else:
            self._up_event.clear()

    def _stop_process(self) -> None:
        if self.process is not None:
            self.process.stop(grace=3.0)
