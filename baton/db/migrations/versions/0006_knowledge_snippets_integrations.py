"""knowledge sets, rows and jobs; snippets; integrations

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The lexical index is made here only, per database: SQLite's FTS5 table follows
# knowledge_rows.content through triggers; PostgreSQL indexes the tsvector of it.
SQLITE_FTS = (
    "CREATE VIRTUAL TABLE knowledge_rows_fts USING fts5(content, content='knowledge_rows', "
    "content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER knowledge_rows_fts_insert AFTER INSERT ON knowledge_rows BEGIN "
    "INSERT INTO knowledge_rows_fts(rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER knowledge_rows_fts_delete AFTER DELETE ON knowledge_rows BEGIN "
    "INSERT INTO knowledge_rows_fts(knowledge_rows_fts, rowid, content) "
    "VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER knowledge_rows_fts_update AFTER UPDATE OF content ON knowledge_rows BEGIN "
    "INSERT INTO knowledge_rows_fts(knowledge_rows_fts, rowid, content) "
    "VALUES ('delete', old.id, old.content); "
    "INSERT INTO knowledge_rows_fts(rowid, content) VALUES (new.id, new.content); END",
)
POSTGRES_FTS = (
    "CREATE INDEX ix_knowledge_rows_fts ON knowledge_rows "
    "USING gin (to_tsvector('english', content))",
)


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "snippets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name", name="uq_snippet_name"),
    )
    op.create_table(
        "integrations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("key_ciphertext", sa.Text(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name", name="uq_integration_name"),
    )
    op.create_table(
        "knowledge_sets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("embedding", sa.JSON(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name", name="uq_knowledge_set_name"),
    )
    op.create_table(
        "knowledge_rows",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("set_id", sa.String(length=36), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(["set_id"], ["knowledge_sets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_knowledge_rows_set_id", "knowledge_rows", ["set_id", "id"])
    op.create_table(
        "knowledge_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("set_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=100), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["set_id"], ["knowledge_sets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_knowledge_jobs_set_created", "knowledge_jobs", ["set_id", "created_at"])
    statements = SQLITE_FTS if op.get_bind().dialect.name == "sqlite" else POSTGRES_FTS
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS knowledge_rows_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS knowledge_rows_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_knowledge_rows_fts")
    op.drop_index("ix_knowledge_jobs_set_created", table_name="knowledge_jobs")
    op.drop_table("knowledge_jobs")
    op.drop_index("ix_knowledge_rows_set_id", table_name="knowledge_rows")
    op.drop_table("knowledge_rows")
    op.drop_table("knowledge_sets")
    op.drop_table("integrations")
    op.drop_table("snippets")
