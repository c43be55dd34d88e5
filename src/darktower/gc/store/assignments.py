"""`AssignmentStore`: meeting assignments and the claim protocol — claim a meeting, record
its MC, release, end, purge.

Several joins, possibly on several GC processes sharing one database, must place a meeting
on one MC:

1. `claim_meeting` inserts the live row (state CLAIMED) with `INSERT ... ON CONFLICT DO
   NOTHING` against the unique partial index on (meeting_id, region) WHERE ended_at IS NULL.
   Exactly one concurrent insert wins; the others read the winner's row (`Claim.existing`).
   A claim left CLAIMED for longer than `stale_claim_after` (its GC died mid-placement) is
   ended and replaced by ours in the same transaction, under `SELECT ... FOR UPDATE`. The
   common case, no live row at all, is the INSERT alone (on PostgreSQL in autocommit: one
   round trip); only a conflict opens that transaction.
2. The winner asks MCs; on success `activate_assignment` turns its claim ACTIVE (and counts
   the assignment on the MC; one statement on PostgreSQL), on failure `release_claim` deletes
   it.
3. Losers `wait_for_activation` and answer the winner's MC.

On SQLite every writing transaction is `BEGIN IMMEDIATE` (see `engine`), so writes are
serialised; reads start deferred and, in WAL mode, never wait for a writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BindParameter,
    ColumnElement,
    CursorResult,
    Select,
    Table,
    bindparam,
    delete,
    exists,
    literal_column,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from darktower.gc.domain import Assignment, AssignmentState, Claim
from darktower.gc.store.database import ORM_BULK, Database
from darktower.gc.store.errors import ClaimLost, StoreError, UnknownController
from darktower.gc.store.models import AssignmentRow, ControllerRow, UtcDateTime, live
from darktower.gc.store.views import ReadViews

__all__ = ["AssignmentStore"]

# A claim attempt restarts when the live row it conflicted with vanished before it could be
# read (ended or released meanwhile); a handful of rounds settles any real race.
_CLAIM_ROUNDS = 5
_FOREIGN_KEY_VIOLATION = "23503"  # PostgreSQL's SQLSTATE


class AssignmentStore:
    """Assignments on `db`; `views` answers `wait_for_activation`'s polls."""

    def __init__(self, db: Database, views: ReadViews) -> None:
        self._db = db
        self._views = views
        # Built once, a Core INSERT (the ORM's bulk insert around it cost more CPU than the
        # statement): parameters `p_meeting`, `p_region`, `p_gc`, `p_now` (none named like a
        # column: those would be taken as values of their columns).
        assignments = _table(AssignmentRow)
        self._insert_claim = (
            db.insert(assignments)
            .values(
                meeting_id=bindparam("p_meeting"),
                region=bindparam("p_region"),
                mc_id=None,
                mh_ids=[],
                state=AssignmentState.CLAIMED.value,
                claimed_by=bindparam("p_gc"),
                claimed_at=bindparam("p_now", type_=UtcDateTime()),
            )
            .on_conflict_do_nothing(
                index_elements=["meeting_id", "region"],
                index_where=assignments.c.ended_at.is_(None),
            )
            .returning(assignments.c.id)
        )

    async def _insert_live_claim(
        self,
        session: AsyncSession | AsyncConnection,
        meeting_id: str,
        region: str,
        gc_id: str,
        now: datetime,
    ) -> int | None:
        """The id of our new CLAIMED live row; None if the meeting has a live row already."""
        claim = {"p_meeting": meeting_id, "p_region": region, "p_gc": gc_id, "p_now": now}
        inserted: int | None = await session.scalar(self._insert_claim, claim)
        return inserted

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
        return await self._claim(
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
        """Turn the caller's claim into the ACTIVE assignment on `mc_id` with `mh_ids`.

        Atomically with it the MC's `assignments_since_heartbeat` grows by one. Raises
        `ClaimLost` if the live row is not (any more) a CLAIMED row of `gc_id`, and
        `UnknownController` if `mc_id` is not registered; either way nothing is written.
        """
        if self._db.is_postgresql:
            return await self._activate_in_one_statement(
                meeting_id, region, gc_id, mc_id, mh_ids, now
            )
        # Two UPDATEs, no SELECT: the MC's count first (an unknown MC would otherwise trip the
        # foreign key), then the claim, conditional on still being ours; raising rolls back both.
        async with self._db.begin_transaction() as session:
            counted = await session.scalar(
                update(ControllerRow)
                .where(ControllerRow.id == mc_id)
                .values(assignments_since_heartbeat=ControllerRow.assignments_since_heartbeat + 1)
                .returning(ControllerRow.id),
                execution_options=ORM_BULK,
            )
            if counted is None:
                raise UnknownController(mc_id)
            activated: AssignmentRow | None = await session.scalar(
                update(AssignmentRow)
                .where(*_our_claim(meeting_id, region, gc_id))
                .values(_activation(mc_id, mh_ids, now))
                .returning(AssignmentRow),
                execution_options=ORM_BULK,
            )
            if activated is None:
                raise ClaimLost(meeting_id, region, gc_id)
            return activated.to_domain()

    async def _activate_in_one_statement(
        self,
        meeting_id: str,
        region: str,
        gc_id: str,
        mc_id: str,
        mh_ids: Sequence[str],
        now: datetime,
    ) -> Assignment:
        """`activate_assignment` on PostgreSQL: both UPDATEs in one statement (one round trip
        in autocommit instead of four), the MC's count conditional on the activation through a
        data-modifying CTE. An unknown MC fails the activation's foreign key: nothing written."""
        activation = {
            "p_meeting": meeting_id,
            "p_region": region,
            "p_gc": gc_id,
            "p_mc": mc_id,
            "p_mh_ids": list(mh_ids),
            "p_now": now,
            "p_claimed": AssignmentState.CLAIMED.value,
            "p_active": AssignmentState.ACTIVE.value,
        }
        async with self._db.one_statement_connection() as connection:
            try:
                row = (await connection.execute(_ACTIVATE, activation)).first()
            except IntegrityError as exc:
                if getattr(exc.orig, "sqlstate", None) == _FOREIGN_KEY_VIOLATION:
                    raise UnknownController(mc_id) from exc
                raise
        if row is None:
            raise ClaimLost(meeting_id, region, gc_id)
        values = dict(row._mapping)
        del values["counted"]
        return AssignmentRow(**values).to_domain()

    async def release_claim(self, meeting_id: str, region: str, gc_id: str) -> bool:
        """Delete the caller's CLAIMED live row (placement failed); False if it was not there."""
        statement = (
            delete(AssignmentRow)
            .where(*_our_claim(meeting_id, region, gc_id))
            .returning(AssignmentRow.id)
        )
        async with self._db.begin_transaction(one_statement=True) as session:
            return await session.scalar(statement, execution_options=ORM_BULK) is not None

    async def end_assignment(self, meeting_id: str, region: str, now: datetime) -> bool:
        """End the live row (claimed or active) of the meeting; False if there was none.

        The meeting may then be claimed anew; an interrupted claimer gets `ClaimLost`.
        """
        return await self._end(now, *live(meeting_id, region))

    async def end_assignment_if(
        self, meeting_id: str, region: str, mc_id: str, now: datetime
    ) -> bool:
        """End the live row only if it is still ACTIVE on `mc_id` (before placing anew)."""
        return await self._end(now, *live(meeting_id, region), AssignmentRow.mc_id == mc_id)

    async def purge_ended(self, older_than: datetime) -> int:
        """Delete rows that ended before `older_than`; return how many."""
        statement = delete(AssignmentRow).where(AssignmentRow.ended_at < older_than)
        async with self._db.begin_transaction(one_statement=True) as session:
            result = await session.execute(statement, execution_options=ORM_BULK)
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
            row = await self._views.active_assignment(meeting_id, region)
            if row is None or row.state == AssignmentState.ACTIVE:
                return row
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(poll, remaining))

    # --- helpers ---------------------------------------------------------------------------

    async def _claim(
        self,
        meeting_id: str,
        region: str,
        gc_id: str,
        now: datetime,
        *,
        stale_claim_after: timedelta,
    ) -> Claim:
        # The common case first: no live row, our INSERT alone wins the claim (one statement,
        # one round trip on PostgreSQL). A conflict takes the full path below.
        async with self._db.one_statement_connection() as connection:
            inserted = await self._insert_live_claim(connection, meeting_id, region, gc_id, now)
        if inserted is not None:
            return Claim(won=True)
        for _ in range(_CLAIM_ROUNDS):
            async with self._db.begin_transaction() as session:
                claim = await self._claim_in(
                    session, meeting_id, region, gc_id, now, stale_claim_after
                )
            if claim is not None:
                return claim
            # else: ended or released since our insert saw it: try again
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
        if await self._insert_live_claim(session, meeting_id, region, gc_id, now) is not None:
            return Claim(won=True)
        row = await session.scalar(
            select(AssignmentRow).where(*live(meeting_id, region)).with_for_update()
        )
        if row is None:
            return None
        if row.state == AssignmentState.CLAIMED and now - row.claimed_at > stale_claim_after:
            row.ended_at = now
            await session.flush()
            session.add(_claim_row(meeting_id, region, gc_id, now))
            return Claim(won=True, taken_over=row.to_domain())
        return Claim(won=False, existing=row.to_domain())

    async def _end(self, now: datetime, *where: ColumnElement[bool]) -> bool:
        statement = (
            update(AssignmentRow).where(*where).values(ended_at=now).returning(AssignmentRow.id)
        )
        async with self._db.begin_transaction(one_statement=True) as session:
            return await session.scalar(statement, execution_options=ORM_BULK) is not None


