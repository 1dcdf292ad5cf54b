"""CDS Hooks in the store: what an order-sign card offered and whether the EHR accepted it; JWTs seen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from store.db import add_unless_exists
from store.models import CdsJwtUse, CdsSuggestion
from store.types import as_utc


def record_suggestions(*, session: Session, suggestions: Iterable[CdsSuggestion]) -> None:
    """Keep the suggestions a card carries (their uuids are new, so nothing is overwritten)."""
    session.add_all(list(suggestions))


def find_suggestions(*, session: Session, uuids: Sequence[str]) -> list[CdsSuggestion]:
    """The suggestions named, in no particular order; unknown uuids are left out."""
    if not uuids:
        return []
    return list(session.exec(select(CdsSuggestion).where(col(CdsSuggestion.uuid).in_(list(uuids)))))


def mark_accepted(*, session: Session, uuid: str, at: datetime) -> bool:
    """Record the first acceptance; False when it was already accepted (feedback sent twice)."""
    result = session.execute(
        update(CdsSuggestion)
        .where(col(CdsSuggestion.uuid) == uuid, col(CdsSuggestion.accepted_at).is_(None))
        .values(accepted_at=as_utc(at)))
    return bool(getattr(result, "rowcount", 0))


def first_use_of_jwt(*, session: Session, jti: str, expires_at: datetime, at: datetime) -> bool:
    """True the first time a JWT id is presented, by any process; expired ids are forgotten."""
    session.execute(delete(CdsJwtUse).where(col(CdsJwtUse.expires_at) < as_utc(at)))
    _, created = add_unless_exists(session=session, row=CdsJwtUse(jti=jti, expires_at=as_utc(expires_at)),
                                   find_existing=lambda: session.get(CdsJwtUse, jti))
    return created
