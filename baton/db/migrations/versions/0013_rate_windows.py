"""rate windows: API requests per token and calendar minute, for the plans' rate limits

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_windows",
        sa.Column("token_key", sa.String(length=64), nullable=False),
        sa.Column("minute", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("token_key", "minute"),
    )
    op.create_index("ix_rate_windows_minute", "rate_windows", ["minute"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rate_windows_minute", table_name="rate_windows")
    op.drop_table("rate_windows")
