"""knowledge sources: URLs a set stays in sync with, and the rows each one wrote

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "knowledge_sources",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("set_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("interval_minutes", sa.Integer(), nullable=False),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_outcome", sa.String(length=16), nullable=True),
        sa.Column("last_workflow_id", sa.String(length=200), nullable=True),
        sa.Column("rows_added", sa.Integer(), nullable=False),
        sa.Column("rows_changed", sa.Integer(), nullable=False),
        sa.Column("rows_removed", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["set_id"], ["knowledge_sets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_knowledge_sources_set_created", "knowledge_sources", ["set_id", "created_at"]
    )
    op.create_table(
        "knowledge_source_documents",
        sa.Column("source_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.Text(), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["knowledge_sources.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("source_id", "url"),
    )
    # Plain ADD COLUMN, not a batch copy: on SQLite a copied knowledge_rows would lose the
    # full-text triggers that follow its content.
    op.add_column("knowledge_rows", sa.Column("source_id", sa.String(length=36), nullable=True))
    op.add_column("knowledge_rows", sa.Column("source_key", sa.Text(), nullable=True))
    op.add_column("knowledge_rows", sa.Column("source_hash", sa.String(length=64), nullable=True))
    op.create_index("ix_knowledge_rows_source", "knowledge_rows", ["source_id", "source_key"])


def downgrade() -> None:
    op.drop_index("ix_knowledge_rows_source", table_name="knowledge_rows")
    with op.batch_alter_table("knowledge_rows", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("source_hash")
        batch_op.drop_column("source_key")
        batch_op.drop_column("source_id")
    op.drop_table("knowledge_source_documents")
    op.drop_index("ix_knowledge_sources_set_created", table_name="knowledge_sources")
    op.drop_table("knowledge_sources")
