"""Column types and vocabularies of the store's tables (action statuses are the engine's `Status`)."""

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant on every database.

    PostgreSQL keeps the offset itself (timestamptz); SQLite has no datetime type, so the
    instant is stored as naive UTC text and given back its UTC zone when read. Naive
    datetimes are refused on the way in: an instant without a zone is a bug, not a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC; refuses naive datetimes."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


# Every digit as 0, so that a run of 19 is one substring test: several times faster than the
# regex \d{19} (whose scan cost more than orjson's decoding). Only ASCII digits make JSON numbers.
_DIGITS_AS_ZERO = str.maketrans("123456789", "0" * 9)
_LONG_NUMBER = "0" * 19


def json_value(text: str) -> Any:
    """A JSON column's stored text decoded as its type (json) would, several times faster: orjson,
    but json for what orjson refuses (NaN, Infinity) or reads otherwise (an integer beyond 64 bits
    becomes a float), i.e. any text with 19 digits in a row."""
    if _LONG_NUMBER in text.translate(_DIGITS_AS_ZERO):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class EnrolmentStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    EXITED = "exited"


class ActionKind(StrEnum):
    TASK = "task"
    REMINDER = "reminder"
    PATIENT_MESSAGE = "patient-message"


class FhirType(StrEnum):
    TASK = "Task"
    COMMUNICATION_REQUEST = "CommunicationRequest"


class AccessOutcome(StrEnum):
    OK = "ok"
    DENIED = "denied"
    ERROR = "error"
