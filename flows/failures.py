"""A patient whose apply fails is recorded, and parked after repeats, by every loop alike.

The drain, the tick and the reminders handle errors per patient: one patient's failure never
aborts the run for the patients after it. Errors name the exception and resource ids only.
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from flows.runtime import Runtime
from store.db import session_scope
from store.scheduling import clear_patient_failures, record_patient_failure

log = logging.getLogger(__name__)
PARK_AFTER = 3  # failed applies in a row before a patient is parked (see `eras parked`)
PARKED_ERROR = "patient parked after repeated failures: see `eras parked`"


def describe(exc: BaseException) -> str:
    """The error as stored: its type and message (FHIR errors carry resource ids, not values)."""
    return f"{type(exc).__name__}: {exc}"


def record_failure(rt: Runtime, patient_id: str, error: str, *, loop: str) -> None:
    """Count one failed apply of the patient; the PARK_AFTER-th in a row parks them."""
    log.error("%s: apply failed for Patient/%s: %s", loop, patient_id, error.split(":", 1)[0])
    with session_scope(rt.db) as session:
        record_patient_failure(session=session, patient_ref=f"Patient/{patient_id}", error=error,
                               at=rt.clock(), park_after=PARK_AFTER)


def clear_failures(session: Session, rt: Runtime, patient_id: str) -> None:
    """In the apply's last transaction: a success forgets the patient's past failures."""
    clear_patient_failures(session=session, patient_ref=f"Patient/{patient_id}", at=rt.clock())
