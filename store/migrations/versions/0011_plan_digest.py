"""Which plan decided each episode's results: the plan's digests (`plan_digest`) and the digest
of the one that last recorded an episode (`audit_episode.plan_digest`), so that `eras audit
recompute` re-evaluates only the elements a new pathway version changed. Episodes stored before
have none and are re-evaluated in full once.

Revision ID: 0011_plan_digest
Revises: 0010_audit_sql
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_plan_digest"
down_revision: str | None = "0010_audit_sql"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plan_digest",
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("pathway_id", sa.String(), nullable=False),
        sa.Column("shared", sa.String(), nullable=False),
        sa.Column("elements", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    with op.batch_alter_table("audit_episode") as table:
        table.add_column(sa.Column("plan_digest", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_episode") as table:
        table.drop_column("plan_digest")
    op.drop_table("plan_digest")
