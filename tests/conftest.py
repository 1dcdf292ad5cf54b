"""Shared fixtures: the real databases (SQLite and PostgreSQL) and the sandbox FHIR server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from fhir_adapters.sandbox import FhirSandbox
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
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database URL: every test using it runs on SQLite and on PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(scope="session")
def db_engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(db_engine: Engine) -> Iterator[Session]:
    """A session whose work is rolled back after the test."""
    with rollback_session(db_engine) as session:
        yield session


@pytest.fixture(scope="session")
def fhir_sandbox() -> Iterator[FhirSandbox]:
    """One real FHIR server (Medplum's router on loopback) for the session; reset it per test
    with `fhir_sandbox.reset()` where a test needs an empty server."""
    with FhirSandbox() as sandbox:
        yield sandbox


SANDBOX_TOKEN = "sandbox-bearer-token"


@pytest.fixture(scope="session")
def protected_fhir_sandbox() -> Iterator[FhirSandbox]:
    """A second sandbox that, like a real EHR, refuses requests without `Bearer SANDBOX_TOKEN`."""
    with FhirSandbox(require_token=SANDBOX_TOKEN) as sandbox:
        yield sandbox
