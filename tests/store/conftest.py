"""Store tests use the shared database fixtures of tests/conftest.py (SQLite and PostgreSQL)."""
