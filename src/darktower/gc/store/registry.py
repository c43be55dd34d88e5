"""`RegistryStore`: the registered MCs and MHs — registration, heartbeats and load reports,
the staleness marks, reads by id and by region.

Registration resets a row (PENDING, counts 0, no heartbeat yet); a heartbeat or load report
overwrites the reported load. Writing reports behind is not done here: the GC's batchers
(`darktower.gc.heartbeats`) call `record_heartbeats` / `record_load_reports` with a batch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Table, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from darktower.gc.domain import (
    AssignmentState,
    Controller,
    Health,
    Heartbeat,
    LoadReport,
    MediaHandler,
)
from darktower.gc.store.database import ORM_BULK, Database
from darktower.gc.store.errors import UnknownController, UnknownMediaHandler
from darktower.gc.store.models import AssignmentRow, ControllerRow, MediaHandlerRow

__all__ = ["RegistryStore"]

_NOT_STALE = (Health.UNHEALTHY.value, Health.DRAINING.value)
_R = TypeVar("_R", ControllerRow, MediaHandlerRow)


class RegistryStore:
    """The MC and MH registry on `db`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- meeting controllers ---------------------------------------------------------------

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
        """Register (or re-register) an MC: PENDING, counts 0, no heartbeat yet, as of `now`."""
        values: dict[str, Any] = {
            "region": region,
            "grpc_endpoint": grpc_endpoint,
            "webtransport_endpoint": webtransport_endpoint,
            "max_meetings": max_meetings,
            "max_participants": max_participants,
            "current_meetings": 0,
            "current_participants": 0,
            "health": Health.PENDING.value,
            "cpu_percent": None,
            "memory_percent": None,
            "registered_at": now,
            "last_heartbeat_at": None,
            "assignments_since_heartbeat": 0,
        }
        async with self._db.begin_transaction() as session:
            row = await self._db.upsert(session, ControllerRow, id, values)
        return row.to_domain()

    async def record_heartbeat(self, beat: Heartbeat) -> Controller:
        """Store an MC's reported load and health; resets `assignments_since_heartbeat`.

        CPU and memory come only with comprehensive heartbeats: None keeps the last values
        (a fast heartbeat must not erase them). `meeting_loads` (meeting id → participants,
        comprehensive heartbeats) is the MC's whole list: in the same transaction every live
        ACTIVE assignment on this MC takes its reported count, or 0 if the MC did not list it;
        rows on other MCs are never touched, so a late report from an MC that lost a meeting
        cannot overwrite the new host's count. Raises `UnknownController` if the MC is not
        registered.
        """
        statement = (
            update(ControllerRow)
            .where(ControllerRow.id == beat.controller_id)
            .values(**_heartbeat_values(beat))
            .returning(ControllerRow)
        )
        async with self._db.begin_transaction() as session:
            row = await session.scalar(statement, execution_options=ORM_BULK)
            if row is None:
                raise UnknownController(beat.controller_id)
            if beat.meeting_loads is not None:
                await _store_meeting_loads(session, {beat.controller_id: beat.meeting_loads})
            return row.to_domain()

    async def record_heartbeats(self, beats: Sequence[Heartbeat]) -> None:
        """Store many MCs' heartbeats in one transaction, as `record_heartbeat` would one by
        one (at most one beat per MC: pass the latest). Beats of MCs that are not registered
        are skipped. On PostgreSQL one statement (`_FLUSH`); on SQLite the UPDATEs go out as
        one executemany per set of columns (CPU and memory come with comprehensive heartbeats
        only), then the meetings' loads."""
        if self._db.is_postgresql:
            await self._record_heartbeats_postgresql(beats)
            return
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for beat in beats:
            values = _heartbeat_values(beat)
            values["b_id"] = beat.controller_id
            groups.setdefault(tuple(sorted(values)), []).append(values)
        table = ControllerRow.__table__
        assert isinstance(table, Table)
        loads = {b.controller_id: b.meeting_loads for b in beats if b.meeting_loads is not None}
        async with self._db.begin_transaction() as session:
            for rows in groups.values():
                await session.execute(update(table).where(table.c.id == bindparam("b_id")), rows)
            if loads:
                await _store_meeting_loads(session, loads)

    async def _record_heartbeats_postgresql(self, beats: Sequence[Heartbeat]) -> None:
        """`record_heartbeats` on PostgreSQL: ONE statement (`_FLUSH`, atomic by itself, in
        autocommit) for every beat and meeting load, their values sent as arrays, instead of a
        transaction of an executemany of one UPDATE a beat, a SELECT of the loaded MCs'
        meetings and an executemany of their counts. The flush runs on the event loop that
        answers every beat: 100 beats (a quarter comprehensive) took it 3.9-4.4 ms of CPU
        that way, 1.0-1.4 ms in one statement."""
        params: dict[str, list[Any]] = {name: [] for name in _FLUSH_ARRAYS}
        for beat in beats:
            params["id"].append(beat.controller_id)
            params["current_meetings"].append(beat.current_meetings)
            params["current_participants"].append(beat.current_participants)
            params["max_meetings"].append(beat.max_meetings)
            params["max_participants"].append(beat.max_participants)
            params["health"].append(Health(beat.health).value)
            params["at"].append(beat.at)
            params["cpu_percent"].append(beat.cpu_percent)
            params["memory_percent"].append(beat.memory_percent)
            if beat.meeting_loads is not None:
                params["load_mc_id"].append(beat.controller_id)
                for meeting_id, participants in beat.meeting_loads.items():
                    params["loaded_mc_id"].append(beat.controller_id)
                    params["meeting_id"].append(meeting_id)
                    params["participants"].append(participants)
        async with self._db.one_statement_connection() as connection:
            await connection.execute(_FLUSH, params)

    async def controller_ids(self) -> set[str]:
        """The ids of every registered MC."""
        async with self._db.begin_transaction(read_only=True) as session:
            return set(await session.scalars(select(ControllerRow.id)))

    async def get_controller(self, id: str) -> Controller | None:
        row = await self._get(ControllerRow, id)
        return None if row is None else row.to_domain()

    async def list_controllers(self, region: str | None = None) -> list[Controller]:
        """All MCs (of `region`, if given), ordered by id."""
        return [row.to_domain() for row in await self._list(ControllerRow, region)]

    async def controller_health_counts(self) -> dict[Health, int]:
        """How many MCs have each health (every value a key, 0 when none has it)."""
        return await self._health_counts(ControllerRow)

    async def mark_stale_controllers(
        self, older_than: datetime, *, heard: Collection[str] = ()
    ) -> list[str]:
        """Mark UNHEALTHY every MC silent since before `older_than`; return their ids, sorted.

        Silent = last heartbeat (or registration, if it never beat) older than the threshold,
        as the database has it, and not in `heard`: the MCs the caller heard from since the
        threshold (a beat received but not yet written; the sweeper passes them). DRAINING and
        already UNHEALTHY MCs are left alone and not returned.
        """
        last_seen = func.coalesce(ControllerRow.last_heartbeat_at, ControllerRow.registered_at)
        return await self._mark_stale(ControllerRow, last_seen, older_than, heard)

    async def mark_controller_unhealthy(self, id: str) -> bool:
        """Mark one MC UNHEALTHY now, whatever its last heartbeat (the GC found it down on a
        client's evidence); True if it was not UNHEALTHY already. Its next heartbeat (a
        live MC's) sets its reported health again."""
        statement = (
            update(ControllerRow)
            .where(ControllerRow.id == id, ControllerRow.health != Health.UNHEALTHY.value)
            .values(health=Health.UNHEALTHY.value)
            .returning(ControllerRow.id)
        )
        async with self._db.begin_transaction() as session:
            marked = await session.scalar(statement, execution_options=ORM_BULK)
        return marked is not None

    # --- media handlers --------------------------------------------------------------------

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
        """Register (or re-register) an MH: PENDING, 0 streams, no load report yet."""
        values: dict[str, Any] = {
            "region": region,
            "zone": zone,
            "webtransport_endpoint": webtransport_endpoint,
            "grpc_endpoint": grpc_endpoint,
            "max_streams": max_streams,
            "current_streams": 0,
            "health": Health.PENDING.value,
            "cpu_percent": None,
            "memory_percent": None,
            "bandwidth_percent": None,
            "registered_at": now,
            "last_report_at": None,
        }
        async with self._db.begin_transaction() as session:
            row = await self._db.upsert(session, MediaHandlerRow, id, values)
            return row.to_domain()

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
        """Store an MH's load report. Raises `UnknownMediaHandler` if `id` is not registered."""
        statement = (
            update(MediaHandlerRow)
            .where(MediaHandlerRow.id == id)
            .values(
                current_streams=current_streams,
                health=Health(health).value,
                cpu_percent=cpu_percent,
                memory_percent=memory_percent,
                bandwidth_percent=bandwidth_percent,
                last_report_at=now,
            )
            .returning(MediaHandlerRow)
        )
        async with self._db.begin_transaction() as session:
            row = await session.scalar(statement, execution_options=ORM_BULK)
            if row is None:
                raise UnknownMediaHandler(id)
            return row.to_domain()

    async def record_load_reports(self, reports: Sequence[LoadReport]) -> None:
        """Store many MHs' load reports in one transaction, as `record_load_report` would one
        by one (at most one report per MH: pass the latest), as one executemany. Reports of
        MHs that are not registered are skipped."""
        if not reports:
            return
        rows = [
            {
                "b_id": r.handler_id,
                "current_streams": r.current_streams,
                "health": Health(r.health).value,
                "cpu_percent": r.cpu_percent,
                "memory_percent": r.memory_percent,
                "bandwidth_percent": r.bandwidth_percent,
                "last_report_at": r.at,
            }
            for r in reports
        ]
        table = MediaHandlerRow.__table__
        assert isinstance(table, Table)
        async with self._db.begin_transaction() as session:
            await session.execute(update(table).where(table.c.id == bindparam("b_id")), rows)

    async def media_handler_ids(self) -> set[str]:
        """The ids of every registered MH."""
        async with self._db.begin_transaction(read_only=True) as session:
            return set(await session.scalars(select(MediaHandlerRow.id)))

    async def get_media_handler(self, id: str) -> MediaHandler | None:
        row = await self._get(MediaHandlerRow, id)
        return None if row is None else row.to_domain()

    async def list_media_handlers(self, region: str | None = None) -> list[MediaHandler]:
        """All MHs (of `region`, if given), ordered by id."""
        return [row.to_domain() for row in await self._list(MediaHandlerRow, region)]

    async def media_handler_health_counts(self) -> dict[Health, int]:
        """As `controller_health_counts`, for MHs."""
        return await self._health_counts(MediaHandlerRow)

    async def mark_stale_media_handlers(
        self, older_than: datetime, *, heard: Collection[str] = ()
    ) -> list[str]:
        """As `mark_stale_controllers`, by last load report (or registration)."""
        last_seen = func.coalesce(MediaHandlerRow.last_report_at, MediaHandlerRow.registered_at)
        return await self._mark_stale(MediaHandlerRow, last_seen, older_than, heard)

    # --- either table ----------------------------------------------------------------------

    async def _get(self, table: type[_R], id: str) -> _R | None:
        async with self._db.begin_transaction(read_only=True) as session:
            return await session.get(table, id)

    async def _list(self, table: type[_R], region: str | None) -> list[_R]:
        statement = select(table).order_by(table.id)
        if region is not None:
            statement = statement.where(table.region == region)
        async with self._db.begin_transaction(read_only=True) as session:
            return list(await session.scalars(statement))

    async def _health_counts(self, table: type[_R]) -> dict[Health, int]:
        # Counted by the database: the sweeper's gauges every few seconds must not load
        # every row (5,000 MCs as ORM objects took ~160 ms of the event loop's CPU).
        statement = select(table.health, func.count()).group_by(table.health)
        counts = dict.fromkeys(Health, 0)
        async with self._db.begin_transaction(read_only=True) as session:
            for health, count in await session.execute(statement):
                counts[Health(health)] += count
        return counts

    async def _mark_stale(
        self,
        row: type[ControllerRow] | type[MediaHandlerRow],
        last_seen: ColumnElement[datetime],
        older_than: datetime,
        heard: Collection[str],
    ) -> list[str]:
        silent = [last_seen < older_than, row.health.not_in(_NOT_STALE)]
        async with self._db.begin_transaction() as session:
            if heard:
                # The silent ones are read first and `heard` subtracted here: a NOT IN of every
                # id heard (thousands of bind parameters) cost the event loop ~20 ms a sweep.
                # The UPDATE checks silence again (a beat written meanwhile spares its MC).
                found = await session.scalars(select(row.id).where(*silent))
                ids = sorted(set(found).difference(heard))
                if not ids:
                    return []
                silent.append(row.id.in_(ids))
            statement = (
                update(row).where(*silent).values(health=Health.UNHEALTHY.value).returning(row.id)
            )
            return sorted(await session.scalars(statement, execution_options=ORM_BULK))


