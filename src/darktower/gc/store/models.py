"""The GC store's tables: the SQLAlchemy declarative schema that migrations 0001 and 0002
create (`tests/gc/store/test_migrations.py` checks the two agree).

Each `*Row` turns itself into its domain value (`darktower.gc.domain`) with `to_domain()`;
callers of the store never see ORM objects.

Every timestamp is an aware UTC `datetime`. SQLite has no time zone type, so `UtcDateTime`
stores naive UTC there and hands back aware values on both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BindParameter,
    CheckConstraint,
    ColumnElement,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from darktower.gc.domain import Assignment, AssignmentState, Controller, Health, MediaHandler

__all__ = [
    "AssignmentRow",
    "Base",
    "ControllerRow",
    "MediaHandlerRow",
    "UtcDateTime",
    "live",
]


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every dialect; a naive value is refused at bind time."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the GC store takes aware UTC datetimes only")
        value = value.astimezone(UTC)
        # SQLite compares the stored text, so every value must be in one zone and one format.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class ControllerRow(Base):
    __tablename__ = "controllers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    region: Mapped[str] = mapped_column(String(50), index=True)
    grpc_endpoint: Mapped[str] = mapped_column(String(255))
    webtransport_endpoint: Mapped[str | None] = mapped_column(String(255))
    max_meetings: Mapped[int] = mapped_column(Integer)
    max_participants: Mapped[int] = mapped_column(Integer)
    current_meetings: Mapped[int] = mapped_column(Integer)
    current_participants: Mapped[int] = mapped_column(Integer)
    health: Mapped[str] = mapped_column(String(16))
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    memory_percent: Mapped[float | None] = mapped_column(Float)
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    assignments_since_heartbeat: Mapped[int] = mapped_column(Integer)

    def to_domain(self) -> Controller:
        return Controller(
            id=self.id,
            region=self.region,
            grpc_endpoint=self.grpc_endpoint,
            webtransport_endpoint=self.webtransport_endpoint,
            max_meetings=self.max_meetings,
            max_participants=self.max_participants,
            current_meetings=self.current_meetings,
            current_participants=self.current_participants,
            health=Health(self.health),
            cpu_percent=self.cpu_percent,
            memory_percent=self.memory_percent,
            registered_at=self.registered_at,
            last_heartbeat_at=self.last_heartbeat_at,
            assignments_since_heartbeat=self.assignments_since_heartbeat,
        )


class MediaHandlerRow(Base):
    __tablename__ = "media_handlers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    region: Mapped[str] = mapped_column(String(50), index=True)
    zone: Mapped[str | None] = mapped_column(String(50))
    webtransport_endpoint: Mapped[str] = mapped_column(String(255))
    grpc_endpoint: Mapped[str] = mapped_column(String(255))
    max_streams: Mapped[int] = mapped_column(Integer)
    current_streams: Mapped[int] = mapped_column(Integer)
    health: Mapped[str] = mapped_column(String(16))
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    memory_percent: Mapped[float | None] = mapped_column(Float)
    bandwidth_percent: Mapped[float | None] = mapped_column(Float)
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_report_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    def to_domain(self) -> MediaHandler:
        return MediaHandler(
            id=self.id,
            region=self.region,
            zone=self.zone,
            webtransport_endpoint=self.webtransport_endpoint,
            grpc_endpoint=self.grpc_endpoint,
            max_streams=self.max_streams,
            current_streams=self.current_streams,
            health=Health(self.health),
            cpu_percent=self.cpu_percent,
            memory_percent=self.memory_percent,
            bandwidth_percent=self.bandwidth_percent,
            registered_at=self.registered_at,
            last_report_at=self.last_report_at,
        )


class AssignmentRow(Base):
    __tablename__ = "meeting_assignments"
    __table_args__ = (
        # The one-live-row invariant: concurrent claims of a meeting race on this index.
        Index(
            "uq_meeting_assignments_live",
            "meeting_id",
            "region",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
        CheckConstraint("state IN ('claimed', 'active')", name="state"),
        CheckConstraint("state = 'claimed' OR mc_id IS NOT NULL", name="active_has_mc"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    meeting_id: Mapped[str] = mapped_column(String(255))
    region: Mapped[str] = mapped_column(String(50))
    mc_id: Mapped[str | None] = mapped_column(String(255), ForeignKey("controllers.id"), index=True)
    mh_ids: Mapped[list[str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    claimed_by: Mapped[str] = mapped_column(String(255))
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    assigned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    # Added by migration 0002.
    participants: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)

    def to_domain(self) -> Assignment:
        return Assignment(
            meeting_id=self.meeting_id,
            region=self.region,
            mc_id=self.mc_id,
            mh_ids=tuple(self.mh_ids),
            state=AssignmentState(self.state),
            claimed_by=self.claimed_by,
            claimed_at=self.claimed_at,
            assigned_at=self.assigned_at,
            ended_at=self.ended_at,
            participants=self.participants,
        )


def live(
    meeting_id: str | BindParameter[str], region: str | BindParameter[str]
) -> tuple[ColumnElement[bool], ...]:
    """WHERE clauses of the meeting's live row (at most one: `uq_meeting_assignments_live`);
    the values given, or parameters bound at execution (a statement built once)."""
    return (
        AssignmentRow.meeting_id == meeting_id,
        AssignmentRow.region == region,
        AssignmentRow.ended_at.is_(None),
    )
