"""SMART launches and launched sessions in the database: single-use state, expiring sessions.

Every process of the API sees the same launches and sessions; a `state` is claimed by one
conditional UPDATE, so a replayed callback loses even against a concurrent twin.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import Session, col

from store.models import SmartLaunch, SmartSession


class LaunchRefused(Exception):
    """The callback's state is unknown, already used, or too old."""


def save_launch(*, session: Session, launch: SmartLaunch) -> None:
    """Store a started launch, and forget launches nobody came back from."""
    session.exec(delete(SmartLaunch).where(col(SmartLaunch.expires_at) < launch.created_at))
    session.add(launch)
    session.flush()


def claim_launch(*, session: Session, state: str, at: datetime) -> SmartLaunch:
    """The launch `state` names, marked used; LaunchRefused when it is unknown, used or expired."""
    claimed = session.exec(
        update(SmartLaunch)
        .where(col(SmartLaunch.state) == state, col(SmartLaunch.used_at).is_(None))
        .values(used_at=at)
    )
    launch = session.get(SmartLaunch, state)
    if launch is None:
        raise LaunchRefused("this sign-in was not started here (unknown state)")
    if claimed.rowcount != 1:
        raise LaunchRefused("this sign-in link was already used (replayed state); launch again from the EHR")
    if launch.expires_at <= at:
        raise LaunchRefused("this sign-in took too long and expired; launch again from the EHR")
    return launch


def save_session(*, session: Session, row: SmartSession) -> None:
    """Store a new session, and forget expired ones."""
    session.exec(delete(SmartSession).where(col(SmartSession.expires_at) < row.created_at))
    session.add(row)
    session.flush()


def find_session(*, session: Session, id_hash: str) -> SmartSession | None:
    """The session with this hashed id, expired or not (the caller tells the user which)."""
    return session.get(SmartSession, id_hash)
