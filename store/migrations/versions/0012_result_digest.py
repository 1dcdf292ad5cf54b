"""A digest of each element result's stored values (`element_result.digest`), so that an apply
tells its unchanged results (nearly all of them) from the digest alone, without reading and
decoding their occurrences. Results stored before have none: compared in full once.

Revision ID: 0012_result_digest
Revises: 0011_plan_digest
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_result_digest"
down_revision: str | None = "0011_plan_digest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("element_result") as table:
        table.add_column(sa.Column("digest", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("element_result") as table:
        table.drop_column("digest")
