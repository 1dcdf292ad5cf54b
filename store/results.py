"""The audit's source rows: each element's latest result and the episode's cohort attributes."""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, Select, Text, bindparam, cast, delete, event, insert, tuple_, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from engine.audit_cells import element_cell, is_missing
from engine.compliance import Ratio, element_ratio, item_ratios
from engine.facts import PatientFacts
from engine.fingerprint import PlanDigest, plan_digest
from engine.model import Pathway
from engine.outcomes import PatientOutcomes
from engine.results import ElementResult, Evaluation, Occurrence, Status
from store.bulk import insert_many, read_values, update_many
from store.db import among, expire_held
from store.models import AuditEpisode, AuditOutcome, ElementResultRow, PlanDigestRow
from store.types import as_utc, json_value

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
                           attributes: EpisodeAttributes, at: datetime,
                           plan: PlanDigest | None = None) -> None:
    """Upsert each element's result and the episode's attributes; drop elements no longer planned.
    Only what changed is written, in bulk (`record_many_results` for one episode): the apply's
    write path reads the results as rows, not ORM objects. `plan` (`recorded_plan`) is the plan
    that decided them, kept so a recompute re-evaluates only what a new version changes."""
    record_many_results(session=session, episodes=[
        RecordedEpisode(enrolment_id, evaluation, attributes, at, plan)])


def recorded_plan(pathway: Pathway, tz: tzinfo) -> PlanDigest:
    """The digests that name the plan deciding stored results: the pathway's with the zone, the
    engine's code and the store's that turns results into rows and reads the facts back."""
    return plan_digest(pathway, tz, code=_CODE)


_STORE = Path(__file__).resolve().parent
_CODE = (_STORE / "results.py", _STORE / "episode_facts.py", _STORE / "types.py")


def stored_plans(*, session: Session, digests: Collection[str]) -> dict[str, PlanDigest]:
    """The recorded plans of these digests (unknown ones left out)."""
    table = PlanDigestRow.__table__  # type: ignore[attr-defined]
    rows = session.execute(sa_select(table.c.digest, table.c.shared, cast(table.c.elements, Text))
                           .where(table.c.digest.in_(list(digests))))
    return {digest: PlanDigest(digest, shared, json_value(elements)) for digest, shared, elements in rows}