# A flush on PostgreSQL (`_record_heartbeats_postgresql`), what `record_heartbeat` does one
# beat at a time for all of them in one statement, its values as arrays: each beat's columns
# (`id` … `memory_percent`); the MCs that reported their meetings' loads (`load_mc_id`, an MC
# may report none) and each load reported (`loaded_mc_id`, `meeting_id`, `participants`).
# The controllers take their beat's columns (CPU and memory are NULL in a fast beat: the stored
# values stay); every live ACTIVE assignment on an MC that reported loads takes its count, 0 if
# the MC did not list it. The tables' and the state's names are `ControllerRow`'s,
# `AssignmentRow`'s and `AssignmentState.ACTIVE` (tests/gc/store/test_meeting_loads.py).
_FLUSH = text(
    """WITH beats AS (
    UPDATE controllers AS c SET
        current_meetings = u.current_meetings,
        current_participants = u.current_participants,
        max_meetings = u.max_meetings,
        max_participants = u.max_participants,
        health = u.health,
        last_heartbeat_at = u.at,
        assignments_since_heartbeat = 0,
        cpu_percent = COALESCE(u.cpu_percent, c.cpu_percent),
        memory_percent = COALESCE(u.memory_percent, c.memory_percent)
    FROM unnest(
        CAST(:id AS text[]),
        CAST(:current_meetings AS integer[]),
        CAST(:current_participants AS integer[]),
        CAST(:max_meetings AS integer[]),
        CAST(:max_participants AS integer[]),
        CAST(:health AS text[]),
        CAST(:at AS timestamptz[]),
        CAST(:cpu_percent AS float8[]),
        CAST(:memory_percent AS float8[])
    ) AS u(
        id, current_meetings, current_participants, max_meetings, max_participants, health,
        at, cpu_percent, memory_percent
    )
    WHERE c.id = u.id
), loads AS (
    SELECT * FROM unnest(
        CAST(:loaded_mc_id AS text[]),
        CAST(:meeting_id AS text[]),
        CAST(:participants AS integer[])
    ) AS u(mc_id, meeting_id, participants)
), counted AS (
    SELECT a.id, COALESCE(loads.participants, 0) AS participants
    FROM meeting_assignments AS a
    LEFT JOIN loads ON loads.mc_id = a.mc_id AND loads.meeting_id = a.meeting_id
    WHERE a.mc_id = ANY(CAST(:load_mc_id AS text[]))
        AND a.state = 'active' AND a.ended_at IS NULL
)
UPDATE meeting_assignments AS a SET participants = counted.participants
FROM counted
WHERE a.id = counted.id AND a.participants IS DISTINCT FROM counted.participants"""
)
_FLUSH_ARRAYS = (
    "id",
    "current_meetings",
    "current_participants",
    "max_meetings",
    "max_participants",
    "health",
    "at",
    "cpu_percent",
    "memory_percent",
    "load_mc_id",
    "loaded_mc_id",
    "meeting_id",
    "participants",
)


