"""Throwaway test databases: a migrated SQLite file or a fresh, migrated PostgreSQL schema."""

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from store.db import check_schema_name, database_url, make_engine
from store.migrate import upgrade

POSTGRES_URL_ENV = "ERAS_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_server_url() -> str:
    """The test PostgreSQL database (ERAS_TEST_POSTGRES_URL, else 127.0.0.1:5432/test)."""
    return database_url(os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL)


def require_postgres(url: str) -> None:
    """Fail the run, loudly, when PostgreSQL cannot be reached: its tests must not vanish."""
    engine = make_engine(url)
    problem = None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        problem = str(error.orig)
    finally:
        engine.dispose()
    if problem is not None:
        pytest.fail(
            f"PostgreSQL is not reachable at {make_url(url).render_as_string()}: {problem}. "
            f"Start it, or point {POSTGRES_URL_ENV} at one.",
            pytrace=False,
        )


def new_schema_name() -> str:
    return f"eras_test_{secrets.token_hex(4)}"


def schema_url(url: str, schema: str) -> str:
    """`url` with its search_path set to `schema`, the way a deployment would give it."""
    options = f"-csearch_path={check_schema_name(schema)}"
    return make_url(url).update_query_dict({"options": options}).render_as_string(False)


def create_schema(url: str, schema: str) -> None:
    _execute(url, f'CREATE SCHEMA "{check_schema_name(schema)}"')


def drop_schema(url: str, schema: str) -> None:
    _execute(url, f'DROP SCHEMA IF EXISTS "{check_schema_name(schema)}" CASCADE')


def _execute(url: str, sql: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(sql))
    finally:
        engine.dispose()


@contextmanager
def postgres_schema(url: str | None = None, *, migrate: bool = True) -> Iterator[str]:
    """A fresh schema eras_test_<random>, migrated to head; yields its URL, then drops it."""
    server = url or postgres_server_url()
    require_postgres(server)
    schema = new_schema_name()
    create_schema(server, schema)
    try:
        scoped = schema_url(server, schema)
        if migrate:
            upgrade(scoped)
        yield scoped
    finally:
        drop_schema(server, schema)


@contextmanager
def sqlite_database(directory: Path, *, migrate: bool = True) -> Iterator[str]:
    """A new SQLite file in `directory`, migrated to head; yields its URL."""
    path = directory / f"eras-{secrets.token_hex(4)}.db"
    url = f"sqlite:///{path}"
    if migrate:
        upgrade(url)
    yield url


@contextmanager
def rollback_session(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back afterwards, commits included."""
    with engine.connect() as connection:
        transaction = connection.begin()
        session = Session(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            session.close()
            transaction.rollback()
