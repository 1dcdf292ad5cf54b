"""store.bulk reads and writes what SQLAlchemy's own statements read and write, on both databases."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session

import store.actions
from store.actions import sync_actions
from store.bulk import read_rows, update_many
from store.models import PlannedActionRow
from tests.utils.store_factories import T0, action_state, create_enrolment

ACTIONS = PlannedActionRow.__table__  # type: ignore[attr-defined]
BY_ENROLMENT = select(ACTIONS).where(ACTIONS.c.enrolment_id == bindparam("enrolment")).order_by(ACTIONS.c.key)


def _plan(db: Session) -> str:
    """An enrolment with actions whose columns hold instants (one given in another zone), JSON
    escalations, nulls and text."""
    enrolment = create_enrolment(session=db)
    east = timezone(timedelta(hours=5, minutes=30))
    sync_actions(session=db, enrolment_id=enrolment.id, at=T0, cause="evaluation", actions=[
        action_state(enrolment.id, "mobilise", due=T0 + timedelta(hours=3), closes=T0 + timedelta(days=1),
                     remind_at=(T0 + timedelta(hours=2, microseconds=7)).astimezone(east),
                     escalations=((T0 + timedelta(hours=4), "surgeon"),
                                  (T0 + timedelta(hours=8), "consultant"))),
        action_state(enrolment.id, "drain", status="due"),
        action_state(enrolment.id, "diet", occurrence="2", opens=None)])
    return enrolment.id


def test_read_rows_are_the_results_rows(db: Session) -> None:
    enrolment_id = _plan(db)
    expected = [dict(r) for r in db.execute(BY_ENROLMENT, {"enrolment": enrolment_id}).mappings()]
    rows = read_rows(db, BY_ENROLMENT, {"enrolment": enrolment_id})
    assert rows == expected and len(rows) == 3
    for got, want in zip(rows, expected, strict=True):  # the same values, of the same types and zones
        assert [(type(v), getattr(v, "tzinfo", None)) for v in got.values()] == \
            [(type(v), getattr(v, "tzinfo", None)) for v in want.values()]
    assert read_rows(db, BY_ENROLMENT, {"enrolment": "nobody"}) == []


def _stored(db: Session, enrolment_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in db.execute(BY_ENROLMENT, {"enrolment": enrolment_id}).mappings()]


def test_update_many_writes_what_an_executemany_update_writes(db: Session) -> None:
    """The same rows, one value each (an instant in another zone, JSON, null, text), written by
    SQLAlchemy's executemany UPDATE and by update_many; it reports the rows matched."""
    ours, theirs = _plan(db), _plan(db)
    west = timezone(timedelta(hours=-4))

    def changes(enrolment_id: str) -> list[dict[str, Any]]:
        keys = sorted(r["key"] for r in _stored(db, enrolment_id))
        return [{"w_key": keys[0], "w_version": 1, "due": (T0 + timedelta(days=2)).astimezone(west),
                 "escalations": [["2026-01-01T00:00:00+00:00", "nurse"]], "title": "It's 100% \"done\""},
                {"w_key": keys[1], "w_version": 1, "due": None, "escalations": [], "title": "second"},
                {"w_key": "absent", "w_version": 1, "due": None, "escalations": [], "title": "none"}]

    db.execute(update(ACTIONS).where(ACTIONS.c.key == bindparam("w_key"),
                                     ACTIONS.c.version == bindparam("w_version")), changes(theirs))
    assert update_many(db, ACTIONS, {"w_key": "key", "w_version": "version"}, changes(ours)) == 2
    mine, other = _stored(db, ours), _stored(db, theirs)
    strip = ("key", "enrolment_id")
    assert [{k: v for k, v in r.items() if k not in strip} for r in mine] == \
        [{k: v for k, v in r.items() if k not in strip} for r in other]
    assert mine[0]["title"] == "It's 100% \"done\"" and mine[0]["due"] == T0 + timedelta(days=2)
    one = [{**changes(ours)[1], "w_version": 1, "due": T0.astimezone(west), "escalations": [["x", "y"]]}]
    db.execute(update(ACTIONS).where(ACTIONS.c.key == bindparam("w_key"), ACTIONS.c.version == bindparam(
        "w_version")), [{**one[0], "w_key": sorted(r["key"] for r in other)[1]}])
    by_version = {"w_key": "key", "w_version": "version"}
    assert update_many(db, ACTIONS, by_version, one) == 1  # one row: no arrays
    assert update_many(db, ACTIONS, by_version, [{**one[0], "w_version": 9}]) == 0
    assert [{k: v for k, v in r.items() if k not in strip} for r in _stored(db, ours)] == \
        [{k: v for k, v in r.items() if k not in strip} for r in _stored(db, theirs)]


def test_sync_actions_raises_when_another_writer_moved_an_action(
        db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync's version-checked UPDATE matches no row another writer changed after its read:
    StaleDataError (its other two actions vanish: three updates, two rows matched)."""
    enrolment_id = _plan(db)
    key = sorted(r["key"] for r in _stored(db, enrolment_id))[0]

    def read_then_another_writer(session: Session, statement: Any, params: Any) -> list[dict[str, Any]]:
        rows = read_rows(session, statement, params)
        session.execute(text("UPDATE planned_action SET version = version + 1 WHERE key = :k"), {"k": key})
        return rows

    monkeypatch.setattr(store.actions, "read_rows", read_then_another_writer)
    element = key.split(":")[1]
    with pytest.raises(StaleDataError, match=r"expected to update 3 row\(s\); 2 were matched"):
        sync_actions(session=db, enrolment_id=enrolment_id, at=T0, cause="evaluation",
                     actions=[action_state(enrolment_id, element, status="done",
                                           occurrence=key.split(":")[2])])
