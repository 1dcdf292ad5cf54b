"""apply(patient): read the record, evaluate each enrolment, write the work back, keep the store.

Round trips: one batch read from the EHR (+ one Task search when Tasks live in a separate FHIR
store, + one Observation search in the results store the HL7 feed writes to, + reads of stay
Locations not yet cached) and at most one transaction. The plan is committed to the store before
the FHIR write, so a write that fails stays pending and the next apply sends it (conditional
creates on the business identifier make a resend after a crash create nothing twice). The
applies of a drain batch running at once share these requests: a batch or transaction sent while
another is in flight goes with the others that wait, as one (fhir_adapters.coalesce).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import Any, NamedTuple

from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session

from engine.context import episode_start
from engine.evaluate import evaluate
from engine.facts import PatientFacts, TaskState, in_episode
from engine.model import Pathway
from engine.outcomes import patient_outcomes
from engine.plan import concepts_used, plan_of
from engine.results import OPEN_STATUSES, Evaluation
from fhir_adapters.errors import FhirConflictError
from fhir_adapters.facts import (
    SearchPlan,
    batch_bundle,
    facts_from_resources,
    resources_from_batch_response,
    search_plan,
)
from fhir_adapters.locations import resolve_locations
from fhir_adapters.writeback import transaction_for
from flows.metrics import FUTURE_DATED
from flows.runtime import Runtime, WriteTarget
from flows.unbound_codes import UNBOUND_CODES
from flows.withdrawal import cancellation_reason, withdraw_if_cancelled
from flows.writes import EnrolmentWrites, WriteContext, plan_writes, written_ids
from store.actions import (
    ActionState,
    list_actions,
    needs_fhir_write,
    pending_fhir_writes,
    record_fhir_ids,
    sync_actions,
)
from store.db import session_scope
from store.enrolments import (
    enrol,
    find_enrolments,
    record_careplan,
    require_enrolment,
    update_enrolment_context,
)
from store.episode_facts import record_facts
from store.locks import patient_lock
from store.models import Enrolment, PlannedActionRow
from store.pathways import register_pathway_version
from store.results import episode_attributes, record_element_results, record_outcomes, recorded_plan
from store.types import EnrolmentStatus


@dataclass(frozen=True)
class ApplyResult:
    patient_id: str
    evaluations: tuple[Evaluation, ...]
    new_enrolments: tuple[str, ...]
    written: int
    round_trips: int
    skipped: tuple[str, ...]


Finish = Callable[[Session], None]


async def apply_patient(rt: Runtime, patient_id: str, *, now: datetime | None = None,
                        finish: Finish | None = None) -> ApplyResult:
    """Evaluate and act on every pathway of one patient (enrolling them when the record says so).

    `finish` runs inside the last store transaction (e.g. marking inbox events processed), so
    the events and their effects commit together. A Task changed on the server between our
    read and our write (HTTP 412) is read again and the apply repeated once, and so is a
    planned action changed in the store by another writer since we read it (StaleDataError:
    the row's version moved). The patient lock spans processes (store.locks), so the second
    case needs a writer outside it, e.g. a worklist action.
    """
    async with rt.patient_lock(patient_id), patient_lock(rt.db, patient_id):
        try:
            return await _apply_until_settled(rt, patient_id, now, finish)
        except (FhirConflictError, StaleDataError):
            return await _apply_until_settled(rt, patient_id, now, finish)


async def _apply_until_settled(rt: Runtime, patient_id: str, now: datetime | None,
                               finish: Finish | None) -> ApplyResult:
    """An apply that enrols someone reads the record again once the enrolment is committed.

    Until then the patient had no enrolment, so an event about them could be settled unread
    as irrelevant (flows.relevance) while this apply was in flight, its resource written to the
    EHR after our read: the second read sees it. `finish` runs in the pass that enrols no one,
    so events whose apply crashed in between are applied again after their lease.
    """
    trips, written = rt.round_trips, 0
    enrolled: tuple[str, ...] = ()
    for _ in range(len(rt.pathways) + 1):  # each pass but the last enrols on a new pathway
        result = await _apply(rt, patient_id, now, finish)
        written, enrolled = written + result.written, enrolled + result.new_enrolments
        if not result.new_enrolments:
            break
    return replace(result, new_enrolments=enrolled, written=written, round_trips=rt.round_trips - trips)


async def _apply(rt: Runtime, patient_id: str, now: datetime | None,
                 finish: Finish | None) -> ApplyResult:
    now = now or rt.clock()
    trips = rt.round_trips
    resources = await _read(rt, patient_id, await _candidate_pathways(rt, patient_id))
    decided = await rt.in_store(_decide, rt, patient_id, resources, now, finish)
    written = 0 if decided.settled else await _write(rt, patient_id, decided.batches, now, decided.finish)
    return ApplyResult(patient_id, decided.evaluations, decided.new, written,
                       rt.round_trips - trips, decided.skipped)


class _Decided(NamedTuple):
    """What an apply decided from the record, its plan kept in the store: the FHIR writes still
    to send (settled: none, and `finish` has run), the evaluations, the new enrolments."""

    batches: list[tuple[Enrolment, EnrolmentWrites]]
    settled: bool
    finish: Finish | None
    evaluations: tuple[Evaluation, ...]
    new: tuple[str, ...]
    skipped: tuple[str, ...]


def _decide(rt: Runtime, patient_id: str, resources: list[dict[str, Any]], now: datetime,
            finish: Finish | None) -> _Decided:
    """Enrol from the record, evaluate each enrolment and keep the plans (store work: in_store).

    Mostly one transaction: it reads the enrolments, keeps every plan and, with nothing to send
    to FHIR, settles what needs no write and runs `finish`, so such an apply commits once, without
    waiting for the disk (rt.work_db: a power cut that undoes it makes the next apply redo it). The
    evaluation in it is CPU only (no network, no wait). An apply that enrols or withdraws someone
    commits that first, on its own, so that a failing evaluation does not undo it.
    """
    with session_scope(rt.work_db) as session:
        enrolments, new = _enrol_from_record(rt, session, patient_id, resources, now)
        if not new and not any(_cancellation(rt, e, resources) for e in enrolments):
            return _keep(rt, session, enrolments, resources, now, finish, new)
    enrolments = [withdraw_if_cancelled(rt, e, resources, now) if e.status == EnrolmentStatus.ACTIVE else e
                  for e in enrolments]
    if new:
        finish = None  # settled by the pass that reads the record again (_apply_until_settled)
    # A new enrolment's id names its Tasks in the EHR: it must be on disk before any is written
    # (a power cut would otherwise enrol the patient again, under another id). This commit waits
    # for the disk, and with it for every commit before it (rt.work_db, store.db.redoable).
    with session_scope(rt.db if new else rt.work_db) as session:
        return _keep(rt, session, enrolments, resources, now, finish, new)


def _cancellation(rt: Runtime, enrolment: Enrolment, resources: list[dict[str, Any]]) -> bool:
    """Whether the active enrolment is to be withdrawn (flows.withdrawal), written nothing yet."""
    return enrolment.status == EnrolmentStatus.ACTIVE and cancellation_reason(
        rt.pathway(enrolment.pathway_id), enrolment, resources,
        patient_id=enrolment.patient_ref.split("/", 1)[1]) is not None


def _keep(rt: Runtime, session: Session, enrolments: list[Enrolment], resources: list[dict[str, Any]],
          now: datetime, finish: Finish | None, new: list[str]) -> _Decided:
    """Evaluate each active enrolment and keep every plan in `session`; with nothing to send to
    FHIR, settle what needs no write and run `finish` there too."""
    evaluations: list[Evaluation] = []
    skipped: list[str] = []
    evaluated: list[tuple[Enrolment, tuple[Evaluation, PatientFacts] | None]] = []
    for enrolment in enrolments:
        if enrolment.status != EnrolmentStatus.ACTIVE:
            evaluated.append((enrolment, None))
            continue
        evaluation, facts, warnings = _evaluate(rt, enrolment, resources, now, session)
        evaluations.append(evaluation)
        skipped.extend(warnings)
        evaluated.append((enrolment, (evaluation, facts)))
    batches = [(enrolment, _retire(rt, session, enrolment, resources, now) if done is None
                else _sync(rt, session, enrolment, *done, resources, now))
               for enrolment, done in evaluated]
    settled = not any(b.writes for _, b in batches)
    if settled:
        record_fhir_ids(session=session, ids={k: v for _, b in batches for k, v in b.untouched.items()})
        if finish is not None:
            finish(session)
    return _Decided(batches, settled, finish, tuple(evaluations), tuple(new), tuple(dict.fromkeys(skipped)))


async def _candidate_pathways(rt: Runtime, patient_id: str) -> list[Pathway]:
    if len(rt.pathways) < 2:  # one order only: no need to read the enrolments for it
        return list(rt.pathways.values())
    enrolled = {e.pathway_id for e in await rt.in_transaction(  # no write lock: no writer is waited for
        find_enrolments, read_only=True, patient_ref=f"Patient/{patient_id}")}
    # Pathways not yet enrolled are read too: their procedure in the record enrols the patient.
    return [p for pid, p in rt.pathways.items() if pid in enrolled] + [
        p for pid, p in rt.pathways.items() if pid not in enrolled]


async def _read(rt: Runtime, patient_id: str, pathways: Sequence[Pathway]) -> list[dict[str, Any]]:
    plan = _search_plan(rt, pathways)
    request = batch_bundle(patient_id, plan)
    resources = resources_from_batch_response(await rt.bundles(rt.ehr).batch(request), request)
    resources += await resolve_locations(rt.ehr, resources)  # ward and bed of the stays
    observation_codes = dict(plan).get("Observation")
    if rt.results is not None and observation_codes:  # results the HL7 feed wrote there
        resources += await rt.results.search("Observation", {"patient": f"Patient/{patient_id}",
                                                             **observation_codes})
    UNBOUND_CODES.observe(list({id(t): t for t in (plan_of(p).terminology for p in pathways)}.values()),
                          resources)
    if rt.target is WriteTarget.FHIR_STORE and rt.tasks is not None:
        resources += await rt.tasks.search("Task", {
            "patient": f"Patient/{patient_id}", "identifier": f"{rt.identifier_system}|"})
    return resources


def _search_plan(rt: Runtime, pathways: Sequence[Pathway]) -> SearchPlan:
    """The searches that read what these pathways need: worked out once per runtime and set of
    pathways (the same for every patient), not at every apply."""
    key = tuple(f"{p.id}@{p.version}" for p in pathways)
    if (plan := rt.search_plans.get(key)) is not None:
        return plan
    concepts: set[str] = set()
    for pathway in pathways:
        concepts |= concepts_used(pathway)
    terms = plan_of(pathways[0]).terminology
    if rt.outcomes is not None:  # outcomes read what no element needs (opioid doses...)
        concepts |= {name for _, name in rt.outcomes.concepts() if name in terms.concepts}
    own_tasks = rt.identifier_system if rt.target is WriteTarget.EHR else None
    plan = rt.search_plans[key] = search_plan(terms, sorted(concepts), task_identifier_system=own_tasks)
    return plan


def _enrol_from_record(rt: Runtime, session: Session, patient_id: str, resources: list[dict[str, Any]],
                       now: datetime) -> tuple[list[Enrolment], list[str]]:
    """Active enrolments, enrolling on every pathway whose procedure the record shows."""
    ref = f"Patient/{patient_id}"
    new: list[str] = []
    known = {e.pathway_id: e for e in find_enrolments(session=session, patient_ref=ref)}
    for pid, pathway in rt.pathways.items():
        if pid in known:
            continue
        source = _enrolling_fact(pathway, resources, patient_id, now, rt.tz)
        if source is None:
            continue
        register_pathway(session, pathway, now)
        row, created = enrol(session=session, patient_ref=ref, pathway_id=pid,
                             pathway_version=pathway.version, parameters={},
                             enrolled_by=f"auto:{source}", at=now)
        known[pid] = row
        if created:
            new.append(row.id)
    # Ended enrolments come too while they still have work written out: it gets cancelled.
    current = [e for e in known.values() if e.status == EnrolmentStatus.ACTIVE
               or pending_fhir_writes(session=session, enrolment_id=e.id)
               or _open_actions(session, e.id)]
    return current, new


def _open_actions(session: Any, enrolment_id: str) -> bool:
    return any(a.status in OPEN_STATUSES
               for a in list_actions(session=session, enrolment_id=enrolment_id))


def _enrolling_fact(pathway: Pathway, resources: list[dict[str, Any]], patient_id: str,
                    now: datetime, tz: tzinfo) -> str | None:
    """The record that enrols the patient now (the booking first), from this episode only: an
    operation years ago does not start a pathway today (engine.context.episode_start)."""
    reading = facts_from_resources(resources, plan_of(pathway).terminology, patient_id=patient_id,
                                   enrolment_id="-", enrolled_at=now, parameters={},
                                   task_identifier_system="-")
    since = episode_start(pathway, reading.facts, tz)
    found = [f for f in reading.facts.facts if f.concept in pathway.enrols_on
             and (since is None or in_episode(f, since))]
    found.sort(key=lambda f: pathway.enrols_on.index(f.concept))
    return next((f.source or f.concept for f in found), None)


def register_pathway(session: Any, pathway: Pathway, now: datetime) -> None:
    """Store the pathway's files under (id, version); a changed file must bump its version."""
    plan = plan_of(pathway)
    content = "\n".join(f"# {name}\n{text}" for name, text in sorted(plan.files.items()))
    register_pathway_version(session=session, pathway_id=pathway.id, version=pathway.version,
                             content=content, title=pathway.title, at=now)


def _evaluate(rt: Runtime, enrolment: Enrolment, resources: list[dict[str, Any]], now: datetime,
              session: Session | None = None) -> tuple[Evaluation, PatientFacts, list[str]]:
    """`session`: the apply's transaction, where the store's task list is read (else its own)."""
    pathway = rt.pathway(enrolment.pathway_id)
    patient_id = enrolment.patient_ref.split("/", 1)[1]
    reading = facts_from_resources(
        resources, plan_of(pathway).terminology, patient_id=patient_id, enrolment_id=enrolment.id,
        enrolled_at=enrolment.enrolled_at, parameters=enrolment.parameters or {},
        task_identifier_system=rt.identifier_system, local_tz=rt.tz, ward_bed=rt.ward_bed)
    facts = reading.facts
    if rt.target is WriteTarget.NONE:
        facts = _with_store_tasks(rt, facts, session)
    facts = replace(facts, future_tolerance=rt.future_tolerance)
    evaluation = evaluate(pathway, facts, now=now, tz=rt.tz)
    FUTURE_DATED.inc(len(evaluation.future_dated))
    return evaluation, facts, [str(s) for s in reading.skipped] + list(evaluation.warnings)


def _with_store_tasks(rt: Runtime, facts: PatientFacts, session: Session | None) -> PatientFacts:
    """With no FHIR task list, completions and declines recorded in the store are the Task states."""
    if session is None:
        with session_scope(rt.db) as own:
            rows = list_actions(session=own, enrolment_id=facts.enrolment_id)
    else:
        rows = list_actions(session=session, enrolment_id=facts.enrolment_id)
    states = tuple(
        TaskState(r.key, "completed" if r.completed_at else "cancelled",
                  at=r.completed_at or r.updated_at, reason=r.decline_reason, by=r.completed_by)
        for r in rows if r.completed_at or r.decline_reason)
    return replace(facts, tasks=states)


def _action_states(evaluation: Evaluation) -> list[ActionState]:
    return [ActionState(key=a.key, element_id=a.element_id, occurrence=a.occurrence, kind=a.kind,
                        role=a.role, priority=a.priority, title=a.title, opens=a.opens, due=a.due,
                        closes=a.closes, status=a.status.value, remind_at=a.remind_at,
                        escalations=a.escalations) for a in evaluation.actions]


def _stay(facts: PatientFacts) -> tuple[str | None, str | None, str | None]:
    stays = [f for f in facts.facts if f.concept == "inpatient_stay" and f.time is not None]
    if not stays:
        return None, None, None
    last = max(stays, key=lambda f: f.time)  # type: ignore[arg-type, return-value]
    return last.source, last.attrs.get("ward"), last.attrs.get("bed")


def _sync(rt: Runtime, session: Session, enrolment: Enrolment, evaluation: Evaluation,
          facts: PatientFacts, resources: list[dict[str, Any]], now: datetime) -> EnrolmentWrites:
    """Keep the plan in the store (the caller commits it before any FHIR write), then work out
    the FHIR writes still pending."""
    encounter, ward, bed = _stay(facts)
    # Held while the session lasts: the identity map keeps only referenced clean rows, and the
    # store functions below each look the enrolment up (one read instead of one each).
    row = require_enrolment(session=session, enrolment_id=enrolment.id)
    plan = sync_actions(session=session, enrolment_id=enrolment.id, actions=_action_states(evaluation),
                        at=now, cause="evaluation")
    update_enrolment_context(
        session=session, enrolment_id=enrolment.id,
        anchors={k: v for k, v in evaluation.anchors.items() if v is not None},
        encounter_ref=encounter, ward=ward, bed=bed, next_check_at=evaluation.next_change_at,
        careplan_id=enrolment.careplan_id, careplan_version=enrolment.careplan_version, at=now)
    pathway = rt.pathway(enrolment.pathway_id)
    record_element_results(session=session, enrolment_id=enrolment.id, evaluation=evaluation, at=now,
                           attributes=episode_attributes(pathway, evaluation, facts, ward=ward),
                           plan=recorded_plan(pathway, rt.tz))
    record_facts(session=session, enrolment_id=enrolment.id, facts=facts, at=now)  # for recompute
    if rt.outcomes is not None:
        record_outcomes(session=session, enrolment_id=enrolment.id, at=now, outcomes=patient_outcomes(
            facts, evaluation, definitions=rt.outcomes, tz=rt.tz))
    if rt.target is WriteTarget.NONE:
        return EnrolmentWrites()
    return _pending_writes(rt, row, plan.rows, {a.key: a for a in evaluation.actions}, resources, now)


def _pending_writes(rt: Runtime, enrolment: Enrolment, everything: Sequence[PlannedActionRow],
                    planned: Mapping[str, Any], resources: list[dict[str, Any]],
                    now: datetime) -> EnrolmentWrites:
    # The enrolment's actions as the sync left them: pending_fhir_writes without reading them again.
    pending = sorted((a for a in everything if needs_fhir_write(a)), key=lambda a: a.key)
    ctx = WriteContext(patient_id=enrolment.patient_ref.split("/", 1)[1], enrolment=enrolment,
                       planned=planned, pathway_version=enrolment.pathway_version,
                       existing=_own_resources(resources, rt.identifier_system),
                       system=rt.identifier_system, now=now,
                       instructions=plan_of(rt.pathway(enrolment.pathway_id)).instructions)
    return plan_writes(ctx, pending, everything, rt.pathway(enrolment.pathway_id).title)


def _retire(rt: Runtime, session: Session, enrolment: Enrolment, resources: list[dict[str, Any]],
            now: datetime) -> EnrolmentWrites:
    """An ended enrolment plans nothing: its open actions vanish and their Tasks are cancelled."""
    plan = sync_actions(session=session, enrolment_id=enrolment.id, actions=[], at=now,
                        cause=f"enrolment {enrolment.status}: {enrolment.exit_reason or ''}".strip())
    if rt.target is WriteTarget.NONE:
        return EnrolmentWrites()
    return _pending_writes(rt, enrolment, plan.rows, {}, resources, now)


def _own_resources(resources: Iterable[Mapping[str, Any]], system: str) -> dict[str, dict[str, Any]]:
    out = {}
    for res in resources:
        if res.get("resourceType") not in ("Task", "CommunicationRequest"):
            continue
        for ident in res.get("identifier") or []:
            if ident.get("system") == system and ident.get("value"):
                out[ident["value"]] = dict(res)
    return out


async def _write(rt: Runtime, patient_id: str, batches: list[tuple[Enrolment, EnrolmentWrites]],
                 now: datetime, finish: Finish | None) -> int:
    """One FHIR transaction for every enrolment of the patient; then note what was written."""
    writes = [w for _, b in batches for w in b.writes]
    untouched = {k: v for _, b in batches for k, v in b.untouched.items()}
    assert rt.tasks is not None
    response = await rt.bundles(rt.tasks).transaction(transaction_for(patient_id, writes))
    await rt.in_store(_record_written, rt, batches, untouched, written_ids(response), now, finish)
    return len(writes)


def _record_written(rt: Runtime, batches: list[tuple[Enrolment, EnrolmentWrites]], untouched: dict[str, Any],
                    written: list[tuple[str, str, str | None]], now: datetime, finish: Finish | None) -> None:
    """Note the ids the FHIR transaction gave each write, and run `finish`, in one transaction."""
    ids = iter(written)
    with session_scope(rt.work_db) as session:
        for enrolment, batch in batches:
            action_ids = dict(untouched)
            for key in batch.keys:
                rtype, rid, version = next(ids)
                if key is None:
                    record_careplan(session=session, enrolment_id=enrolment.id, careplan_id=rid,
                                    careplan_version=version, at=now)
                else:
                    action_ids[key] = (rtype, rid, version)
            record_fhir_ids(session=session, ids=action_ids)
            untouched = {}
        if finish is not None:
            finish(session)


class PatientEvaluation(NamedTuple):
    enrolment: Enrolment
    evaluation: Evaluation
    facts: PatientFacts


async def read_and_evaluate(rt: Runtime, patient_id: str, *,
                            now: datetime | None = None) -> list[PatientEvaluation]:
    """Read the record and evaluate each active enrolment, writing nothing (reports, the demo)."""
    now = now or rt.clock()
    resources = await _read(rt, patient_id, await _candidate_pathways(rt, patient_id))
    enrolments = await rt.in_transaction(find_enrolments, patient_ref=f"Patient/{patient_id}")
    out = []
    for enrolment in enrolments:
        if enrolment.status == EnrolmentStatus.ACTIVE:
            evaluation, facts, _ = _evaluate(rt, enrolment, resources, now)
            out.append(PatientEvaluation(enrolment, evaluation, facts))
    return out
