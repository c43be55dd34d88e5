"""Participants per meeting: `meeting_assignments.participants`.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02

The count the hosting MC last reported for the meeting in a comprehensive heartbeat. NOT NULL
with a server default of 0, so existing rows (and rows a GC of the previous version inserts
during a rolling upgrade) get a value without a table rewrite on PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "meeting_assignments",
        sa.Column("participants", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    with op.batch_alter_table("meeting_assignments") as batch:
        batch.drop_column("participants")
