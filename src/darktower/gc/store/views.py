"""`ReadViews`: what the join path, the HTTP API and the dashboard read about meetings.

Each view is one read-only transaction returning domain values. The join path is built to
take few round trips: `live_placement` answers a re-join in at most two statements, and
placement reads `read_registry` through a cache (`darktower.gc.join.registry_cache`).
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from darktower.gc.domain import Assignment, AssignmentState, LivePlacement, MediaHandler, Registry
from darktower.gc.store.database import Database
from darktower.gc.store.models import AssignmentRow, ControllerRow, MediaHandlerRow, live

__all__ = ["ReadViews", "read_registry_in"]

# The join path's statements, built once: building one per call (coercing every clause, then
# its cache key) cost more CPU than the rest of SQLAlchemy's work for it. Core statements on the
# tables, run on a bare connection (no ORM session, identity map or loading: the rows become
# domain values through transient `*Row` objects).
_ASSIGNMENTS, _CONTROLLERS, _HANDLERS = (
    AssignmentRow.__table__,
    ControllerRow.__table__,
    MediaHandlerRow.__table__,
)
_LIVE_PLACEMENT = (
    select(*_ASSIGNMENTS.c, *_CONTROLLERS.c)
    .select_from(_ASSIGNMENTS.outerjoin(_CONTROLLERS, _CONTROLLERS.c.id == _ASSIGNMENTS.c.mc_id))
    .where(*live(bindparam("p_meeting"), bindparam("p_region")))
)
_MEDIA_HANDLERS = select(*_HANDLERS.c).where(_HANDLERS.c.id.in_(bindparam("ids", expanding=True)))


class ReadViews:
    """Read views on `db`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def read_registry(self, region: str) -> Registry:
        """`list_controllers(region)` and `list_media_handlers(region)` in one transaction."""
        async with self._db.begin_transaction(read_only=True) as session:
            return await read_registry_in(session, region)

    async def live_placement(self, meeting_id: str, region: str) -> LivePlacement | None:
        """The live row of the meeting (CLAIMED or ACTIVE) joined with its MC, and the MHs it
        names; None if there is no live row. One read transaction: one statement, plus one
        for the MHs when the row names any."""
        live_row = {"p_meeting": meeting_id, "p_region": region}
        async with self._db.read_connection() as connection:
            found = (await connection.execute(_LIVE_PLACEMENT, live_row)).first()
            if found is None:
                return None
            split = len(_ASSIGNMENTS.c)
            row = dict(zip(_ASSIGNMENTS.c.keys(), found[:split], strict=True))
            assignment = AssignmentRow(**row).to_domain()
            controller = None
            if found[split] is not None:  # the MC's id: the outer join found its row
                mc = dict(zip(_CONTROLLERS.c.keys(), found[split:], strict=True))
                controller = ControllerRow(**mc).to_domain()
            handlers: dict[str, MediaHandler] = {}
            if assignment.mh_ids:
                ids = {"ids": list(assignment.mh_ids)}
                for mh in (await connection.execute(_MEDIA_HANDLERS, ids)).mappings():
                    handlers[mh["id"]] = MediaHandlerRow(**mh).to_domain()
            return LivePlacement(assignment, controller, handlers)

    async def active_assignment(self, meeting_id: str, region: str) -> Assignment | None:
        """The live row of the meeting (CLAIMED or ACTIVE), or None."""
        async with self._db.begin_transaction(read_only=True) as session:
            row = await session.scalar(select(AssignmentRow).where(*live(meeting_id, region)))
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
        async with self._db.begin_transaction(read_only=True) as session:
            total = await session.scalar(count)
            return [row.to_domain() for row in await session.scalars(rows)], int(total or 0)


async def read_registry_in(session: AsyncSession, region: str) -> Registry:
    """The region's MCs and MHs, read in the caller's transaction."""
    controllers = await session.scalars(
        select(ControllerRow).where(ControllerRow.region == region).order_by(ControllerRow.id)
    )
    controller_list = [row.to_domain() for row in controllers]
    handlers = await session.scalars(
        select(MediaHandlerRow).where(MediaHandlerRow.region == region).order_by(MediaHandlerRow.id)
    )
    return Registry(controller_list, [row.to_domain() for row in handlers])
