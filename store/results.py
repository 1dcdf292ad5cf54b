"""The audit's source rows: each element's latest result and the episode's cohort attributes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, tuple_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from engine.audit_cells import element_cell, is_missing
from engine.compliance import Ratio, patient_compliance
from engine.facts import PatientFacts
from engine.model import Pathway
from engine.outcomes import PatientOutcomes
from engine.results import ElementResult, Evaluation, Occurrence, Status
from store.models import AuditEpisode, AuditOutcome, ElementResultRow
from store.types import as_utc

SURGERY_ANCHOR = "surgery_start"


@dataclass(frozen=True)
class EpisodeAttributes:
    """What the audit cuts a cohort by: period (surgery start), variant, ward, sex, age, Apfel."""

    surgery_start: datetime | None = None
    variant: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    ward: str | None = None
    surgeon: str | None = None
    sex: str | None = None
    age_at_surgery: int | None = None
    apfel: int | None = None


def _age(birth: date | None, on: datetime | None) -> int | None:
    if birth is None or on is None:
        return None
    day = on.date()
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def episode_attributes(pathway: Pathway, evaluation: Evaluation, facts: PatientFacts, *,
                       ward: str | None, surgeon: str | None = None) -> EpisodeAttributes:
    """The cohort attributes of an evaluated episode; the variant is the pathway's parameters."""
    start = evaluation.anchors.get(SURGERY_ANCHOR)
    params = {name: evaluation.variables[name] for name, param in pathway.parameters.items()
              if name in evaluation.variables and not param.setting}
    apfel = evaluation.variables.get("apfel")
    sex = evaluation.variables.get("sex", facts.sex)
    return EpisodeAttributes(
        surgery_start=start, variant="/".join(str(v) for v in params.values()) or None,
        parameters=params, ward=ward, surgeon=surgeon, sex=None if sex is None else str(sex),
        age_at_surgery=_age(facts.birth_date, start),
        apfel=apfel if isinstance(apfel, int) and not isinstance(apfel, bool) else None)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


def occurrence_json(o: Occurrence) -> dict[str, Any]:
    return {"occurrence": o.occurrence, "status": str(o.status), "opens": _iso(o.opens),
            "due": _iso(o.due), "closes": _iso(o.closes), "done_at": _iso(o.done_at),
            "evidence": list(o.evidence), "decline_reason": o.decline_reason, "counts": o.counts}


def occurrence_from_json(enrolment_id: str, element_id: str, data: Mapping[str, Any]) -> Occurrence:
    """The stored occurrence back as the engine's `Occurrence` (the inverse of `occurrence_json`)."""
    def when(name: str) -> datetime | None:
        value = data.get(name)
        return None if value is None else datetime.fromisoformat(value)
    occurrence = str(data.get("occurrence", ""))
    return Occurrence(f"{enrolment_id}:{element_id}:{occurrence}", element_id, occurrence,
                      when("opens"), when("due"), when("closes"), Status(data["status"]),
                      when("done_at"), tuple(data.get("evidence") or ()), data.get("decline_reason"),
                      data.get("counts"))


def _values(result: ElementResult) -> dict[str, Any]:
    """The stored columns of one element result (all but the keys and `evaluated_at`)."""
    done = [o.done_at for o in result.occurrences if o.done_at is not None]
    return {
        "phase": result.phase, "category": result.category, "status": str(result.status),
        "counts": result.counts, "missing": is_missing(result),
        "occurrences_done": result.occurrences_done,
        "occurrences_counted": result.occurrences_counted,
        "done_at": as_utc(max(done)) if done else None,
        "evidence": list(dict.fromkeys(e for o in result.occurrences for e in o.evidence)),
        "decline_reason": next((o.decline_reason for o in result.occurrences if o.decline_reason), None),
        "occurrences": [occurrence_json(o) for o in result.occurrences],
    }


def record_element_results(*, session: Session, enrolment_id: str, evaluation: Evaluation,
                           attributes: EpisodeAttributes, at: datetime) -> None:
    """Upsert each element's result and the episode's attributes; drop elements no longer planned.
    Only what changed is written, in bulk (`record_many_results` for one episode): the apply's
    write path reads the results as rows, not ORM objects."""
    record_many_results(session=session, episodes=[RecordedEpisode(enrolment_id, evaluation, attributes, at)])


