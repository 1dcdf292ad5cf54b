"""Which inbox events can matter: an enrolled patient's, or a resource that could enrol one.

A hospital's EHR sends every patient's events. An event about a patient with no enrolment
can only matter if its resource could start a pathway (a booking, a procedure): the types
that hold a pathway's enrolling concepts, read from the pathway's terminology (data, not
code). Everything else is settled as irrelevant, with one store query per transaction and no
request to the EHR: at intake for notifications (api.intake.batcher), at drain time for
events from elsewhere (polls, HL7 v2).

An enrolling apply in flight may have read the EHR before such an event's resource was
written and commit its enrolment after the event was dropped: flows.apply reads the record
again once it has enrolled someone, so the resource is read then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TypeVar

from sqlmodel import Session

from engine.model import Pathway
from engine.plan import plan_of
from store.enrolments import enrolled_among
from store.inbox import mark_done
from store.models import InboxEvent, InboxEventBase

E = TypeVar("E", bound=InboxEventBase)


def enrolling_resource_types(pathways: Iterable[Pathway]) -> frozenset[str]:
    """The FHIR resource types in which some pathway's enrolling concept is recorded."""
    types: set[str] = set()
    for pathway in pathways:
        concepts = plan_of(pathway).terminology.concepts
        for name in pathway.enrols_on:
            types.update(concepts[name].resources)
    return frozenset(types)


def irrelevant_events(session: Session, events: Iterable[E], enrolling_types: frozenset[str]) -> list[E]:
    """Events about a named patient who has no enrolment, whose resource could not enrol them.

    An event that names no patient (id-only, a ping) is kept: who it concerns is not known
    without asking the EHR.
    """
    candidates = [e for e in events if e.patient_ref and e.resource_type not in enrolling_types]
    enrolled = enrolled_among(session=session, patient_refs=(str(e.patient_ref) for e in candidates))
    return [e for e in candidates if e.patient_ref not in enrolled]


def settle_irrelevant(session: Session, events: list[InboxEvent], pathways: Mapping[str, Pathway],
                      *, token: str, at: datetime) -> list[InboxEvent]:
    """Mark the batch's irrelevant events done (in the claim's transaction); the rest, to apply."""
    dropped = irrelevant_events(session, events, enrolling_resource_types(pathways.values()))
    mark_done(session=session, ids=[int(e.id or 0) for e in dropped], token=token, at=at)
    gone = {e.id for e in dropped}
    return [e for e in events if e.id not in gone]
