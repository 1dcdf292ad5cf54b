"""Store test databases: every test runs on SQLite and on PostgreSQL, each migrated once."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from store.db import make_engine
from tests.utils.databases import postgres_schema, rollback_session, sqlite_database


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory: Path = tmp_path_factory.mktemp("store")
    with sqlite_database(directory) as url:
        yield url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    engine = make_engine(request.getfixturevalue(f"{request.param}_url"))
    yield engine
    engine.dispose()


@pytest.fixture
def db(db_engine: Engine) -> Iterator[Session]:
    """A session whose work is rolled back after the test."""
    with rollback_session(db_engine) as session:
        yield session
