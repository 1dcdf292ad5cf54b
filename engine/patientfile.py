"""Patient files (JSON): facts with ISO instants, for simulation, tests and stored episode facts."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta
from typing import Any

from engine.errors import EvaluationError
from engine.facts import Fact, PatientFacts, TaskState


def _instant(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:  # Python 3.11 reads "Z" itself
        parsed = datetime.fromisoformat(value if isinstance(value, str) else str(value))
    except ValueError as exc:
        raise EvaluationError(f"{where}: '{value}' is not an ISO 8601 instant") from exc
    if parsed.tzinfo is None:
        raise EvaluationError(f"{where}: '{value}' needs a time zone offset (e.g. Z)")
    return parsed


_FACT_FIELDS = ("time", "end", "value", "unit", "status", "source", "recorded")
_KNOWN = frozenset({"concept", *_FACT_FIELDS})


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def fact_json(fact: Fact) -> dict[str, Any]:
    """One fact as a patient file writes it (the inverse of reading it); None fields left out."""
    out: dict[str, Any] = {"concept": fact.concept}
    for name in _FACT_FIELDS:
        value = getattr(fact, name)
        if value is not None:
            out[name] = _iso(value)
    return {**out, **fact.attrs}


def patient_json(facts: PatientFacts) -> dict[str, Any]:
    """The patient file of `facts`: `patient_from_json(patient_json(f))` evaluates like `f`."""
    return {
        "id": facts.patient_id, "enrolment": facts.enrolment_id, "sex": facts.sex,
        "birthDate": None if facts.birth_date is None else facts.birth_date.isoformat(),
        "enrolledAt": _iso(facts.enrolled_at), "parameters": dict(facts.parameters),
        "facts": [fact_json(f) for f in facts.facts],
        "notDone": [fact_json(f) for f in facts.not_done],
        "tasks": [{"key": t.action_key, "status": t.status, "at": _iso(t.at), "reason": t.reason,
                   "by": t.by, "source": t.source} for t in facts.tasks],
        # The apply's clock-skew allowance decides which facts it used: kept, so a re-evaluation
        # from the stored file uses the same ones (left out at none, as hand-written files have).
        **({"futureTolerance": facts.future_tolerance.total_seconds()} if facts.future_tolerance else {}),
    }


def _fact(raw: dict[str, Any], i: int) -> Fact:
    where = f"facts[{i}]"
    if "concept" not in raw:
        raise EvaluationError(f"{where}: missing 'concept'")
    return Fact(
        concept=raw["concept"], time=_instant(raw.get("time"), where),
        end=_instant(raw.get("end"), where), value=raw.get("value"), unit=raw.get("unit"),
        status=raw.get("status"), source=raw.get("source"),
        recorded=_instant(raw.get("recorded"), where),
        attrs={k: v for k, v in raw.items() if k not in _KNOWN},
    )


def patient_from_json(data: dict[str, Any], concepts: Collection[str] | None = None) -> PatientFacts:
    """Build PatientFacts from a patient file (see deploy/demo/patients/ for examples); with
    `concepts`, only the facts (and not-done records) of those concepts, e.g. what an evaluation
    of some elements reads (`engine.plan.concepts_read`): the others are not decoded."""
    if not isinstance(data, dict):
        raise EvaluationError("a patient file must hold one JSON object")
    try:
        return _patient(data, concepts)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, EvaluationError):
            raise
        raise EvaluationError(f"not a valid patient file: {type(exc).__name__}: {exc}") from None


def _facts(raws: list[dict[str, Any]], concepts: Collection[str] | None) -> tuple[Fact, ...]:
    if concepts is None:
        return tuple(_fact(raw, i) for i, raw in enumerate(raws))
    # a fact without a concept is decoded, to be refused as the whole file would be
    return tuple(_fact(raw, i) for i, raw in enumerate(raws)
                 if "concept" not in raw or raw["concept"] in concepts)


def _patient(data: dict[str, Any], concepts: Collection[str] | None) -> PatientFacts:
    birth = data.get("birthDate")
    tasks = tuple(TaskState(action_key=t["key"], status=t["status"],
                            at=_instant(t.get("at"), "tasks"), reason=t.get("reason"),
                            by=t.get("by"), source=t.get("source")) for t in data.get("tasks", []))
    return PatientFacts(
        patient_id=str(data.get("id", "synthetic")),
        enrolment_id=str(data.get("enrolment", data.get("id", "synthetic"))),
        sex=data.get("sex"),
        birth_date=date.fromisoformat(birth) if birth else None,
        enrolled_at=_instant(data.get("enrolledAt"), "enrolledAt"),
        parameters=dict(data.get("parameters", {})),
        facts=_facts(data.get("facts", []), concepts),
        tasks=tasks,
        not_done=_facts(data.get("notDone", []), concepts),
        future_tolerance=timedelta(seconds=float(data.get("futureTolerance", 0))),
    )