def _record_plans(session: Session, episodes: Sequence[RecordedEpisode]) -> None:
    """Keep each plan's digests once (a plan already kept, by this or another process, is left).
    Plans this process saw committed to the database are not sent again: every apply records
    its plan, nearly always the same one (an insert that did nothing, its ~100 digests sent)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    kept = _KEPT_PLANS.setdefault(engine, set())
    plans = {e.plan.digest: (e.plan, e.evaluation.pathway_id) for e in episodes
             if e.plan is not None and e.plan.digest not in kept}
    if not plans:
        return
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(PlanDigestRow).on_conflict_do_nothing(), [
        {"digest": p.digest, "pathway_id": pathway_id, "shared": p.shared, "elements": dict(p.elements)}
        for p, pathway_id in plans.values()])
    event.listen(session, "after_commit", lambda _: kept.update(plans), once=True)  # not if rolled back


# Per database (engine): the plans known to be in its plan_digest table.
_KEPT_PLANS: weakref.WeakKeyDictionary[Engine, set[str]] = weakref.WeakKeyDictionary()


def record_many_results(*, session: Session, episodes: Sequence[RecordedEpisode]) -> None:
    """`record_element_results` for a batch of episodes, in bulk and without the ORM: one read of
    their results and of their episode rows, then one multi-row insert, update and delete of what
    changed (a re-run writes no row). An episode with `touched` has results of those elements
    only: just their rows (and those of the other elements of their ERAS items) are read, and
    its figures are its stored ones with the touched elements' old results replaced."""
    table = ElementResultRow.__table__  # type: ignore[attr-defined]
    existing, peers = _existing_results(session, episodes)
    replaced: dict[str, tuple[list[ElementResult], list[ElementResult]]] = {
        e.enrolment_id: ([], peers.get(e.enrolment_id, [])) for e in episodes if e.touched is not None}
    for (eid, element_id), row in existing.items():
        if eid in replaced:
            replaced[eid][0].append(_stored_result(element_id, row))
    inserts, updates, unknown = [], [], {}
    for e in episodes:
        at = as_utc(e.at)
        for result in e.results:
            values = _values(result)
            values["digest"] = result_digest(values)
            key = (e.enrolment_id, result.element_id)
            old = existing.pop(key, None)
            if old is None:
                inserts.append({**values, "enrolment_id": e.enrolment_id, "element_id": result.element_id,
                                "evaluated_at": at})
            elif old[0] is None:  # stored without a digest: compared in full below
                unknown[key] = values, at
            elif old[0] != values["digest"]:
                updates.append({**values, "key_enrolment": e.enrolment_id, "key_element": result.element_id,
                                "evaluated_at": at})
    digests = []
    for (eid, element_id), old_values in _stored_values(session, unknown.keys()).items():
        values, at = unknown[(eid, element_id)]
        row_key = {"key_enrolment": eid, "key_element": element_id}
        if _changed(old_values, values):
            updates.append({**values, **row_key, "evaluated_at": at})
        else:  # unchanged: only its digest is written, once
            digests.append({"digest": values["digest"], **row_key})
    by_key = {"key_enrolment": "enrolment_id", "key_element": "element_id"}
    if inserts:
        insert_many(session, table, inserts)
    if updates:
        update_many(session, table, by_key, updates)
    if digests:
        update_many(session, table, by_key, digests)
    if existing:  # elements no longer planned
        keys = tuple_(table.c.enrolment_id, table.c.element_id)
        session.execute(delete(table).where(keys.in_(list(existing))))
    _record_plans(session, episodes)
    _record_many_episodes(session, episodes, replaced)


def incremental_figures(pathway: Pathway) -> bool:
    """Whether an episode's figures can be updated from the elements re-evaluated alone: its ERAS
    items must all fit the stored bit masks (`item_masks`)."""
    return all(0 <= item < MASK_BITS for item in pathway.audit.eras_items)


def _existing_results(session: Session, episodes: Sequence[RecordedEpisode]
                      ) -> tuple[dict[tuple[str, str], Sequence[Any]], dict[str, list[ElementResult]]]:
    """The stored results the episodes may rewrite (all of each episode's, or its `touched` ones),
    and, for the episodes with `touched`, the results of the other elements of their ERAS items."""
    table = ElementResultRow.__table__  # type: ignore[attr-defined]
    query = _results_query()
    whole = [e.enrolment_id for e in episodes if e.touched is None]
    existing: dict[tuple[str, str], Sequence[Any]] = {}
    if whole:
        existing = {(r[0], r[1]): r[2:] for r in _rows_of(session, query, whole)}
    part = {e.enrolment_id: (e.touched, _item_peers(e)) for e in episodes if e.touched is not None}
    read = set().union(*(touched | peers for touched, peers in part.values()))
    peer_results: dict[str, list[ElementResult]] = {}
    if read:
        for r in session.execute(query.where(among(session, table.c.enrolment_id, part),
                                             among(session, table.c.element_id, read))).all():
            touched, peers = part[r[0]]
            if r[1] in touched:
                existing[(r[0], r[1])] = r[2:]
            elif r[1] in peers:
                peer_results.setdefault(r[0], []).append(_stored_result(r[1], r[2:]))
    return existing, peer_results


@cache
def _results_query() -> Select[Any]:
    """The stored results' keys and `_KEPT_COLUMNS`."""
    table = ElementResultRow.__table__  # type: ignore[attr-defined]
    return sa_select(table.c.enrolment_id, table.c.element_id, *(table.c[name] for name in _KEPT_COLUMNS))


