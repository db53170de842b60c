"""payload blob owners: the workflow a blob belongs to and when it closed, for retention

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payload_blobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workflow_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_payload_blobs_workflow_id", ["workflow_id"])
        batch_op.create_index("ix_payload_blobs_closed_at", ["closed_at"])


def downgrade() -> None:
    with op.batch_alter_table("payload_blobs", schema=None) as batch_op:
        batch_op.drop_index("ix_payload_blobs_closed_at")
        batch_op.drop_index("ix_payload_blobs_workflow_id")
        batch_op.drop_column("closed_at")
        batch_op.drop_column("workflow_id")
