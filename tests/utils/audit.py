"""Loading audit cases into the store as the runtime would: enrolments, element results, outcomes."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select

from engine.audit import AuditCase
from engine.model import Pathway
from engine.outcomes import OutcomeDefinitions, patient_outcomes
from store.models import AuditEpisode, AuditOutcome, ElementResultRow, Enrolment, EpisodeFacts
from store.results import episode_attributes, record_element_results, record_outcomes


def load_cases(engine: Engine, pathway: Pathway, cases: Iterable[AuditCase], *,
               outcomes: OutcomeDefinitions | None = None, tz: object = None) -> list[str]:
    """One enrolment per case with its element results (and outcomes); returns the enrolment ids."""
    ids = []
    with Session(engine) as session:
        for case in cases:
            ev = case.evaluation
            row = Enrolment(id=ev.enrolment_id, patient_ref=f"Patient/{ev.patient_id}",
                            pathway_id=ev.pathway_id, pathway_version=ev.pathway_version, status="active",
                            enrolled_at=ev.now,
                            enrolled_by="test", updated_at=ev.now, ward=case.attributes.get("ward"),
                            anchors={k: v.isoformat() for k, v in ev.anchors.items() if v is not None})
            session.add(row)
            session.flush()
            attrs = episode_attributes(pathway, ev, case.facts, ward=case.attributes.get("ward"),
                                       surgeon=case.attributes.get("surgeon"))
            record_element_results(session=session, enrolment_id=ev.enrolment_id, evaluation=ev,
                                   attributes=attrs, at=ev.now)
            if outcomes is not None:
                record_outcomes(session=session, enrolment_id=ev.enrolment_id, at=ev.now,
                                outcomes=patient_outcomes(case.facts, ev, definitions=outcomes,
                                                          tz=tz or ev.now.tzinfo))  # type: ignore[arg-type]
            ids.append(ev.enrolment_id)
        session.commit()
    return ids


def clear_audit(engine: Engine, pathway_id: str, enrolment_ids: Iterable[str] = ()) -> None:
    """Remove every audited episode of the pathway, and these enrolments, from a shared test database."""
    with Session(engine) as session:
        ids = list(session.exec(select(AuditEpisode.enrolment_id).where(
            col(AuditEpisode.pathway_id) == pathway_id)))
        mine = list(enrolment_ids)
        for table in (ElementResultRow, AuditOutcome, EpisodeFacts, AuditEpisode):
            session.exec(delete(table).where(col(table.enrolment_id).in_(ids + mine)))  # type: ignore[call-overload]
        session.exec(delete(Enrolment).where(col(Enrolment.id).in_(mine)))  # type: ignore[call-overload]
        session.commit()