def _stored_values(session: Session, keys: Collection[tuple[str, str]]
                   ) -> dict[tuple[str, str], Sequence[Any]]:
    """The `_RESULT_COLUMNS` (JSON ones as text) of these stored results, by key: their
    episodes' rows read in full (results stored before their digests were kept, once)."""
    if not keys:
        return {}
    rows = _rows_of(session, _full_results_query(), sorted({eid for eid, _ in keys}))
    return {(r[0], r[1]): r[2:] for r in rows if (r[0], r[1]) in keys}


@cache
def _full_results_query() -> Select[Any]:
    table = ElementResultRow.__table__  # type: ignore[attr-defined]
    return sa_select(table.c.enrolment_id, table.c.element_id, *(
        table.c[name] if name not in _JSON_RESULT_COLUMNS else cast(table.c[name], Text)
        for name in _RESULT_COLUMNS))


def result_digest(values: Mapping[str, Any]) -> str:
    """The digest of a result's stored values (`_values`), kept in its row: equal values have
    equal digests (orjson writes them alike: `_values` builds its dicts in one order, holds no
    floats, and its instants are in UTC), and different ones, different digests."""
    return hashlib.blake2b(orjson.dumps(values), digest_size=16).hexdigest()


def _rows_of(session: Session, query: Select[Any], enrolment_ids: Sequence[str]) -> Sequence[Sequence[Any]]:
    """The rows of `query` (its first column an enrolment id) of these enrolments. One enrolment's
    (each apply's) through `store.bulk.read_values`, its statement compiled once."""
    if len(enrolment_ids) == 1:
        return read_values(session, _of_one(query), {"enrolment": enrolment_ids[0]})
    return session.execute(query.where(among(session, query.selected_columns[0], enrolment_ids))).all()


@cache
def _of_one(query: Select[Any]) -> Select[Any]:
    return query.where(query.selected_columns[0] == bindparam("enrolment"))


def _item_peers(e: RecordedEpisode) -> frozenset[str]:
    """The elements sharing an ERAS item with one of the episode's touched elements."""
    items = e.evaluation.eras_items
    touched = e.touched or frozenset()
    shared = {items[element] for element in touched if element in items}
    return frozenset(element for element, item in items.items() if item in shared) - touched


def _stored_result(element_id: str, row: Sequence[Any]) -> ElementResult:
    """A stored result row (`_KEPT_COLUMNS`) as the engine's result, without its occurrences:
    what the episode's figures read of it."""
    _, phase, category, status, counts = row
    return ElementResult(element_id, phase, category, _STATUS[status], (), counts)


_STATUS = {s.value: s for s in Status}  # a dict lookup, several times cheaper than Status(value)


_RESULT_COLUMNS = ("phase", "category", "status", "counts", "missing", "occurrences_done",
                   "occurrences_counted", "done_at", "evidence", "decline_reason", "occurrences")
_JSON_RESULT_COLUMNS = frozenset({"evidence", "occurrences"})
_JSON_AT = tuple(i for i, name in enumerate(_RESULT_COLUMNS) if name in _JSON_RESULT_COLUMNS)
# What an apply reads of each stored result: whether it changed, and what the figures need.
_KEPT_COLUMNS = ("digest", "phase", "category", "status", "counts")


def _changed(old: Sequence[Any], values: Mapping[str, Any]) -> bool:
    """Whether a stored result row (columns `_RESULT_COLUMNS`, JSON ones as text) differs from `_values`."""
    for i, name in enumerate(_RESULT_COLUMNS):
        stored, value = old[i], values[name]
        if i in _JSON_AT:
            if json_value(stored) != value:
                return True
        elif stored != value:
            return True
    return False


