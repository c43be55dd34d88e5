"""The fleet's reports written behind (`darktower.gc.write_behind.WriteBehind`), by the GC:

* `HeartbeatBatcher`: MC heartbeats, into `GcStore.record_heartbeats`, by task
  `gc-heartbeats`; an unknown MC is refused with `UnknownController` (NOT_FOUND at the edge);
* `LoadReportBatcher`: MH load reports, into `GcStore.record_load_reports`, by task
  `gc-load-reports`; an unknown MH is refused with `UnknownMediaHandler`.

Both answer at once, keep the latest report per id, write all pending ones in ONE transaction
every flush interval, and are flushed by the staleness sweeper before it judges and by a
registration before it re-registers an id: the consistency window and its rules are described
in `darktower.gc.write_behind`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from darktower.gc.domain import Heartbeat, LoadReport
from darktower.gc.store import UnknownController, UnknownMediaHandler
from darktower.gc.write_behind import WriteBehind

__all__ = ["HeartbeatBatcher", "LoadReportBatcher"]


class HeartbeatBatcher(WriteBehind[Heartbeat]):
    """Write-behind for MC heartbeats (see the module docstring)."""

    kind = "mc"
    task_name = "gc-heartbeats"
    noun = "heartbeat"

    @staticmethod
    def _id(report: Heartbeat) -> str:
        return report.controller_id

    @staticmethod
    def _at(report: Heartbeat) -> datetime:
        return report.at

    @staticmethod
    def _merged(older: Heartbeat, newer: Heartbeat) -> Heartbeat:
        """`newer`, with what only comprehensive beats carry taken from `older` if it lacks it."""
        return replace(
            newer,
            cpu_percent=older.cpu_percent if newer.cpu_percent is None else newer.cpu_percent,
            memory_percent=(
                older.memory_percent if newer.memory_percent is None else newer.memory_percent
            ),
            meeting_loads=(
                older.meeting_loads if newer.meeting_loads is None else newer.meeting_loads
            ),
        )

    async def _write(self, batch: Sequence[Heartbeat]) -> None:
        await self._store.record_heartbeats(batch)

    async def _known_ids(self) -> set[str]:
        return await self._store.controller_ids()

    async def _exists(self, id: str) -> bool:
        return await self._store.get_controller(id) is not None

    @staticmethod
    def _unknown(id: str) -> Exception:
        return UnknownController(id)


class LoadReportBatcher(WriteBehind[LoadReport]):
    """Write-behind for MH load reports (see the module docstring). Every load report carries
    all of its fields: the newest simply replaces an older pending one."""

    kind = "mh"
    task_name = "gc-load-reports"
    noun = "load report"

    @staticmethod
    def _id(report: LoadReport) -> str:
        return report.handler_id

    @staticmethod
    def _at(report: LoadReport) -> datetime:
        return report.at

    @staticmethod
    def _merged(older: LoadReport, newer: LoadReport) -> LoadReport:
        return newer

    async def _write(self, batch: Sequence[LoadReport]) -> None:
        await self._store.record_load_reports(batch)

    async def _known_ids(self) -> set[str]:
        return await self._store.media_handler_ids()

    async def _exists(self, id: str) -> bool:
        return await self._store.get_media_handler(id) is not None

    @staticmethod
    def _unknown(id: str) -> Exception:
        return UnknownMediaHandler(id)
