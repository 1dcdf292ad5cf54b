"""Launched sessions: the cookie resolved to its principal, and the cookies' attributes.

Cookies: HttpOnly always; Secure unless the app is reached on a loopback address (local demo
over plain http). SameSite=None when the pages are framed by the EHR (`ERAS_EHR_ORIGIN` set):
inside the EHR's iframe every request is cross-site and a Lax cookie would never be sent
(None needs Secure, so embedding needs https). Otherwise Lax: the callback is a top-level
navigation from the EHR's authorize page, which Lax allows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from api.auth import InvalidToken, Principal
from api.smart.launch import digest
from api.worklist.dev_auth import is_loopback
from store.db import reading, session_scope
from store.models import SmartSession
from store.sessions import find_session

BROWSER_COOKIE = "eras_launch"
RELAUNCH = "launch the app again from the EHR"


@dataclass
class SessionStore:
    """`app.state.sessions`: session cookies to principals, from the database."""

    engine: Callable[[], Engine]

    async def principal(self, cookie: str) -> Principal:
        """The launched user, or InvalidToken when the session is unknown or over."""
        row = await self.row(digest(cookie))
        if row is None:
            raise InvalidToken(f"this EHR session is unknown (signed out or never started); {RELAUNCH}")
        if row.expires_at <= datetime.now(UTC):
            raise InvalidToken(f"this EHR session has expired; {RELAUNCH}")
        return Principal(subject=row.subject, roles=frozenset(row.roles), wards=frozenset(row.wards),
                         session=row.id_hash)

    async def row(self, id_hash: str) -> SmartSession | None:
        def read() -> SmartSession | None:
            with session_scope(reading(self.engine())) as session:
                found = find_session(session=session, id_hash=id_hash)
                if found is not None:
                    session.expunge(found)
                return found

        return await run_in_threadpool(read)


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: float,
               embedded: bool, path: str = "/") -> None:
    """A cookie with the attributes the module docstring decides."""
    secure = not is_loopback(request.url.hostname)
    same_site: Literal["lax", "none"] = "none" if embedded and secure else "lax"
    response.set_cookie(name, value, max_age=int(max_age), path=path, httponly=True, secure=secure,
                        samesite=same_site)

