"""The engine's own state: SQLModel tables, queries and Alembic migrations."""
