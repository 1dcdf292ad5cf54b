"""Initial tables: pathway versions, enrolments, planned actions, status history, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types: a migration must not change when the models do.
Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pathway_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pathway_id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("loaded_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("pathway_id", "version", name="uq_pathway_version_id_version"),
    )
    op.create_table(
        "enrolment",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("patient_ref", sa.String(), nullable=False),
        sa.Column("pathway_id", sa.String(), nullable=False),
        sa.Column("pathway_version", sa.Integer(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("anchors", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("exit_reason", sa.Text(), nullable=True),
        sa.Column("enrolled_at", Instant, nullable=False),
        sa.Column("enrolled_by", sa.String(), nullable=False),
        sa.Column("updated_at", Instant, nullable=False),
        sa.Column("careplan_id", sa.String(), nullable=True),
        sa.Column("careplan_version", sa.String(), nullable=True),
        sa.Column("encounter_ref", sa.String(), nullable=True),
        sa.Column("ward", sa.String(), nullable=True),
        sa.Column("bed", sa.String(), nullable=True),
        sa.Column("next_check_at", Instant, nullable=True),
        sa.Column("parked_at", Instant, nullable=True),
        sa.Column("parked_error", sa.Text(), nullable=True),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_ref", "pathway_id", name="uq_enrolment_patient_pathway"),
    )
    op.create_index("ix_enrolment_status_next_check_at", "enrolment", ["status", "next_check_at"])
    op.create_index("ix_enrolment_parked_at", "enrolment", ["parked_at"])
    op.create_table(
        "planned_action",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("enrolment_id", sa.String(), nullable=False),
        sa.Column("element_id", sa.String(), nullable=False),
        sa.Column("occurrence", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("priority", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("opens", Instant, nullable=True),
        sa.Column("due", Instant, nullable=True),
        sa.Column("closes", Instant, nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("ward", sa.String(), nullable=True),
        sa.Column("fhir_type", sa.String(), nullable=True),
        sa.Column("fhir_id", sa.String(), nullable=True),
        sa.Column("fhir_version", sa.String(), nullable=True),
        sa.Column("completed_at", Instant, nullable=True),
        sa.Column("completed_by", sa.String(), nullable=True),
        sa.Column("decline_reason", sa.String(), nullable=True),
        sa.Column("decline_text", sa.Text(), nullable=True),
        sa.Column("updated_at", Instant, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("fhir_synced_revision", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["enrolment_id"], ["enrolment.id"]),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(
        "ix_planned_action_ward_status_due", "planned_action", ["ward", "status", "due"]
    )
    op.create_index("ix_planned_action_enrolment_id", "planned_action", ["enrolment_id"])
    op.create_table(
        "element_status",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enrolment_id", sa.String(), nullable=False),
        sa.Column("element_id", sa.String(), nullable=False),
        sa.Column("action_key", sa.String(), nullable=True),
        sa.Column("from_status", sa.String(), nullable=True),
        sa.Column("to_status", sa.String(), nullable=False),
        sa.Column("at", Instant, nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["action_key"], ["planned_action.key"]),
        sa.ForeignKeyConstraint(["enrolment_id"], ["enrolment.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_element_status_enrolment_id_at", "element_status", ["enrolment_id", "at"])
    op.create_index("ix_element_status_action_key", "element_status", ["action_key"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", Instant, nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("resource", sa.String(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor_at", "audit_log", ["actor", "at"])
    op.create_index("ix_audit_log_resource_at", "audit_log", ["resource", "at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("element_status")
    op.drop_table("planned_action")
    op.drop_table("enrolment")
    op.drop_table("pathway_version")
