"""EHR → engine: FHIR R4 resources mapped to the facts and Task states one evaluation reads."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal
from functools import partial
from typing import Any, NamedTuple
from urllib.parse import urlencode

from fhir.resources.R4B import FHIRAbstractModel, get_fhir_model_class
from pydantic import ValidationError

from engine.facts import Fact, PatientFacts, TaskState, Value
from engine.mme import convert_dose
from engine.terminology import Terminology
from fhir_adapters.errors import TEMPORARY_STATUSES, FhirFatalError, FhirTemporaryError, outcome_issues
from fhir_adapters.locations import DEFAULT_PATTERN, ward_and_bed

# Statuses that mean "this did not happen"; such resources never become facts.
DROPPED_STATUSES: Mapping[str, frozenset[str]] = {
    "Observation": frozenset({"entered-in-error", "cancelled"}),
    "Procedure": frozenset({"entered-in-error"}),
    "Encounter": frozenset({"cancelled", "entered-in-error"}),
    "ServiceRequest": frozenset({"revoked", "entered-in-error"}),
    "Appointment": frozenset({"cancelled", "noshow", "entered-in-error"}),
    "MedicationRequest": frozenset({"cancelled", "entered-in-error"}),
    "MedicationAdministration": frozenset({"entered-in-error"}),
    "Task": frozenset({"entered-in-error"}),
    "DocumentReference": frozenset({"superseded", "entered-in-error"}),
}
# Condition / AllergyIntolerance verification statuses that withdraw the record.
DROPPED_VERIFICATION = frozenset({"refuted", "entered-in-error"})
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class UnreadableResource(ValueError):
    """A resource that is not valid FHIR R4; the message names it by type/id, never its content."""

    def __init__(self, resource_type: str, resource_id: str, reason: str) -> None:
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.reason = reason
        super().__init__(f"{resource_type}/{resource_id}: {reason}")


@dataclass(frozen=True, slots=True)
class SkippedResource:
    """A resource left out of the facts, and why (no patient data)."""

    resource_type: str
    resource_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.resource_id}: {self.reason}"


class FactsReading(NamedTuple):
    """The patient's facts and the resources that could not be used."""

    facts: PatientFacts
    skipped: list[SkippedResource]


# A resource version never changes, so its validated model can be reused by the next apply of
# the same patient: validation is the largest cost of reading a record (~0.5 ms a resource).
_PARSED: OrderedDict[tuple[str, str, str], FHIRAbstractModel] = OrderedDict()
PARSE_CACHE_SIZE = 20_000
# Applies on PostgreSQL map records on several store threads at once (flows.runtime.in_store).
_CACHES_LOCK = threading.Lock()


def parse_resource(resource: Mapping[str, Any]) -> FHIRAbstractModel:
    """The resource as an R4B model; UnreadableResource naming the failing elements otherwise.

    Versioned resources (meta.versionId) are validated once and the model reused; the models
    are treated as read-only by every caller.
    """
    rtype = str(resource.get("resourceType") or "?")
    rid = str(resource.get("id") or "?")
    version = (resource.get("meta") or {}).get("versionId")
    if not version or rid == "?":
        return _validate(resource, rtype, rid)
    key = (rtype, rid, str(version))
    with _CACHES_LOCK:
        model = _PARSED.get(key)
        if model is not None:
            _PARSED.move_to_end(key)
            return model
    model = _validate(resource, rtype, rid)
    with _CACHES_LOCK:
        _PARSED[key] = model
        if len(_PARSED) > PARSE_CACHE_SIZE:
            _PARSED.popitem(last=False)
    return model


def _validate(resource: Mapping[str, Any], rtype: str, rid: str) -> FHIRAbstractModel:
    try:
        model_class = get_fhir_model_class(rtype)
    except (KeyError, ValueError) as exc:
        raise UnreadableResource(rtype, rid, "unknown resource type") from exc
    try:
        return model_class.model_validate(dict(resource))
    except ValidationError as exc:
        # Messages only: pydantic's default text quotes input values, which may be patient data.
        where = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                          for err in exc.errors(include_input=False, include_url=False)[:5])
        raise UnreadableResource(rtype, rid, f"not valid FHIR R4: {where}") from None


