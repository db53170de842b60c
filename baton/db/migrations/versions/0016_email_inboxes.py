"""email inboxes: an agent's or workforce's address, and the messages it took

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "email_inboxes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("workforce_id", sa.String(length=36), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(agent_id IS NULL) <> (workforce_id IS NULL)", name="ck_email_inboxes_one_target"
        ),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workforce_id"], ["workforces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_email_inboxes_agent_id", "email_inboxes", ["agent_id"])
    op.create_index("ix_email_inboxes_workforce_id", "email_inboxes", ["workforce_id"])
    op.create_table(
        "inbound_emails",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("inbox_id", sa.String(length=36), nullable=False),
        sa.Column("message_key", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["inbox_id"], ["email_inboxes.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("inbox_id", "message_key", name="uq_inbound_email_message"),
    )
    op.create_index("ix_inbound_emails_task_id", "inbound_emails", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_inbound_emails_task_id", table_name="inbound_emails")
    op.drop_table("inbound_emails")
    op.drop_index("ix_email_inboxes_workforce_id", table_name="email_inboxes")
    op.drop_index("ix_email_inboxes_agent_id", table_name="email_inboxes")
    op.drop_table("email_inboxes")
