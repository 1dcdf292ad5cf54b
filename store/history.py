"""Element status history: every transition of an action's status, with its cause."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from store.models import ElementStatus, PlannedActionRow


def record_transition(
    *,
    session: Session,
    action: PlannedActionRow,
    from_status: str | None,
    at: datetime,
    cause: str,
) -> ElementStatus:
    """Note that `action` moved from `from_status` (None: first seen) to its current status."""
    row = ElementStatus(**transition_values(action.model_dump(), from_status=from_status, at=at, cause=cause))
    session.add(row)
    return row


def transition_values(action: Mapping[str, Any], *, from_status: str | None, at: datetime,
                      cause: str) -> dict[str, Any]:
    """The history row's columns for an action (its `planned_action` columns) that moved from
    `from_status` to its current status; `store.actions.sync_actions` inserts them in bulk."""
    return {"enrolment_id": action["enrolment_id"], "element_id": action["element_id"],
            "action_key": action["key"], "from_status": from_status, "to_status": action["status"],
            "at": at, "cause": cause}


def list_history(
    *, session: Session, enrolment_id: str, action_key: str | None = None
) -> list[ElementStatus]:
    """An enrolment's transitions (or one action's), oldest first."""
    statement = select(ElementStatus).where(ElementStatus.enrolment_id == enrolment_id)
    if action_key is not None:
        statement = statement.where(ElementStatus.action_key == action_key)
    statement = statement.order_by(col(ElementStatus.at), col(ElementStatus.id))
    return list(session.exec(statement))
