"""Polling (most EHRs do not push) and Backport gap catch-up: changed resources into the inbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from engine.plan import concepts_used, plan_of
from fhir_adapters.bulk import group_export
from fhir_adapters.facts import CODE_PARAMETER, SearchPlan, resources_from_batch_response, search_plan
from fhir_adapters.inbox_events import inbox_event_for_resource
from flows.poll_options import PollMode, PollSettings
from flows.runtime import Runtime
from store.db import session_scope
from store.enrolments import find_enrolments
from store.inbox import (
    InboxKind,
    gaps_to_catch_up,
    get_watermark,
    resolve_gap,
    set_watermark,
    store_events,
)
from store.models import InboxEventCreate

# Searches overlap the watermark a little: servers stamp _lastUpdated before commit.
OVERLAP = timedelta(seconds=5)
PATIENT_WATERMARK = "patient-scoped"  # the poll_watermark row of the per-patient mode


def watched_types(rt: Runtime) -> list[str]:
    return sorted({rtype for rtype, _ in _patient_plan(rt)})


def _patient_plan(rt: Runtime) -> SearchPlan:
    """Every pathway's per-patient searches, merged by type (codes joined)."""
    codes: dict[str, set[str]] = {}
    for pathway in rt.pathways.values():
        for rtype, params in search_plan(plan_of(pathway).terminology, sorted(concepts_used(pathway))):
            codes.setdefault(rtype, set()).update(v for v in params.values() for v in v.split(","))
    return [(rtype, {CODE_PARAMETER.get(rtype, "code"): ",".join(sorted(c))} if c else {})
            for rtype, c in sorted(codes.items())]


