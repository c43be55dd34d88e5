"""SQL statements per join, counted on the real store with an engine event listener."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event

from darktower.common.meeting_settings import MeetingSettings
from darktower.gc.domain import Health, Heartbeat
from darktower.gc.errors import NoControllerAvailable
from darktower.gc.join import JoinTokenIssuer, PlacementService
from darktower.gc.mc_client import AssignOutcome, MhTargetSpec
from darktower.gc.store import GcStore

REGION = "eu"


class Statements:
    def __init__(self, store: GcStore) -> None:
        self.seen: list[str] = []
        event.listen(store.engine.sync_engine, "before_cursor_execute", self._on)

    def _on(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # BEGIN is sent as a statement on SQLite (see engine): count only real work.
        if not statement.lstrip().upper().startswith("BEGIN"):
            self.seen.append(statement)


class AcceptingMcs:
    def __init__(self) -> None:
        self.calls = 0

    async def assign(
        self,
        endpoint: str,
        meeting_id: str,
        targets: Sequence[MhTargetSpec],
        *,
        mc_id: str,
        settings: MeetingSettings | None = None,
    ) -> AssignOutcome:
        self.calls += 1
        return AssignOutcome(accepted=True, reason="")


async def _fleet(store: GcStore, mcs: int = 3) -> None:
    # Taken when the test runs (not at import): placement compares it with the real clock.
    now = datetime.now(UTC)
    for i in range(mcs):
        await store.upsert_controller(f"mc-{i}", REGION, f"http://mc-{i}:1", None, 100, 1000, now)
        await store.record_heartbeat(
            Heartbeat(
                f"mc-{i}",
                current_meetings=0,
                current_participants=0,
                max_meetings=100,
                max_participants=1000,
                health=Health.HEALTHY,
                at=now,
            )
        )
    for i in range(2):
        await store.upsert_media_handler(
            f"mh-{i}", REGION, f"https://mh-{i}:443", f"http://mh-{i}:1", 100, now, zone=f"z{i}"
        )
        await store.record_load_report(f"mh-{i}", current_streams=0, health=Health.HEALTHY, now=now)


async def test_a_new_join_and_a_rejoin_take_few_statements(store: GcStore) -> None:
    await _fleet(store)
    service = PlacementService(
        store,
        AcceptingMcs(),
        join_tokens=JoinTokenIssuer(Ed25519PrivateKey.generate(), issuer="gc-1"),
        gc_id="gc-1",
        region=REGION,
        staleness_s=60,
    )
    statements = Statements(store)

    placed = await service.join("standup")
    new_join = len(statements.seen)
    statements.seen.clear()
    again = await service.join("standup")
    rejoin = len(statements.seen)
    statements.seen.clear()
    await service.join("retro")
    second_new_join = len(statements.seen)

    assert not placed.reused and again.reused and again.mc_id == placed.mc_id
    assert [m.mh_id for m in again.media_handlers] == [m.mh_id for m in placed.media_handlers]
    assert len(placed.media_handlers) == 2
    # New: the live row; the claim (an INSERT alone when nobody holds the meeting); MCs, MHs;
    # MC count + activation (one statement on PostgreSQL, two on SQLite).
    assert new_join <= 6, statements.seen
    # The next one within RegistryCache's max age reads no MCs and MHs.
    assert second_new_join <= new_join - 2, statements.seen
    # Re-join: the live row joined with its MC, and its MHs.
    assert rejoin <= 2, statements.seen


async def test_no_join_is_refused_on_a_cached_registry_alone(store: GcStore) -> None:
    """An MC registered after the registry was cached is found by the next join: placement
    reads afresh before it answers that no MC is available."""
    await _fleet(store, mcs=0)
    service = PlacementService(
        store,
        AcceptingMcs(),
        join_tokens=JoinTokenIssuer(Ed25519PrivateKey.generate(), issuer="gc-1"),
        gc_id="gc-1",
        region=REGION,
        staleness_s=60,
        registry_max_age_s=3600,
    )
    with pytest.raises(NoControllerAvailable):
        await service.join("standup")
    now = datetime.now(UTC)
    await store.upsert_controller("mc-new", REGION, "http://mc-new:1", None, 100, 1000, now)
    beat = Heartbeat("mc-new", 0, 0, 100, 1000, health=Health.HEALTHY, at=now)
    await store.record_heartbeat(beat)

    placed = await service.join("standup")
    assert placed.mc_id == "mc-new" and not placed.reused
