"""Store rows → what the nurse sees: live status, patient display, instructions and POD."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo

from api.worklist.models import LiveStatus, RecordPromptPublic, WorklistItemPublic
from engine.model import Element, Pathway
from engine.results import Status
from store.types import as_utc
from store.worklist import WorklistAction, WorklistEnrolment

# A worklist looks hours or days ahead; a month is more than any ward needs, and bounds the
# arithmetic (`99999999d` would overflow a datetime: a 422, not a 500). The bound is in the pattern
# (at most 31d, 744h or 44640m; a bare number is hours) so the OpenAPI states it exactly.
WINDOW_PATTERN = (
    r"^(?:(?P<d>[0-9]|[12][0-9]|3[01])d"
    r"|(?P<h>[0-9]{1,2}|[1-6][0-9]{2}|7[0-3][0-9]|74[0-4])h?"
    r"|(?P<m>[0-9]{1,4}|[1-3][0-9]{4}|4[0-3][0-9]{3}|44[0-5][0-9]{2}|446[0-3][0-9]|44640)m)$"
)
_WINDOW = re.compile(WINDOW_PATTERN)
_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_window(text: str | None, default_hours: float) -> timedelta:
    """`30m`, `4h`, `2d` or a bare number of hours, at most 31 days; ValueError otherwise."""
    if text is None:
        return timedelta(hours=default_hours)
    match = _WINDOW.fullmatch(text.strip())
    if match is None:
        raise ValueError("window must look like 30m, 4h or 2d, and be at most 31d")
    unit, amount = next((u, v) for u, v in match.groupdict().items() if v is not None)
    return timedelta(seconds=int(amount) * _UNITS[unit])


def live_status(action: WorklistAction, now: datetime) -> LiveStatus:
    """Late once its window has closed (completing it now is done late, not compliant),
    overdue past due, due once open, else upcoming: the clock moves between evaluations."""
    if action.closes is not None and as_utc(action.closes) < now:
        return "late"
    if action.due is not None and as_utc(action.due) < now:
        return Status.OVERDUE
    if action.opens is None or as_utc(action.opens) <= now:
        return Status.DUE
    return Status.UPCOMING


def pod(enrolment: WorklistEnrolment, now: datetime, tz: tzinfo) -> int | None:
    """Post-operative day: local calendar days since the surgery_end anchor, None before it."""
    raw = (enrolment.anchors or {}).get("surgery_end")
    if not raw:
        return None
    try:
        end = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if end.tzinfo is None:
        return None
    return (now.astimezone(tz).date() - end.astimezone(tz).date()).days


def item(
    action: WorklistAction,
    enrolment: WorklistEnrolment,
    *,
    pathway: Pathway | None,
    element: Element | None,
    now: datetime,
    tz: tzinfo,
) -> WorklistItemPublic:
    """One worklist row; instructions and the value prompt come from the loaded pathway."""
    ward = action.ward or enrolment.ward or ""
    record = element.action.record if element is not None and element.action is not None else None
    return WorklistItemPublic(
        key=action.key,
        title=action.title,
        status=live_status(action, now),
        priority=action.priority,
        role=action.role,
        due=action.due,
        opens=action.opens,
        closes=action.closes,
        patient_ref=enrolment.patient_ref,
        patient_display=" · ".join(part for part in (ward, enrolment.bed) if part) or enrolment.patient_ref,
        ward=ward,
        bed=enrolment.bed,
        element_id=action.element_id,
        instructions=element.action.instructions if element is not None and element.action else None,
        record=RecordPromptPublic(label=record.label, unit=record.unit) if record is not None else None,
        pathway_id=enrolment.pathway_id,
        pathway_title=pathway.title if pathway is not None else None,
        pod=pod(enrolment, now, tz),
        fhir_task_id=action.fhir_id,
    )
