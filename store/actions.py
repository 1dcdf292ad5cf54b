"""Planned actions: the engine's plan for an enrolment, kept in step with each evaluation."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy import select as sa_select
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, col, or_, select

from engine.results import OPEN_STATUSES, Status
from store.bulk import insert_many, read_rows, update_many
from store.db import expire_held
from store.enrolments import require_enrolment
from store.errors import ActionNotFound
from store.history import transition_values
from store.models import ElementStatus, Enrolment, PlannedActionRow
from store.types import ActionKind, FhirType, as_utc


@dataclass(frozen=True)
class ActionState:
    """What the evaluation says one action should look like now."""

    key: str
    element_id: str
    occurrence: str
    kind: str
    role: str
    priority: str
    title: str
    opens: datetime | None
    due: datetime | None
    closes: datetime | None
    status: str
    # The engine's reminder and escalation instants (escalations: (instant, role to notify)).
    remind_at: datetime | None = None
    escalations: tuple[tuple[datetime, str], ...] = ()


# Changes to these make the action's FHIR resource pending again (its revision moves); the
# reminder schedule is the engine's bookkeeping and is kept without rewriting anything.
SCHEDULE_FIELDS = ("remind_at", "escalations")
SYNCED_FIELDS = tuple(f.name for f in fields(ActionState)
                      if f.name != "key" and f.name not in SCHEDULE_FIELDS)


@dataclass(frozen=True)
class ActionChanges:
    """Keys of the actions a sync created, changed, left alone, and cancelled as vanished."""

    new: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    vanished: tuple[str, ...] = ()
    # Every action of the enrolment after the sync, in `list_actions` order (no second read).
    rows: tuple[PlannedActionRow, ...] = field(default=(), compare=False, repr=False)


# An action whose status moved: (its row's values, status before or None when new, cause).
_Transition = tuple[dict[str, Any], str | None, str]


def action_key(enrolment_id: str, element_id: str, occurrence: str) -> str:
    """The stable key of an action, also the seed of its FHIR business identifier."""
    return f"{enrolment_id}:{element_id}:{occurrence}"


def sync_actions(
    *,
    session: Session,
    enrolment_id: str,
    actions: Sequence[ActionState],
    at: datetime,
    cause: str,
) -> ActionChanges:
    """Make the stored plan match `actions`, recording every status transition.

    Stored actions missing from `actions` and not yet terminal are marked cancelled and
    reported as vanished, once, so the caller can cancel what was written for them.
    Every apply runs it, so without the ORM: the actions are read as rows, and what changed
    is written with one statement each for inserts, updates and history (`store.bulk`). An update says
    WHERE version = <the version read>, as the ORM's would: a row another writer changed since
    raises StaleDataError. The session's own copies of the rows written are read again on use.
    """
    enrolment = require_enrolment(session=session, enrolment_id=enrolment_id)
    states = [_normalised(state, enrolment_id) for state in actions]
    _check_unique(states)
    at = as_utc(at)
    session.flush()  # what the session holds unwritten first: the statements below do not flush it
    stored = {row["key"]: row for row in read_rows(session, _list_statement(), {"enrolment": enrolment_id})}
    transitions: list[_Transition] = []
    new, changed, unchanged = [], [], []
    inserts, updates = [], []
    for state in states:
        row = stored.get(state.key)
        if row is None:
            row = stored[state.key] = _new_row(enrolment, state, at)
            inserts.append(row)
            transitions.append((row, None, cause))
            new.append(state.key)
            continue
        version = row["version"]
        schedule_moved = _keep_schedule(row, state)
        if _update(row=row, state=state, at=at, cause=cause, transitions=transitions):
            changed.append(state.key)
        else:
            unchanged.append(state.key)
            if not schedule_moved:
                continue
        updates.append(_versioned(row, version))
    seen = {state.key for state in states}
    vanished = _cancel_vanished(stored=stored, seen=seen, at=at, cause=cause, transitions=transitions)
    updates += [_versioned(stored[key], stored[key]["version"]) for key in vanished]
    _write(session, inserts, updates, transitions, at)
    rows = tuple(map(_action_row, sorted(stored.values(), key=_due_order)))
    return ActionChanges(tuple(new), tuple(changed), tuple(unchanged), tuple(vanished), rows)


_ACTIONS = PlannedActionRow.__table__  # type: ignore[attr-defined]
_HISTORY = ElementStatus.__table__  # type: ignore[attr-defined]
# The columns a sync may change; an update writes them all (what did not change, as read).
_WRITTEN = (*SYNCED_FIELDS, *SCHEDULE_FIELDS, "revision", "updated_at")


@cache
def _list_statement() -> Any:
    """`list_actions` as rows (one statement object, compiled once)."""
    return (sa_select(_ACTIONS).where(_ACTIONS.c.enrolment_id == bindparam("enrolment"))
            .order_by(_ACTIONS.c.due.is_(None), _ACTIONS.c.due, _ACTIONS.c.key))


def _versioned(row: dict[str, Any], read: int) -> dict[str, Any]:
    """The UPDATE's values for `row`, read at version `read`; the row's version moves on."""
    row["version"] = read + 1
    return {"w_key": row["key"], "w_read_version": read,
            **{name: row[name] for name in (*_WRITTEN, "version")}}


# An update's row is the one with the key, at the version read.
_VERSIONED = {"w_key": "key", "w_read_version": "version"}


def _write(session: Session, inserts: list[dict[str, Any]], updates: list[dict[str, Any]],
           transitions: list[_Transition], at: datetime) -> None:
    """The sync's rows, each statement once for all of them: the new actions before their
    history rows (the foreign key from element_status to planned_action)."""
    if inserts:
        insert_many(session, _ACTIONS, inserts)
    if updates:
        matched = update_many(session, _ACTIONS, _VERSIONED, updates)
        if matched != len(updates):
            raise StaleDataError(f"UPDATE statement on table 'planned_action' expected to update "
                                 f"{len(updates)} row(s); {matched} were matched.")
        expire_held(session, PlannedActionRow, (values["w_key"] for values in updates))
    if transitions:
        insert_many(session, _HISTORY, [transition_values(row, from_status=from_status, at=at, cause=why)
                                        for row, from_status, why in transitions])


_NO_DUE = datetime.min.replace(tzinfo=UTC)


def _due_order(row: Mapping[str, Any]) -> tuple[bool, datetime, str]:
    """`list_actions`'s order: by due instant (aware datetimes compare as instants), undated
    last, then by key."""
    due = row["due"]
    return due is None, _NO_DUE if due is None else due, row["key"]


def _action_row(values: dict[str, Any]) -> PlannedActionRow:
    """A row's columns as the model, built as the ORM builds a loaded row (the class's `__new__`,
    then its columns), without `model_construct`'s per-field alias checks: every apply builds
    one per action."""
    row = PlannedActionRow.__new__(PlannedActionRow)
    vars(row).update(values)
    return row


def _normalised(state: ActionState, enrolment_id: str) -> ActionState:
    expected = action_key(enrolment_id, state.element_id, state.occurrence)
    if state.key != expected:
        raise ValueError(f"action key {state.key!r} should be {expected!r}")
    ActionKind(state.kind)
    Status(state.status)
    if all(t is None or t.tzinfo is UTC for t in (state.opens, state.due, state.closes, state.remind_at)):
        return state  # in UTC already (the engine's instants are): no copy
    return replace(
        state,
        opens=_utc_or_none(state.opens),
        due=_utc_or_none(state.due),
        closes=_utc_or_none(state.closes),
        remind_at=_utc_or_none(state.remind_at),
    )


def stored_escalations(state: ActionState) -> list[list[str]]:
    """The escalations as the JSON column keeps them: [[UTC ISO instant, role], ...]."""
    return [[as_utc(at).isoformat(), role] for at, role in state.escalations]


def escalations_of(row: PlannedActionRow) -> list[tuple[datetime, str]]:
    """A stored action's escalation (instant, role) pairs, in level order."""
    return [(datetime.fromisoformat(at), role) for at, role in row.escalations or []]


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _check_unique(states: Sequence[ActionState]) -> None:
    keys = [state.key for state in states]
    if len(set(keys)) < len(keys):
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        raise ValueError(f"duplicate action keys: {', '.join(duplicates)}")