def instant(value: datetime | date | str | None, tz: tzinfo = UTC) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware UTC datetime; dates start at local midnight."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    day = value if isinstance(value, date) else partial_date(value)
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def partial_date(value: date | str) -> date:
    """A FHIR date, where a year or year-month alone stands for its first day."""
    if isinstance(value, date):
        return value
    parts = [int(p) for p in value.split("-")]
    return date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)


def codings_of(*elements: Any) -> list[tuple[str, str]]:
    """(system, code) pairs from Codings, CodeableConcepts or lists of either."""
    out: list[tuple[str, str]] = []
    for element in elements:
        if element is None:
            continue
        if isinstance(element, list):
            out.extend(codings_of(*element))
        elif getattr(element, "coding", None) is not None:
            out.extend(codings_of(*element.coding))
        elif getattr(element, "code", None) and getattr(element, "system", None):
            out.append((element.system, element.code))
    return out


def concepts_of(terminology: Terminology, resource_type: str, codings: list[tuple[str, str]]) -> list[str]:
    """Every concept one of the codings means that is read from resources of this type."""
    names: list[str] = []
    for system, code in codings:
        for name in terminology.concepts_for(system, code):
            if name not in names and resource_type in terminology.concept(name).resources:
                names.append(name)
    return names


def value_concept(terminology: Terminology, codings: list[tuple[str, str]]) -> str | None:
    """The coded-value concept (one with no `resources`, e.g. current_smoker) the codings mean."""
    for system, code in codings:
        for name in terminology.concepts_for(system, code):
            if not terminology.concept(name).resources:
                return name
    return None


def _number(value: Decimal | float | int | None) -> float | int | None:
    if value is None or isinstance(value, int | float):
        return value
    return int(value) if value == value.to_integral_value() else float(value)


def _code(element: Any) -> str | None:
    """The code of a code-typed element or the first coding of a CodeableConcept."""
    if element is None or isinstance(element, str):
        return element
    pairs = codings_of(element)
    if pairs:
        return pairs[0][1]
    first = (getattr(element, "coding", None) or [None])[0]
    return getattr(first, "code", None)


def _source(model: Any) -> str:
    return f"{model.get_resource_type()}/{model.id}"


def _facts(concepts: list[str], **fields: Any) -> list[Fact]:
    return [Fact(concept=name, **fields) for name in concepts]


def _measured_facts(terminology: Terminology, concepts: list[str], pairs: list[tuple[str, str]],
                    value: Value, unit: str | None, *,
                    attrs_for: Mapping[str, dict[str, Any]] | None = None,
                    **fields: Any) -> list[Fact]:
    """One fact per concept, its value converted to the concept's unit (conversions are data)
    and the matched codings' attrs (e.g. antiemetic_class) carried along."""
    out = []
    for name in concepts:
        concept = terminology.concept(name)
        norm_value, norm_unit = concept.normalise(value, unit)
        attrs = {k: v for c in concept.codings if (c.system, c.code) in pairs
                 for k, v in c.attrs.items() if not k.startswith("mme_")}
        attrs.update((attrs_for or {}).get(name, {}))
        out.append(Fact(concept=name, value=norm_value, unit=norm_unit,  # type: ignore[arg-type]
                        attrs=attrs, **fields))
    return out


def _period(period: Any, tz: tzinfo) -> tuple[datetime | None, datetime | None]:
    if period is None:
        return None, None
    return instant(period.start, tz), instant(period.end, tz)


def observation_facts(obs: Any, terminology: Terminology, tz: tzinfo = UTC) -> list[Fact]:
    start, end = _period(obs.effectivePeriod, tz)
    when = instant(obs.effectiveDateTime or obs.effectiveInstant, tz) or start
    value, unit = observation_value(obs, terminology)
    pairs = codings_of(obs.code)
    return _measured_facts(terminology, concepts_of(terminology, "Observation", pairs), pairs,
                           value, unit, time=when, end=end, status=obs.status,
                           source=_source(obs), recorded=instant(obs.issued, tz))


def observation_value(obs: Any, terminology: Terminology) -> tuple[Value, str | None]:
    """The value and unit; a coded value becomes its value concept's name, else the code itself."""
    if obs.valueQuantity is not None:
        q = obs.valueQuantity
        return _number(q.value), q.code or q.unit
    if obs.valueCodeableConcept is not None:
        pairs = codings_of(obs.valueCodeableConcept)
        named = value_concept(terminology, pairs)
        return named or (pairs[0][1] if pairs else obs.valueCodeableConcept.text), None
    for scalar in (obs.valueString, obs.valueBoolean, obs.valueInteger):
        if scalar is not None:
            return scalar, None
    return None, None


