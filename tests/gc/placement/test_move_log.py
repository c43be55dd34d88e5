"""A meeting moved off its MC: the log line says the real reason (read from the log record),
on the real store, with the service's clock moved past the threshold where needed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darktower.common.meeting_settings import MeetingSettings
from darktower.gc.domain import Health, Heartbeat
from darktower.gc.join import JoinTokenIssuer, PlacementService
from darktower.gc.mc_client import AssignOutcome, MhTargetSpec
from darktower.gc.store import GcStore

REGION = "eu"
STALENESS_S = 30.0


class AcceptingMcs:
    async def assign(
        self,
        endpoint: str,
        meeting_id: str,
        targets: Sequence[MhTargetSpec],
        *,
        mc_id: str,
        settings: MeetingSettings | None = None,
    ) -> AssignOutcome:
        return AssignOutcome(accepted=True, reason="")


async def _mc(store: GcStore, mc_id: str, at: datetime, health: Health = Health.HEALTHY) -> None:
    await store.upsert_controller(mc_id, REGION, f"http://{mc_id}:1", None, 100, 1000, at)
    await _beat(store, mc_id, at, health)


async def _beat(store: GcStore, mc_id: str, at: datetime, health: Health) -> None:
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


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # Still "healthy" in the registry (not swept yet) but silent for 40 s.
        ("silent", "its MC mc-pa is stale (silent for 40.0 s, over the 30 s threshold)"),
        ("unhealthy", "its MC mc-pa is unhealthy"),
        ("draining", "its MC mc-pa is draining"),
        ("restarted", "its MC mc-pa is restarted since the meeting was placed"),
    ],
)
async def test_a_move_logs_why_the_meeting_left_its_mc(
    store: GcStore, caplog: pytest.LogCaptureFixture, change: str, expected: str
) -> None:
    t0 = datetime.now(UTC)
    clock = [t0]
    await _mc(store, "mc-pa", t0)
    for i in range(2):
        await store.upsert_media_handler(
            f"mh-{i}", REGION, f"https://mh-{i}:443", f"http://mh-{i}:1", 100, t0, zone=f"z{i}"
        )
        await store.record_load_report(f"mh-{i}", current_streams=0, health=Health.HEALTHY, now=t0)
    service = PlacementService(
        store,
        AcceptingMcs(),
        join_tokens=JoinTokenIssuer(Ed25519PrivateKey.generate(), issuer="gc-1"),
        gc_id="gc-1",
        region=REGION,
        staleness_s=STALENESS_S,
        now=lambda: clock[0],
    )
    assert (await service.join("standup")).mc_id == "mc-pa"

    later = t0 + timedelta(seconds=40)
    clock[0] = later
    for i in range(2):
        await store.record_load_report(
            f"mh-{i}", current_streams=0, health=Health.HEALTHY, now=later
        )
    await _mc(store, "mc-pb", later)
    if change == "unhealthy":
        await _beat(store, "mc-pa", later, Health.UNHEALTHY)
    elif change == "draining":
        await _beat(store, "mc-pa", later, Health.DRAINING)
    elif change == "restarted":
        await _mc(store, "mc-pa", later, Health.DRAINING)  # registered anew, and not eligible

    with caplog.at_level(logging.INFO, logger="darktower.gc.join.service"):
        moved = await service.join("standup")

    assert moved.mc_id == "mc-pb" and not moved.reused
    lines = [r.getMessage() for r in caplog.records if "placing it anew" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"meeting standup: {expected}"), lines[0]
    assert "is healthy" not in lines[0]
