"""Database URLs, engines and sessions for SQLite (embedded default) and PostgreSQL."""

import asyncio
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Engine, any_, bindparam, create_engine, event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, SQLModel

DEFAULT_DATABASE_URL = "sqlite:///./eras.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# A pooled PostgreSQL connection idle longer than this is checked (one round trip) before use.
PING_AFTER_IDLE_SECONDS = 10.0
# Connections a PostgreSQL pool keeps open beyond those in use (SQLAlchemy's default 5 + 10).
DEFAULT_POOL_SIZE = 5
_READ_ONLY = "eras_read_only"
_REDOABLE = "eras_redoable"

T = TypeVar("T", bound=SQLModel)
R = TypeVar("R")

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def database_url(given: str) -> str:
    """The URL with PostgreSQL pointed at psycopg 3 (the settings, flows/settings.py, give it)."""
    url = make_url(given)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def check_schema_name(schema: str) -> str:
    """`schema` if it is a plain PostgreSQL identifier (it is spliced into SQL)."""
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"invalid schema name {schema!r}: use letters, digits and _")
    return schema


def make_engine(url: str, *, schema: str | None = None, echo: bool = False,
                pool_size: int = DEFAULT_POOL_SIZE) -> Engine:
    """An engine for a SQLite or PostgreSQL URL; `schema` sets PostgreSQL's search_path.
    `pool_size`: PostgreSQL connections kept open (the work run at once: more are opened, and
    closed again, when needed)."""
    url = database_url(url)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        if schema is not None:
            raise ValueError("SQLite databases have no schemas")
        return _sqlite_engine(url, echo=echo)
    if backend == "postgresql":
        options = f"-csearch_path={check_schema_name(schema)}" if schema else None
        connect_args = {"options": options} if options else {}
        return ping_when_idle(create_engine(url, echo=echo, connect_args=connect_args, pool_size=pool_size))
    raise ValueError(f"unsupported database {backend!r}: use sqlite:// or postgresql://")