async def poll_once(rt: Runtime, *, now: datetime | None = None, page_size: int = 100,
                    options: PollSettings | None = None,
                    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> int:
    """Store what changed since the last poll (as `options`, else the runtime's settings say);
    returns events stored."""
    options = options or rt.poll
    if options.mode is PollMode.SYSTEM:
        return await poll_system(rt, now=now, page_size=page_size)
    if options.mode is PollMode.BULK:
        return await poll_bulk(rt, now=now, options=options, sleep=sleep)
    return await poll_patients(rt, now=now, options=options, sleep=sleep)


async def poll_patients(rt: Runtime, *, now: datetime | None = None, options: PollSettings,
                        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> int:
    """Patient-scoped searches (`patient=`, `_lastUpdated=gt`) for every actively enrolled
    patient, several patients per batch Bundle, paced to the EHR's rate limit.

    One watermark covers the round; it moves only once every batch is stored, so a round cut
    short is searched again from the same point (the inbox drops what it already has).
    """
    now = now or rt.clock()
    with session_scope(rt.db) as session:
        mark = get_watermark(session=session, resource_type=PATIENT_WATERMARK)
        patients = sorted({_id_of(e.patient_ref) for e in find_enrolments(session=session, status="active")})
    since = None if mark is None else f"gt{(mark - OVERLAP).isoformat()}"
    plan, pace = _patient_plan(rt), _Pace(options.searches_per_second, sleep)
    stored, latest = 0, mark
    for start in range(0, len(patients), options.patients_per_batch):
        request = _batch([p for p in patients[start:start + options.patients_per_batch] if p], plan, since)
        await pace.before(len(request["entry"]))
        resources = resources_from_batch_response(await rt.ehr.batch(request), request)
        stored += _store(rt, resources, source="poll:patients", now=now)
        latest = max([latest, *(_last_updated(r) for r in resources)], key=_key)
    if latest is not None and latest != mark:
        with session_scope(rt.db) as session:
            set_watermark(session=session, resource_type=PATIENT_WATERMARK, last_updated=latest, at=now)
    return stored


def _id_of(patient_ref: str) -> str:
    return patient_ref.split("/", 1)[1] if patient_ref.startswith("Patient/") else ""


def _key(instant: datetime | None) -> datetime:
    return instant or datetime.min.replace(tzinfo=UTC)


def _batch(patient_ids: list[str], plan: SearchPlan, since: str | None) -> dict[str, Any]:
    entries = []
    for pid in patient_ids:
        for rtype, params in plan:
            query = {"_id": pid} if rtype == "Patient" else {"patient": f"Patient/{pid}", **params}
            if since is not None:
                query["_lastUpdated"] = since
            url = f"{rtype}?{urlencode(query, safe='/:|,$')}"
            entries.append({"request": {"method": "GET", "url": url}})
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


class _Pace:
    """Keeps searches under `per_second` over the round (none: as fast as the EHR answers)."""

    def __init__(self, per_second: float | None, sleep: Callable[[float], Awaitable[Any]]) -> None:
        self.per_second, self.sleep = per_second, sleep
        self.started, self.done = time.monotonic(), 0

    async def before(self, searches: int) -> None:
        if self.per_second is not None:
            due = self.started + self.done / self.per_second
            if (wait := due - time.monotonic()) > 0:
                await self.sleep(wait)
        self.done += searches


async def poll_bulk(rt: Runtime, *, now: datetime | None = None, options: PollSettings,
                    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> int:
    """One Group export since the last one's transactionTime; its resources go to the inbox,
    so the drain applies every patient who changed."""
    now = now or rt.clock()
    group = str(options.bulk_group_id)
    with session_scope(rt.db) as session:
        mark = get_watermark(session=session, resource_type=f"bulk:{group}")
    export = await group_export(rt.ehr, group, since=None if mark is None else mark.isoformat(),
                                types=watched_types(rt), max_wait=options.bulk_max_wait, sleep=sleep)
    stored = _store(rt, export.resources, source=f"poll:bulk:{group}", now=now)
    with session_scope(rt.db) as session:
        set_watermark(session=session, resource_type=f"bulk:{group}", at=now,
                      last_updated=datetime.fromisoformat(export.transaction_time.replace("Z", "+00:00")))
    return stored


async def poll_system(rt: Runtime, *, now: datetime | None = None, page_size: int = 100) -> int:
    """One search per watched type across all patients: only for servers that allow it."""
    now = now or rt.clock()
    stored = 0
    for rtype in watched_types(rt):
        with session_scope(rt.db) as session:
            mark = get_watermark(session=session, resource_type=rtype)
        params = {"_count": str(page_size), "_sort": "_lastUpdated"}
        if mark is not None:
            params["_lastUpdated"] = f"gt{(mark - OVERLAP).isoformat()}"
        resources = await rt.ehr.search(rtype, params)
        stored += _store(rt, resources, source=f"poll:{rtype}", now=now)
        latest = max((_last_updated(r) for r in resources), default=None)
        if latest is not None:
            with session_scope(rt.db) as session:
                set_watermark(session=session, resource_type=rtype, last_updated=latest, at=now)
    return stored


def _last_updated(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["meta"]["lastUpdated"].replace("Z", "+00:00"))


def _store(rt: Runtime, resources: list[dict[str, Any]], *, source: str, now: datetime) -> int:
    events: list[InboxEventCreate] = [
        inbox_event_for_resource(r, source=source, kind=InboxKind.POLL)
        for r in resources if r.get("resourceType") and r.get("id")]
    if not events:
        return 0
    with session_scope(rt.db) as session:
        ids = store_events(session=session, events=events, at=now)
    return sum(1 for i in ids if i is not None)


async def catch_up_gaps(rt: Runtime, *, now: datetime | None = None) -> int:
    """For each gap in a Backport subscription's event numbers, query what changed since."""
    now = now or rt.clock()
    with session_scope(rt.db) as session:
        gaps = gaps_to_catch_up(session=session)
    stored = 0
    for gap in gaps:
        since = (gap.detected_at - timedelta(hours=1)).isoformat()
        for rtype in watched_types(rt):
            resources = await rt.ehr.search(rtype, {"_lastUpdated": f"ge{since}", "_count": "100"})
            stored += _store(rt, resources, source=f"catch-up:{gap.subscription_id}", now=now)
        with session_scope(rt.db) as session:
            resolve_gap(session=session, gap_id=int(gap.id or 0), at=now)
    return stored