def _new_row(enrolment: Enrolment, state: ActionState, at: datetime) -> dict[str, Any]:
    """A new action's row: every column (those the state does not give at their defaults)."""
    return {**_NEW_ROW, "key": state.key, "enrolment_id": enrolment.id, "ward": enrolment.ward,
            "updated_at": at, "remind_at": state.remind_at, "escalations": stored_escalations(state),
            **{name: getattr(state, name) for name in SYNCED_FIELDS}}


# A new row's columns the sync does not set: the model's defaults (revision and version 1).
_NEW_ROW: dict[str, Any] = {**{c.name: None for c in _ACTIONS.c}, "revision": 1, "version": 1}


def _update(
    *,
    row: dict[str, Any],
    state: ActionState,
    at: datetime,
    cause: str,
    transitions: list[_Transition],
) -> bool:
    differing = [name for name in SYNCED_FIELDS if row[name] != getattr(state, name)]
    if not differing:
        return False
    from_status = row["status"]
    for name in differing:
        row[name] = getattr(state, name)
    row["revision"] += 1
    row["updated_at"] = at
    if row["status"] != from_status:
        transitions.append((row, from_status, cause))
    return True


def _keep_schedule(row: dict[str, Any], state: ActionState) -> bool:
    """Take the engine's reminder schedule; whether it moved (the row is written, no revision)."""
    escalations = stored_escalations(state)
    moved = False
    if row["remind_at"] != state.remind_at:
        row["remind_at"] = state.remind_at
        moved = True
    if (row["escalations"] or []) != escalations:
        row["escalations"] = escalations
        moved = True
    return moved


