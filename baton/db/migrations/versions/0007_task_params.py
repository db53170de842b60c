"""task params: what a task started with, and what webhooks and schedules start tasks with

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("params", sa.JSON(), nullable=True))
    with op.batch_alter_table("agent_webhooks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("params_template", sa.JSON(), nullable=True))
    with op.batch_alter_table("agent_schedules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("params", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent_schedules", schema=None) as batch_op:
        batch_op.drop_column("params")
    with op.batch_alter_table("agent_webhooks", schema=None) as batch_op:
        batch_op.drop_column("params_template")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("params")
