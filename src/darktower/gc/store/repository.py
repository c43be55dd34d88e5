"""`GcStore`: the GC's registry of MCs and MHs and its meeting assignments, in SQL.

Every method is one short transaction and returns frozen domain values (`models`, and the
read views `LivePlacement` / `Registry` here), never ORM objects. The join path is built to
take few round trips: `live_placement` answers a re-join in one read transaction of at most
two statements, `claim_and_read_registry` claims and reads the placement candidates in one.

Database failures surface as `StoreUnavailable` / `StoreError` (see `errors`), with
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

Heartbeats may be written behind (`start_heartbeat_batching` → `HeartbeatBatcher`): the latest
beat per MC is kept in memory and all pending beats are written every `interval_s` (and as
soon as `max_pending` MCs have one) in ONE transaction. The consistency window: what readers
of the database see of an MC's load, health and `last_heartbeat_at` is at most one flush
interval (plus one write) behind what it reported. Staleness is never judged on old data:
`mark_stale_controllers` flushes first. A registration flushes first too (so a beat of the
MC's previous life cannot land after it), and `aclose()` flushes what is pending. Beats that
could not be written (database down) stay pending, under any newer beat, for the next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Table,
    bindparam,
    delete,
    func,
    select,
    update,
)
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
from darktower.runtime.supervisor import TaskSupervisor

__all__ = ["GcStore", "HeartbeatBatcher", "HeartbeatUpdate", "LivePlacement", "Registry"]

log = logging.getLogger(__name__)

# A claim attempt restarts when the live row it conflicted with vanished before it could be
# read (ended or released meanwhile); a handful of rounds settles any real race.
_CLAIM_ROUNDS = 5
_NOT_STALE = (Health.UNHEALTHY.value, Health.DRAINING.value)
_R = TypeVar("_R", ControllerRow, MediaHandlerRow)


@dataclass(frozen=True, slots=True)
class LivePlacement:
    """A meeting's live row with what answering a re-join needs, read in one transaction:
    its MC (None if the row is CLAIMED or the MC is gone) and its MHs that still exist."""

    assignment: Assignment
    controller: Controller | None
    media_handlers: Mapping[str, MediaHandler]


@dataclass(frozen=True, slots=True)
class Registry:
    """The MCs and MHs of a region (each ordered by id), read in one transaction."""

    controllers: list[Controller]
    media_handlers: list[MediaHandler]


@dataclass(frozen=True, slots=True)
class HeartbeatUpdate:
    """One MC heartbeat as `record_heartbeat` takes it, for `record_heartbeats`."""

    controller_id: str
    current_meetings: int
    current_participants: int
    max_meetings: int
    max_participants: int
    health: Health
    at: datetime
    cpu_percent: float | None = None
    memory_percent: float | None = None
    meeting_loads: Mapping[str, int] | None = None


class GcStore:
    """The GC's SQL store. It owns `engine`: `aclose()` disposes it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        self._batcher: HeartbeatBatcher | None = None

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
        """Flush pending heartbeats (if batching), close every pooled connection; the store
        is unusable afterwards."""
        batcher, self._batcher = self._batcher, None
        try:
            if batcher is not None:
                await batcher.stop()
        finally:
            await self._engine.dispose()

    async def start_heartbeat_batching(
        self, *, interval_s: float, max_pending: int, tasks: TaskSupervisor | None = None
    ) -> HeartbeatBatcher:
        """Start writing heartbeats behind (see the module docstring) and return the batcher
        to submit them to; its flushes run as task `gc-heartbeats` of `tasks` (the GC's; a
        private supervisor if None). Raises `StoreError` if the registered MC ids cannot be
        read."""
        if self._batcher is not None:
            raise RuntimeError("heartbeat batching is already running")
        batcher = HeartbeatBatcher(self, interval_s=interval_s, max_pending=max_pending)
        await batcher.start(tasks)
        self._batcher = batcher
        return batcher

    async def flush_heartbeats(self) -> None:
        """Write the heartbeats still pending in the batcher, if batching is on."""
        if self._batcher is not None:
            await self._batcher.flush()

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
        await self.flush_heartbeats()
        async with self._transaction() as session:
            row = await self._upsert(session, ControllerRow, id, values)
        if self._batcher is not None:
            self._batcher.registered(id)
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
        values = _heartbeat_values(
            HeartbeatUpdate(
                id,
                current_meetings=current_meetings,
                current_participants=current_participants,
                max_meetings=max_meetings,
                max_participants=max_participants,
                health=health,
                at=now,
                cpu_percent=cpu_percent,
                memory_percent=memory_percent,
            )
        )
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

    async def record_heartbeats(self, beats: Sequence[HeartbeatUpdate]) -> None:
        """Store many MCs' heartbeats in one transaction, as `record_heartbeat` would one by
        one (at most one beat per MC: pass the latest). Beats of MCs that are not registered
        are skipped. The UPDATEs go out as one executemany per set of columns (CPU and memory
        come with comprehensive heartbeats only)."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for beat in beats:
            values = _heartbeat_values(beat)
            values["b_id"] = beat.controller_id
            groups.setdefault(tuple(sorted(values)), []).append(values)
        table = ControllerRow.__table__
        assert isinstance(table, Table)
        async with self._transaction() as session:
            for rows in groups.values():
                await session.execute(update(table).where(table.c.id == bindparam("b_id")), rows)
            for beat in beats:
                if beat.meeting_loads is not None:
                    await self._store_meeting_loads(session, beat.controller_id, beat.meeting_loads)

    async def controller_ids(self) -> set[str]:
        """The ids of every registered MC."""
        async with self._transaction(read_only=True) as session:
            return set(await session.scalars(select(ControllerRow.id)))

    async def get_controller(self, id: str) -> Controller | None:
        row = await self._get(ControllerRow, id)
        return None if row is None else row.to_domain()

    async def list_controllers(self, region: str | None = None) -> list[Controller]:
        """All MCs (of `region`, if given), ordered by id."""
        return [row.to_domain() for row in await self._list(ControllerRow, region)]

    async def mark_stale_controllers(self, older_than: datetime) -> list[str]:
        """Mark UNHEALTHY every MC silent since before `older_than`; return their ids, sorted.

        Silent = last heartbeat (or registration, if it never beat) older than the threshold.
        DRAINING and already UNHEALTHY MCs are left alone and not returned.
        """
        await self.flush_heartbeats()
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
        row = await self._get(MediaHandlerRow, id)
        return None if row is None else row.to_domain()

    async def list_media_handlers(self, region: str | None = None) -> list[MediaHandler]:
        """All MHs (of `region`, if given), ordered by id."""
        return [row.to_domain() for row in await self._list(MediaHandlerRow, region)]

    # --- registry rows, either table -------------------------------------------------------

    async def _get(self, table: type[_R], id: str) -> _R | None:
        async with self._transaction(read_only=True) as session:
            return await session.get(table, id)

    async def _list(self, table: type[_R], region: str | None) -> list[_R]:
        statement = select(table).order_by(table.id)
        if region is not None:
            statement = statement.where(table.region == region)
        async with self._transaction(read_only=True) as session:
            return list(await session.scalars(statement))

    async def mark_stale_media_handlers(self, older_than: datetime) -> list[str]:
        """As `mark_stale_controllers`, by last load report (or registration)."""
        last_seen = func.coalesce(MediaHandlerRow.last_report_at, MediaHandlerRow.registered_at)
        return await self._mark_stale(MediaHandlerRow, last_seen, older_than)

    # --- assignments -----------------------------------------------------------------------

    async def read_registry(self, region: str) -> Registry:
        """`list_controllers(region)` and `list_media_handlers(region)` in one transaction."""
        async with self._transaction(read_only=True) as session:
            return await _read_registry(session, region)

    async def live_placement(self, meeting_id: str, region: str) -> LivePlacement | None:
        """The live row of the meeting (CLAIMED or ACTIVE) joined with its MC, and the MHs it
        names; None if there is no live row. One read transaction: one statement, plus one
        for the MHs when the row names any."""
        statement = (
            select(AssignmentRow, ControllerRow)
            .outerjoin(ControllerRow, ControllerRow.id == AssignmentRow.mc_id)
            .where(*_live(meeting_id, region))
        )
        async with self._transaction(read_only=True) as session:
            found = (await session.execute(statement)).first()
            if found is None:
                return None
            row, controller = found
            handlers: dict[str, MediaHandler] = {}
            if row.mh_ids:
                mh_rows = await session.scalars(
                    select(MediaHandlerRow).where(MediaHandlerRow.id.in_(list(row.mh_ids)))
                )
                handlers = {h.id: h.to_domain() for h in mh_rows}
            return LivePlacement(
                row.to_domain(), None if controller is None else controller.to_domain(), handlers
            )

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
        claim, _ = await self._claim(
            meeting_id, region, gc_id, now, stale_claim_after=stale_claim_after, read=False
        )
        return claim

    async def claim_and_read_registry(
        self,
        meeting_id: str,
        region: str,
        gc_id: str,
        now: datetime,
        *,
        stale_claim_after: timedelta,
    ) -> tuple[Claim, Registry | None]:
        """`claim_meeting`, and when the claim is won `read_registry(region)` in the same
        transaction (one round trip fewer for a placement); the registry is None otherwise."""
        return await self._claim(
            meeting_id, region, gc_id, now, stale_claim_after=stale_claim_after, read=True
        )

    async def _claim(
        self,
        meeting_id: str,
        region: str,
        gc_id: str,
        now: datetime,
        *,
        stale_claim_after: timedelta,
        read: bool,
    ) -> tuple[Claim, Registry | None]:
        for _ in range(_CLAIM_ROUNDS):
            async with self._transaction() as session:
                claim = await self._claim_in(
                    session, meeting_id, region, gc_id, now, stale_claim_after
                )
                if claim is None:
                    continue  # ended or released since our insert saw it: try again
                if claim.won and read:
                    return claim, await _read_registry(session, region)
                return claim, None
        raise StoreError(f"meeting {meeting_id!r}: claim kept racing with ended rows")

    async def _claim_in(
        self,
        session: AsyncSession,
        meeting_id: str,
        region: str,
        gc_id: str,
        now: datetime,
        stale_claim_after: timedelta,
    ) -> Claim | None:
        inserted = await session.scalar(self._insert_live_claim(meeting_id, region, gc_id, now))
        if inserted is not None:
            return Claim(won=True)
        live = await session.scalar(
            select(AssignmentRow).where(*_live(meeting_id, region)).with_for_update()
        )
        if live is None:
            return None
        if live.state == AssignmentState.CLAIMED and now - live.claimed_at > stale_claim_after:
            live.ended_at = now
            await session.flush()
            session.add(_claim_row(meeting_id, region, gc_id, now))
            return Claim(won=True, taken_over=live.to_domain())
        return Claim(won=False, existing=live.to_domain())

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
        # Two UPDATEs, no SELECT: the MC's count first (an unknown MC would otherwise trip the
        # foreign key), then the claim, conditional on still being ours; raising rolls back both.
        async with self._transaction() as session:
            counted = await session.scalar(
                update(ControllerRow)
                .where(ControllerRow.id == mc_id)
                .values(assignments_since_heartbeat=ControllerRow.assignments_since_heartbeat + 1)
                .returning(ControllerRow.id),
                execution_options=_ORM_BULK,
            )
            if counted is None:
                raise UnknownController(mc_id)
            activated: AssignmentRow | None = await session.scalar(
                update(AssignmentRow)
                .where(
                    *_live(meeting_id, region),
                    AssignmentRow.state == AssignmentState.CLAIMED.value,
                    AssignmentRow.claimed_by == gc_id,
                )
                .values(
                    state=AssignmentState.ACTIVE.value,
                    mc_id=mc_id,
                    mh_ids=list(mh_ids),
                    assigned_at=now,
                )
                .returning(AssignmentRow),
                execution_options=_ORM_BULK,
            )
            if activated is None:
                raise ClaimLost(meeting_id, region, gc_id)
            return activated.to_domain()

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


class HeartbeatBatcher:
    """Write-behind for MC heartbeats (see the module docstring for the consistency window).

    `submit` answers at once: NOT_FOUND-worthy ids are told from an in-memory set of known MC
    ids (loaded at `start`, grown by registrations; an id missing from it is looked up in the
    database once, for MCs registered through another GC). A background task flushes every
    `interval_s`, or early once `max_pending` MCs have a beat pending; `stop` flushes the rest.
    """

    def __init__(self, store: GcStore, *, interval_s: float, max_pending: int) -> None:
        if not interval_s > 0 or max_pending < 1:
            raise ValueError("interval_s must be positive and max_pending at least 1")
        self._store = store
        self._interval = interval_s
        self._max_pending = max_pending
        self._pending: dict[str, HeartbeatUpdate] = {}
        self._known: set[str] = set()
        # One flush at a time: two concurrent ones could commit an older batch last.
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self, tasks: TaskSupervisor | None = None) -> None:
        """Load the known MC ids, then flush in task `gc-heartbeats` of `tasks` (a private
        supervisor if None). A `StoreError` in a flush is logged and retried; any other error
        ends the task (the supervisor logs it and makes the GC not ready)."""
        self._known |= await self._store.controller_ids()
        tasks = tasks or TaskSupervisor(["gc-heartbeats"])
        self._task = tasks.spawn("gc-heartbeats", self._run())

    def registered(self, controller_id: str) -> None:
        self._known.add(controller_id)

    async def submit(self, beat: HeartbeatUpdate) -> None:
        """Keep `beat` as its MC's latest (CPU, memory and meeting loads it lacks are kept
        from a pending older beat). Raises `UnknownController` for an unregistered MC."""
        mc_id = beat.controller_id
        if mc_id not in self._known:
            if await self._store.get_controller(mc_id) is None:
                raise UnknownController(mc_id)
            self._known.add(mc_id)
        older = self._pending.get(mc_id)
        self._pending[mc_id] = beat if older is None else _merged(older, beat)
        if len(self._pending) >= self._max_pending:
            self._wake.set()

    async def flush(self) -> int:
        """Write every pending beat in one transaction; return how many. On failure they stay
        pending (under any newer beat) and the `StoreError` is raised."""
        async with self._lock:
            batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                await self._store.record_heartbeats(list(batch.values()))
            except BaseException:
                for mc_id, beat in batch.items():
                    newer = self._pending.get(mc_id)
                    self._pending[mc_id] = beat if newer is None else _merged(beat, newer)
                raise
            return len(batch)

    async def stop(self) -> None:
        """Stop the background flushes, then flush what is pending; a database that is down by
        then loses those beats (logged; the next heartbeats bring them back). Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # A crash was reported by the supervisor already: not raised again here.
            await asyncio.gather(task, return_exceptions=True)
        try:
            await self.flush()
        except StoreError as exc:
            log.warning("dropping %d pending heartbeats at stop: %s", len(self._pending), exc)
            self._pending.clear()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except StoreError as exc:
                log.warning("heartbeat flush failed, kept for the next one: %s", exc)


