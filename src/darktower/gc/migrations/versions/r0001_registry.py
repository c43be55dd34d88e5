"""Create the GC registry: controllers, media handlers, meeting assignments.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen: it spells out the schema instead of importing the models, so later model changes
need a new revision. `meeting_assignments` keeps at most one live row (ended_at IS NULL) per
(meeting_id, region) through a unique partial index, which the claim protocol relies on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "controllers",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("region", sa.String(50), nullable=False),
        sa.Column("grpc_endpoint", sa.String(255), nullable=False),
        sa.Column("webtransport_endpoint", sa.String(255), nullable=True),
        sa.Column("max_meetings", sa.Integer(), nullable=False),
        sa.Column("max_participants", sa.Integer(), nullable=False),
        sa.Column("current_meetings", sa.Integer(), nullable=False),
        sa.Column("current_participants", sa.Integer(), nullable=False),
        sa.Column("health", sa.String(16), nullable=False),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("memory_percent", sa.Float(), nullable=True),
        _ts("registered_at", nullable=False),
        _ts("last_heartbeat_at", nullable=True),
        sa.Column("assignments_since_heartbeat", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_controllers"),
    )
    op.create_index("ix_controllers_region", "controllers", ["region"])

    op.create_table(
        "media_handlers",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("region", sa.String(50), nullable=False),
        sa.Column("zone", sa.String(50), nullable=True),
        sa.Column("webtransport_endpoint", sa.String(255), nullable=False),
        sa.Column("grpc_endpoint", sa.String(255), nullable=False),
        sa.Column("max_streams", sa.Integer(), nullable=False),
        sa.Column("current_streams", sa.Integer(), nullable=False),
        sa.Column("health", sa.String(16), nullable=False),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("memory_percent", sa.Float(), nullable=True),
        sa.Column("bandwidth_percent", sa.Float(), nullable=True),
        _ts("registered_at", nullable=False),
        _ts("last_report_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_media_handlers"),
    )
    op.create_index("ix_media_handlers_region", "media_handlers", ["region"])

    op.create_table(
        "meeting_assignments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("meeting_id", sa.String(255), nullable=False),
        sa.Column("region", sa.String(50), nullable=False),
        sa.Column("mc_id", sa.String(255), nullable=True),
        sa.Column("mh_ids", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=False),
        _ts("claimed_at", nullable=False),
        _ts("assigned_at", nullable=True),
        _ts("ended_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_meeting_assignments"),
        sa.ForeignKeyConstraint(
            ["mc_id"], ["controllers.id"], name="fk_meeting_assignments_mc_id_controllers"
        ),
        sa.CheckConstraint("state IN ('claimed', 'active')", name="ck_meeting_assignments_state"),
        sa.CheckConstraint(
            "state = 'claimed' OR mc_id IS NOT NULL",
            name="ck_meeting_assignments_active_has_mc",
        ),
    )
    op.create_index("ix_meeting_assignments_mc_id", "meeting_assignments", ["mc_id"])
    op.create_index("ix_meeting_assignments_ended_at", "meeting_assignments", ["ended_at"])
    op.create_index(
        "uq_meeting_assignments_live",
        "meeting_assignments",
        ["meeting_id", "region"],
        unique=True,
        postgresql_where=sa.text("ended_at IS NULL"),
        sqlite_where=sa.text("ended_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("meeting_assignments")
    op.drop_table("media_handlers")
    op.drop_table("controllers")
