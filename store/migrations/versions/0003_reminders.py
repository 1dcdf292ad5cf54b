"""Reminders and escalations already sent, so the minute flow sends each one once.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reminder_sent",
        sa.Column("action_key", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("ward", sa.String(), nullable=True),
        sa.Column("due_at", Instant, nullable=False),
        sa.Column("sent_at", Instant, nullable=False),
        sa.Column("fhir_id", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["action_key"], ["planned_action.key"]),
        sa.PrimaryKeyConstraint("action_key", "kind", "level"),
    )
    op.create_index("ix_reminder_sent_sent_at", "reminder_sent", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_reminder_sent_sent_at", table_name="reminder_sent")
    op.drop_table("reminder_sent")