def _table(row: type[AssignmentRow] | type[ControllerRow]) -> Table:
    table = row.__table__
    assert isinstance(table, Table)
    return table


def _activation_statement() -> Select[Any]:
    """`_activate_in_one_statement`'s statement (PostgreSQL): parameters `p_meeting`,
    `p_region`, `p_gc` (whose claim), `p_mc`, `p_mh_ids`, `p_now`, and the states `p_claimed`
    and `p_active`. None is named like a column: an UPDATE takes a parameter named like one of
    its table's columns as a value to SET."""
    assignments, controllers = _table(AssignmentRow), _table(ControllerRow)
    activated = (
        update(assignments)
        .where(
            *live(bindparam("p_meeting"), bindparam("p_region")),
            assignments.c.state == bindparam("p_claimed"),
            assignments.c.claimed_by == bindparam("p_gc"),
        )
        .values(
            state=bindparam("p_active"),
            mc_id=bindparam("p_mc"),
            mh_ids=bindparam("p_mh_ids", type_=JSON()),
            assigned_at=bindparam("p_now", type_=UtcDateTime()),
        )
        .returning(*assignments.c)
        .cte("activated")
    )
    counted = (
        update(controllers)
        .where(controllers.c.id == bindparam("p_mc"), exists(select(activated.c.id)))
        .values(
            assignments_since_heartbeat=controllers.c.assignments_since_heartbeat
            + literal_column("1")
        )
        .returning(controllers.c.id)
        .cte("counted")
    )
    return select(activated, select(counted.c.id).scalar_subquery().label("counted"))


def _our_claim(
    meeting_id: str | BindParameter[str],
    region: str | BindParameter[str],
    gc_id: str | BindParameter[str],
) -> tuple[ColumnElement[bool], ...]:
    """WHERE clauses of the meeting's live row while it is `gc_id`'s claim."""
    return (
        *live(meeting_id, region),
        AssignmentRow.state == AssignmentState.CLAIMED.value,
        AssignmentRow.claimed_by == gc_id,
    )


def _activation(mc_id: str, mh_ids: Sequence[str], now: datetime) -> dict[str, Any]:
    return {
        "state": AssignmentState.ACTIVE.value,
        "mc_id": mc_id,
        "mh_ids": list(mh_ids),
        "assigned_at": now,
    }


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


# Built once: building it per call (its CTEs proxy every column) cost ~1 ms of CPU.
_ACTIVATE = _activation_statement()
