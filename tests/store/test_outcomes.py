"""Tests for completing and declining actions from the worklist."""

from datetime import timedelta

import pytest
from sqlmodel import Session

from store.actions import get_action, pending_fhir_writes, record_fhir_ids, sync_actions
from store.errors import ActionNotFound
from store.history import list_history
from store.outcomes import complete_action, decline_action
from tests.utils.store_factories import T0, action_state, create_enrolment


def _synced_action_key(db: Session) -> tuple[str, str]:
    enrolment = create_enrolment(session=db)
    state = action_state(enrolment.id, "mobilise", status="due")
    sync_actions(session=db, enrolment_id=enrolment.id, actions=[state], at=T0, cause="evaluation")
    record_fhir_ids(session=db, ids={state.key: ("Task", "t1", "1")})
    return enrolment.id, state.key


def test_complete_action_records_who_when_and_transition(db: Session) -> None:
    enrolment_id, key = _synced_action_key(db)
    at = T0 + timedelta(hours=1)

    done = complete_action(
        session=db, key=key, by="nurse-7", at=at, cause="task completed by nurse"
    )

    assert (done.status, done.completed_by, done.completed_at) == ("done", "nurse-7", at)
    last = list_history(session=db, enrolment_id=enrolment_id)[-1]
    assert (last.from_status, last.to_status, last.cause) == (
        "due",
        "done",
        "task completed by nurse",
    )
    assert [a.key for a in pending_fhir_writes(session=db, enrolment_id=enrolment_id)] == [key]


def test_decline_action_records_reason(db: Session) -> None:
    _, key = _synced_action_key(db)

    decline_action(
        session=db,
        key=key,
        reason="patient-refused",
        text="too tired",
        by="nurse-7",
        at=T0,
        cause="task declined by nurse",
    )

    action = get_action(session=db, key=key)
    assert action is not None
    assert (action.status, action.decline_reason, action.decline_text) == (
        "declined",
        "patient-refused",
        "too tired",
    )


def test_complete_action_unknown_key_raises(db: Session) -> None:
    with pytest.raises(ActionNotFound):
        complete_action(session=db, key="x:y:1", by="nurse", at=T0, cause="c")