def procedure_facts(proc: Any, terminology: Terminology, tz: tzinfo = UTC) -> list[Fact]:
    start, end = _period(proc.performedPeriod, tz)
    return _facts(concepts_of(terminology, "Procedure", codings_of(proc.code)),
                  time=instant(proc.performedDateTime, tz) or start, end=end, status=proc.status,
                  source=_source(proc))


def encounter_facts(enc: Any, terminology: Terminology, tz: tzinfo = UTC, *,
                    locations: Mapping[str, Mapping[str, Any]] | None = None,
                    ward_bed: re.Pattern[str] = DEFAULT_PATTERN) -> list[Fact]:
    """A stay, with its current ward and bed (fhir_adapters.locations) as attrs."""
    start, end = _period(enc.period, tz)
    concepts = concepts_of(terminology, "Encounter", codings_of(enc.class_fhir, enc.type))
    return _facts(concepts, time=start, end=end, status=enc.status, source=_source(enc),
                  attrs=ward_and_bed(enc.location or [], locations or {}, ward_bed))


def service_request_facts(req: Any, terminology: Terminology, tz: tzinfo = UTC) -> list[Fact]:
    start, end = _period(req.occurrencePeriod, tz)
    when = req.occurrenceDateTime
    # A date without a time of day is placed at local midnight and marked, so that anchors which
    # need a time (pathway `where: "date_only.empty()"`) do not schedule the night before.
    attrs = {"date_only": True} if _is_date_only(when) else {}
    # A booking is known from when it was authored, though its time lies in the future.
    return _facts(concepts_of(terminology, "ServiceRequest", codings_of(req.code)),
                  time=instant(when, tz) or start, end=end, status=req.status,
                  source=_source(req), recorded=instant(req.authoredOn, tz), attrs=attrs)


def _is_date_only(value: Any) -> bool:
    if isinstance(value, datetime):
        return False
    return isinstance(value, date) or (isinstance(value, str) and "T" not in value)


def appointment_facts(appt: Any, terminology: Terminology, tz: tzinfo = UTC) -> list[Fact]:
    pairs = codings_of(appt.serviceType, appt.appointmentType, appt.reasonCode)
    return _facts(concepts_of(terminology, "Appointment", pairs), time=instant(appt.start, tz),
                  end=instant(appt.end, tz), status=appt.status, source=_source(appt),
                  recorded=instant(appt.created, tz))


def condition_facts(cond: Any, terminology: Terminology, tz: tzinfo = UTC) -> list[Fact]:
    """Resolved conditions are kept, with their clinical status: history (of PONV) matters."""
    if _code(cond.verificationStatus) in DROPPED_VERIFICATION:
        return []
    return _facts(concepts_of(terminology, "Condition", codings_of(cond.code)),
                  time=instant(cond.onsetDateTime or cond.recordedDate, tz),
                  end=instant(cond.abatementDateTime, tz), status=_code(cond.clinicalStatus),
                  source=_source(cond), recorded=instant(cond.recordedDate, tz))


def allergy_facts(allergy: Any, terminology: Terminology, tz: tzinfo = UTC) -> list[Fact]:
    if _code(allergy.verificationStatus) in DROPPED_VERIFICATION:
        return []
    return _facts(concepts_of(terminology, "AllergyIntolerance", codings_of(allergy.code)),
                  time=instant(allergy.recordedDate or allergy.onsetDateTime, tz),
                  status=_code(allergy.clinicalStatus), source=_source(allergy),
                  recorded=instant(allergy.recordedDate, tz))


def document_reference_facts(doc: Any, terminology: Terminology, tz: tzinfo = UTC) -> list[Fact]:
    """A document (e.g. a discharge plan) proves what its `type` says was documented, when dated."""
    period = doc.context.period if doc.context is not None else None
    start, _ = _period(period, tz)
    when = instant(doc.date, tz) or start
    return _facts(concepts_of(terminology, "DocumentReference", codings_of(doc.type)), time=when,
                  status=doc.status, source=_source(doc), recorded=instant(doc.date, tz))