def _record_many_episodes(session: Session, episodes: Sequence[RecordedEpisode],
                          replaced: Mapping[str, tuple[list[ElementResult], list[ElementResult]]]) -> None:
    """The episodes' `audit_episode` rows: insert the missing ones, update the changed ones. An
    episode in `replaced` (its touched elements' old results, and their ERAS items' other results)
    keeps its stored figures but for what its re-evaluated elements change."""
    table = AuditEpisode.__table__  # type: ignore[attr-defined]
    existing = {r[0]: r[1:] for r in _rows_of(session, _episodes_query(), [e.enrolment_id for e in episodes])}
    inserts, updates = [], []
    for e in episodes:
        old = existing.get(e.enrolment_id)
        figures = _Figures.of(e.results, e.evaluation.eras_items)
        if e.enrolment_id in replaced:
            assert old is not None, "an episode re-evaluated in part has its stored figures"
            before, peers = replaced[e.enrolment_id]
            figures = _Figures.stored(dict(zip(_EPISODE_COLUMNS, old, strict=True))).replaced(
                before, figures, peers, e.results, e.evaluation.eras_items)
        values = _episode_values(e.evaluation, e.attributes, e.at, e.plan, figures)
        if old is None:
            inserts.append({**values, "enrolment_id": e.enrolment_id})
        elif any(stored != values[name] for stored, name in zip(old, _EPISODE_COLUMNS, strict=True)):
            updates.append({**values, "key_enrolment": e.enrolment_id})
    if inserts:
        session.execute(insert(table), inserts)
    if updates:
        update_many(session, table, {"key_enrolment": "enrolment_id"}, updates)


@cache
def _episodes_query() -> Select[Any]:
    table = AuditEpisode.__table__  # type: ignore[attr-defined]
    return sa_select(table.c.enrolment_id, *(table.c[name] for name in _EPISODE_COLUMNS))


@dataclass(frozen=True)
class _Figures:
    """An episode's compliance figures as `audit_episode` keeps them: elements done and counted
    (`engine.compliance.patient_compliance`), missing data, done late, and its ERAS items."""

    done: int
    counted: int
    missing: int
    done_late: int
    by_item: Mapping[int, Ratio]

    @classmethod
    def of(cls, results: Sequence[ElementResult], items: Mapping[str, int]) -> _Figures:
        """The figures of these results (of every element, or the sums of some)."""
        done = counted = missing = late = 0
        by_element = {}
        for r in results:
            ratio = by_element[r.element_id] = element_ratio(r)
            done += ratio.done
            counted += ratio.counted
            missing += is_missing(r)
            late += element_cell(r) == "done-late"
        return cls(done, counted, missing, late, item_ratios(by_element, items))

    @classmethod
    def stored(cls, row: Mapping[str, Any]) -> _Figures:
        """The figures of a stored episode row (its ERAS items from the bit masks, `item_masks`)."""
        counted, done = row["items_counted"], row["items_done"]
        assert counted is not None and done is not None, "masks of items that fit them (incremental_figures)"
        by_item = {n: Ratio(done >> n & 1, 1) for n in range(MASK_BITS) if counted >> n & 1}
        return cls(row["done"], row["counted"], row["missing"], row["done_late"], by_item)

    def replaced(self, old: Sequence[ElementResult], new: _Figures, peers: Sequence[ElementResult],
                 results: Sequence[ElementResult], items: Mapping[str, int]) -> _Figures:
        """These figures with the `old` results of some elements replaced by new ones (`results`,
        whose figures are `new`); `peers`: the results of the other elements of their ERAS items."""
        gone = _Figures.of(old, {})
        touched = {items[r.element_id] for r in (*old, *results) if r.element_id in items}
        kept = {item: ratio for item, ratio in self.by_item.items() if item not in touched}
        again = _Figures.of((*peers, *results), items).by_item  # the touched items, whole again
        return _Figures(self.done - gone.done + new.done, self.counted - gone.counted + new.counted,
                        self.missing - gone.missing + new.missing,
                        self.done_late - gone.done_late + new.done_late,
                        dict(sorted({**kept, **again}.items())))


