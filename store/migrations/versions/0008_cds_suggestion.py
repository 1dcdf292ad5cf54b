"""CDS Hooks: the enrolments an order-sign card suggested, so that accepted feedback can enrol;
the JWTs already presented, so that none is replayed.

Revision ID: 0008_cds_suggestion
Revises: 0007_smart_sessions
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_cds_suggestion"
down_revision: str | None = "0007_smart_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cds_suggestion",
        sa.Column("uuid", sa.String(), nullable=False),
        sa.Column("card_uuid", sa.String(), nullable=False),
        sa.Column("patient_ref", sa.String(), nullable=False),
        sa.Column("pathway_id", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=True),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("accepted_at", Instant, nullable=True),
        sa.PrimaryKeyConstraint("uuid"),
    )
    op.create_table(
        "cds_jwt_use",
        sa.Column("jti", sa.String(), nullable=False),
        sa.Column("expires_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint("jti"),
    )


def downgrade() -> None:
    op.drop_table("cds_jwt_use")
    op.drop_table("cds_suggestion")
