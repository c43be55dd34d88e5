"""`GcStore`: the GC's registry of MCs and MHs and its meeting assignments, in SQL.

Every method is one short transaction and returns frozen domain values (`models`), never ORM
objects. Database failures surface as `StoreUnavailable` / `StoreError` (see `errors`), with
messages free of SQL, parameters and the URL.

The claim protocol (several joins, possibly on several GC processes sharing one database,
must place a meeting on one MC):

1. `claim_meeting` inserts the live row (state CLAIMED) with `INSERT ... ON CONFLICT DO
   NOTHING` against the unique partial index on (meeting_id, region) WHERE ended_at IS NULL.
   Exactly one concurrent insert wins; the others read the winner's row (`Claim.existing`).
   A claim left CLAIMED for longer than `stale_claim_after` (its GC died mid-placement) is
   ended and replaced by ours in the same transaction, under `SELECT ... FOR UPDATE`.
2. The winner asks MCs; on success `activate_assignment` turns its claim ACTIVE (and counts
   the assignment on the MC), on failure `release_claim` deletes it.
3. Losers `wait_for_activation` and answer the winner's MC.

On SQLite every writing transaction is `BEGIN IMMEDIATE` (see `engine`), so writes are
serialised; reads start deferred and, in WAL mode, never wait for a writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, CursorResult, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from darktower.gc.store.engine import READ_ONLY, create_engine, database_errors, migrate
from darktower.gc.store.errors import (
    ClaimLost,
    StoreError,
    UnknownController,
    UnknownMediaHandler,
)
from darktower.gc.store.models import (
    Assignment,
    AssignmentRow,
    AssignmentState,
    Claim,
    Controller,
    ControllerRow,
    Health,
    MediaHandler,
    MediaHandlerRow,
)

__all__ = ["GcStore"]

# A claim attempt restarts when the live row it conflicted with vanished before it could be
# read (ended or released meanwhile); a handful of rounds settles any real race.
_CLAIM_ROUNDS = 5
_NOT_STALE = (Health.UNHEALTHY.value, Health.DRAINING.value)
_R = TypeVar("_R", ControllerRow, MediaHandlerRow)


class GcStore:
    """The GC's SQL store. It owns `engine`: `aclose()` disposes it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )

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
        """Close every pooled connection; the store is unusable afterwards."""
        await self._engine.dispose()

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
        async with self._transaction() as session:
            row = await self._upsert(session, ControllerRow, id, values)
            return row.to_domain()

    async def record_heartbeat(
        self,
        id: str,
        *,
        current_meetings: int,
        current_participants: int,
        max_meetings: int,
        max_participants: int,
        health: Health,
        cpu_percent: float | None = None,
        memory_percent: float | None = None,
        meeting_loads: Mapping[str, int] | None = None,
        now: datetime,
    ) -> Controller:
        """Store an MC's reported load and health; resets `assignments_since_heartbeat`.

        CPU and memory come only with comprehensive heartbeats: None keeps the last values
        (a fast heartbeat must not erase them). `meeting_loads` (meeting id → participants,
        comprehensive heartbeats) is the MC's whole list: in the same transaction every live
        ACTIVE assignment on this MC takes its reported count, or 0 if the MC did not list it;
        rows on other MCs are never touched, so a late report from an MC that lost a meeting
        cannot overwrite the new host's count. Raises `UnknownController` if `id` is not
        registered.
        """
        values: dict[str, Any] = {
            "current_meetings": current_meetings,
            "current_participants": current_participants,
            "max_meetings": max_meetings,
            "max_participants": max_participants,
            "health": Health(health).value,
            "last_heartbeat_at": now,
            "assignments_since_heartbeat": 0,
        }
        if cpu_percent is not None:
            values["cpu_percent"] = cpu_percent
        if memory_percent is not None:
            values["memory_percent"] = memory_percent
        statement = (
            update(ControllerRow)
            .where(ControllerRow.id == id)
            .values(**values)
            .returning(ControllerRow)
        )
        async with self._transaction() as session:
            row = await session.scalar(statement, execution_options=_ORM_BULK)
            if row is None:
                raise UnknownController(id)
            if meeting_loads is not None:
                await self._store_meeting_loads(session, id, meeting_loads)
            return row.to_domain()

    async def _store_meeting_loads(
        self, session: AsyncSession, mc_id: str, loads: Mapping[str, int]
    ) -> None:
        hosted = await session.execute(
            select(AssignmentRow.id, AssignmentRow.meeting_id, AssignmentRow.participants).where(
                AssignmentRow.mc_id == mc_id,
                AssignmentRow.state == AssignmentState.ACTIVE.value,
                AssignmentRow.ended_at.is_(None),
            )
        )
        changes = [
            {"id": row_id, "participants": loads.get(meeting_id, 0)}
            for row_id, meeting_id, participants in hosted
            if loads.get(meeting_id, 0) != participants
        ]
        if changes:
            # An UPDATE by primary key per changed row, sent as one executemany.
            await session.execute(update(AssignmentRow), changes)

    async def get_controller(self, id: str) -> Controller | None:
        async with self._transaction(read_only=True) as session:
            row = await session.get(ControllerRow, id)
            return None if row is None else row.to_domain()

    async def list_controllers(self, region: str | None = None) -> list[Controller]:
        """All MCs (of `region`, if given), ordered by id."""
        statement = select(ControllerRow).order_by(ControllerRow.id)
        if region is not None:
            statement = statement.where(ControllerRow.region == region)
        async with self._transaction(read_only=True) as session:
            return [row.to_domain() for row in await session.scalars(statement)]

    async def mark_stale_controllers(self, older_than: datetime) -> list[str]:
        """Mark UNHEALTHY every MC silent since before `older_than`; return their ids, sorted.

        Silent = last heartbeat (or registration, if it never beat) older than the threshold.
        DRAINING and already UNHEALTHY MCs are left alone and not returned.
        """
        last_seen = func.coalesce(ControllerRow.last_heartbeat_at, ControllerRow.registered_at)
        return await self._mark_stale(ControllerRow, last_seen, older_than)

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
        async with self._transaction() as session:
            row = await self._upsert(session, MediaHandlerRow, id, values)
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
        async with self._transaction() as session:
            row = await session.scalar(statement, execution_options=_ORM_BULK)
            if row is None:
                raise UnknownMediaHandler(id)
            return row.to_domain()

    async def get_media_handler(self, id: str) -> MediaHandler | None:
        async with self._transaction(read_only=True) as session:
            row = await session.get(MediaHandlerRow, id)
            return None if row is None else row.to_domain()

    async def list_media_handlers(self, region: str | None = None) -> list[MediaHandler]:
        """All MHs (of `region`, if given), ordered by id."""
        statement = select(MediaHandlerRow).order_by(MediaHandlerRow.id)
        if region is not None:
            statement = statement.where(MediaHandlerRow.region == region)
        async with self._transaction(read_only=True) as session:
            return [row.to_domain() for row in await session.scalars(statement)]

    async def mark_stale_media_handlers(self, older_than: datetime) -> list[str]:
        """As `mark_stale_controllers`, by last load report (or registration)."""
        last_seen = func.coalesce(MediaHandlerRow.last_report_at, MediaHandlerRow.registered_at)
        return await self._mark_stale(MediaHandlerRow, last_seen, older_than)

    # --- assignments -----------------------------------------------------------------------

    async def active_assignment(self, meeting_id: str, region: str) -> Assignment | None:
        """The live row of the meeting (CLAIMED or ACTIVE), or None."""
        async with self._transaction(read_only=True) as session:
            row = await session.scalar(select(AssignmentRow).where(*_live(meeting_id, region)))
            return None if row is None else row.to_domain()

    async def list_live_meetings(
        self, region: str | None = None, *, limit: int
    ) -> tuple[list[Assignment], int]:
        """The ACTIVE live assignments (of `region`, if given), most participants first then
        by meeting id, at most `limit` of them; and how many there are in all."""
        where = [
            AssignmentRow.ended_at.is_(None),
            AssignmentRow.state == AssignmentState.ACTIVE.value,
        ]
        if region is not None:
            where.append(AssignmentRow.region == region)
        rows = (
            select(AssignmentRow)
            .where(*where)
            .order_by(AssignmentRow.participants.desc(), AssignmentRow.meeting_id)
            .limit(limit)
        )
        count = select(func.count()).select_from(AssignmentRow).where(*where)
        async with self._transaction(read_only=True) as session:
            total = await session.scalar(count)
            return [row.to_domain() for row in await session.scalars(rows)], int(total or 0)

    async def claim_meeting(
        self,
        meeting_id: str,
        region: str,
        gc_id: str,
        now: datetime,
        *,
        stale_claim_after: timedelta,
    ) -> Claim:
        """Try to become the one placing the meeting (see the module docstring).

        `won=True`: the caller holds a CLAIMED live row and must `activate_assignment` or
        `release_claim`. `won=False`: `existing` is the live row someone holds — possibly the
        caller's own gc_id from a concurrent join, which must wait all the same.
        """
        for _ in range(_CLAIM_ROUNDS):
            async with self._transaction() as session:
                inserted = await session.scalar(
                    self._insert_live_claim(meeting_id, region, gc_id, now)
                )
                if inserted is not None:
                    return Claim(won=True)
                live = await session.scalar(
                    select(AssignmentRow).where(*_live(meeting_id, region)).with_for_update()
                )
                if live is None:
                    continue  # ended or released since our insert saw it: try again
                if live.state == AssignmentState.CLAIMED and now - live.claimed_at > (
                    stale_claim_after
                ):
                    live.ended_at = now
                    await session.flush()
                    session.add(_claim_row(meeting_id, region, gc_id, now))
                    return Claim(won=True, taken_over=live.to_domain())
                return Claim(won=False, existing=live.to_domain())
        raise StoreError(f"meeting {meeting_id!r}: claim kept racing with ended rows")

    async def activate_assignment(
        self,
        meeting_id: str,
        region: str,
        gc_id: str,
        mc_id: str,
        mh_ids: Sequence[str],
        now: datetime,
    ) -> Assignment:
        """Turn the caller's claim into the ACTIVE assignment on `mc_id` with `mh_ids`.

        In the same transaction the MC's `assignments_since_heartbeat` grows by one. Raises
        `ClaimLost` if the live row is not (any more) a CLAIMED row of `gc_id`, and
        `UnknownController` if `mc_id` is not registered; either way nothing is written.
        """
        async with self._transaction() as session:
            live = await session.scalar(
                select(AssignmentRow).where(*_live(meeting_id, region)).with_for_update()
            )
            if live is None or live.state != AssignmentState.CLAIMED or live.claimed_by != gc_id:
                raise ClaimLost(meeting_id, region, gc_id)
            counted = await session.scalar(
                update(ControllerRow)
                .where(ControllerRow.id == mc_id)
                .values(assignments_since_heartbeat=ControllerRow.assignments_since_heartbeat + 1)
                .returning(ControllerRow.id),
                execution_options=_ORM_BULK,
            )
            if counted is None:
                raise UnknownController(mc_id)
            live.state = AssignmentState.ACTIVE.value
            live.mc_id = mc_id
            live.mh_ids = list(mh_ids)
            live.assigned_at = now
            await session.flush()
            return live.to_domain()

    async def release_claim(self, meeting_id: str, region: str, gc_id: str) -> bool:
        """Delete the caller's CLAIMED live row (placement failed); False if it was not there."""
        statement = (
            delete(AssignmentRow)
            .where(
                *_live(meeting_id, region),
                AssignmentRow.state == AssignmentState.CLAIMED.value,
                AssignmentRow.claimed_by == gc_id,
            )
            .returning(AssignmentRow.id)
        )
        async with self._transaction() as session:
            return await session.scalar(statement, execution_options=_ORM_BULK) is not None

    async def end_assignment(self, meeting_id: str, region: str, now: datetime) -> bool:
        """End the live row (claimed or active) of the meeting; False if there was none.

        The meeting may then be claimed anew; an interrupted claimer gets `ClaimLost`.
        """
        return await self._end(now, *_live(meeting_id, region))

    async def end_assignment_if(
        self, meeting_id: str, region: str, mc_id: str, now: datetime
    ) -> bool:
        """End the live row only if it is still ACTIVE on `mc_id` (before placing anew)."""
        return await self._end(now, *_live(meeting_id, region), AssignmentRow.mc_id == mc_id)

    async def purge_ended(self, older_than: datetime) -> int:
        """Delete rows that ended before `older_than`; return how many."""
        statement = delete(AssignmentRow).where(AssignmentRow.ended_at < older_than)
        async with self._transaction() as session:
            result = await session.execute(statement, execution_options=_ORM_BULK)
            assert isinstance(result, CursorResult)
            return result.rowcount

    async def wait_for_activation(
        self, meeting_id: str, region: str, timeout: float, poll: float = 0.05
    ) -> Assignment | None:
        """Poll until the meeting's live row is ACTIVE and return it.

        None if the live row vanished (released, ended) or `timeout` seconds passed first.
        A claim that was taken over by another GC is waited for like the original.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            live = await self.active_assignment(meeting_id, region)
            if live is None or live.state == AssignmentState.ACTIVE:
                return live
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(poll, remaining))

    # --- helpers ---------------------------------------------------------------------------

    @asynccontextmanager
    async def _transaction(self, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        sessions = self._read_sessions if read_only else self._sessions
        with database_errors():
            async with sessions.begin() as session:
                yield session

    async def _upsert(
        self, session: AsyncSession, row: type[_R], id: str, values: dict[str, Any]
    ) -> _R:
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(row)
            .values(id=id, **values)
            .on_conflict_do_update(index_elements=["id"], set_=values)
            .returning(row)
        )
        result = await session.scalars(statement, execution_options={"populate_existing": True})
        upserted: _R = result.one()
        return upserted

    async def _mark_stale(
        self,
        row: type[ControllerRow] | type[MediaHandlerRow],
        last_seen: ColumnElement[datetime],
        older_than: datetime,
    ) -> list[str]:
        statement = (
            update(row)
            .where(last_seen < older_than, row.health.not_in(_NOT_STALE))
            .values(health=Health.UNHEALTHY.value)
            .returning(row.id)
        )
        async with self._transaction() as session:
            return sorted(await session.scalars(statement, execution_options=_ORM_BULK))

    def _insert_live_claim(self, meeting_id: str, region: str, gc_id: str, now: datetime) -> Any:
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        return (
            dialect.insert(AssignmentRow)
            .values(
                meeting_id=meeting_id,
                region=region,
                mc_id=None,
                mh_ids=[],
                state=AssignmentState.CLAIMED.value,
                claimed_by=gc_id,
                claimed_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=["meeting_id", "region"],
                index_where=AssignmentRow.ended_at.is_(None),
            )
            .returning(AssignmentRow.id)
        )

    async def _end(self, now: datetime, *where: ColumnElement[bool]) -> bool:
        statement = (
            update(AssignmentRow).where(*where).values(ended_at=now).returning(AssignmentRow.id)
        )
        async with self._transaction() as session:
            return await session.scalar(statement, execution_options=_ORM_BULK) is not None


# Bulk UPDATE/DELETE in one fresh session each: there is no identity map to synchronise.
_ORM_BULK: Mapping[str, Any] = {"synchronize_session": False}


def _live(meeting_id: str, region: str) -> tuple[ColumnElement[bool], ...]:
    return (
        AssignmentRow.meeting_id == meeting_id,
        AssignmentRow.region == region,
        AssignmentRow.ended_at.is_(None),
    )


def _claim_row(meeting_id: str, region: str, gc_id: str, now: datetime) -> AssignmentRow:
    return AssignmentRow(
        meeting_id=meeting_id,
        region=region,
        mc_id=None,
        mh_ids=[],
        state=AssignmentState.CLAIMED.value,
        claimed_by=gc_id,
        claimed_at=now,
        assigned_at=None,
        ended_at=None,
    )