def _heartbeat_values(beat: Heartbeat) -> dict[str, Any]:
    """The controller columns a heartbeat sets; CPU and memory only when reported."""
    values: dict[str, Any] = {
        "current_meetings": beat.current_meetings,
        "current_participants": beat.current_participants,
        "max_meetings": beat.max_meetings,
        "max_participants": beat.max_participants,
        "health": Health(beat.health).value,
        "last_heartbeat_at": beat.at,
        "assignments_since_heartbeat": 0,
    }
    if beat.cpu_percent is not None:
        values["cpu_percent"] = beat.cpu_percent
    if beat.memory_percent is not None:
        values["memory_percent"] = beat.memory_percent
    return values


async def _store_meeting_loads(
    session: AsyncSession, loads_by_mc: Mapping[str, Mapping[str, int]]
) -> None:
    """Each live ACTIVE assignment on an MC of `loads_by_mc` takes its count in that MC's
    loads (0 if not listed). One SELECT for all of them: a flush carries the comprehensive
    beats of many MCs, and a SELECT each cost the event loop ~0.7 ms a beat."""
    hosted = await session.execute(
        select(
            AssignmentRow.id,
            AssignmentRow.mc_id,
            AssignmentRow.meeting_id,
            AssignmentRow.participants,
        ).where(
            AssignmentRow.mc_id.in_(list(loads_by_mc)),
            AssignmentRow.state == AssignmentState.ACTIVE.value,
            AssignmentRow.ended_at.is_(None),
        )
    )
    changes: list[dict[str, Any]] = []
    for row_id, mc_id, meeting_id, participants in hosted:
        assert mc_id is not None  # selected by it
        count = loads_by_mc[mc_id].get(meeting_id, 0)
        if count != participants:
            changes.append({"id": row_id, "participants": count})
    if changes:
        # An UPDATE by primary key per changed row, sent as one executemany.
        await session.execute(update(AssignmentRow), changes)
