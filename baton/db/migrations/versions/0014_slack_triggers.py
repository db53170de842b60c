"""slack triggers: a Slack app's events URL for an agent or a workforce, and the events acted on

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slack_triggers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("workforce_id", sa.String(length=36), nullable=True),
        sa.Column("integration_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(agent_id IS NULL) <> (workforce_id IS NULL)", name="ck_slack_triggers_one_target"
        ),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workforce_id"], ["workforces.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["integration_id"], ["integrations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    for column in ("agent_id", "workforce_id", "integration_id"):
        op.create_index(f"ix_slack_triggers_{column}", "slack_triggers", [column], unique=False)
    op.create_table(
        "slack_events",
        sa.Column("trigger_id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["trigger_id"], ["slack_triggers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("trigger_id", "event_id"),
    )


def downgrade() -> None:
    op.drop_table("slack_events")
    for column in ("agent_id", "workforce_id", "integration_id"):
        op.drop_index(f"ix_slack_triggers_{column}", table_name="slack_triggers")
    op.drop_table("slack_triggers")
