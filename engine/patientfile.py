"""Synthetic patient files (JSON) for simulation and tests: facts with ISO instants."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from engine.errors import EvaluationError
from engine.facts import Fact, PatientFacts, TaskState


def _instant(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise EvaluationError(f"{where}: '{value}' is not an ISO 8601 instant") from exc
    if parsed.tzinfo is None:
        raise EvaluationError(f"{where}: '{value}' needs a time zone offset (e.g. Z)")
    return parsed


def _fact(raw: dict[str, Any], i: int) -> Fact:
    where = f"facts[{i}]"
    if "concept" not in raw:
        raise EvaluationError(f"{where}: missing 'concept'")
    known = {"concept", "time", "end", "value", "unit", "status", "source", "recorded"}
    return Fact(
        concept=raw["concept"], time=_instant(raw.get("time"), where),
        end=_instant(raw.get("end"), where), value=raw.get("value"), unit=raw.get("unit"),
        status=raw.get("status"), source=raw.get("source"),
        recorded=_instant(raw.get("recorded"), where),
        attrs={k: v for k, v in raw.items() if k not in known},
    )


def patient_from_json(data: dict[str, Any]) -> PatientFacts:
    """Build PatientFacts from a patient file (see deploy/demo/patients/ for examples)."""
    if not isinstance(data, dict):
        raise EvaluationError("a patient file must hold one JSON object")
    try:
        return _patient(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, EvaluationError):
            raise
        raise EvaluationError(f"not a valid patient file: {type(exc).__name__}: {exc}") from None


def _patient(data: dict[str, Any]) -> PatientFacts:
    birth = data.get("birthDate")
    tasks = tuple(TaskState(action_key=t["key"], status=t["status"],
                            at=_instant(t.get("at"), "tasks"), reason=t.get("reason"),
                            by=t.get("by")) for t in data.get("tasks", []))
    return PatientFacts(
        patient_id=str(data.get("id", "synthetic")),
        enrolment_id=str(data.get("enrolment", data.get("id", "synthetic"))),
        sex=data.get("sex"),
        birth_date=date.fromisoformat(birth) if birth else None,
        enrolled_at=_instant(data.get("enrolledAt"), "enrolledAt"),
        parameters=dict(data.get("parameters", {})),
        facts=tuple(_fact(raw, i) for i, raw in enumerate(data.get("facts", []))),
        tasks=tasks,
    )