def medication_request_facts(req: Any, terminology: Terminology, tz: tzinfo = UTC) -> list[Fact]:
    """Prescriptions; the value is the expected supply in days when the request gives it in days
    (a discharge opioid's limit is judged on it)."""
    concepts = concepts_of(terminology, "MedicationRequest", codings_of(req.medicationCodeableConcept))
    supply = req.dispenseRequest.expectedSupplyDuration if req.dispenseRequest else None
    days = _number(supply.value) if supply is not None and (supply.code or supply.unit) == "d" else None
    return _facts(concepts, time=instant(req.authoredOn, tz), status=req.status, source=_source(req),
                  value=days, unit="d" if days is not None else None, attrs={"intent": req.intent})


def medication_administration_facts(admin: Any, terminology: Terminology,
                                    tz: tzinfo = UTC) -> list[Fact]:
    """Administrations with dose and route; an opioid also gets its MME (engine.mme).

    `mme` is the dose in oral morphine milligram equivalents, converted by ingredient, route
    and unit from the terminology's `mme` table; `mme_per: day` marks a rate (a fentanyl
    patch, mcg/h), an MME per day worn. A dose the table cannot convert gets
    `mme_unconverted` (the reason) instead, so the audit can report it apart.
    """
    start, end = _period(admin.effectivePeriod, tz)
    pairs = codings_of(admin.medicationCodeableConcept)
    dosage = admin.dosage
    dose = dosage.dose if dosage is not None else None
    value = _number(dose.value) if dose is not None else None
    unit = (dose.code or dose.unit) if dose is not None else None
    routes = codings_of(dosage.route) if dosage is not None and dosage.route is not None else []
    concepts = concepts_of(terminology, "MedicationAdministration", pairs)
    return _measured_facts(
        terminology, concepts, pairs, value, unit,
        time=instant(admin.effectiveDateTime, tz) or start, end=end, status=admin.status,
        source=_source(admin),
        attrs_for={name: _mme(terminology, pairs, routes, value, unit) for name in concepts})


def _mme(terminology: Terminology, pairs: list[tuple[str, str]], routes: list[tuple[str, str]],
         dose: float | int | None, unit: str | None) -> dict[str, Any]:
    table = terminology.mme
    if table is None:
        return {}
    ingredient = next((code for system, code in pairs
                       if system == table.system and code in table.ingredients), None)
    if ingredient is None:
        return {}
    converted = convert_dose(table, ingredient, table.route_of(routes), dose, unit)
    out: dict[str, Any] = {"route": converted.route} if converted.route else {}
    if converted.mme is None:
        out["mme_unconverted"] = converted.unconverted
        return out
    out["mme"] = converted.mme
    if converted.per_day:
        out["mme_per"] = "day"
    return out


Mapper = Callable[[Any, Terminology, tzinfo], list[Fact]]
MAPPERS: Mapping[str, Mapper] = {
    "Observation": observation_facts,
    "Procedure": procedure_facts,
    "Encounter": encounter_facts,
    "ServiceRequest": service_request_facts,
    "Appointment": appointment_facts,
    "Condition": condition_facts,
    "AllergyIntolerance": allergy_facts,
    "MedicationRequest": medication_request_facts,
    "MedicationAdministration": medication_administration_facts,
    "DocumentReference": document_reference_facts,
}


# Resources whose status "not-done" documents that the work was not done (EIAS "not done"):
# kept apart from facts (PatientFacts.not_done), with the statusReason code.
NOT_DONE_TYPES = frozenset({"Procedure", "MedicationAdministration"})


def _not_done(model: Any, facts: list[Fact]) -> list[Fact]:
    reasons = model.statusReason if isinstance(model.statusReason, list) else [model.statusReason]
    code = next((c for r in reasons if r is not None and (c := _code(r))), None)
    return [replace(f, status="not-done", attrs={**f.attrs, **({"status_reason": code} if code else {})})
            for f in facts]


def task_state(task: Any, identifier_system: str) -> TaskState | None:
    """The state of one of the engine's own Tasks (identified in `identifier_system`), else None."""
    key = next((i.value for i in task.identifier or [] if i.system == identifier_system and i.value),
               None)
    if key is None:
        return None
    return TaskState(action_key=key, status=task.status, at=_task_time(task),
                     reason=_code(task.statusReason),
                     by=task.owner.reference if task.owner is not None else None, source=_source(task))


