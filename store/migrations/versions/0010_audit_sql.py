"""The audit in SQL: each episode's ERAS items and elements done late stored with it, partial
indexes for done-late and declined results; stored facts per episode so that `eras audit
recompute` re-evaluates history without reading the EHR again.

Revision ID: 0010_audit_sql
Revises: 0009_worklist_index
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_audit_sql"
down_revision: str | None = "0009_worklist_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)
DONE_LATE = sa.text("status = 'done-late'")
DECLINED = sa.text("decline_reason IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("audit_episode") as table:
        table.add_column(sa.Column("done_late", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("items_counted", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("items_done", sa.BigInteger(), nullable=True))
    # Done late is a plain count of stored statuses; the ERAS items need the pathway's item map,
    # so they stay null (the report sums them from element results) until a recompute.
    op.execute("UPDATE audit_episode SET done_late = (SELECT COUNT(*) FROM element_result r "
               "WHERE r.enrolment_id = audit_episode.enrolment_id AND r.status = 'done-late')")
    # Small partial indexes: few results are done late or declined, and the audit reads only those.
    op.create_index("ix_element_result_done_late", "element_result", ["element_id", "enrolment_id"],
                    sqlite_where=DONE_LATE, postgresql_where=DONE_LATE)
    op.create_index("ix_element_result_declined", "element_result", ["enrolment_id"],
                    sqlite_where=DECLINED, postgresql_where=DECLINED)
    op.create_table(
        "episode_facts",
        sa.Column("enrolment_id", sa.String(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("evaluated_at", Instant, nullable=False),
        sa.ForeignKeyConstraint(["enrolment_id"], ["enrolment.id"]),
        sa.PrimaryKeyConstraint("enrolment_id"),
    )


def downgrade() -> None:
    op.drop_table("episode_facts")
    op.drop_index("ix_element_result_declined", table_name="element_result")
    op.drop_index("ix_element_result_done_late", table_name="element_result")
    with op.batch_alter_table("audit_episode") as table:
        table.drop_column("items_done")
        table.drop_column("items_counted")
        table.drop_column("done_late")
