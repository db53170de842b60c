"""credit totals: running sums of the credits ledger, built from it

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The sentinels of baton/db/repositories/credits.py, as they were when this was written.
ALL_TIME = datetime(1970, 1, 1, tzinfo=UTC)
ORG_WIDE = ""


def upgrade() -> None:
    totals = op.create_table(
        "credit_totals",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=32), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("paid_by_grants", sa.BigInteger(), nullable=False),
        sa.Column("granted", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("org_id", "currency", "period_start", "project_id"),
    )
    _backfill(totals)


def _backfill(totals: sa.Table) -> None:
    """The sums of the existing ledger, per scope, as the code keeps them from now on."""
    entries = sa.table(
        "credit_entries",
        sa.column("org_id", sa.Integer()),
        sa.column("project_id", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("currency", sa.String()),
        sa.column("amount", sa.BigInteger()),
        sa.column("from_grant", sa.BigInteger()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    sums: defaultdict[tuple[int, str, datetime, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    rows = op.get_bind().execute(
        sa.select(
            entries.c.org_id,
            entries.c.project_id,
            entries.c.kind,
            entries.c.currency,
            entries.c.amount,
            entries.c.from_grant,
            entries.c.created_at,
        )
    )
    for org_id, project_id, kind, currency, amount, from_grant, created_at in rows:
        # SQLite hands back naive UTC.
        created = created_at.replace(tzinfo=UTC) if created_at.tzinfo is None else created_at
        month = created.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        scopes = [(month, ORG_WIDE), (ALL_TIME, ORG_WIDE)]
        if project_id is not None:
            scopes.append((month, project_id))
        for period_start, scope in scopes:
            row = sums[(org_id, currency, period_start, scope)]
            if kind == "grant":
                row[2] += amount
            else:
                row[0] += amount
                row[1] += from_grant
    if sums:
        op.bulk_insert(
            totals,
            [
                {
                    "org_id": org_id,
                    "currency": currency,
                    "period_start": period_start,
                    "project_id": scope,
                    "used": used,
                    "paid_by_grants": paid_by_grants,
                    "granted": granted,
                }
                for (org_id, currency, period_start, scope), (
                    used,
                    paid_by_grants,
                    granted,
                ) in sums.items()
            ],
        )


def downgrade() -> None:
    op.drop_table("credit_totals")
