"""reminders: CommunicationRequests for tasks due soon, and escalations for overdue ones.

The instants are the engine's (`PlannedAction.remind_at` and `escalations`, kept in the store by
every apply), never worked out again here. Each level is claimed in the store before anything is
sent (store.reminders), so two overlapping runs, in one process or several, page nobody twice;
every delivery carries the level's idempotency key, so the one repeat a crash between sending
and recording can cause is one the receiver can drop. Delivery to people (pager webhook,
email) is the channels' job; this writes the FHIR request, delivers and records.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import OperationalError

from engine.results import PlannedAction, Status
from fhir_adapters.errors import FhirTemporaryError
from fhir_adapters.writeback import Write, communication_request_for, transaction_for
from flows.failures import describe, record_failure
from flows.runtime import Runtime, WriteTarget
from store.actions import escalations_of
from store.db import session_scope
from store.locks import PatientLockTimeout, patient_lock
from store.models import Enrolment, ReminderSent
from store.models import PlannedActionRow as StoredAction
from store.reminders import Level, claim_levels, mark_sent, open_actions_due_before, settled

LOOKAHEAD = timedelta(hours=24)
# A claim not marked sent after this long belongs to a run presumed dead: sent again (same key).
CLAIM_LEASE = timedelta(minutes=5)
LOCK_WAIT = 30.0  # seconds to wait for a patient's running apply before moving on


@dataclass(frozen=True)
class Notice:
    """One reminder (level 0) or escalation (level >= 1) for one action, to one role."""

    action_key: str
    patient_id: str
    kind: str  # "reminder" | "escalation"
    level: int
    role: str
    ward: str | None
    title: str
    due: datetime
    at: datetime

    @property
    def level_key(self) -> Level:
        return (self.action_key, self.kind, self.level)

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt at this level, in every process: receivers drop repeats."""
        return idempotency_key(self.action_key, self.kind, self.level)


def idempotency_key(action_key: str, kind: str, level: int) -> str:
    return "eras-" + hashlib.sha256(f"{action_key}|{kind}|{level}".encode()).hexdigest()[:40]


Deliver = Callable[[list[Notice]], Awaitable[None]]


def notices_for(action: StoredAction, enrolment: Enrolment, now: datetime,
                done: set[Level]) -> list[Notice]:
    """The reminder and escalation levels of one action whose time has come, not yet settled."""
    assert action.due is not None
    pid = enrolment.patient_ref.split("/", 1)[1]
    out = []
    remind = action.remind_at
    if remind is not None and action.status in ("upcoming", "due") and remind <= now < action.due:
        out.append(Notice(action.key, pid, "reminder", 0, action.role, action.ward,
                          action.title, action.due, remind))
    for level, (at, role) in enumerate(escalations_of(action), start=1):
        if now >= at:
            out.append(Notice(action.key, pid, "escalation", level, role, action.ward,
                              action.title, action.due, at))
    return [n for n in out if n.level_key not in done]


def default_worker() -> str:
    return f"reminders:{socket.gethostname()}:{os.getpid()}"


async def remind_once(rt: Runtime, *, now: datetime | None = None, limit: int = 1000,
                      deliver: Deliver | None = None, worker: str | None = None) -> list[Notice]:
    """Send what has come due since the last run; returns the notices this run sent.

    Per patient, under the patient's lock (no apply beside it): the FHIR requests, delivery,
    then the record. One patient's failure is recorded (parked after repeats) and the others
    are still reminded; an unreachable EHR stops the run and the claims' lease brings them back.
    """
    now = now or rt.clock()
    worker = worker or default_worker()
    by_patient: dict[str, list[Notice]] = defaultdict(list)
    for n in _claim(rt, _candidates(rt, now, limit), worker, now):
        by_patient[n.patient_id].append(n)
    sent: list[Notice] = []
    for pid, items in by_patient.items():
        try:
            async with rt.patient_lock(pid), patient_lock(rt.db, pid, timeout=LOCK_WAIT):
                await _send(rt, pid, items, now, deliver, worker)
        except FhirTemporaryError:
            break
        except PatientLockTimeout:
            continue  # an apply is stuck on this patient: the claims' lease brings them back
        except OperationalError:
            raise  # the database, not the patient: nothing to record the failure in
        except Exception as exc:  # this patient's alone: the others are still reminded
            record_failure(rt, pid, describe(exc), loop="reminders")
            continue
        sent.extend(items)
    return sent


async def _send(rt: Runtime, patient_id: str, notices: list[Notice], now: datetime,
                deliver: Deliver | None, worker: str) -> None:
    fhir_ids = await _write(rt, patient_id, notices, now) if rt.target is not WriteTarget.NONE else {}
    if deliver is not None:
        await deliver(notices)
    with session_scope(rt.db) as session:
        mark_sent(session=session, levels={n.level_key: fhir_ids.get(n.level_key) for n in notices},
                  worker=worker, at=now)


def _candidates(rt: Runtime, now: datetime, limit: int) -> list[Notice]:
    with session_scope(rt.db) as session:
        actions = open_actions_due_before(session=session, until=now + LOOKAHEAD, limit=limit)
        done = settled(session=session, keys=[a.key for a in actions], now=now, lease=CLAIM_LEASE)
        enrolments = {a.enrolment_id: session.get_one(Enrolment, a.enrolment_id) for a in actions}
        return [n for a in actions for n in notices_for(a, enrolments[a.enrolment_id], now, done)]


def _claim(rt: Runtime, notices: list[Notice], worker: str, now: datetime) -> list[Notice]:
    """The notices this run won: claimed in one short transaction, before anything is sent."""
    rows = [ReminderSent(action_key=n.action_key, kind=n.kind, level=n.level, role=n.role,
                         ward=n.ward, due_at=n.due) for n in notices]
    with session_scope(rt.db) as session:
        won = claim_levels(session=session, rows=rows, worker=worker, now=now, lease=CLAIM_LEASE)
    return [n for n in notices if n.level_key in won]


def _request(rt: Runtime, n: Notice, now: datetime) -> dict:
    escalation = n.kind == "escalation"
    action = PlannedAction(
        key=f"{n.action_key}:escalation:{n.level}" if escalation else n.action_key,
        element_id=n.action_key.split(":")[1], occurrence="", kind="reminder" if escalation else "task",
        role=n.role, priority="urgent" if escalation else "routine",
        title=("Overdue: " if escalation else "Due soon: ") + n.title,
        instructions=f"due {n.due.astimezone(rt.tz):%d %b %H:%M}" + (f" ({n.ward})" if n.ward else ""),
        status=Status.OVERDUE if escalation else Status.DUE, opens=None, due=n.due, closes=None,
        remind_at=n.at)
    return communication_request_for(action, patient_id=n.patient_id, encounter_id=None,
                                     identifier_system=rt.identifier_system, now=now)


async def _write(rt: Runtime, patient_id: str, notices: list[Notice],
                 now: datetime) -> dict[Level, str]:
    """One transaction for the patient; conditional creates make a resend harmless."""
    assert rt.tasks is not None
    bundle = transaction_for(patient_id, [Write(_request(rt, n, now)) for n in notices])
    response = await rt.tasks.transaction(bundle)
    ids: dict[Level, str] = {}
    for n, entry in zip(notices, response.get("entry", []), strict=False):
        location = (entry.get("response") or {}).get("location") or ""
        ids[n.level_key] = location.split("/")[1] if "/" in location else ""
    return ids
