"""`GcStore`: the GC's store, one object for its callers, composed of its parts.

* `registry` (`RegistryStore`): MCs and MHs — registration, heartbeats, load reports, marks;
* `assignments` (`AssignmentStore`): the claim protocol — claim, activate, release, end, purge;
* `views` (`ReadViews`): what the join path, the HTTP API and the dashboard read.

`GcStore` forwards each method to its part unchanged: the contracts are documented there.
Every method is one short transaction returning frozen domain values (`darktower.gc.domain`),
never ORM objects; database failures surface as `DatabaseUnavailable` / `StoreError`.
Reports written behind are not the store's business: see `darktower.gc.heartbeats`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from darktower.gc.domain import (
    Assignment,
    Claim,
    Controller,
    Health,
    Heartbeat,
    LivePlacement,
    LoadReport,
    MediaHandler,
    Registry,
)
from darktower.gc.store.assignments import AssignmentStore
from darktower.gc.store.database import Database
from darktower.gc.store.engine import create_engine, migrate
from darktower.gc.store.registry import RegistryStore
from darktower.gc.store.views import ReadViews

__all__ = ["GcStore"]


class GcStore:
    """The GC's SQL store. It owns `engine`: `aclose()` disposes it."""

    def __init__(self, engine: AsyncEngine) -> None:
        db = Database(engine)
        self.registry = RegistryStore(db)
        self.views = ReadViews(db)
        self.assignments = AssignmentStore(db, self.views)
        self._engine = engine

    @classmethod
    async def open(cls, url: str, *, connect_args: Mapping[str, Any] | None = None) -> GcStore:
        """Connect to `url`, upgrade its schema to head, and return the store."""
        engine = create_engine(url, connect_args=connect_args)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def aclose(self) -> None:
        """Close every pooled connection; the store is unusable afterwards. Heartbeats still
        pending in a `HeartbeatBatcher` must be flushed before (its `stop()` does)."""
        await self._engine.dispose()

    # --- registry --------------------------------------------------------------------------

    async def upsert_controller(
        self,
        id: str,
        region: str,
        grpc_endpoint: str,
        webtransport_endpoint: str | None,
        max_meetings: int,
        max_participants: int,
        now: datetime,
    ) -> Controller:
        return await self.registry.upsert_controller(
            id, region, grpc_endpoint, webtransport_endpoint, max_meetings, max_participants, now
        )

    async def record_heartbeat(self, beat: Heartbeat) -> Controller:
        return await self.registry.record_heartbeat(beat)

    async def record_heartbeats(self, beats: Sequence[Heartbeat]) -> None:
        await self.registry.record_heartbeats(beats)

    async def controller_ids(self) -> set[str]:
        return await self.registry.controller_ids()

    async def get_controller(self, id: str) -> Controller | None:
        return await self.registry.get_controller(id)

    async def list_controllers(self, region: str | None = None) -> list[Controller]:
        return await self.registry.list_controllers(region)

    async def controller_health_counts(self) -> dict[Health, int]:
        return await self.registry.controller_health_counts()

    async def mark_stale_controllers(
        self, older_than: datetime, *, heard: Collection[str] = ()
    ) -> list[str]:
        return await self.registry.mark_stale_controllers(older_than, heard=heard)

    async def mark_controller_unhealthy(self, id: str) -> bool:
        return await self.registry.mark_controller_unhealthy(id)

    async def upsert_media_handler(
        self,
        id: str,
        region: str,
        webtransport_endpoint: str,
        grpc_endpoint: str,
        max_streams: int,
        now: datetime,
        *,
        zone: str | None = None,
    ) -> MediaHandler:
        return await self.registry.upsert_media_handler(
            id, region, webtransport_endpoint, grpc_endpoint, max_streams, now, zone=zone
        )

    async def record_load_report(
        self,
        id: str,
        *,
        current_streams: int,
        health: Health,
        cpu_percent: float | None = None,
        memory_percent: float | None = None,
        bandwidth_percent: float | None = None,
        now: datetime,
    ) -> MediaHandler:
        return await self.registry.record_load_report(
            id,
            current_streams=current_streams,
            health=health,
            cpu_percent=cpu_percent,
            memory_percent=memory_percent,
            bandwidth_percent=bandwidth_percent,
            now=now,
        )

    async def record_load_reports(self, reports: Sequence[LoadReport]) -> None:
        await self.registry.record_load_reports(reports)

    async def media_handler_ids(self) -> set[str]:
        return await self.registry.media_handler_ids()

    async def get_media_handler(self, id: str) -> MediaHandler | None:
        return await self.registry.get_media_handler(id)

    async def list_media_handlers(self, region: str | None = None) -> list[MediaHandler]:
        return await self.registry.list_media_handlers(region)

    async def media_handler_health_counts(self) -> dict[Health, int]:
        return await self.registry.media_handler_health_counts()

    async def mark_stale_media_handlers(
        self, older_than: datetime, *, heard: Collection[str] = ()
    ) -> list[str]:
        return await self.registry.mark_stale_media_handlers(older_than, heard=heard)

    # --- assignments -----------------------------------------------------------------------

    async def claim_meeting(
        self,
        meeting_id: str,
        region: str,
        gc_id: str,
        now: datetime,
        *,
        stale_claim_after: timedelta,
    ) -> Claim:
        return await self.assignments.claim_meeting(
            meeting_id, region, gc_id, now, stale_claim_after=stale_claim_after
        )

    async def activate_assignment(
        self,
        meeting_id: str,
        region: str,
        gc_id: str,
        mc_id: str,
        mh_ids: Sequence[str],
        now: datetime,
    ) -> Assignment:
        return await self.assignments.activate_assignment(
            meeting_id, region, gc_id, mc_id, mh_ids, now
        )

    async def release_claim(self, meeting_id: str, region: str, gc_id: str) -> bool:
        return await self.assignments.release_claim(meeting_id, region, gc_id)

    async def end_assignment(self, meeting_id: str, region: str, now: datetime) -> bool:
        return await self.assignments.end_assignment(meeting_id, region, now)

    async def end_assignment_if(
        self, meeting_id: str, region: str, mc_id: str, now: datetime
    ) -> bool:
        return await self.assignments.end_assignment_if(meeting_id, region, mc_id, now)

    async def purge_ended(self, older_than: datetime) -> int:
        return await self.assignments.purge_ended(older_than)

    async def wait_for_activation(
        self, meeting_id: str, region: str, timeout: float, poll: float = 0.05
    ) -> Assignment | None:
        return await self.assignments.wait_for_activation(meeting_id, region, timeout, poll)

    # --- read views ------------------------------------------------------------------------

    async def read_registry(self, region: str) -> Registry:
        return await self.views.read_registry(region)

    async def live_placement(self, meeting_id: str, region: str) -> LivePlacement | None:
        return await self.views.live_placement(meeting_id, region)

    async def active_assignment(self, meeting_id: str, region: str) -> Assignment | None:
        return await self.views.active_assignment(meeting_id, region)

    async def list_live_meetings(
        self, region: str | None = None, *, limit: int
    ) -> tuple[list[Assignment], int]:
        return await self.views.list_live_meetings(region, limit=limit)