def _task_time(task: Any) -> datetime | None:
    """When the Task reached its state: for a completed one, when the work was done
    (executionPeriod.end), else its last modification, else the server's lastUpdated."""
    period = task.executionPeriod
    if task.status == "completed" and period is not None and period.end is not None:
        return instant(period.end)
    updated = task.meta.lastUpdated if task.meta is not None else None
    return instant(task.lastModified or updated or task.authoredOn)


def facts_from_resources(
    resources: Iterable[Mapping[str, Any]],
    terminology: Terminology,
    *,
    patient_id: str,
    enrolment_id: str,
    enrolled_at: datetime | None,
    parameters: Mapping[str, str],
    task_identifier_system: str,
    local_tz: tzinfo = UTC,
    ward_bed: re.Pattern[str] = DEFAULT_PATTERN,
) -> FactsReading:
    """One patient's facts from their FHIR resources; unusable resources are skipped and listed.

    `local_tz` places date-only values (no time of day) at the hospital's local midnight.
    Location resources among them are what Encounters' locations refer to (ward and bed);
    `ward_bed` splits a display holding both.
    """
    resources = list(resources)
    locations = {f"Location/{r.get('id')}": r for r in resources if r.get("resourceType") == "Location"}
    with_locations = partial(encounter_facts, locations=locations, ward_bed=ward_bed)
    context = _MappingContext(terminology, local_tz, task_identifier_system)
    facts: list[Fact] = []
    tasks: list[TaskState] = []
    not_done: list[Fact] = []
    skipped: list[SkippedResource] = []
    demographics: dict[str, Any] = {}
    # What this patient's resources are (an apply re-reads a record, most of it mapped before).
    todo: list[tuple[Mapping[str, Any], str, str, _MappedKey | None]] = []
    own = _PatientRefs(patient_id)
    for resource in resources:
        rtype, rid = str(resource.get("resourceType") or "?"), str(resource.get("id") or "?")
        if rtype == "Location":
            continue
        why_not = own.not_this_patient(resource)
        if why_not:
            skipped.append(SkippedResource(rtype, rid, why_not))
            continue
        todo.append((resource, rtype, rid, None if rtype in ("Patient", "Encounter")
                     else _mapped_key(resource, rtype, rid, context)))
    cached = _cached_mappings([key for *_, key in todo], context.terminology)
    fresh: dict[_MappedKey, _Mapped] = {}
    for (resource, rtype, rid, key), mapped in zip(todo, cached, strict=True):
        if rtype == "Patient":
            try:
                demographics = _demographics(parse_resource(resource))
            except UnreadableResource as exc:
                skipped.append(SkippedResource(rtype, rid, exc.reason))
            continue
        if mapped is None:
            if rtype == "Encounter":  # its ward and bed come from the Locations read with it
                mapped = _map(resource, rtype, rid, context, with_locations)
            else:
                mapped = _map(resource, rtype, rid, context, MAPPERS.get(rtype))
                if key is not None:
                    fresh[key] = mapped
        facts.extend(mapped.facts)
        not_done.extend(mapped.not_done)
        if mapped.task is not None:
            tasks.append(mapped.task)
        if mapped.skipped is not None:
            skipped.append(SkippedResource(rtype, rid, mapped.skipped))
    _keep_mappings(fresh, context.terminology)
    patient = PatientFacts(patient_id=patient_id, enrolment_id=enrolment_id, enrolled_at=enrolled_at,
                           parameters=dict(parameters), facts=tuple(facts), tasks=tuple(tasks),
                           not_done=tuple(not_done), **demographics)
    return FactsReading(patient, skipped)


class _MappingContext(NamedTuple):
    """What a resource's facts depend on besides the resource (Encounters: its Locations too)."""

    terminology: Terminology
    local_tz: tzinfo
    task_identifier_system: str


class _Mapped(NamedTuple):
    """What one resource contributes to a patient's facts."""

    facts: tuple[Fact, ...] = ()
    not_done: tuple[Fact, ...] = ()
    task: TaskState | None = None
    skipped: str | None = None  # why it was left out


# A resource version never changes, and its facts depend only on it and the mapping context:
# the next apply of the same patient reuses them (most of a record is unchanged between two
# applies). Keys hold the context's terminology by identity (it is checked on every hit).
_MappedKey = tuple[str, str, str, int, tzinfo, str]
_MAPPED_CACHE: OrderedDict[_MappedKey, tuple[Terminology, _Mapped]] = OrderedDict()


