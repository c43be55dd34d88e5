"""Media failover driven by the MC: it watches the media handlers its meetings use.

Every `PROBE_INTERVAL_SECONDS` the MC asks each MH a hosted meeting uses for its gRPC health
(`grpc.health.v1.Health/Check`, a `PROBE_TIMEOUT_SECONDS` deadline; `darktower mh` answers
NOT_SERVING while its Janus is down, and nothing at all once it is gone). After
`FAILURES_TO_DROP` failed checks in a row the MH counts as down: every meeting that uses it gets
`UpdateMhs` with that MH left out, so the first remaining one is the primary. The meeting then
registers its connected participants there anew (fresh tokens) and sends each a `media_update`
frame with its new grants (`MeetingActor`, docs/wire-protocol.md); the page moves its media at
once. The GC's view is not waited for: it marks a silent MH unhealthy only after its staleness
threshold (30 s by default), far beyond "a few seconds".

An MH that answers again is not given back to the meetings that dropped it: they keep the MHs
they have until the GC assigns the meeting anew (`AssignMeetingWithMh` with a new MH list also
moves the media when its primary changed). A meeting left without any MH has no media, its
signaling unaffected.

Probes are cheap for the MH (the health answer is read from memory, no token needed) and for
the MC (one call per distinct MH, not per meeting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from darktower.actors import ActorStopped
from darktower.mc.controller import MeetingControllerActor
from darktower.mc.meeting import MeetingActor, UpdateMhs
from darktower.mc.validation import MhTarget
from darktower.runtime.grpc_channels import channel_for
from darktower.runtime.tls import TlsConfig

__all__ = ["FAILURES_TO_DROP", "PROBE_INTERVAL_SECONDS", "MediaWatch", "without"]

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 0.5
PROBE_TIMEOUT_SECONDS = 1.0
FAILURES_TO_DROP = 2

_SERVING = health_pb2.HealthCheckResponse.SERVING


def without(mhs: Iterable[MhTarget], down: set[str]) -> tuple[MhTarget, ...]:
    """`mhs` without the ones in `down`, in their order (the first one left is the primary)."""
    return tuple(m for m in mhs if m.mh_id not in down)


class MediaWatch:
    def __init__(
        self,
        controller: MeetingControllerActor,
        *,
        tls: TlsConfig | None = None,
        interval: float = PROBE_INTERVAL_SECONDS,
        timeout: float = PROBE_TIMEOUT_SECONDS,
        failures_to_drop: int = FAILURES_TO_DROP,
    ) -> None:
        self._controller = controller
        self._tls = tls
        self._interval = interval
        self._timeout = timeout
        self._failures_to_drop = failures_to_drop
        self._failures: dict[str, int] = {}  # mh id → failed checks in a row
        self._channels: dict[str, grpc.aio.Channel] = {}  # grpc endpoint → channel

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self._interval)
                await self.check_once()
        finally:
            await self.aclose()

    async def check_once(self) -> set[str]:
        """Probe every MH in use once; the ids of the MHs that count as down now."""
        meetings = list(self._controller.meetings.values())
        targets: dict[str, MhTarget] = {}
        for meeting in meetings:
            for mh in meeting.mhs:
                if mh.grpc_endpoint:
                    targets.setdefault(mh.mh_id, mh)
        answers = await asyncio.gather(*(self._probe(mh) for mh in targets.values()))
        down: set[str] = set()
        for mh, ok in zip(targets.values(), answers, strict=True):
            if ok:
                self._failures.pop(mh.mh_id, None)
                continue
            count = self._failures[mh.mh_id] = self._failures.get(mh.mh_id, 0) + 1
            if count >= self._failures_to_drop:
                down.add(mh.mh_id)
        for mh_id in set(self._failures) - set(targets):
            del self._failures[mh_id]
        await self._forget_channels({m.grpc_endpoint for m in targets.values()})
        if down:
            self._move(meetings, down)
        return down

    def _move(self, meetings: list[MeetingActor], down: set[str]) -> None:
        for meeting in meetings:
            if not any(m.mh_id in down for m in meeting.mhs):
                continue
            remaining = without(meeting.mhs, down)
            log.warning(
                "meeting %s: MH %s down, media moves to %s",
                meeting.meeting_id,
                ", ".join(sorted(down & {m.mh_id for m in meeting.mhs})),
                remaining[0].mh_id if remaining else "no MH (media off)",
            )
            with contextlib.suppress(ActorStopped):
                meeting.send(UpdateMhs(remaining))

    async def _probe(self, mh: MhTarget) -> bool:
        channel = self._channels.get(mh.grpc_endpoint)
        if channel is None:
            channel = self._channels[mh.grpc_endpoint] = channel_for(
                mh.grpc_endpoint, tls=self._tls, connect_timeout=self._timeout
            )
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            log.info("MH %s: health check failed: %s", mh.mh_id, exc.code().name)
            return False
        return bool(answer.status == _SERVING)

    async def _forget_channels(self, in_use: set[str]) -> None:
        for endpoint in set(self._channels) - in_use:
            await self._channels.pop(endpoint).close(None)

    async def aclose(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close(None)
