"""The MH's registration and load reports: `mh-sim`'s loop (`MhSimulator`: registration with
backoff, reports at the GC's interval, a new registration when the GC forgot us), with the
report taken from Janus instead of a random walk."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import psutil

from darktower.mh.janus_admin import JanusError, JanusUnavailable, LoadFigures
from darktower.mh.load import load_report
from darktower.mhsim.simulator import MhSimulator
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = ["JanusLoadReporter"]

log = logging.getLogger(__name__)


class JanusLoadReporter(MhSimulator):
    """`figures()` reads Janus's load (raises `JanusUnavailable`/`JanusError` when it cannot);
    `janus_up()` says whether Janus is running. A report while Janus is down (or whose figures
    cannot be read) is UNHEALTHY."""

    figures: Callable[[], Awaitable[LoadFigures]]
    janus_up: Callable[[], bool]
    last: pb.MHLoadReportRequest | None = None

    async def report(self) -> None:
        figures: LoadFigures | None = None
        if self.janus_up():
            try:
                figures = await self.figures()
            except (JanusUnavailable, JanusError) as exc:
                log.warning("cannot read Janus's load: %s", exc)
        request = load_report(
            self.config.handler_id,
            figures,
            max_streams=self.config.max_streams,
            cpu_percent=psutil.cpu_percent(interval=None),
            memory_percent=psutil.virtual_memory().percent,
        )
        self.streams = request.current_streams
        self.last = request
        await self._stub.SendLoadReport(request, metadata=self._tokens.metadata(), timeout=10)
