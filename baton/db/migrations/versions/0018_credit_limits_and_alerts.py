"""credit limits and alerts: monthly limits of organisations and projects, usage alerts

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("limit_actions", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("limit_vendor_credits", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("alert_thresholds", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("alert_webhook_ciphertext", sa.Text(), nullable=True))
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("limit_actions", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("limit_vendor_credits", sa.BigInteger(), nullable=True))
    op.create_table(
        "credit_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=32), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("cap", sa.BigInteger(), nullable=False),
        sa.Column("delivery", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "org_id", "currency", "threshold", "period_start", name="uq_credit_alert"
        ),
    )
    op.create_index("ix_credit_alerts_delivery", "credit_alerts", ["delivery"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_credit_alerts_delivery", table_name="credit_alerts")
    op.drop_table("credit_alerts")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("limit_vendor_credits")
        batch_op.drop_column("limit_actions")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("alert_webhook_ciphertext")
        batch_op.drop_column("alert_thresholds")
        batch_op.drop_column("limit_vendor_credits")
        batch_op.drop_column("limit_actions")