def record_many_results(*, session: Session, episodes: Sequence[RecordedEpisode]) -> None:
    """`record_element_results` for a batch of episodes, in bulk: one read of their results,
    then one multi-row insert, update and delete of what changed (a re-run writes no result)."""
    table = ElementResultRow.__table__  # type: ignore[attr-defined]
    ids = [e.enrolment_id for e in episodes]
    existing = {(r.enrolment_id, r.element_id): r._mapping for r in session.execute(
        sa_select(table).where(table.c.enrolment_id.in_(ids)))}
    inserts, updates = [], []
    for e in episodes:
        for result in e.evaluation.elements:
            values = _values(result)
            old = existing.pop((e.enrolment_id, result.element_id), None)
            if old is None:
                inserts.append({**values, "enrolment_id": e.enrolment_id, "element_id": result.element_id,
                                "evaluated_at": as_utc(e.at)})
            elif any(old[name] != value for name, value in values.items()):
                updates.append({**values, "key_enrolment": e.enrolment_id, "key_element": result.element_id,
                                "evaluated_at": as_utc(e.at)})
    if inserts:
        session.execute(insert(table), inserts)
    if updates:
        session.execute(update(table).where(table.c.enrolment_id == bindparam("key_enrolment"),
                                            table.c.element_id == bindparam("key_element")), updates)
    if existing:  # elements no longer planned
        keys = tuple_(table.c.enrolment_id, table.c.element_id)
        session.execute(delete(table).where(keys.in_(list(existing))))
    # Held: the identity map keeps only referenced clean rows, so `_record_episode` finds them there.
    held = list(session.exec(select(AuditEpisode).where(col(AuditEpisode.enrolment_id).in_(ids))))
    for e in episodes:
        _record_episode(session, e.enrolment_id, e.evaluation, e.attributes, e.at)
    del held


@dataclass(frozen=True)
class RecordedEpisode:
    enrolment_id: str
    evaluation: Evaluation
    attributes: EpisodeAttributes
    at: datetime


def _record_episode(session: Session, enrolment_id: str, evaluation: Evaluation,
                    attributes: EpisodeAttributes, at: datetime) -> None:
    row = session.get(AuditEpisode, enrolment_id) or AuditEpisode(
        enrolment_id=enrolment_id, patient_ref="", pathway_id="", pathway_version=0, updated_at=at)
    row.patient_ref = f"Patient/{evaluation.patient_id}"
    row.pathway_id, row.pathway_version = evaluation.pathway_id, evaluation.pathway_version
    row.surgery_start = attributes.surgery_start
    row.variant, row.parameters = attributes.variant, dict(attributes.parameters)
    row.ward, row.surgeon, row.sex = attributes.ward, attributes.surgeon, attributes.sex
    row.age_at_surgery, row.apfel = attributes.age_at_surgery, attributes.apfel
    compliance = patient_compliance(evaluation)
    row.done, row.counted = compliance.overall.done, compliance.overall.counted
    row.items_counted, row.items_done = item_masks(compliance.by_item)
    row.missing = sum(1 for r in evaluation.elements if is_missing(r))
    row.done_late = sum(1 for r in evaluation.elements if element_cell(r) == "done-late")
    row.updated_at = as_utc(at)
    session.add(row)


MASK_BITS = 63  # a signed 64-bit column


def item_masks(by_item: Mapping[int, Ratio]) -> tuple[int | None, int | None]:
    """ERAS items counted and done as bit masks (bit n: item n); None when an item is too large."""
    if any(not 0 <= item < MASK_BITS for item in by_item):
        return None, None
    return (sum(1 << item for item in by_item),
            sum(1 << item for item, ratio in by_item.items() if ratio.done))


def record_outcomes(*, session: Session, enrolment_id: str, outcomes: PatientOutcomes,
                    at: datetime) -> None:
    """Store (replace) one enrolment's outcome values, as `PatientOutcomes.values()` names them."""
    row = session.get(AuditOutcome, enrolment_id) or AuditOutcome(enrolment_id=enrolment_id,
                                                                  computed_at=at)
    values = outcomes.stored()
    if row.values == values:
        return  # an apply that changes nothing writes nothing
    row.values = values
    row.computed_at = as_utc(at)
    session.add(row)


def stored_outcomes(patient_id: str, values: Mapping[str, Any]) -> PatientOutcomes:
    """The stored values back as `PatientOutcomes` (PONV windows are the ponv_* names)."""
    def num(name: str) -> Any:
        return values.get(name)
    return PatientOutcomes(
        patient_id=patient_id, length_of_stay_days=num("length_of_stay_days"),
        readmitted=num("readmitted"), ponv={k: v for k, v in values.items() if k.startswith("ponv_")},
        hours_to_mobilisation=num("hours_to_mobilisation"), catheter_hours=num("catheter_hours"),
        opioid_mme=num("opioid_mme"), pain_pod1_mean=num("pain_pod1_mean"),
        pain_pod1_max=num("pain_pod1_max"), odi_change=num("odi_change"), daily_steps=num("daily_steps"),
        opioid_unconverted=num("opioid_unconverted"),
        opioid_unconverted_doses=tuple(values.get("opioid_unconverted_doses") or ()))
