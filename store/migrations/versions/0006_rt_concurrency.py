"""Correct across processes: planned-action versions, engine reminder instants, inbox claim
tokens, reminders claimed before sending, failures of patients with no enrolment.

Revision ID: 0006_rt_concurrency
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_rt_concurrency"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("planned_action") as table:
        table.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        table.add_column(sa.Column("remind_at", Instant, nullable=True))
        table.add_column(sa.Column("escalations", sa.JSON(), nullable=False,
                                    server_default=sa.text("'[]'")))
    with op.batch_alter_table("inbox_event") as table:
        table.add_column(sa.Column("claim_token", sa.String(), nullable=True))
    with op.batch_alter_table("reminder_sent") as table:
        table.add_column(sa.Column("claimed_by", sa.String(), nullable=True))
        table.add_column(sa.Column("claimed_at", Instant, nullable=True))
        table.alter_column("sent_at", existing_type=Instant, nullable=True)
    op.create_table(
        "patient_failure",
        sa.Column("patient_ref", sa.String(), nullable=False),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("parked_at", Instant, nullable=True),
        sa.Column("updated_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint("patient_ref"),
    )


def downgrade() -> None:
    op.drop_table("patient_failure")
    with op.batch_alter_table("reminder_sent") as table:
        table.alter_column("sent_at", existing_type=Instant, nullable=False)
        table.drop_column("claimed_at")
        table.drop_column("claimed_by")
    with op.batch_alter_table("inbox_event") as table:
        table.drop_column("claim_token")
    with op.batch_alter_table("planned_action") as table:
        table.drop_column("escalations")
        table.drop_column("remind_at")
        table.drop_column("version")
