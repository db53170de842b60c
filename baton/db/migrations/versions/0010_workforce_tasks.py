"""workforce tasks: a task's kind, workforce, parent task and node; a message's author

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.alter_column("agent_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.add_column(
            sa.Column("kind", sa.String(length=32), nullable=False, server_default="agent-task")
        )
        batch_op.add_column(sa.Column("workforce_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("workforce_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("parent_task_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("node", sa.String(length=64), nullable=True))
        batch_op.create_foreign_key(
            "fk_tasks_workforce_id", "workforces", ["workforce_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_foreign_key(
            "fk_tasks_parent_task_id", "tasks", ["parent_task_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_index("ix_tasks_workforce_id", ["workforce_id"])
        batch_op.create_index("ix_tasks_parent_task_id", ["parent_task_id"])
    with op.batch_alter_table("task_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("author", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_messages", schema=None) as batch_op:
        batch_op.drop_column("author")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_parent_task_id")
        batch_op.drop_index("ix_tasks_workforce_id")
        batch_op.drop_constraint("fk_tasks_parent_task_id", type_="foreignkey")
        batch_op.drop_constraint("fk_tasks_workforce_id", type_="foreignkey")
        batch_op.drop_column("node")
        batch_op.drop_column("parent_task_id")
        batch_op.drop_column("workforce_version")
        batch_op.drop_column("workforce_id")
        batch_op.drop_column("kind")
        batch_op.alter_column("agent_id", existing_type=sa.String(length=36), nullable=False)
