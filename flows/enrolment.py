"""Explicit enrolment and exclusion (the CLI's `eras enrol` / `eras unenrol`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from engine.model import Pathway
from flows.apply import register_pathway
from flows.runtime import Runtime
from store.db import session_scope
from store.enrolments import enrol, exit_enrolment, find_enrolments
from store.models import Enrolment


def enrol_patient(rt: Runtime, patient_id: str, pathway_id: str, *, variant: str | None,
                  by: str, now: datetime | None = None) -> tuple[Enrolment, bool]:
    """Enrol on a pathway (a no-op when already enrolled); `variant` sets its first parameter."""
    return enrol_on(rt.db, rt.pathway(pathway_id), patient_id, variant=variant, by=by,
                    now=now or rt.clock())


def enrol_on(db: Engine, pathway: Pathway, patient_id: str, *, variant: str | None, by: str,
             now: datetime, check_now: bool = False) -> tuple[Enrolment, bool]:
    """`enrol_patient` without a runtime (the API's CDS feedback): once per patient and pathway,
    whichever process asks first (the store's unique constraint decides). `check_now`: the next
    tick applies a new enrolment (nothing else would until an EHR event about the patient)."""
    parameters: dict[str, str] = {}
    if variant is not None:
        if not pathway.parameters:
            raise ValueError(f"pathway '{pathway.id}' has no variants")
        name, param = next(iter(pathway.parameters.items()))
        if variant not in param.values:
            raise ValueError(f"variant '{variant}' is not one of {list(param.values)} ({name})")
        parameters[name] = variant
    with session_scope(db) as session:
        register_pathway(session, pathway, now)
        row, created = enrol(session=session, patient_ref=f"Patient/{patient_id}", pathway_id=pathway.id,
                             pathway_version=pathway.version, parameters=parameters, enrolled_by=by,
                             at=now)
        if created and check_now:
            row.next_check_at = now
        return row, created


def unenrol_patient(rt: Runtime, patient_id: str, pathway_id: str, *, reason: str,
                    now: datetime | None = None) -> Enrolment:
    """Exclude a patient from a pathway with a reason; their open Tasks are cancelled by the
    next apply (the plan of an exited enrolment is no longer evaluated)."""
    with session_scope(rt.db) as session:
        found = find_enrolments(session=session, patient_ref=f"Patient/{patient_id}",
                                pathway_id=pathway_id)
        if not found:
            raise LookupError(f"Patient/{patient_id} is not enrolled on '{pathway_id}'")
        return exit_enrolment(session=session, enrolment_id=found[0].id, reason=reason,
                              at=now or rt.clock())
