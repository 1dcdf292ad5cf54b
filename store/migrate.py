"""Bring a database to the newest Alembic revision, without needing alembic.ini."""

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from store.db import check_schema_name, make_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant will do: it only has to be the same in every process that migrates.
_MIGRATION_LOCK_KEY = 0x45524153  # "ERAS"


def alembic_config() -> Config:
    """An Alembic config pointing at store/migrations, built in code."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "store/migrations has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url_or_engine: str | Engine, *, schema: str | None = None) -> None:
    """Migrate to head; `schema` (PostgreSQL) is created when missing and migrated into."""
    _run(url_or_engine, schema, lambda config: command.upgrade(config, "head"))


def downgrade(url_or_engine: str | Engine, *, revision: str, schema: str | None = None) -> None:
    """Migrate down to `revision` ("base" removes every table)."""
    _run(url_or_engine, schema, lambda config: command.downgrade(config, revision))


def _run(url_or_engine: str | Engine, schema: str | None, step: Callable[[Config], None]) -> None:
    if isinstance(url_or_engine, Engine):
        _run_on(url_or_engine, schema, step)
        return
    engine = make_engine(url_or_engine, schema=schema)
    try:
        _run_on(engine, schema, step)
    finally:
        engine.dispose()


def _run_on(engine: Engine, schema: str | None, step: Callable[[Config], None]) -> None:
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several API processes may start at once; the others wait and then find head.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        if schema is not None:
            check_schema_name(schema)
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            connection.execute(text(f'SET LOCAL search_path TO "{schema}"'))
        config = alembic_config()
        config.attributes["connection"] = connection
        step(config)
