"""bulk tasks: runs of one agent task per row of a knowledge set, and their rows

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bulk_task_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("set_id", sa.String(length=36), nullable=False),
        sa.Column("workflow_id", sa.String(length=100), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("waiting_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["set_id"], ["knowledge_sets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workflow_id"),
    )
    op.create_index("ix_bulk_task_runs_agent_created", "bulk_task_runs", ["agent_id", "created_at"])
    op.create_table(
        "bulk_task_rows",
        sa.Column("bulk_id", sa.String(length=36), nullable=False),
        sa.Column("row_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["bulk_id"], ["bulk_task_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("bulk_id", "row_id"),
    )
    op.create_index("ix_bulk_task_rows_state", "bulk_task_rows", ["bulk_id", "state", "row_id"])


def downgrade() -> None:
    op.drop_index("ix_bulk_task_rows_state", table_name="bulk_task_rows")
    op.drop_table("bulk_task_rows")
    op.drop_index("ix_bulk_task_runs_agent_created", table_name="bulk_task_runs")
    op.drop_table("bulk_task_runs")
