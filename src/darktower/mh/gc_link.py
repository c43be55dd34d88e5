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
    cannot be read) is UNHEALTHY. Its bandwidth share is the measured bitrate against
    `max_bitrate_bps`; `last_figures` are the figures of the latest report."""

    figures: Callable[[], Awaitable[LoadFigures]]
    janus_up: Callable[[], bool]
    max_bitrate_bps: float = 1e9
    last_figures: LoadFigures | None = None
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
            max_bitrate_bps=self.max_bitrate_bps,
            cpu_percent=psutil.cpu_percent(interval=None),
            memory_percent=psutil.virtual_memory().percent,
        )
        self.streams = request.current_streams
        self.last = request
        self.last_figures = figures
        await self._stub.SendLoadReport(request, metadata=self._tokens.metadata(), timeout=10)