def ping_when_idle(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> Engine:
    """Check a pooled connection before use when it has been idle for `idle_seconds`: a server
    restart or an idle timeout closes connections the pool still holds. SQLAlchemy's
    `pool_pre_ping` checks on every checkout, one more round trip per transaction (an apply has
    four); a connection back in the pool moments ago is as good as the statement it just ran.
    A dead one is replaced (the pool retries the checkout with a new connection)."""
    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # what pool_pre_ping runs
        except Exception as exc:  # the driver's own errors: the connection is gone
            raise DisconnectionError(f"pooled connection unusable after {idle_seconds:.0f} s idle") from exc

    return engine


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    engine = create_engine(url, echo=echo)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 driver's legacy mode so that
        # SAVEPOINTs and rollbacks behave (SQLAlchemy docs, "sqlite_transactions").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=FULL")  # each commit on disk before it returns (redoable)
        cursor.close()
        _record.info["synchronous"] = "FULL"

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and
        # then writes fails at once with SQLITE_BUSY when another writer got there first,
        # whereas an IMMEDIATE one waits out busy_timeout. Work that only reads (`reading`)
        # needs no lock in WAL mode and must not queue behind writers.
        options = connection.get_execution_options()
        read_only = options.get(_READ_ONLY, False)
        if not read_only:
            durable = connection.info.get("durable_synchronous", "FULL")  # set_synchronous
            synchronous = "NORMAL" if options.get(_REDOABLE, False) else durable
            if connection.info.get("synchronous") != synchronous:  # not inside a transaction
                connection.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
                connection.info["synchronous"] = synchronous
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def reading(engine: Engine) -> Engine:
    """The same database for transactions that only read: on SQLite they take no write lock.

    A transaction on it that writes fails (SQLITE_BUSY) rather than waiting when another
    writer is busy: use it only for reads.
    """
    return engine.execution_options(**{_READ_ONLY: True})


def set_synchronous(engine: Engine, level: str) -> None:
    """SQLite: the level of every transaction on `engine` but the redoable ones (ERAS_SQLITE_
    SYNCHRONOUS on the API's store: `NORMAL` trades the acks' durability for speed)."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA synchronous={level}")
        cursor.close()
        record.info["synchronous"] = record.info["durable_synchronous"] = level


def redoable(engine: Engine) -> Engine:
    """The same database for transactions whose work is done again if a power cut undoes them:
    on SQLite their commits do not wait for the disk (WAL with `synchronous=NORMAL`).

    Every other transaction commits with `synchronous=FULL`: once COMMIT returns it is on disk,
    so what is acknowledged to someone (a notification the intake took, an HL7 message ACKed, a
    nurse's completion, a reminder sent) survives a power cut. A commit waits for the disk
    ~3.5 ms on this machine's VM, and on SQLite store work runs on the event loop, which waits
    with it. The applies' and the drain's commits need not: a process crash loses none of them
    (the WAL is in the OS's cache), and a power cut loses at most those since the last commit
    that waited, which are then done again (an event not yet settled is applied again; the FHIR
    writes are conditional on their business identifiers, so nothing is created twice). The
    database itself is never left corrupt (SQLite, "Write-Ahead Logging").
    PostgreSQL: the engine itself (its commits run off the event loop, on store threads).
    """
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{_REDOABLE: True})


def among(session: Session, column: ColumnElement[Any], values: Collection[Any]) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `column = ANY(array)`, the values bound as one array: a
    chunk's 500 keys are then one parameter, not 500 placeholders that SQLAlchemy expands, and
    psycopg and the server parse, at every execution."""
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(list(values))
    return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))


def make_session_factory(engine: Engine) -> Callable[[], Session]:
    """Sessions whose objects stay readable after commit."""
    return sessionmaker(bind=engine, class_=Session, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit when the block succeeds, roll back when it raises.

    Store functions only flush; the caller decides what makes one transaction.
    """
    with _session_factory(engine)() as session, session.begin():
        yield session


_FACTORIES: weakref.WeakKeyDictionary[Engine, Callable[[], Session]] = weakref.WeakKeyDictionary()


def _session_factory(engine: Engine) -> Callable[[], Session]:
    """`make_session_factory(engine)`, made once per engine: a sessionmaker builds a class, and
    every apply opens several sessions."""
    factory = _FACTORIES.get(engine)
    if factory is None:
        factory = _FACTORIES[engine] = make_session_factory(engine)
    return factory


def add_unless_exists(
    *, session: Session, row: T, find_existing: Callable[[], T | None]
) -> tuple[T, bool]:
    """Insert `row`, or return the row a unique constraint says is already there.

    The insert runs in a SAVEPOINT so that losing a race to another writer leaves the
    caller's transaction usable.
    """
    existing = find_existing()
    if existing is not None:
        return existing, False
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = find_existing()
        if existing is None:
            raise
        return existing, False
    return row, True


def expire_held(session: Session, model: type[SQLModel], keys: Iterable[Any]) -> None:
    """After a statement that wrote these rows outside the ORM: this session's copies of them (if it
    holds any) no longer hold what is stored, and are read again on use."""
    for key in keys:
        if (held := session.identity_map.get(session.identity_key(model, key))) is not None:
            session.expire(held)

async def run_to_the_end(work: Awaitable[R], *, if_stopped: Callable[[R], Awaitable[Any]] | None = None) -> R:
    """Await store work that runs on a thread, which a cancellation cannot stop: if the caller is
    cancelled (SIGTERM) meanwhile, wait for the work to end, undo what it did (`if_stopped`, given
    its result), then let the cancellation through. A claim or a lock taken on a thread after its
    caller stopped would otherwise be held by nobody until a lease or the process ends."""
    running = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        result = await running
        if if_stopped is not None:
            await asyncio.shield(if_stopped(result))
        raise