def _mapped_key(resource: Mapping[str, Any], rtype: str, rid: str,
                context: _MappingContext) -> _MappedKey | None:
    """The cache key of a resource version's facts; None: not cached (no meta.versionId or id)."""
    version = (resource.get("meta") or {}).get("versionId")
    if not version or rid == "?":
        return None
    return (rtype, rid, str(version), id(context.terminology), context.local_tz,
            context.task_identifier_system)


def _cached_mappings(keys: list[_MappedKey | None], terminology: Terminology) -> list[_Mapped | None]:
    """The cached facts of each key (None: to map), looked up under one hold of the lock."""
    out: list[_Mapped | None] = []
    with _CACHES_LOCK:
        for key in keys:
            hit = None if key is None else _MAPPED_CACHE.get(key)
            if hit is not None and hit[0] is terminology:
                _MAPPED_CACHE.move_to_end(key)  # type: ignore[arg-type]
                out.append(hit[1])
            else:
                out.append(None)
    return out


def _keep_mappings(fresh: Mapping[_MappedKey, _Mapped], terminology: Terminology) -> None:
    if not fresh:
        return
    with _CACHES_LOCK:
        for key, mapped in fresh.items():
            _MAPPED_CACHE[key] = (terminology, mapped)
            _MAPPED_CACHE.move_to_end(key)
        while len(_MAPPED_CACHE) > PARSE_CACHE_SIZE:
            _MAPPED_CACHE.popitem(last=False)


def _map(resource: Mapping[str, Any], rtype: str, rid: str, context: _MappingContext,
         mapper: Mapper | None) -> _Mapped:
    """One resource's facts, or its Task state, or why it is left out."""
    try:
        model = parse_resource(resource)
    except UnreadableResource as exc:
        return _Mapped(skipped=exc.reason)
    if getattr(model, "status", None) in DROPPED_STATUSES.get(rtype, ()):
        return _Mapped()
    if rtype == "Task":
        return _Mapped(task=task_state(model, context.task_identifier_system))
    if mapper is None:
        return _Mapped(skipped="no mapping to facts for this resource type")
    facts = mapper(model, context.terminology, context.local_tz)
    if getattr(model, "status", None) == "not-done" and rtype in NOT_DONE_TYPES:
        return _Mapped(not_done=tuple(_not_done(model, facts)))
    return _Mapped(facts=tuple(facts))


def _demographics(patient: Any) -> dict[str, Any]:
    birth = None if patient.birthDate is None else partial_date(patient.birthDate)
    return {"sex": patient.gender, "birth_date": birth}


class _PatientRefs:
    """The references that name one patient, made once per reading of their record."""

    __slots__ = ("patient_id", "reference", "suffix")

    def __init__(self, patient_id: str) -> None:
        self.patient_id = patient_id
        self.reference = f"Patient/{patient_id}"
        self.suffix = f"/Patient/{patient_id}"

    def not_this_patient(self, resource: Mapping[str, Any]) -> str | None:
        if resource.get("resourceType") == "Patient":
            return None if resource.get("id") == self.patient_id else "a different Patient"
        for element in ("subject", "patient", "for"):
            ref = resource.get(element)
            if ref is None:
                continue
            # JSON objects are dicts: the Mapping check (an ABC's, slow) only for anything else
            reference = ref.get("reference") if type(ref) is dict or isinstance(ref, Mapping) else None
            if isinstance(reference, str) and reference != self.reference \
                    and not reference.endswith(self.suffix):
                return f"{element} is not the patient being read"
        return None


# Resource types whose `code` search parameter covers the codes the mappers read.
CODE_SEARCHABLE = frozenset({"Observation", "Procedure", "Condition", "ServiceRequest", "AllergyIntolerance",
                             "MedicationRequest", "MedicationAdministration", "DocumentReference"})
# The search parameter that holds a type's concept codes, where it is not `code`.
CODE_PARAMETER = {"DocumentReference": "type"}
# Types searched by patient only: Encounter concepts come from `class` and `type` (two parameters),
# Appointment's from three, and one search per type is the point.
PATIENT_SEARCHABLE = frozenset({"Encounter", "Appointment"})
SearchPlan = list[tuple[str, dict[str, str]]]


