"""The facts of each enrolment's latest evaluation, kept so that history can be re-evaluated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, bindparam, cast, func, insert, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from engine.facts import PatientFacts
from engine.patientfile import patient_json
from store.db import among
from store.models import AuditEpisode, EpisodeFacts
from store.types import as_utc, json_value


def record_facts(*, session: Session, enrolment_id: str, facts: PatientFacts, at: datetime) -> None:
    """Keep (replace) what the evaluation at `at` read, as a patient file: written over the
    stored one without reading it back (one UPDATE, or the INSERT of the first evaluation)."""
    values = {"facts": patient_json(facts), "evaluated_at": as_utc(at)}
    done = session.execute(_update_statement(), {**values, "key": enrolment_id})
    if not done.rowcount:  # type: ignore[attr-defined]
        session.execute(insert(_FACTS), {**values, "enrolment_id": enrolment_id})


_FACTS = EpisodeFacts.__table__  # type: ignore[attr-defined]


@cache
def _update_statement() -> Any:
    """The UPDATE, built once (every apply runs it): its values are bound at each execution."""
    return update(_FACTS).where(_FACTS.c.enrolment_id == bindparam("key"))


def stored_episode_ids(*, session: Session, pathway_id: str, unless_plan: str | None = None) -> list[str]:
    """Enrolment ids of the pathway's audited episodes that have stored facts, in a stable order;
    with `unless_plan`, those whose results that plan did not decide from those very facts."""
    query = (select(EpisodeFacts.enrolment_id)
             .join(AuditEpisode, col(AuditEpisode.enrolment_id) == col(EpisodeFacts.enrolment_id))
             .where(col(AuditEpisode.pathway_id) == pathway_id).order_by(col(EpisodeFacts.enrolment_id)))
    if unless_plan is not None:
        query = query.where(~_decided_by(unless_plan))
    return list(session.exec(query))


def _decided_by(plan: str) -> ColumnElement[bool]:
    """The episode's results were decided by `plan` from its stored facts (the apply or recompute
    that stored both wrote them at the same instant)."""
    # IS NOT NULL first: false, not null, for episodes with no plan kept, so that its negation holds
    return and_(col(AuditEpisode.plan_digest).is_not(None), col(AuditEpisode.plan_digest) == plan,
                col(AuditEpisode.updated_at) == col(EpisodeFacts.evaluated_at))


def renumber_decided(*, session: Session, pathway_id: str, plan: str, version: int) -> int:
    """Give the pathway version `version` to the episodes `plan` decided from their stored facts
    (a new version that changes nothing they depend on); returns how many such episodes there are."""
    decided = (sa_select(col(EpisodeFacts.enrolment_id))
               .where(col(EpisodeFacts.enrolment_id) == col(AuditEpisode.enrolment_id), _decided_by(plan)))
    mine = and_(col(AuditEpisode.pathway_id) == pathway_id, decided.exists())
    session.execute(update(AuditEpisode).where(mine, col(AuditEpisode.pathway_version) != version)
                    .values(pathway_version=version))
    return int(session.exec(select(func.count()).select_from(AuditEpisode).where(mine)).one())


def episodes_without_facts(*, session: Session, pathway_id: str) -> int:
    """The pathway's audited episodes with no stored facts (last applied before they were kept)."""
    query = (select(func.count()).select_from(AuditEpisode)
             .outerjoin(EpisodeFacts, col(EpisodeFacts.enrolment_id) == col(AuditEpisode.enrolment_id))
             .where(col(AuditEpisode.pathway_id) == pathway_id, col(EpisodeFacts.enrolment_id).is_(None)))
    return int(session.exec(query).one())


@dataclass(frozen=True)
class StoredEpisode:
    """One episode to re-evaluate: its patient file, the instant evaluated, its ward and surgeon;
    the plan that decided its stored results (None: unknown) and when they were recorded."""

    enrolment_id: str
    facts: dict[str, Any]
    evaluated_at: datetime
    ward: str | None
    surgeon: str | None
    plan_digest: str | None = None
    recorded_at: datetime | None = None

    @property
    def results_from_these_facts(self) -> bool:
        """Whether the stored results were decided from the stored facts (recorded together)."""
        return self.recorded_at == self.evaluated_at


def stored_episodes(*, session: Session, enrolment_ids: Sequence[str]) -> list[StoredEpisode]:
    """The episodes' stored facts, read in one query, the patient files decoded by `json_value`."""
    # SQLAlchemy's select: SQLModel's typed overloads stop at four columns.
    query = (sa_select(col(EpisodeFacts.enrolment_id), cast(col(EpisodeFacts.facts), Text),
                       col(EpisodeFacts.evaluated_at), col(AuditEpisode.ward), col(AuditEpisode.surgeon),
                       col(AuditEpisode.plan_digest), col(AuditEpisode.updated_at))
             .join(AuditEpisode, col(AuditEpisode.enrolment_id) == col(EpisodeFacts.enrolment_id))
             .where(among(session, EpisodeFacts.__table__.c.enrolment_id,  # type: ignore[attr-defined]
                          enrolment_ids)))
    return [StoredEpisode(eid, json_value(facts), at, ward, surgeon, plan, recorded)
            for eid, facts, at, ward, surgeon, plan, recorded in session.execute(query)]
