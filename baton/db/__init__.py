"""Storage: SQLAlchemy 2 tables, the async engine, repositories and Alembic migrations. The
same code runs on SQLite (the embedded default) and PostgreSQL."""
