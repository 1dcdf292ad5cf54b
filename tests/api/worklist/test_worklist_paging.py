"""Worklist pages: the most urgent first, every task reachable by cursor exactly once, across
wards too, and a task completed between pages neither hides nor repeats another."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlmodel import Session, col, select

from store.models import AccessLogEntry, PlannedActionRow
from tests.api.worklist.conftest import TokenFactory, bearer
from tests.utils.worklist import seed_action, seed_enrolment

H = timedelta(hours=1)
# hours from now of each task's due time (None: undated); two pairs share a due time.
DUES: list[float | None] = [-5, -1, -1, 0.5, 2, 2, 3, None, None, 1]


def _ward(app: FastAPI, dues: list[float | None], now: datetime) -> tuple[str, list[PlannedActionRow]]:
    ward = f"W{uuid.uuid4().hex[:6]}"
    patients = [seed_enrolment(app.state.engine, ward=ward, bed=f"Bed {n}") for n in range(3)]
    app.state.seeded += [p.id for p in patients]
    return ward, [seed_action(app.state.engine, patients[i % 3], f"e{i}",
                              due=None if d is None else now + d * H) for i, d in enumerate(dues)]


def _expected(actions: list[PlannedActionRow]) -> list[str]:
    """Earliest due first, undated last, equal times by key (the order the list promises)."""
    return [a.key for a in sorted(actions, key=lambda a: (a.due is None, a.due or datetime.max, a.key))]


async def _pages(api: httpx.AsyncClient, query: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        more = f"&cursor={cursor}" if cursor else ""
        response = await api.get(f"/worklist?{query}{more}", headers=headers)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages


async def test_pages_reach_every_task_once_in_order(worklist_app: FastAPI, api: httpx.AsyncClient,
                                                    token: TokenFactory) -> None:
    now = datetime.now(UTC)
    ward, actions = _ward(worklist_app, DUES, now)
    pages = await _pages(api, f"ward={ward}&limit=4", bearer(token(wards=(ward,))))
    assert [len(p["items"]) for p in pages] == [4, 4, 2]
    assert [i["key"] for p in pages for i in p["items"]] == _expected(actions)
    assert {p["total"] for p in pages} == {10}
    first = [i["status"] for i in pages[0]["items"]]
    assert first == ["overdue", "overdue", "overdue", "due"]  # due in 0.5 h: open, not yet due
    whole = (await api.get(f"/worklist?ward={ward}", headers=bearer(token(wards=(ward,))))).json()
    assert [i["key"] for i in whole["items"]] == _expected(actions) and whole["next_cursor"] is None


async def test_a_task_done_between_pages_shifts_nothing(worklist_app: FastAPI, api: httpx.AsyncClient,
                                                        token: TokenFactory) -> None:
    ward, actions = _ward(worklist_app, DUES, datetime.now(UTC))
    subject = f"nurse.{uuid.uuid4().hex[:6]}"
    headers = bearer(token(subject, wards=(ward,)))
    first = (await api.get(f"/worklist?ward={ward}&limit=3", headers=headers)).json()
    with Session(worklist_app.state.engine) as session:  # one access entry per patient shown
        logged = session.exec(select(AccessLogEntry.resource).where(AccessLogEntry.actor == subject)).all()
    assert sorted(logged) == sorted({f"{i['patient_ref']}/worklist" for i in first["items"]})
    assert len(logged) == 3  # the three most overdue tasks belong to three patients
    with Session(worklist_app.state.engine) as session:  # the first task is done meanwhile
        row = session.exec(select(PlannedActionRow).where(
            col(PlannedActionRow.key) == first["items"][0]["key"])).one()
        row.status = "done"
        session.add(row)
        session.commit()
    second = (await api.get(f"/worklist?ward={ward}&limit=3&cursor={first['next_cursor']}",
                            headers=headers)).json()
    assert [i["key"] for i in second["items"]] == _expected(actions)[3:6]
    assert second["total"] == 9


async def test_pages_over_all_the_users_wards(worklist_app: FastAPI, api: httpx.AsyncClient,
                                              token: TokenFactory) -> None:
    now = datetime.now(UTC)
    one, first = _ward(worklist_app, DUES, now)
    two, second = _ward(worklist_app, [-3, 0.25, 2, None], now)
    pages = await _pages(api, "limit=5", bearer(token(wards=(one, two))))
    assert [i["key"] for p in pages for i in p["items"]] == _expected(first + second)
    assert [len(p["items"]) for p in pages] == [5, 5, 4] and pages[0]["total"] == 14


async def test_bad_cursor_and_limits_are_422(worklist_app: FastAPI, api: httpx.AsyncClient,
                                             token: TokenFactory) -> None:
    ward = f"W{uuid.uuid4().hex[:6]}"
    headers = bearer(token(wards=(ward,)))
    for query in ("cursor=not-a-cursor", "cursor=bm90IGpzb24", "limit=0", "limit=2001"):
        response = await api.get(f"/worklist?ward={ward}&{query}", headers=headers)
        assert response.status_code == 422, (query, response.text)
