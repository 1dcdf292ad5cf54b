"""Polling (most EHRs do not push) and Backport gap catch-up: changed resources into the inbox."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from engine.plan import concepts_used, plan_of
from fhir_adapters.facts import search_plan
from fhir_adapters.inbox_events import inbox_event_for_resource
from flows.runtime import Runtime
from store.db import session_scope
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


def watched_types(rt: Runtime) -> list[str]:
    types: set[str] = set()
    for pathway in rt.pathways.values():
        plan = search_plan(plan_of(pathway).terminology, sorted(concepts_used(pathway)))
        types.update(rtype for rtype, _ in plan)
    return sorted(types)


async def poll_once(rt: Runtime, *, now: datetime | None = None, page_size: int = 100) -> int:
    """Store every resource changed since each type's watermark; returns events stored."""
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
