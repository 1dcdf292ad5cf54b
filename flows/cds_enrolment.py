"""Enrolment from CDS Hooks: which pathway (and variant) a draft order calls for, and enrolling
once when the EHR reports the suggestion accepted, however often and wherever it reports it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from engine.model import Pathway
from engine.plan import plan_of
from fhir_adapters.facts import facts_from_resources
from flows.enrolment import enrol_on
from store.cds import find_suggestions, mark_accepted, record_suggestions
from store.db import session_scope
from store.models import CdsSuggestion, Enrolment

ORDER_TYPES = frozenset({"ServiceRequest"})


@dataclass(frozen=True)
class ProposedEnrolment:
    pathway: Pathway
    variant: str | None


def proposed_enrolments(draft_orders: Iterable[Mapping[str, Any]], patient_id: str,
                        pathways: Mapping[str, Pathway]) -> list[ProposedEnrolment]:
    """The pathways whose enrolling concepts the draft orders carry (by each pathway's own
    terminology), each with the variant its parameter rules choose from those orders."""
    orders = [dict(o) for o in draft_orders if o.get("resourceType") in ORDER_TYPES]
    out = []
    for pathway in pathways.values():
        facts = facts_from_resources(orders, plan_of(pathway).terminology, patient_id=patient_id,
                                     enrolment_id="-", enrolled_at=None, parameters={},
                                     task_identifier_system="-").facts.facts
        concepts = {f.concept for f in facts}
        if not concepts & set(pathway.enrols_on):
            continue
        variants = [p for p in pathway.parameters.values() if not p.setting]
        variant = variants[0].chosen(concepts.__contains__) if variants else None
        out.append(ProposedEnrolment(pathway, variant))
    return out


def remember_suggestions(db: Engine, suggestions: Sequence[CdsSuggestion]) -> None:
    with session_scope(db) as session:
        record_suggestions(session=session, suggestions=suggestions)


def accept_suggestions(db: Engine, pathways: Mapping[str, Pathway], accepted: Sequence[tuple[str, str]], *,
                       by: str, now: datetime) -> list[tuple[Enrolment, bool]]:
    """Enrol as each accepted (card uuid, suggestion uuid) said: (enrolment, True when this call
    made it). A suggestion is known only on the card that carried it. Accepted again, here or on
    another replica, it finds the enrolment already there (one per patient and pathway: the
    store's unique constraint)."""
    cards = dict((suggestion, card) for card, suggestion in accepted)
    with session_scope(db) as session:
        found = [s for s in find_suggestions(session=session, uuids=list(cards))
                 if cards[s.uuid] == s.card_uuid]
        for suggestion in found:
            mark_accepted(session=session, uuid=suggestion.uuid, at=now)
        session.expunge_all()
    results = []
    for suggestion in found:
        pathway = pathways.get(suggestion.pathway_id)
        if pathway is None:
            continue
        patient_id = suggestion.patient_ref.split("/", 1)[1]
        results.append(enrol_on(db, pathway, patient_id, variant=suggestion.variant, by=by, now=now,
                                check_now=True))
    return results
