"""The audit's source: each element's latest result, cohort attributes, and outcomes per enrolment.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types: a migration must not change when the models do.
Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "element_result",
        sa.Column("enrolment_id", sa.String(), nullable=False),
        sa.Column("element_id", sa.String(), nullable=False),
        sa.Column("phase", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("counts", sa.String(), nullable=True),
        sa.Column("missing", sa.Boolean(), nullable=False),
        sa.Column("occurrences_done", sa.Integer(), nullable=False),
        sa.Column("occurrences_counted", sa.Integer(), nullable=False),
        sa.Column("done_at", Instant, nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("decline_reason", sa.Text(), nullable=True),
        sa.Column("occurrences", sa.JSON(), nullable=False),
        sa.Column("evaluated_at", Instant, nullable=False),
        sa.ForeignKeyConstraint(["enrolment_id"], ["enrolment.id"]),
        sa.PrimaryKeyConstraint("enrolment_id", "element_id"),
    )
    op.create_index("ix_element_result_element_counts", "element_result",
                    ["element_id", "counts", "missing", "enrolment_id"])
    op.create_table(
        "audit_episode",
        sa.Column("enrolment_id", sa.String(), nullable=False),
        sa.Column("patient_ref", sa.String(), nullable=False),
        sa.Column("pathway_id", sa.String(), nullable=False),
        sa.Column("pathway_version", sa.Integer(), nullable=False),
        sa.Column("surgery_start", Instant, nullable=True),
        sa.Column("variant", sa.String(), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("ward", sa.String(), nullable=True),
        sa.Column("surgeon", sa.String(), nullable=True),
        sa.Column("sex", sa.String(), nullable=True),
        sa.Column("age_at_surgery", sa.Integer(), nullable=True),
        sa.Column("apfel", sa.Integer(), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("counted", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("updated_at", Instant, nullable=False),
        sa.ForeignKeyConstraint(["enrolment_id"], ["enrolment.id"]),
        sa.PrimaryKeyConstraint("enrolment_id"),
    )
    op.create_index("ix_audit_episode_pathway_surgery_start", "audit_episode",
                    ["pathway_id", "surgery_start"])
    op.create_table(
        "audit_outcome",
        sa.Column("enrolment_id", sa.String(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("computed_at", Instant, nullable=False),
        sa.ForeignKeyConstraint(["enrolment_id"], ["enrolment.id"]),
        sa.PrimaryKeyConstraint("enrolment_id"),
    )


def downgrade() -> None:
    op.drop_table("audit_outcome")
    op.drop_index("ix_audit_episode_pathway_surgery_start", table_name="audit_episode")
    op.drop_table("audit_episode")
    op.drop_index("ix_element_result_element_counts", table_name="element_result")
    op.drop_table("element_result")
