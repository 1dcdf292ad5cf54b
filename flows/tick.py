"""tick: apply time-driven transitions for the enrolments whose next change time has come.

The store keeps each enrolment's next due/overdue/escalation instant (`next_check_at`, set by
every apply), so a minute's tick touches only those, never everyone. Errors are handled per
patient: a patient whose apply fails is recorded (parked after repeats, like the drain does)
and the tick goes on to the patients after it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from fhir_adapters.errors import FhirTemporaryError
from flows.apply import apply_patient
from flows.failures import clear_failures, describe, record_failure
from flows.runtime import Runtime
from store.db import session_scope
from store.locks import PatientLockTimeout
from store.scheduling import due_for_check
from store.types import as_utc

LEASE = timedelta(minutes=5)


def claim_due(rt: Runtime, now: datetime, limit: int) -> list[str]:
    """Patients to re-evaluate; their next check moves a lease ahead so no other worker takes them
    (PostgreSQL locks the rows while claiming: FOR UPDATE SKIP LOCKED)."""
    with session_scope(rt.db) as session:
        due = due_for_check(session=session, now=now, limit=limit, claim=True)
        for enrolment in due:
            enrolment.next_check_at = as_utc(now + LEASE)
            session.add(enrolment)
        return list(dict.fromkeys(e.patient_ref.split("/", 1)[1] for e in due))


async def tick_once(rt: Runtime, *, now: datetime | None = None, limit: int = 500) -> list[str]:
    """Re-evaluate every patient with a transition due; returns the patients applied."""
    now = now or rt.clock()
    done = []
    for patient_id in claim_due(rt, now, limit):
        def finish(session: Session, patient_id: str = patient_id) -> None:
            clear_failures(session, rt, patient_id)

        try:
            await apply_patient(rt, patient_id, now=now, finish=finish)
        except FhirTemporaryError:
            break  # the EHR is down: the lease expires and a later tick retries
        except PatientLockTimeout:
            continue  # another process is on this patient: its lease brings it back later
        except OperationalError:
            raise  # the database, not the patient: nothing to record the failure in
        except Exception as exc:  # this patient's alone: the patients after it still run
            record_failure(rt, patient_id, describe(exc), loop="tick")
            continue
        done.append(patient_id)
    return done