def search_plan(terminology: Terminology, concepts: Iterable[str], *,
                task_identifier_system: str | None = None) -> SearchPlan:
    """The searches that read these concepts for one patient: one per resource type.

    The first entry, ("Patient", {}), stands for the read of the Patient itself; `batch_bundle`
    adds the patient to every search.
    """
    codes: dict[str, set[str]] = {}
    for name in concepts:
        if name not in terminology.concepts:
            raise ValueError(f"concept '{name}' is not in terminology '{terminology.name}'")
        concept = terminology.concept(name)
        for rtype in concept.resources:
            if rtype not in CODE_SEARCHABLE | PATIENT_SEARCHABLE:
                raise ValueError(f"concept '{name}': facts are not read from {rtype} resources")
            codes.setdefault(rtype, set()).update(
                f"{escape_search_token(c.system)}|{escape_search_token(c.code)}" for c in concept.codings)
    plan: SearchPlan = [("Patient", {})]
    for rtype in sorted(codes):
        if rtype in PATIENT_SEARCHABLE:
            plan.append((rtype, {}))
        elif codes[rtype]:  # a concept without codings cannot match anything
            plan.append((rtype, {CODE_PARAMETER.get(rtype, "code"): ",".join(sorted(codes[rtype]))}))
    if task_identifier_system:
        plan.append(("Task", {"identifier": f"{escape_search_token(task_identifier_system)}|"}))
    return plan


def escape_search_token(token: str) -> str:
    """FHIR search escaping of the characters that separate token values."""
    for char in ("\\", ",", "|", "$"):
        token = token.replace(char, "\\" + char)
    return token


def batch_bundle(patient_id: str, plan: SearchPlan) -> dict[str, Any]:
    """One batch Bundle of relative GETs carrying out the plan for this patient."""
    if not _FHIR_ID.fullmatch(patient_id):
        raise ValueError("patient id is not a valid FHIR id")
    entries = []
    for rtype, params in plan:
        if rtype == "Patient" and not params:
            url = f"Patient/{patient_id}"
        else:
            query = urlencode({"patient": f"Patient/{patient_id}", **params}, safe="/:|,$\\")
            url = f"{rtype}?{query}"
        entries.append({"request": {"method": "GET", "url": url}})
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


def resources_from_batch_response(response: Mapping[str, Any],
                                  request: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The resources of a batch-response: the read ones and every searchset match, once each.

    Pass the `request` Bundle so that a failed entry is named by its search; a failure raises
    FhirTemporaryError (5xx, 408, 429) or FhirFatalError.
    """
    if response.get("resourceType") != "Bundle" or response.get("type") != "batch-response":
        raise FhirFatalError("FHIR server answered a batch with something other than a batch-response")
    entries = response.get("entry") or []
    asked = [e.get("request", {}) for e in (request or {}).get("entry") or []]
    if request is not None and len(asked) != len(entries):
        raise FhirFatalError(f"FHIR batch-response has {len(entries)} entries for {len(asked)} requests")
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for i, entry in enumerate(entries):
        name = f"{asked[i].get('method', 'GET')} {asked[i].get('url')}" if asked else f"entry {i}"
        resource = _entry_result(entry, i, name)
        found = [resource]
        if resource.get("resourceType") == "Bundle":
            found = [e["resource"] for e in resource.get("entry") or []
                     if "resource" in e and (e.get("search") or {}).get("mode") != "outcome"]
        for item in found:
            out.setdefault((str(item.get("resourceType")), str(item.get("id"))), item)
    return list(out.values())


def _entry_result(entry: Mapping[str, Any], index: int, name: str) -> dict[str, Any]:
    answer = entry.get("response") or {}
    match = re.match(r"\s*(\d{3})", str(answer.get("status", "")))
    status = int(match.group(1)) if match else None
    resource = entry.get("resource") or answer.get("outcome") or {}
    if status is not None and status < 300 and resource.get("resourceType") not in (None, "OperationOutcome"):
        return dict(resource)
    text = "; ".join(i["diagnostics"] for i in outcome_issues(resource) if i["diagnostics"])
    message = f"FHIR batch entry {index} ({name}) failed ({status or 'no status'})" + (
        f": {text}" if text else "")
    temporary = status is not None and (status >= 500 or status in TEMPORARY_STATUSES)
    error = FhirTemporaryError if temporary else FhirFatalError
    raise error(message, status=status, url=name, outcome_text=text, issues=outcome_issues(resource))
