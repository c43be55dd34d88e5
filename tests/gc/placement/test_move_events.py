"""What the recent-placements log records when a meeting leaves its MC, on the real store.

A join that finds the meeting's MC unfit records "moved" (the MC it left and why), then the
"accepted" that placed it anew names that MC and reason too, so the dashboard can say "standup
moved from mc-1 to mc-2 (mc-1 unhealthy)". The MC side is an in-process stand-in that accepts
whatever it is asked (the port's local implementation), so the store and the decisions are
real and the test needs no MC process.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darktower.common.meeting_settings import MeetingSettings
from darktower.gc.domain import Health, Heartbeat
from darktower.gc.join import JoinTokenIssuer, PlacementService
from darktower.gc.mc_client import AssignOutcome, MhTargetSpec
from darktower.gc.store import GcStore

pytestmark = pytest.mark.timeout(30)

REGION = "eu"
STALENESS_S = 30


class AcceptingMcs:
    """Accepts every assignment, remembering which MC endpoints were asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def assign(
        self,
        endpoint: str,
        meeting_id: str,
        targets: Sequence[MhTargetSpec],
        *,
        mc_id: str,
        settings: MeetingSettings | None = None,
    ) -> AssignOutcome:
        self.asked.append(endpoint)
        return AssignOutcome(accepted=True, reason="")


async def _beat(store: GcStore, mc_id: str, health: Health, at: datetime) -> None:
    await store.record_heartbeat(
        Heartbeat(
            mc_id,
            current_meetings=0,
            current_participants=0,
            max_meetings=100,
            max_participants=1000,
            health=health,
            at=at,
        )
    )


async def _fleet(store: GcStore, now: datetime) -> None:
    for i in (1, 2):
        await store.upsert_controller(f"mc-{i}", REGION, f"http://mc-{i}:1", None, 100, 1000, now)
        await _beat(store, f"mc-{i}", Health.HEALTHY, now)
    await store.upsert_media_handler(
        "mh-1", REGION, "https://mh-1:443", "http://mh-1:1", 100, now, zone="z1"
    )
    await store.record_load_report("mh-1", current_streams=0, health=Health.HEALTHY, now=now)


def _service(store: GcStore) -> PlacementService:
    return PlacementService(
        store,
        AcceptingMcs(),
        join_tokens=JoinTokenIssuer(Ed25519PrivateKey.generate(), issuer="gc-1"),
        gc_id="gc-1",
        region=REGION,
        staleness_s=STALENESS_S,
    )


@pytest.mark.parametrize(
    ("health", "heartbeat_age_s", "reason"),
    [
        (Health.UNHEALTHY, 0, "unhealthy"),
        (Health.DRAINING, 0, "draining"),
        # Still "healthy" in the registry, but silent past the threshold (not yet swept).
        (Health.HEALTHY, STALENESS_S + 5, "stale"),
    ],
)
async def test_a_move_names_the_mc_left_and_why_on_both_events(
    store: GcStore, health: Health, heartbeat_age_s: int, reason: str
) -> None:
    now = datetime.now(UTC)
    await _fleet(store, now)
    service = _service(store)
    first = await service.join("standup")
    old = first.mc_id
    new = "mc-2" if old == "mc-1" else "mc-1"
    await _beat(store, old, health, now - timedelta(seconds=heartbeat_age_s))

    again = await service.join("standup")

    assert again.mc_id == new and not again.reused
    placed, moved, replaced = list(service.recent)
    assert (placed.outcome, placed.mc_id, placed.previous_mc_id) == ("accepted", old, None)
    assert (moved.outcome, moved.mc_id) == ("moved", old)
    assert (moved.previous_mc_id, moved.move_reason) == (old, reason)
    assert moved.detail == f"previous MC {reason}"
    assert (replaced.outcome, replaced.mc_id) == ("accepted", new)
    assert (replaced.previous_mc_id, replaced.move_reason) == (old, reason)


async def test_a_restarted_mc_is_named_as_the_reason(store: GcStore) -> None:
    now = datetime.now(UTC)
    await _fleet(store, now)
    service = _service(store)
    old = (await service.join("standup")).mc_id
    # Registered again after the meeting was placed: a new process that never hosted it.
    later = datetime.now(UTC) + timedelta(seconds=1)
    await store.upsert_controller(old, REGION, f"http://{old}:1", None, 100, 1000, later)
    await _beat(store, old, Health.HEALTHY, later)

    await service.join("standup")

    moved = service.recent[1]
    assert (moved.outcome, moved.previous_mc_id, moved.move_reason) == ("moved", old, "restarted")
    assert service.recent[2].previous_mc_id == old


async def test_a_first_placement_and_a_reuse_carry_no_move(store: GcStore) -> None:
    await _fleet(store, datetime.now(UTC))
    service = _service(store)
    await service.join("standup")
    await service.join("standup")  # reused: answered without an event
    (placed,) = service.recent
    assert placed.outcome == "accepted"
    assert placed.previous_mc_id is None and placed.move_reason is None
