"""Tests for syncing planned actions and recording their FHIR ids."""

import random
from dataclasses import replace
from datetime import UTC, timedelta, timezone
from typing import Any

import pytest
from sqlmodel import Session

from store.actions import (
    ActionChanges,
    ActionState,
    get_action,
    list_actions,
    pending_fhir_writes,
    record_fhir_ids,
    sync_actions,
)
from store.enrolments import update_enrolment_context
from store.errors import ActionNotFound, EnrolmentNotFound
from store.history import list_history
from tests.utils.store_factories import T0, action_state, create_enrolment


def _sync(
    db: Session, enrolment_id: str, states: list[ActionState], minutes: int = 0
) -> ActionChanges:
    return sync_actions(
        session=db,
        enrolment_id=enrolment_id,
        actions=states,
        at=T0 + timedelta(minutes=minutes),
        cause="evaluation",
    )


def test_sync_actions_first_sync_reports_all_new_with_history(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    states = [action_state(enrolment.id, "mobilise"), action_state(enrolment.id, "education")]

    changes = _sync(db, enrolment.id, states)

    assert set(changes.new) == {s.key for s in states}
    assert changes.changed == changes.unchanged == changes.vanished == ()
    history = list_history(session=db, enrolment_id=enrolment.id)
    assert {(h.action_key, h.from_status, h.to_status) for h in history} == {
        (s.key, None, "upcoming") for s in states
    }


def test_sync_actions_same_states_are_unchanged_without_history(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    states = [action_state(enrolment.id, "mobilise")]
    _sync(db, enrolment.id, states)

    changes = _sync(db, enrolment.id, states, minutes=5)

    assert changes.unchanged == (states[0].key,)
    assert changes.new == changes.changed == changes.vanished == ()
    assert len(list_history(session=db, enrolment_id=enrolment.id)) == 1
    assert get_action(session=db, key=states[0].key).revision == 1  # type: ignore[union-attr]


def test_sync_actions_status_change_writes_one_transition(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    state = action_state(enrolment.id, "mobilise")
    _sync(db, enrolment.id, [state])

    changes = _sync(db, enrolment.id, [replace(state, status="due")], minutes=5)

    assert changes.changed == (state.key,)
    history = list_history(session=db, enrolment_id=enrolment.id, action_key=state.key)
    assert [(h.from_status, h.to_status) for h in history] == [
        (None, "upcoming"),
        ("upcoming", "due"),
    ]
    assert history[1].at == T0 + timedelta(minutes=5)


def test_sync_actions_timing_change_is_changed_without_history(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    state = action_state(enrolment.id, "mobilise")
    _sync(db, enrolment.id, [state])

    changes = _sync(db, enrolment.id, [replace(state, due=T0 + timedelta(hours=6))], minutes=5)

    assert changes.changed == (state.key,)
    assert len(list_history(session=db, enrolment_id=enrolment.id)) == 1
    action = get_action(session=db, key=state.key)
    assert action is not None and action.due == T0 + timedelta(hours=6) and action.revision == 2


def test_sync_actions_missing_action_vanishes_once_and_is_cancelled(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    keep, drop = action_state(enrolment.id, "mobilise"), action_state(enrolment.id, "catheter")
    _sync(db, enrolment.id, [keep, drop])

    first = _sync(db, enrolment.id, [keep], minutes=5)
    second = _sync(db, enrolment.id, [keep], minutes=10)

    assert first.vanished == (drop.key,)
    assert second.vanished == ()
    assert get_action(session=db, key=drop.key).status == "cancelled"  # type: ignore[union-attr]
    last = list_history(session=db, enrolment_id=enrolment.id, action_key=drop.key)[-1]
    assert (last.from_status, last.to_status) == ("upcoming", "cancelled")


def test_sync_actions_missing_terminal_action_does_not_vanish(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    done = action_state(enrolment.id, "education", status="done")
    _sync(db, enrolment.id, [done])

    changes = _sync(db, enrolment.id, [], minutes=5)

    assert changes.vanished == ()
    assert get_action(session=db, key=done.key).status == "done"  # type: ignore[union-attr]


def test_sync_actions_copies_enrolment_ward_onto_actions(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    _sync(db, enrolment.id, [action_state(enrolment.id, "mobilise")])

    update_enrolment_context(
        session=db,
        enrolment_id=enrolment.id,
        anchors={},
        encounter_ref="Encounter/9",
        ward="ward-4B",
        bed="12",
        next_check_at=None,
        careplan_id=None,
        careplan_version=None,
        at=T0,
    )
    _sync(db, enrolment.id, [action_state(enrolment.id, "education")], minutes=1)

    assert {a.ward for a in list_actions(session=db, enrolment_id=enrolment.id)} == {"ward-4B"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"key": "someone-else:mobilise:1"}, "should be"),
        ({"status": "finished"}, "finished"),
        ({"kind": "phone-call"}, "phone-call"),
        ({"due": T0.replace(tzinfo=None)}, "no time zone"),
    ],
)
def test_sync_actions_invalid_state_is_refused(
    db: Session, change: dict[str, Any], message: str
) -> None:
    enrolment = create_enrolment(session=db)
    state = replace(action_state(enrolment.id, "mobilise"), **change)

    with pytest.raises(ValueError, match=message):
        _sync(db, enrolment.id, [state])


def test_sync_actions_duplicate_keys_are_refused(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    state = action_state(enrolment.id, "mobilise")

    with pytest.raises(ValueError, match="duplicate"):
        _sync(db, enrolment.id, [state, state])


def test_sync_actions_unknown_enrolment_raises(db: Session) -> None:
    with pytest.raises(EnrolmentNotFound):
        _sync(db, "no-such-enrolment", [])


def test_record_fhir_ids_marks_revision_written(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    state = action_state(enrolment.id, "mobilise")
    _sync(db, enrolment.id, [state])
    assert [a.key for a in pending_fhir_writes(session=db, enrolment_id=enrolment.id)] == [
        state.key
    ]

    record_fhir_ids(session=db, ids={state.key: ("Task", "task-1", "1")})

    action = get_action(session=db, key=state.key)
    assert action is not None
    assert (action.fhir_type, action.fhir_id, action.fhir_version) == ("Task", "task-1", "1")
    assert pending_fhir_writes(session=db, enrolment_id=enrolment.id) == []


def test_record_fhir_ids_later_change_is_pending_again(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    state = action_state(enrolment.id, "mobilise")
    _sync(db, enrolment.id, [state])
    record_fhir_ids(session=db, ids={state.key: ("Task", "task-1", "1")})

    _sync(db, enrolment.id, [replace(state, status="due")], minutes=5)

    assert [a.key for a in pending_fhir_writes(session=db, enrolment_id=enrolment.id)] == [
        state.key
    ]


def test_record_fhir_ids_unknown_key_raises(db: Session) -> None:
    with pytest.raises(ActionNotFound):
        record_fhir_ids(session=db, ids={"nope:x:1": ("Task", "task-1", None)})


def test_list_actions_orders_by_due_with_undated_last(db: Session) -> None:
    enrolment = create_enrolment(session=db)
    states = [
        action_state(enrolment.id, "undated"),
        action_state(enrolment.id, "later", due=T0 + timedelta(hours=2)),
        action_state(enrolment.id, "sooner", due=T0 + timedelta(hours=1)),
    ]
    _sync(db, enrolment.id, states)

    assert [a.element_id for a in list_actions(session=db, enrolment_id=enrolment.id)] == [
        "sooner",
        "later",
        "undated",
    ]


@pytest.mark.parametrize("seed", range(4))
def test_sync_actions_rows_are_list_actions_in_its_order(db: Session, seed: int) -> None:
    """The rows a sync hands back (the apply works out its FHIR writes from them) are the
    enrolment's actions as `list_actions` reads them: same rows, same order — by due instant
    (given in other time zones, ties, microseconds), undated last, then by key — across
    new, changed, unchanged and vanished actions."""
    rng = random.Random(seed)
    enrolment = create_enrolment(session=db)
    zones = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]

    def states(n: int) -> list[ActionState]:
        out = []
        for i in rng.sample(range(40), n):
            shift = timedelta(hours=rng.choice([0, 1, 1, 7]), microseconds=rng.choice([0, 0, 5]))
            due = None if rng.random() < 0.25 else (T0 + shift).astimezone(rng.choice(zones))
            out.append(action_state(enrolment.id, f"el{i:02d}", occurrence=str(rng.randint(0, 2)),
                                    due=due, status=rng.choice(["upcoming", "due"])))
        return list({s.key: s for s in out}.values())

    for minutes in (0, 5, 10):
        changes = _sync(db, enrolment.id, states(rng.randint(5, 25)), minutes=minutes)
        listed = list_actions(session=db, enrolment_id=enrolment.id)
        assert [r.key for r in changes.rows] == [r.key for r in listed]
        assert list(changes.rows) == listed