def _cancel_vanished(
    *,
    stored: Mapping[str, dict[str, Any]],
    seen: set[str],
    at: datetime,
    cause: str,
    transitions: list[_Transition],
) -> list[str]:
    vanished = [
        key
        for key, row in stored.items()
        if key not in seen and row["status"] in OPEN_STATUSES
    ]
    for key in vanished:
        row = stored[key]
        transitions.append((row, row["status"], f"{cause}: no longer planned"))
        row["status"] = Status.CANCELLED.value
        row["revision"] += 1
        row["updated_at"] = at
    return vanished


def record_fhir_ids(*, session: Session,
                    ids: Mapping[str, tuple[str, str | None, str | None]]) -> None:
    """Note the FHIR resource (type, id, version) written for each action key (id None: none
    was ever written, and none is needed any more).

    The action's current revision counts as written: a later change makes it pending again.
    One UPDATE for all of them, run once per key (executemany), without loading the rows; it
    moves their `version` as the ORM would, and rows of this session are read again on use.
    """
    if not ids:
        return
    params = [{"written_key": key, "written_type": FhirType(fhir_type).value, "written_id": fhir_id,
               "written_version": fhir_version} for key, (fhir_type, fhir_id, fhir_version) in ids.items()]
    session.flush()  # this session's own changes first: the rows it holds are expired below
    done = session.execute(_written_statement(), params)
    if done.rowcount != len(params):  # type: ignore[attr-defined]
        found = set(session.execute(sa_select(_ACTIONS.c.key).where(_ACTIONS.c.key.in_(list(ids)))).scalars())
        raise ActionNotFound(next(key for key in ids if key not in found))
    expire_held(session, PlannedActionRow, ids)  # the sync's copies


@cache
def _written_statement() -> Any:
    return (update(_ACTIONS).where(_ACTIONS.c.key == bindparam("written_key"))
            .values(fhir_type=bindparam("written_type"), fhir_id=bindparam("written_id"),
                    fhir_version=bindparam("written_version"), fhir_synced_revision=_ACTIONS.c.revision,
                    version=_ACTIONS.c.version + 1))


def get_action(*, session: Session, key: str) -> PlannedActionRow | None:
    return session.get(PlannedActionRow, key)


def require_action(*, session: Session, key: str) -> PlannedActionRow:
    """The action, or ActionNotFound."""
    row = session.get(PlannedActionRow, key)
    if row is None:
        raise ActionNotFound(key)
    return row


def list_actions(*, session: Session, enrolment_id: str) -> list[PlannedActionRow]:
    """An enrolment's actions in due order (undated last), then by key."""
    statement = (
        select(PlannedActionRow)
        .where(PlannedActionRow.enrolment_id == enrolment_id)
        .order_by(col(PlannedActionRow.due).is_(None), col(PlannedActionRow.due), col(PlannedActionRow.key))
    )
    return list(session.exec(statement))


def needs_fhir_write(row: PlannedActionRow) -> bool:
    """Changed since last written to FHIR (or never written): `pending_fhir_writes`' condition,
    for rows already in hand."""
    return row.fhir_synced_revision is None or row.fhir_synced_revision < row.revision


def pending_fhir_writes(
    *, session: Session, enrolment_id: str | None = None, limit: int | None = None
) -> list[PlannedActionRow]:
    """Actions changed since they were last written to FHIR (or never written)."""
    statement = select(PlannedActionRow).where(
        or_(
            col(PlannedActionRow.fhir_synced_revision).is_(None),
            col(PlannedActionRow.fhir_synced_revision) < col(PlannedActionRow.revision),
        )
    )
    if enrolment_id is not None:
        statement = statement.where(PlannedActionRow.enrolment_id == enrolment_id)
    statement = statement.order_by(col(PlannedActionRow.key))
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.exec(statement))
