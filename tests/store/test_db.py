"""Tests for database URLs, engines and sessions."""

import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from store.db import (
    DEFAULT_DATABASE_URL,
    database_url,
    make_engine,
    ping_when_idle,
    reading,
    redoable,
    session_scope,
    set_synchronous,
)
from store.models import AccessLogEntry
from tests.utils.databases import (
    new_schema_name,
    postgres_server_url,
    require_postgres,
    sqlite_database,
)
from tests.utils.store_factories import T0


@pytest.mark.parametrize(
    "given, expected",
    [
        ("postgresql://u:p@db:5432/eras", "postgresql+psycopg://u:p@db:5432/eras"),
        ("postgres://u@db/eras", "postgresql+psycopg://u@db/eras"),
        ("postgresql+psycopg://u@db/eras", "postgresql+psycopg://u@db/eras"),
        ("sqlite:////var/lib/eras.db", "sqlite:////var/lib/eras.db"),
        (
            "postgresql://u@db/eras?options=-csearch_path%3Dward",
            "postgresql+psycopg://u@db/eras?options=-csearch_path%3Dward",
        ),
    ],
)
def test_database_url_normalises_driver(given: str, expected: str) -> None:
    assert database_url(given) == expected


def test_database_url_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the settings read ERAS_DATABASE_URL (with `.env`): the store takes what it is given."""
    monkeypatch.setenv("ERAS_DATABASE_URL", "postgresql://u@db/eras")

    assert database_url(DEFAULT_DATABASE_URL) == "sqlite:///./eras.db"


def test_make_engine_sqlite_sets_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    try:
        with engine.connect() as connection:
            pragmas = [
                connection.execute(text(f"PRAGMA {name}")).scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            ]
    finally:
        engine.dispose()

    assert pragmas == ["wal", 1, 30000]


@pytest.mark.parametrize(
    "url, schema, message",
    [
        ("mysql://u@db/eras", None, "unsupported database"),
        ("sqlite:///x.db", "myschema", "no schemas"),
        ("postgresql://u@db/eras", "bad; DROP TABLE x", "invalid schema name"),
    ],
)
def test_make_engine_invalid_arguments_raise(url: str, schema: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_engine(url, schema=schema)


def test_make_engine_postgresql_schema_sets_search_path() -> None:
    server = postgres_server_url()
    require_postgres(server)
    schema = new_schema_name()
    engine = make_engine(server, schema=schema)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW search_path")).scalar_one() == schema
    finally:
        engine.dispose()


def test_session_scope_commits_on_success_and_rolls_back_on_error(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        engine = make_engine(url)
        try:
            with session_scope(engine) as session:
                session.add(_audit_row("kept"))
            with pytest.raises(RuntimeError), session_scope(engine) as session:
                session.add(_audit_row("lost"))
                session.flush()
                raise RuntimeError("boom")
            with session_scope(engine) as session:
                actors = session.exec(select(AccessLogEntry.actor)).all()
        finally:
            engine.dispose()

    assert actors == ["kept"]


def _audit_row(actor: str) -> AccessLogEntry:
    return AccessLogEntry(at=T0, actor=actor, action="read", resource="Task/x", purpose="t", outcome="ok")


def test_reading_session_does_not_wait_for_a_busy_sqlite_writer(sqlite_url: str) -> None:
    """A read-only transaction takes no write lock: with a writer holding it, it answers at once
    (a default one would wait out busy_timeout, 30 s)."""
    engine = make_engine(sqlite_url)
    try:
        with session_scope(engine) as writer:
            writer.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock is held from here
            started = time.monotonic()
            with session_scope(reading(engine)) as reader:
                assert reader.execute(text("SELECT 1")).scalar() == 1
            assert time.monotonic() - started < 5
    finally:
        engine.dispose()


def test_redoable_transactions_commit_without_waiting_for_the_disk_the_others_wait(
        sqlite_url: str) -> None:
    """On SQLite: `synchronous=NORMAL` in a redoable transaction, FULL in every other one, on
    the same pooled connection whichever came before (the level cannot change inside one)."""
    engine = make_engine(sqlite_url)
    try:
        seen = []
        for bind in (engine, redoable(engine), redoable(engine), engine, redoable(engine)):
            with session_scope(bind) as session:
                session.add(_audit_row("x"))
                seen.append(session.execute(text("PRAGMA synchronous")).scalar())
        with session_scope(reading(engine)) as reader:  # reads commit nothing: no level set
            reader.execute(text("SELECT 1"))
        assert seen == [2, 1, 1, 2, 1]  # FULL, NORMAL, NORMAL, FULL, NORMAL
        assert engine.pool.checkedin() == 1  # one connection served them all
    finally:
        engine.dispose()


def test_the_api_stores_level_holds_for_every_transaction_but_the_redoable(sqlite_url: str) -> None:
    """ERAS_SQLITE_SYNCHRONOUS=NORMAL on the API's store: its transactions stay NORMAL after a
    redoable one (not put back to FULL)."""
    engine = make_engine(sqlite_url)
    set_synchronous(engine, "NORMAL")
    try:
        seen = []
        for bind in (engine, redoable(engine), engine):
            with session_scope(bind) as session:
                seen.append(session.execute(text("PRAGMA synchronous")).scalar())
        assert seen == [1, 1, 1]
    finally:
        engine.dispose()


def test_redoable_is_the_engine_itself_on_postgresql() -> None:
    url = database_url(postgres_server_url())
    require_postgres(url)
    engine = make_engine(url)
    try:
        assert redoable(engine) is engine
    finally:
        engine.dispose()


@pytest.mark.parametrize("idle_seconds, replaced", [(0.0, True), (3600.0, False)])
def test_a_postgresql_connection_closed_while_idle_is_replaced_when_checked(idle_seconds: float,
                                                                           replaced: bool) -> None:
    """A pooled connection the server closed (a restart, an idle timeout) is checked and replaced
    before use once it has been idle `idle_seconds`; one used moments ago is not checked (that
    round trip was on every transaction), so a connection killed then fails its statement."""
    url = database_url(postgres_server_url())
    require_postgres(url)
    engine = ping_when_idle(create_engine(url), idle_seconds=idle_seconds)
    try:
        with engine.connect() as connection:
            backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with make_engine(url).connect() as other:  # the server ends its backend (waits up to 5 s)
            ended = other.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": backend})
            assert ended.scalar_one()
        with engine.connect() as connection:
            if replaced:
                assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != backend
            else:
                with pytest.raises(OperationalError):
                    connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()
