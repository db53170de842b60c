"""workforce triggers: a webhook or schedule starts tasks of an agent or of a workforce

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("agent_webhooks", "agent_schedules")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("agent_id", existing_type=sa.String(length=36), nullable=True)
            batch_op.add_column(sa.Column("workforce_id", sa.String(length=36), nullable=True))
            batch_op.create_foreign_key(
                f"fk_{table}_workforce_id",
                "workforces",
                ["workforce_id"],
                ["id"],
                ondelete="CASCADE",
            )
            batch_op.create_index(f"ix_{table}_workforce_id", ["workforce_id"])
            batch_op.create_check_constraint(
                f"ck_{table}_one_target", "(agent_id IS NULL) <> (workforce_id IS NULL)"
            )


def downgrade() -> None:
    for table in TABLES:
        # A workforce's triggers cannot be an agent's: they go with the column.
        op.execute(sa.text(f"DELETE FROM {table} WHERE workforce_id IS NOT NULL"))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"ck_{table}_one_target", type_="check")
            batch_op.drop_index(f"ix_{table}_workforce_id")
            batch_op.drop_constraint(f"fk_{table}_workforce_id", type_="foreignkey")
            batch_op.drop_column("workforce_id")
            batch_op.alter_column("agent_id", existing_type=sa.String(length=36), nullable=False)
