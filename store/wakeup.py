"""Wake drain loops in other processes when events are stored: PostgreSQL LISTEN/NOTIFY.

The intake calls `notify_stored` inside the transaction that stores events: PostgreSQL
delivers a NOTIFY only when that transaction commits, so a woken drain always finds the rows.
SQLite has no such channel; there the single process wakes its drain loop in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session

log = logging.getLogger(__name__)

CHANNEL = "eras_inbox_stored"


def notify_stored(session: Session) -> None:
    """Queue a wake-up for the drain loops; sent by PostgreSQL at commit (no-op on SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


def listen_url(database_url: str) -> str | None:
    """The libpq URL to LISTEN on, or None when the store is not PostgreSQL."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(url: str, wake: Callable[[], None], *, retry_seconds: float = 5.0,
                 ready: asyncio.Event | None = None) -> None:
    """Call `wake()` on each NOTIFY until cancelled; reconnect after a lost connection."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                if ready is not None:
                    ready.set()
                wake()  # events stored while not listening are not missed
                async for _ in conn.notifies():
                    wake()
        except (psycopg.Error, OSError) as error:
            log.warning("LISTEN %s lost (%s); retrying in %.0f s", CHANNEL, type(error).__name__,
                        retry_seconds)
            await asyncio.sleep(retry_seconds)
