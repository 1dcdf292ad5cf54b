"""Tests that instants round-trip as timezone-aware UTC on both databases."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError
from sqlmodel import Session

from store.access_log import list_access_entries, record_access_entry
from store.models import AccessLogEntry
from store.types import as_utc, json_value

IST = timezone(timedelta(hours=5, minutes=30))
AT = datetime(2025, 3, 10, 14, 45, 30, 123456, tzinfo=IST)


def test_utc_datetime_round_trips_as_aware_utc(db: Session) -> None:
    row = record_access_entry(
        session=db,
        actor="tz-test",
        action="read",
        resource="Task/tz",
        purpose="t",
        outcome="ok",
        at=AT,
    )
    db.expire_all()

    stored = db.get(AccessLogEntry, row.id)

    assert stored is not None
    assert stored.at == AT
    assert stored.at.tzinfo == UTC
    assert stored.at.isoformat() == "2025-03-10T09:15:30.123456+00:00"


def test_utc_datetime_is_stored_as_utc(db: Session) -> None:
    row = record_access_entry(
        session=db,
        actor="tz-test",
        action="read",
        resource="Task/tz",
        purpose="t",
        outcome="ok",
        at=AT,
    )

    raw = db.execute(text("SELECT at FROM audit_log WHERE id = :id"), {"id": row.id}).scalar_one()

    if isinstance(raw, str):  # SQLite: naive UTC text
        assert raw.startswith("2025-03-10 09:15:30.123456")
    else:
        assert raw == AT and raw.utcoffset() is not None


def test_utc_datetime_compares_across_zones_in_queries(db: Session) -> None:
    record_access_entry(
        session=db,
        actor="tz-compare",
        action="read",
        resource="Task/tz",
        purpose="t",
        outcome="ok",
        at=AT,
    )
    just_after_in_new_york = (AT + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=-5)))

    assert list_access_entries(session=db, actor="tz-compare", since=AT, limit=5) != []
    assert list_access_entries(session=db, actor="tz-compare", since=just_after_in_new_york, limit=5) == []


def test_utc_datetime_naive_value_is_refused(db: Session) -> None:
    db.add(
        AccessLogEntry(
            at=datetime(2025, 3, 10, 9, 0),
            actor="x",
            action="read",
            resource="Task/x",
            purpose="t",
            outcome="ok",
        )
    )

    with pytest.raises(StatementError, match="no time zone"):
        db.flush()
    db.rollback()


def test_as_utc_naive_raises() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        as_utc(datetime(2025, 1, 1))


@pytest.mark.parametrize("stored", [
    '{"a": [1, 2.5, "x\\u00e9", null, true], "b": {"c": -3}}', '[]', '"text"',
    '[NaN, Infinity]', '{"big": 123456789012345678901234567890}', '[-9223372036854775809]',
    '[18446744073709551616, 0.1000000000000000055511151231257827]',  # orjson refuses or rounds these
    '{"\u00e9t\u00e9 été": [-10000000000000000000, 20000000000000000000.5]}',  # zeros, non-ASCII text
])
def test_json_value_decodes_as_json_does(stored: str) -> None:
    decoded, expected = json_value(stored), json.loads(stored)
    assert repr(decoded) == repr(expected)  # repr: NaN != NaN