def _merged(older: HeartbeatUpdate, newer: HeartbeatUpdate) -> HeartbeatUpdate:
    """`newer`, with what only comprehensive beats carry taken from `older` where it lacks it."""
    return HeartbeatUpdate(
        newer.controller_id,
        current_meetings=newer.current_meetings,
        current_participants=newer.current_participants,
        max_meetings=newer.max_meetings,
        max_participants=newer.max_participants,
        health=newer.health,
        at=newer.at,
        cpu_percent=older.cpu_percent if newer.cpu_percent is None else newer.cpu_percent,
        memory_percent=(
            older.memory_percent if newer.memory_percent is None else newer.memory_percent
        ),
        meeting_loads=older.meeting_loads if newer.meeting_loads is None else newer.meeting_loads,
    )


# Bulk UPDATE/DELETE in one fresh session each: there is no identity map to synchronise.
_ORM_BULK: Mapping[str, Any] = {"synchronize_session": False}


def _heartbeat_values(beat: HeartbeatUpdate) -> dict[str, Any]:
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


async def _read_registry(session: AsyncSession, region: str) -> Registry:
    controllers = await session.scalars(
        select(ControllerRow).where(ControllerRow.region == region).order_by(ControllerRow.id)
    )
    controller_list = [row.to_domain() for row in controllers]
    handlers = await session.scalars(
        select(MediaHandlerRow).where(MediaHandlerRow.region == region).order_by(MediaHandlerRow.id)
    )
    return Registry(controller_list, [row.to_domain() for row in handlers])


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
