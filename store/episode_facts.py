"""The facts of each enrolment's latest evaluation, kept so that history can be re-evaluated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, func, insert, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from engine.facts import PatientFacts
from engine.patientfile import patient_json
from store.models import AuditEpisode, EpisodeFacts
from store.types import as_utc, json_value


def record_facts(*, session: Session, enrolment_id: str, facts: PatientFacts, at: datetime) -> None:
    """Keep (replace) what the evaluation at `at` read, as a patient file: written over the
    stored one without reading it back (one UPDATE, or the INSERT of the first evaluation)."""
    table = EpisodeFacts.__table__  # type: ignore[attr-defined]
    values = {"facts": patient_json(facts), "evaluated_at": as_utc(at)}
    done = session.execute(update(table).where(table.c.enrolment_id == enrolment_id).values(**values))
    if not done.rowcount:  # type: ignore[attr-defined]
        session.execute(insert(table).values(enrolment_id=enrolment_id, **values))


def stored_episode_ids(*, session: Session, pathway_id: str) -> list[str]:
    """Enrolment ids of the pathway's audited episodes that have stored facts, in a stable order."""
    query = (select(EpisodeFacts.enrolment_id)
             .join(AuditEpisode, col(AuditEpisode.enrolment_id) == col(EpisodeFacts.enrolment_id))
             .where(col(AuditEpisode.pathway_id) == pathway_id).order_by(col(EpisodeFacts.enrolment_id)))
    return list(session.exec(query))


def episodes_without_facts(*, session: Session, pathway_id: str) -> int:
    """The pathway's audited episodes with no stored facts (last applied before they were kept)."""
    query = (select(func.count()).select_from(AuditEpisode)
             .outerjoin(EpisodeFacts, col(EpisodeFacts.enrolment_id) == col(AuditEpisode.enrolment_id))
             .where(col(AuditEpisode.pathway_id) == pathway_id, col(EpisodeFacts.enrolment_id).is_(None)))
    return int(session.exec(query).one())


@dataclass(frozen=True)
class StoredEpisode:
    """One episode to re-evaluate: its patient file, the instant evaluated, its ward and surgeon."""

    enrolment_id: str
    facts: dict[str, Any]
    evaluated_at: datetime
    ward: str | None
    surgeon: str | None


def stored_episodes(*, session: Session, enrolment_ids: Sequence[str]) -> list[StoredEpisode]:
    """The episodes' stored facts, read in one query, the patient files decoded by `json_value`."""
    # SQLAlchemy's select: SQLModel's typed overloads stop at four columns.
    query = (sa_select(col(EpisodeFacts.enrolment_id), cast(col(EpisodeFacts.facts), Text),
                       col(EpisodeFacts.evaluated_at), col(AuditEpisode.ward), col(AuditEpisode.surgeon))
             .join(AuditEpisode, col(AuditEpisode.enrolment_id) == col(EpisodeFacts.enrolment_id))
             .where(col(EpisodeFacts.enrolment_id).in_(list(enrolment_ids))))
    return [StoredEpisode(eid, json_value(facts), at, ward, surgeon)
            for eid, facts, at, ward, surgeon in session.execute(query)]
