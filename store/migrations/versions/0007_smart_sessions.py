"""SMART App Launch: pending launches (single-use state) and launched sessions.

Revision ID: 0007_smart_sessions
Revises: 0006_rt_concurrency
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_smart_sessions"
down_revision: str | None = "0006_rt_concurrency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "smart_launch",
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("browser_hash", sa.String(), nullable=False),
        sa.Column("code_verifier", sa.String(), nullable=False),
        sa.Column("iss", sa.String(), nullable=False),
        sa.Column("redirect_url", sa.String(), nullable=False),
        sa.Column("endpoints", sa.JSON(), nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("expires_at", Instant, nullable=False),
        sa.Column("used_at", Instant, nullable=True),
        sa.PrimaryKeyConstraint("state"),
    )
    op.create_index("ix_smart_launch_expires_at", "smart_launch", ["expires_at"])
    op.create_table(
        "smart_session",
        sa.Column("id_hash", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("wards", sa.JSON(), nullable=False),
        sa.Column("iss", sa.String(), nullable=False),
        sa.Column("patient_id", sa.String(), nullable=True),
        sa.Column("encounter_id", sa.String(), nullable=True),
        sa.Column("ward", sa.String(), nullable=True),
        sa.Column("access_token", sa.Text(), nullable=False),
        sa.Column("token_expires_at", Instant, nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("expires_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("ix_smart_session_expires_at", "smart_session", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_smart_session_expires_at", table_name="smart_session")
    op.drop_table("smart_session")
    op.drop_index("ix_smart_launch_expires_at", table_name="smart_launch")
    op.drop_table("smart_launch")
