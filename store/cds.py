"""CDS Hooks suggestions: what an order-sign card offered, and whether the EHR said it was accepted."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from store.models import CdsSuggestion
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
