"""Exclusion between processes: one apply per patient at a time, one process per SQLite file.

PostgreSQL: a SESSION-level advisory lock (`pg_try_advisory_lock`) keyed by a stable hash of
the patient id, held on a dedicated autocommit connection for the whole apply. It is not a
transaction, so the apply's FHIR calls never run inside one; the database drops the lock by
itself when the holder's connection dies, so a crashed worker leaves nothing to expire (a lease
row would need an expiry long enough for the slowest apply, and would block the patient that
long after a crash). Waiting polls with `asyncio.sleep`, never blocking the event loop.

SQLite allows one engine process: each command that applies claims an OS file lock beside the
database file at start-up (released by the OS when the process exits, however it ends); a
second such process gets `SingleProcessOnly`, naming the setting to change.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, QueuePool, create_engine, text

from store.db import DEFAULT_POOL_SIZE, ping_when_idle, run_to_the_end

# Named in the error a second SQLite process gets (the setting lives in flows.settings, read at the edges).
DATABASE_URL_ENV = "ERAS_DATABASE_URL"

LOCK_POLL_SECONDS = 0.02
LOCK_POLL_MAX_SECONDS = 0.25
# Long enough for the slowest apply seen (EHR retries with back-off), short enough to surface a
# stuck holder as an error instead of a silent hang.
LOCK_TIMEOUT_SECONDS = 300.0
_NAMESPACE = "eras:patient:"


class PatientLockTimeout(TimeoutError):
    """Another process held the patient's lock for longer than the timeout."""


class SingleProcessOnly(RuntimeError):
    """A second process tried to use a SQLite database another process is using."""


def patient_lock_key(patient_id: str) -> int:
    """A stable signed 64-bit key for `pg_advisory_lock` (the same in every process and release)."""
    digest = hashlib.sha256((_NAMESPACE + patient_id).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@asynccontextmanager
async def patient_lock(engine: Engine, patient_id: str, *,
                       timeout: float = LOCK_TIMEOUT_SECONDS) -> AsyncIterator[None]:
    """Hold the patient's lock across processes for the block (see the module docstring)."""
    if engine.dialect.name != "postgresql":
        yield  # SQLite: one process (claim_single_process at start-up); the asyncio lock serves
        return
    key = patient_lock_key(patient_id)
    # Each round trip to the server runs on a thread, so as not to stop the event loop: the
    # connection is taken with the first try, and given back with the unlock (two hops an apply).
    # A hop runs to its end even when the apply is stopped meanwhile (SIGTERM): a lock taken or
    # kept on a connection nobody holds would stop this patient's applies in this process.
    connection, held = await run_to_the_end(
        asyncio.to_thread(_connect_and_try, _lock_engine(engine), key),
        if_stopped=lambda taken: asyncio.to_thread(_give_back_taken, key, taken))
    released = False
    try:
        if not held:
            await _acquire(connection, key, timeout)
            held = True
        try:
            yield
        finally:
            try:
                await run_to_the_end(asyncio.to_thread(_unlock_and_close, connection, key))
            except asyncio.CancelledError:
                released = True  # its thread gave the lock back before the cancellation went on
                raise
            released = True
    finally:
        if not released:
            if held:
                # The unlock failed: a connection still holding the lock must not go back to the pool.
                connection.invalidate()
            connection.close()


_TRY = text("SELECT pg_try_advisory_lock(:k)")
_UNLOCK = text("SELECT pg_advisory_unlock(:k)")


def _connect_and_try(engine: Engine, key: int) -> tuple[Connection, bool]:
    """A lock connection, and whether its first try took the lock."""
    connection = engine.connect()
    try:
        return connection, bool(connection.execute(_TRY, {"k": key}).scalar_one())
    except BaseException:
        connection.close()
        raise


def _unlock_and_close(connection: Connection, key: int) -> None:
    connection.execute(_UNLOCK, {"k": key})
    connection.close()


def _give_back_taken(key: int, taken: tuple[Connection, bool]) -> None:
    """Undo `_connect_and_try` for an apply stopped meanwhile."""
    connection, held = taken
    if held:
        connection.execute(_UNLOCK, {"k": key})
    connection.close()


_lock_engines: dict[str, Engine] = {}


def _lock_engine(engine: Engine) -> Engine:
    """The lock connections' own pool: a lock is held across a whole apply (or waits for one),
    so taking its connection from the engine's pool would starve the apply's own transactions
    (20 concurrent worklist actions exhausted a 5 + 10 pool). Autocommit: never a transaction."""
    url = engine.url.render_as_string(hide_password=False)
    if url not in _lock_engines:
        # As many kept open as the engine keeps: one per apply run at once, not opened and
        # closed again per apply (a PostgreSQL connection is a server process started).
        size = engine.pool.size() if isinstance(engine.pool, QueuePool) else DEFAULT_POOL_SIZE
        _lock_engines[url] = ping_when_idle(create_engine(url, pool_size=size, max_overflow=200,
                                                          isolation_level="AUTOCOMMIT"))
    return _lock_engines[url]


async def _acquire(connection: Connection, key: int, timeout: float) -> None:
    """Try again, waiting longer each time, until the lock is ours (the first try failed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    wait = LOCK_POLL_SECONDS
    while True:
        if loop.time() >= deadline:
            raise PatientLockTimeout(f"patient lock {key} held by another process for {timeout:.0f} s")
        await asyncio.sleep(wait)
        wait = min(wait * 2, LOCK_POLL_MAX_SECONDS)
        if await asyncio.to_thread(lambda: connection.execute(_TRY, {"k": key}).scalar_one()):
            return


_held: dict[str, IO[str]] = {}


def claim_single_process(engine: Engine) -> None:
    """On SQLite, claim the database for this process (idempotent); elsewhere do nothing.

    Called at start-up by the commands that apply (`eras serve`, `worker`, `drain`, `apply`),
    so a second such process fails at once with what to change, instead of racing the first.
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        return
    path = str(Path(database).resolve()) + ".process-lock"
    if path in _held:
        return
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the process's life)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise SingleProcessOnly(
            f"the SQLite database {database} is in use by {holder}: SQLite supports one engine "
            f"process. Stop it, or set {DATABASE_URL_ENV} to a PostgreSQL URL to run several "
            "processes.") from None
    handle.truncate(0)
    handle.write(f"process {os.getpid()}\n")
    handle.flush()
    _held[path] = handle
