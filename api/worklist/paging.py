"""Worklist pages: the most urgent tasks first, the rest reached by an opaque keyset cursor.

A ward can hold thousands of open tasks; a nurse starts from the overdue and the soon due. A
page is `limit` tasks in the store's order (earliest due first, undated last); `next_cursor`
names where the next page starts, so every task is reachable and a task completed meanwhile
neither hides nor repeats another (offsets would).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from datetime import UTC, datetime

from store.worklist import After, WorklistAction, WorklistEnrolment

PAGE_SIZE = 50  # several screenfuls of the most urgent; the rest of the ward a cursor away
MAX_PAGE = 2000
_NEVER = datetime.max.replace(tzinfo=UTC)

Row = tuple[WorklistAction, WorklistEnrolment]


def encode_cursor(action: WorklistAction) -> str:
    at = action.due
    raw = json.dumps([None if at is None else at.isoformat(), action.key])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> After:
    """ValueError when the text is not a cursor this API gave."""
    try:
        at, key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return (None if at is None else datetime.fromisoformat(at)), str(key)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ValueError("cursor is not one this worklist gave") from None


def _order(row: Row) -> tuple[bool, datetime, str]:
    at = row[0].due
    return at is None, _NEVER if at is None else at.astimezone(UTC), row[0].key


def one_page(per_ward: Iterable[list[Row]], limit: int) -> tuple[list[Row], str | None]:
    """The first `limit` rows over several wards' pages (each fetched with `limit + 1`), in the
    store's order, and the cursor of the next page (None: nothing after)."""
    rows = sorted((row for rows in per_ward for row in rows), key=_order)
    page = rows[:limit]
    return page, encode_cursor(page[-1][0]) if len(rows) > limit else None
