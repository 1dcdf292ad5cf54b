"""Durable intake: the inbox of EHR events, subscription bookkeeping, polling watermarks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types: a migration must not change when the models do.
Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inbox_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", Instant, nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("dedup_key", sa.String(), nullable=False),
        sa.Column("resource_type", sa.String(), nullable=True),
        sa.Column("resource_id", sa.String(), nullable=True),
        sa.Column("patient_ref", sa.String(), nullable=True),
        sa.Column("event_number", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("claimed_at", Instant, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("processed_at", Instant, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key", name="uq_inbox_event_dedup_key"),
    )
    op.create_index("ix_inbox_event_status_received_at", "inbox_event", ["status", "received_at"])
    op.create_table(
        "subscription_state",
        sa.Column("subscription_id", sa.String(), nullable=False),
        sa.Column("last_event_number", sa.BigInteger(), nullable=True),
        sa.Column("last_event_at", Instant, nullable=True),
        sa.Column("last_heartbeat_at", Instant, nullable=True),
        sa.Column("handshake_at", Instant, nullable=True),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint("subscription_id"),
    )
    op.create_table(
        "subscription_gap",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.String(), nullable=False),
        sa.Column("from_number", sa.BigInteger(), nullable=False),
        sa.Column("to_number", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at", Instant, nullable=True),
        sa.Column("detected_at", Instant, nullable=False),
        sa.Column("resolved_at", Instant, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_subscription_gap_resolved_at", "subscription_gap", ["resolved_at"])
    op.create_table(
        "poll_watermark",
        sa.Column("resource_type", sa.String(), nullable=False),
        sa.Column("last_updated", Instant, nullable=False),
        sa.Column("updated_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint("resource_type"),
    )


def downgrade() -> None:
    op.drop_table("poll_watermark")
    op.drop_index("ix_subscription_gap_resolved_at", table_name="subscription_gap")
    op.drop_table("subscription_gap")
    op.drop_index("ix_inbox_event_status_received_at", table_name="inbox_event")
    op.drop_table("inbox_event")
    op.drop_table("subscription_state")
