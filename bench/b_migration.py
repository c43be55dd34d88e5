"""migration: the gap clients see when their MC drains and their meetings move live.

A real fleet (a GC, two MCs serving client signaling, two simulated MHs, one embedded Redis).
Meetings are joined until the victim MC hosts 20 of them; 5 `ClientSession`s (real WebSockets,
the terminal client's session) join each of its meetings through the GC. The victim then
drains exactly as on SIGTERM (`McApp.drain`, README "Rolling upgrades"), the other MC having
room. Per client, the gap is the time between the `redirect` from the old MC and the
`join_answer` from the new one; also counted: meetings ended (target 0), participant ids
changed (target 0), and the drain's wall time (from the start of the drain until the MC has
stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field

from bench.context import BenchContext
from bench.fleet import BenchFleet
from bench.load import percentile
from bench.results import BenchResult, Metric
from darktower.client.session import ClientSession, Ended, Joined, Redirected, SessionEvent
from darktower.embedded.redis import EmbeddedRedis
from darktower.signaling.protocol import LeaveReason, ParticipantLeft

__all__ = ["NAME", "run"]

NAME = "migration"
TIMEOUT_S = (300.0, 60.0)
VICTIM = "mc-1"


@dataclass
class _Client:
    session: ClientSession
    redirected_at: float | None = None
    back_at: float | None = None
    ended: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    back: asyncio.Event = field(default_factory=asyncio.Event)

    async def follow(self) -> None:
        async for event in self.session.events():
            self._on(event)

    def _on(self, event: SessionEvent) -> None:
        now = time.perf_counter()
        if isinstance(event, Redirected) and self.redirected_at is None:
            self.redirected_at = now
        elif isinstance(event, Joined) and self.redirected_at is not None and self.back_at is None:
            self.back_at = now
            self.back.set()
        elif isinstance(event, Ended):
            self.ended.append(event.reason)
        elif isinstance(event, ParticipantLeft) and event.reason == LeaveReason.MEETING_ENDED:
            self.ended.append(event.reason.value)


async def run(ctx: BenchContext, result: BenchResult) -> None:
    """Fill `result`, metric by metric (what was measured survives a timeout)."""
    meetings: int = ctx.pick(20, 2)
    per_meeting: int = ctx.pick(5, 2)
    result.parameters.update(
        {"mcs": 2, "victim_meetings": meetings, "clients_per_meeting": per_meeting}
    )
    with EmbeddedRedis() as redis:
        fleet = BenchFleet(
            ctx,
            redis.url,
            mcs=2,
            heartbeat_ms=500,
            staleness_s=5.0,
            mc_params={
                "clients": True,
                "binding_secret": secrets.token_urlsafe(32),
                "drain_seconds": 30,
                "meeting_touch_seconds": 1.0,
            },
        )
        async with fleet:
            on_victim = await fleet.meetings_on(VICTIM, meetings, "mig")
            clients: list[_Client] = []
            try:
                for meeting_id in on_victim:
                    for n in range(per_meeting):
                        session = ClientSession(
                            fleet.gc_url,
                            meeting_id,
                            display_name=f"p{n}",
                            user_id=f"u{n}",
                            open_timeout=10,
                        )
                        await session.join()
                        client = _Client(session)
                        client.task = asyncio.create_task(client.follow())
                        clients.append(client)
                ids = [c.session.participant_id for c in clients]
                drained = await fleet.mcs[VICTIM].call({"cmd": "drain"}, timeout=60)
                with contextlib.suppress(TimeoutError):  # who is not back is counted below
                    await asyncio.wait_for(asyncio.gather(*(c.back.wait() for c in clients)), 30)
                gaps = [
                    c.back_at - c.redirected_at
                    for c in clients
                    if c.back_at is not None and c.redirected_at is not None
                ]
                changed = sum(
                    1
                    for c, before in zip(clients, ids, strict=True)
                    if c.session.participant_id != before
                )
                ended = len({c.session.meeting_id for c in clients if c.ended})
            finally:
                for client in clients:
                    if client.task is not None:
                        client.task.cancel()
                await asyncio.gather(
                    *(c.task for c in clients if c.task is not None), return_exceptions=True
                )
                await asyncio.gather(*(c.session.aclose() for c in clients), return_exceptions=True)
    result.add(Metric("gap p50", percentile(gaps, 50) * 1000, "ms"))
    result.add(
        Metric(
            "gap p99",
            percentile(gaps, 99) * 1000,
            "ms",
            target="≤ 1000 ms",
            check=lambda m: m.value <= 1000,
        )
    )
    result.add(Metric("gap max", max(gaps, default=float("nan")) * 1000, "ms"))
    result.add(
        Metric(
            "clients not back",
            len(clients) - len(gaps),
            target="0",
            check=lambda m: m.value == 0,
        )
    )
    result.add(
        Metric(
            "meetings ended",
            ended + int(drained["ended"]) + int(drained["failed"]),
            target="0",
            check=lambda m: m.value == 0,
        )
    )
    result.add(Metric("participant ids changed", changed, target="0", check=lambda m: m.value == 0))
    result.add(Metric("meetings migrated", int(drained["migrated"])))
    result.add(Metric("drain wall time", float(drained["seconds"]), "s"))