@dataclass(frozen=True)
class RecordedEpisode:
    """One evaluated episode to store; `plan` decided it; with `touched`, only these elements'
    results may have changed (added, changed or removed ones; the evaluation may hold only theirs):
    the others' rows are not read or written."""

    enrolment_id: str
    evaluation: Evaluation
    attributes: EpisodeAttributes
    at: datetime
    plan: PlanDigest | None = None
    touched: frozenset[str] | None = None

    @property
    def results(self) -> Sequence[ElementResult]:
        """The results to store: every element's, or the `touched` ones'."""
        if self.touched is None:
            return self.evaluation.elements
        return [r for r in self.evaluation.elements if r.element_id in self.touched]


_EPISODE_COLUMNS = ("patient_ref", "pathway_id", "pathway_version", "surgery_start", "variant", "parameters",
                    "ward", "surgeon", "sex", "age_at_surgery", "apfel", "done", "counted", "items_counted",
                    "items_done", "missing", "done_late", "updated_at", "plan_digest")


def _episode_values(evaluation: Evaluation, attributes: EpisodeAttributes, at: datetime,
                    plan: PlanDigest | None, figures: _Figures) -> dict[str, Any]:
    """The `audit_episode` columns (`_EPISODE_COLUMNS`) of an evaluated episode."""
    items_counted, items_done = item_masks(figures.by_item)
    return {
        "patient_ref": f"Patient/{evaluation.patient_id}", "pathway_id": evaluation.pathway_id,
        "pathway_version": evaluation.pathway_version, "surgery_start": attributes.surgery_start,
        "variant": attributes.variant, "parameters": dict(attributes.parameters), "ward": attributes.ward,
        "surgeon": attributes.surgeon, "sex": attributes.sex, "age_at_surgery": attributes.age_at_surgery,
        "apfel": attributes.apfel, "done": figures.done, "counted": figures.counted,
        "items_counted": items_counted, "items_done": items_done, "missing": figures.missing,
        "done_late": figures.done_late, "updated_at": as_utc(at),
        "plan_digest": None if plan is None else plan.digest,
    }


MASK_BITS = 63  # a signed 64-bit column


def item_masks(by_item: Mapping[int, Ratio]) -> tuple[int | None, int | None]:
    """ERAS items counted and done as bit masks (bit n: item n); None when an item is too large."""
    if any(not 0 <= item < MASK_BITS for item in by_item):
        return None, None
    return (sum(1 << item for item in by_item),
            sum(1 << item for item, ratio in by_item.items() if ratio.done))


def record_outcomes(*, session: Session, enrolment_id: str, outcomes: PatientOutcomes,
                    at: datetime) -> None:
    """Store (replace) one enrolment's outcome values, as `PatientOutcomes.values()` names them.
    Without the ORM (every apply runs it): the stored values read as text, written only when
    they changed."""
    table = AuditOutcome.__table__  # type: ignore[attr-defined]
    values = outcomes.stored()
    session.flush()  # an outcome row this session holds unwritten first: it is read below
    stored = read_values(session, _outcome_query(), {"enrolment": enrolment_id})
    if (json_value(stored[0][0]) if stored else {}) == values:
        return  # an apply that changes nothing writes nothing
    row = {"values": values, "computed_at": as_utc(at)}
    if stored:
        session.execute(_outcome_update(), {**row, "key": enrolment_id})
        expire_held(session, AuditOutcome, [enrolment_id])
    else:
        session.execute(insert(table), {**row, "enrolment_id": enrolment_id})


@cache
def _outcome_query() -> Select[Any]:
    table = AuditOutcome.__table__  # type: ignore[attr-defined]
    return sa_select(cast(table.c["values"], Text)).where(table.c.enrolment_id == bindparam("enrolment"))


@cache
def _outcome_update() -> Any:
    table = AuditOutcome.__table__  # type: ignore[attr-defined]
    return update(table).where(table.c.enrolment_id == bindparam("key"))


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
