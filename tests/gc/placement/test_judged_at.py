"""Placement judges freshness against this GC's own receipts, on the real store: a GC that has
heard from nobody for a while (its event loop saturated by a join flood) does not call every
MC and MH silent for its own lateness — at most `staleness_s` of it — while an MC that went
silent next to others' fresh beats is still moved. The MC side is an in-process stand-in that
accepts whatever it is asked (the port's local implementation), as in test_move_events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darktower.gc.domain import Health, Heartbeat
from darktower.gc.errors import NoMediaHandlerAvailable
from darktower.gc.join import JoinTokenIssuer, PlacementService
from darktower.gc.last_heard import LastHeard
from darktower.gc.mc_client import AssignOutcome, MhTargetSpec
from darktower.gc.store import GcStore

pytestmark = pytest.mark.timeout(30)

REGION = "eu"
STALENESS_S = 5.0
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class AcceptingMcs:
    """Accepts every assignment."""

    async def assign(
        self, endpoint: str, meeting_id: str, targets: Sequence[MhTargetSpec], **_: Any
    ) -> AssignOutcome:
        return AssignOutcome(accepted=True, reason="")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def _fleet(store: GcStore, heard: LastHeard) -> None:
    """mc-1, mc-2 and mh-1, all last heard from (and written) at T0."""
    for mc_id in ("mc-1", "mc-2"):
        await store.upsert_controller(mc_id, REGION, f"http://{mc_id}:1", None, 100, 1000, T0)
        await store.record_heartbeat(
            Heartbeat(
                mc_id,
                current_meetings=0,
                current_participants=0,
                max_meetings=100,
                max_participants=1000,
                health=Health.HEALTHY,
                at=T0,
            )
        )
        heard.heard("mc", mc_id, T0)
    await store.upsert_media_handler(
        "mh-1", REGION, "https://mh-1:443", "http://mh-1:1", 100, T0, zone="z1"
    )
    await store.record_load_report("mh-1", current_streams=0, health=Health.HEALTHY, now=T0)
    heard.heard("mh", "mh-1", T0)


async def _placed_on(
    store: GcStore, heard: LastHeard, clock: Clock
) -> tuple[PlacementService, str]:
    await _fleet(store, heard)
    service = PlacementService(
        store,
        AcceptingMcs(),
        join_tokens=JoinTokenIssuer(Ed25519PrivateKey.generate(), issuer="gc-1"),
        gc_id="gc-1",
        region=REGION,
        staleness_s=STALENESS_S,
        now=clock,
        last_heard=heard,
    )
    return service, (await service.join("standup")).mc_id


async def test_a_gc_that_heard_from_nobody_does_not_blame_its_peers(store: GcStore) -> None:
    heard, clock = LastHeard(), Clock()
    service, host = await _placed_on(store, heard, clock)
    # 8 s later nothing was received from anyone (the GC's loop was busy): over the 5 s
    # threshold by the clock, but not by what this GC could have received.
    clock.now = at(8)
    again = await service.join("standup")
    assert again.reused and again.mc_id == host
    assert await service.join("other") is not None  # MCs and the MH still placeable


async def test_an_mc_silent_next_to_fresh_ones_is_still_moved(store: GcStore) -> None:
    heard, clock = LastHeard(), Clock()
    service, host = await _placed_on(store, heard, clock)
    (other,) = {"mc-1", "mc-2"} - {host}
    heard.heard("mc", other, at(7.9))
    heard.heard("mh", "mh-1", at(7.9))
    clock.now = at(8)
    moved = await service.join("standup")
    assert not moved.reused and moved.mc_id == other


async def test_the_allowance_is_at_most_the_threshold(store: GcStore) -> None:
    heard, clock = LastHeard(), Clock()
    service, _ = await _placed_on(store, heard, clock)
    # Nobody heard for 60 s: judged 5 s back from now, everyone is 55 s silent.
    clock.now = at(60)
    with pytest.raises(NoMediaHandlerAvailable):
        await service.join("standup")
