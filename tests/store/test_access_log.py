"""Tests for the access audit log."""

import uuid
from datetime import timedelta

import pytest
from sqlmodel import Session

from store.access_log import list_access_entries, record_access_entries, record_access_entry
from tests.utils.store_factories import T0


def test_record_audit_row_is_listed_with_its_fields(db: Session) -> None:
    actor = f"user-{uuid.uuid4().hex[:8]}"

    record_access_entry(
        session=db,
        actor=actor,
        action="read",
        resource="worklist:ward-4B",
        purpose="treatment",
        outcome="ok",
        at=T0,
    )

    [row] = list_access_entries(session=db, actor=actor, limit=10)
    assert (row.actor, row.action, row.resource, row.purpose, row.outcome, row.at) == (
        actor,
        "read",
        "worklist:ward-4B",
        "treatment",
        "ok",
        T0,
    )


def test_list_audit_filters_since_and_orders_oldest_first(db: Session) -> None:
    actor = f"user-{uuid.uuid4().hex[:8]}"
    for minutes, resource in [(2, "Task/b"), (0, "Task/old"), (1, "Task/a")]:
        record_access_entry(
            session=db,
            actor=actor,
            action="update",
            resource=resource,
            purpose="treatment",
            outcome="ok",
            at=T0 + timedelta(minutes=minutes),
        )

    rows = list_access_entries(session=db, actor=actor, since=T0 + timedelta(minutes=1), limit=10)

    assert [r.resource for r in rows] == ["Task/a", "Task/b"]


def test_list_audit_filters_resource_and_limits(db: Session) -> None:
    resource = f"Patient/{uuid.uuid4().hex[:8]}"
    for actor in ("a", "b", "c"):
        record_access_entry(
            session=db,
            actor=actor,
            action="read",
            resource=resource,
            purpose="treatment",
            outcome="denied",
            at=T0,
        )

    rows = list_access_entries(session=db, resource=resource, limit=2)

    assert [r.actor for r in rows] == ["a", "b"]


def test_record_audit_unknown_outcome_is_refused(db: Session) -> None:
    with pytest.raises(ValueError):
        record_access_entry(
            session=db,
            actor="system",
            action="read",
            resource="Task/x",
            purpose="t",
            outcome="maybe",
            at=T0,
        )


def test_record_many_entries_at_once(db: Session) -> None:
    actor = f"user-{uuid.uuid4().hex[:8]}"
    record_access_entries(session=db, actor=actor, action="read", resources=["Patient/b/worklist",
                          "Patient/a/worklist"], purpose="worklist view", at=T0)
    record_access_entries(session=db, actor=actor, action="read", resources=[], purpose="none", at=T0)
    rows = list_access_entries(session=db, actor=actor, limit=10)
    assert sorted((r.resource, r.purpose, r.outcome, r.at) for r in rows) == [
        ("Patient/a/worklist", "worklist view", "ok", T0), ("Patient/b/worklist", "worklist view", "ok", T0)]
