"""reminders: CommunicationRequests for tasks due soon, and escalations for overdue ones.

Times come from the pathway (`action.remind_before`, `escalation[].after`) and the stored due
time; each reminder or escalation level is sent once (table reminder_sent). Delivery to people
(pager webhook, email) is the channels' job; this writes the FHIR request and the record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.offsets import parse_duration
from engine.results import PlannedAction, Status
from fhir_adapters.writeback import Write, communication_request_for, transaction_for
from flows.runtime import Runtime, WriteTarget
from store.db import session_scope
from store.models import Enrolment, ReminderSent
from store.models import PlannedActionRow as StoredAction
from store.reminders import already_sent, open_actions_due_before, record_sent

LOOKAHEAD = timedelta(hours=24)


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


Deliver = Callable[[list[Notice]], Awaitable[None]]


def notices_for(rt: Runtime, action: StoredAction, enrolment: Enrolment, now: datetime,
                sent: set[tuple[str, str, int]]) -> list[Notice]:
    """The reminder and escalation levels of one action whose time has come and not yet sent."""
    element = rt.pathway(enrolment.pathway_id).element(action.element_id)
    assert action.due is not None
    pid = enrolment.patient_ref.split("/", 1)[1]
    out = []
    remind = element.action.remind_before if element.action else None
    if remind is not None and action.status in ("upcoming", "due"):
        at = parse_duration(remind).negated().apply(action.due, rt.tz)
        if at <= now < action.due and (action.key, "reminder", 0) not in sent:
            out.append(Notice(action.key, pid, "reminder", 0, action.role, action.ward,
                              action.title, action.due, at))
    for level, esc in enumerate(element.escalation, start=1):
        at = parse_duration(esc.after).apply(action.due, rt.tz)
        if now >= at and (action.key, "escalation", level) not in sent:
            out.append(Notice(action.key, pid, "escalation", level, esc.notify, action.ward,
                              action.title, action.due, at))
    return out


async def remind_once(rt: Runtime, *, now: datetime | None = None, limit: int = 1000,
                      deliver: Deliver | None = None) -> list[Notice]:
    """Send what has come due since the last run; returns the notices sent."""
    now = now or rt.clock()
    with session_scope(rt.db) as session:
        actions = open_actions_due_before(session=session, until=now + LOOKAHEAD, limit=limit)
        sent = already_sent(session=session, keys=[a.key for a in actions])
        enrolments = {a.enrolment_id: session.get_one(Enrolment, a.enrolment_id) for a in actions}
    notices = [n for a in actions for n in notices_for(rt, a, enrolments[a.enrolment_id], now, sent)]
    if not notices:
        return []
    fhir_ids = await _write(rt, notices, now) if rt.target is not WriteTarget.NONE else {}
    if deliver is not None:
        await deliver(notices)
    with session_scope(rt.db) as session:
        record_sent(session=session, rows=[ReminderSent(
            action_key=n.action_key, kind=n.kind, level=n.level, role=n.role, ward=n.ward,
            due_at=n.due, sent_at=now, fhir_id=fhir_ids.get((n.action_key, n.kind, n.level)))
            for n in notices])
    return notices


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


async def _write(rt: Runtime, notices: list[Notice], now: datetime) -> dict[tuple[str, str, int], str]:
    """One transaction per patient; conditional creates make a resend harmless."""
    assert rt.tasks is not None
    by_patient: dict[str, list[Notice]] = defaultdict(list)
    for n in notices:
        by_patient[n.patient_id].append(n)
    ids: dict[tuple[str, str, int], str] = {}
    for pid, items in by_patient.items():
        bundle = transaction_for(pid, [Write(_request(rt, n, now)) for n in items])
        response = await rt.tasks.transaction(bundle)
        for n, entry in zip(items, response.get("entry", []), strict=False):
            location = (entry.get("response") or {}).get("location") or ""
            ids[(n.action_key, n.kind, n.level)] = location.split("/")[1] if "/" in location else ""
    return ids
