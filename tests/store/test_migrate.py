"""Tests that the Alembic migrations build exactly the tables the models describe."""

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

import store.models  # noqa: F401  (registers the tables)
from store.db import make_engine
from store.migrate import current_revision, downgrade, head_revision, upgrade
from tests.utils.databases import (
    drop_schema,
    new_schema_name,
    postgres_server_url,
    require_postgres,
    sqlite_database,
)

TABLES = {"pathway_version", "enrolment", "planned_action", "element_status", "audit_log"}


def _diff(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)


def test_migrations_head_matches_models(db_engine: Engine) -> None:
    assert _diff(db_engine) == []


def test_migrations_test_database_is_at_head(db_engine: Engine) -> None:
    assert current_revision(db_engine) == head_revision()


def test_migrations_compare_sees_missing_tables(tmp_path: Path) -> None:
    with sqlite_database(tmp_path, migrate=False) as url:
        engine = make_engine(url)
        try:
            assert {diff[0] for diff in _diff(engine)} == {"add_table", "add_index"}
        finally:
            engine.dispose()


def test_upgrade_sqlite_twice_then_downgrade_to_base(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        upgrade(url)
        engine = make_engine(url)
        try:
            assert set(inspect(engine).get_table_names()) >= TABLES
            downgrade(engine, revision="base")
            assert set(inspect(engine).get_table_names()) == {"alembic_version"}
            assert current_revision(engine) is None
        finally:
            engine.dispose()


def test_upgrade_postgresql_schema_argument_creates_and_migrates_schema() -> None:
    server = postgres_server_url()
    require_postgres(server)
    schema = new_schema_name()
    try:
        upgrade(server, schema=schema)
        engine = make_engine(server)
        try:
            assert set(inspect(engine).get_table_names(schema=schema)) >= TABLES
            assert "enrolment" not in inspect(engine).get_table_names(schema="public")
        finally:
            engine.dispose()
        downgrade(server, revision="base", schema=schema)
        scoped = make_engine(server, schema=schema)
        try:
            assert current_revision(scoped) is None
        finally:
            scoped.dispose()
    finally:
        drop_schema(server, schema)
