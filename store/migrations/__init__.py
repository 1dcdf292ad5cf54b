"""Alembic migrations of the engine's store."""
