"""EHR resources → engine facts: one table row per mapping rule, then search plans and batches."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

from engine.terminology import Terminology, load_terminology
from fhir_adapters.errors import FhirFatalError, FhirTemporaryError
from fhir_adapters.facts import (
    FactsReading,
    batch_bundle,
    facts_from_resources,
    resources_from_batch_response,
    search_plan,
)

DATA = Path(__file__).parent / "data"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
TASK_SYSTEM = "http://eras.example/task"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
HOSPITAL_DRUG = "http://hospital.example/drug"
PATIENT = {"reference": "Patient/p1"}


@pytest.fixture(scope="module")
def terms() -> Terminology:
    return load_terminology(DATA / "terminology.yaml")


def read(terms: Terminology, *resources: dict[str, Any], tz: Any = UTC) -> FactsReading:
    return facts_from_resources(resources, terms, patient_id="p1", enrolment_id="e1", enrolled_at=None,
                                parameters={}, task_identifier_system=TASK_SYSTEM, local_tz=tz)


def at(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2024, 3, day, hour, minute, tzinfo=UTC)


def cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def obs(code: str = "72514-3", system: str = LOINC, status: str = "final", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o1", "status": status, "subject": PATIENT,
            "code": cc(system, code), **extra}


ROUTES = {"oral": "26643006", "iv": "47625008", "transdermal": "45890007", "epidural": "404820008"}


def med_admin(code: str, dose: float, unit: str, status: str = "completed",
              route: str | None = "oral") -> dict[str, Any]:
    dosage: dict[str, Any] = {"dose": {"value": dose, "unit": unit, "system": "http://unitsofmeasure.org",
                                       "code": unit}}
    if route is not None:
        dosage["route"] = cc(SCT, ROUTES[route])
    return {"resourceType": "MedicationAdministration", "id": "ma1", "status": status, "subject": PATIENT,
            "medicationCodeableConcept": cc(RXNORM if code.isdigit() else HOSPITAL_DRUG, code),
            "effectiveDateTime": "2024-03-01T10:00:00Z", "dosage": dosage}


def encounter(locations: list[dict[str, Any]], status: str = "in-progress") -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": "enc1", "status": status, "subject": PATIENT,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "type": [cc("http://hospital.example/enc-type", "spine")],
            "period": {"start": "2024-03-01T07:00:00Z", "end": "2024-03-04T11:00:00Z"},
            "location": locations}


def loc(name: str, status: str | None = None, kind: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"location": {"reference": f"Location/{name.lower()}", "display": name}}
    if status:
        out["status"] = status
    if kind:
        out["physicalType"] = cc("http://terminology.hl7.org/CodeSystem/location-physical-type", kind)
    return out


FACT_ROWS = [
    pytest.param(
        obs(effectiveDateTime="2024-03-01T11:00:00+01:00", valueQuantity={"value": 6, "unit": "{score}"},
            issued="2024-03-01T10:30:00Z"),
        [{"concept": "pain_score", "time": at(10), "value": 6, "unit": "{score}", "status": "final",
          "source": "Observation/o1", "recorded": at(10, 30)},
         {"concept": "pain_documented", "value": 6}],
        id="observation-quantity-every-concept-of-the-type"),
    pytest.param(obs(effectivePeriod={"start": "2024-03-01T10:00:00Z", "end": "2024-03-01T10:20:00Z"},
                     valueQuantity={"value": 2.5}),
                 [{"concept": "pain_score", "time": at(10), "end": at(10, 20), "value": 2.5},
                  {"concept": "pain_documented"}], id="observation-period"),
    pytest.param(obs(effectiveInstant="2024-03-01T10:00:00Z", valueInteger=3),
                 [{"concept": "pain_score", "time": at(10), "value": 3}, {"concept": "pain_documented"}],
                 id="observation-instant-integer"),
    pytest.param(obs("72166-2", effectiveDateTime="2024-03-01T10:00:00Z",
                     valueCodeableConcept=cc(SCT, "77176002")),
                 [{"concept": "tobacco_smoking_status", "value": "current_smoker"}],
                 id="observation-coded-value-becomes-value-concept"),
    pytest.param(obs("72166-2", effectiveDateTime="2024-03-01T10:00:00Z",
                     valueCodeableConcept=cc(SCT, "8517006")),
                 [{"concept": "tobacco_smoking_status", "value": "8517006"}],
                 id="observation-unbound-coded-value-stays-code"),
    pytest.param(obs("229772003", SCT, effectiveDateTime="2024-03-01T10:00:00Z", valueBoolean=True),
                 [{"concept": "ambulation", "value": True}], id="observation-boolean"),
    pytest.param(obs("229772003", SCT, valueString="walked to the door"),
                 [{"concept": "ambulation", "value": "walked to the door", "time": None}],
                 id="observation-string-without-time"),
    pytest.param(obs(status="entered-in-error", valueInteger=3), [], id="observation-entered-in-error"),
    pytest.param(obs(status="cancelled"), [], id="observation-cancelled"),
    pytest.param(obs("1234-5", valueInteger=3), [], id="observation-unbound-code"),
    pytest.param({"resourceType": "Procedure", "id": "pr1", "status": "completed", "subject": PATIENT,
                  "code": cc(SCT, "55705006"), "performedPeriod": {"start": "2024-03-01T08:00:00Z",
                                                                   "end": "2024-03-01T11:30:00Z"}},
                 [{"concept": "spinal_fusion", "time": at(8), "end": at(11, 30), "status": "completed",
                   "source": "Procedure/pr1"}], id="procedure-period"),
    pytest.param({"resourceType": "Procedure", "id": "pr2", "status": "completed", "subject": PATIENT,
                  "code": cc(SCT, "229772003"), "performedDateTime": "2024-03-02T09:00:00Z"},
                 [{"concept": "ambulation", "time": at(9, day=2), "end": None}], id="procedure-datetime"),
    pytest.param({"resourceType": "Procedure", "id": "pr3", "status": "not-done", "subject": PATIENT,
                  "code": cc(SCT, "229772003"), "performedDateTime": "2024-03-02T09:00:00Z"},
                 [], id="procedure-not-done"),
    pytest.param({"resourceType": "Procedure", "id": "pr4", "status": "entered-in-error", "subject": PATIENT,
                  "code": cc(SCT, "55705006")}, [], id="procedure-entered-in-error"),
    pytest.param(encounter([loc("Spine ward", "active", "wa"), loc("Bed 12", "active", "bd")]),
                 [{"concept": "inpatient_stay", "time": at(7), "end": at(11, day=4), "status": "in-progress",
                   "attrs": {"ward": "Spine ward", "bed": "Bed 12"}},
                  {"concept": "spine_ward_stay", "attrs": {"ward": "Spine ward", "bed": "Bed 12"}}],
                 id="encounter-class-and-type-with-typed-locations"),
    pytest.param(encounter([loc("Bed 3", "completed", "bd"), loc("Ward A", "completed", "wa"),
                            loc("Bed 7", "active", "bd")]),
                 [{"concept": "inpatient_stay", "attrs": {"ward": "Ward A", "bed": "Bed 7"}},
                  {"concept": "spine_ward_stay"}], id="encounter-current-bed-after-transfer"),
    pytest.param(encounter([loc("Ward A", "completed"), loc("Ward B", "active"), loc("Bed 2", "active")]),
                 [{"concept": "inpatient_stay", "attrs": {"ward": "Ward B", "bed": "Bed 2"}},
                  {"concept": "spine_ward_stay"}], id="encounter-untyped-first-current-is-ward"),
    pytest.param(encounter([loc("Ward A", "completed"), loc("Ward C", "completed")], status="finished"),
                 [{"concept": "inpatient_stay", "status": "finished", "attrs": {"ward": "Ward C"}},
                  {"concept": "spine_ward_stay"}], id="encounter-none-active-takes-last"),
    pytest.param({**encounter([{"location": {"reference": "Location/w9"}}]), "type": []},
                 [{"concept": "inpatient_stay", "attrs": {"ward": "w9"}}], id="encounter-location-id"),
    pytest.param(encounter([], status="cancelled"), [], id="encounter-cancelled"),
    pytest.param({"resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order",
                  "subject": PATIENT, "code": cc("http://hospital.example/booking", "spine-op"),
                  "occurrenceDateTime": "2024-03-10T08:00:00Z", "authoredOn": "2024-03-01T09:00:00Z"},
                 [{"concept": "surgery_booked", "time": at(8, day=10), "recorded": at(9),
                   "status": "active"}],
                 id="service-request-known-from-authoring"),
    pytest.param({"resourceType": "ServiceRequest", "id": "sr3", "status": "active", "intent": "order",
                  "subject": PATIENT, "code": cc("http://hospital.example/booking", "spine-op"),
                  "occurrenceDateTime": "2024-03-10", "authoredOn": "2024-03-01T09:00:00Z"},
                 [{"concept": "surgery_booked", "time": at(0, day=10), "attrs": {"date_only": True}}],
                 id="service-request-date-only-is-marked"),
    pytest.param({"resourceType": "ServiceRequest", "id": "sr2", "status": "revoked", "intent": "order",
                  "subject": PATIENT, "code": cc("http://hospital.example/booking", "spine-op")},
                 [], id="service-request-revoked"),
    pytest.param({"resourceType": "Appointment", "id": "ap1", "status": "booked",
                  "participant": [{"actor": PATIENT, "status": "accepted"}],
                  "serviceType": [cc("http://hospital.example/booking", "spine-op")],
                  "start": "2024-03-10T08:00:00Z", "end": "2024-03-10T12:00:00Z",
                  "created": "2024-03-01T09:00:00Z"},
                 [{"concept": "surgery_booked", "time": at(8, day=10), "end": at(12, day=10),
                   "recorded": at(9), "status": "booked", "source": "Appointment/ap1"}],
                 id="appointment-by-service-type"),
    pytest.param({"resourceType": "Appointment", "id": "ap2", "status": "booked",
                  "participant": [{"actor": PATIENT, "status": "accepted"}],
                  "reasonCode": [cc("http://hospital.example/booking", "spine-op")]},
                 [{"concept": "surgery_booked"}], id="appointment-by-reason"),
    *[pytest.param({"resourceType": "Appointment", "id": "ap3", "status": status,
                    "participant": [{"actor": PATIENT, "status": "declined"}],
                    "serviceType": [cc("http://hospital.example/booking", "spine-op")]},
                   [], id=f"appointment-{status}") for status in ("cancelled", "noshow", "entered-in-error")],
    pytest.param({"resourceType": "Condition", "id": "c1", "subject": PATIENT, "code": cc(SCT, "1488000"),
                  "clinicalStatus": cc(CONDITION_CLINICAL, "resolved"),
                  "onsetDateTime": "2019-05-01T00:00:00Z", "recordedDate": "2024-02-20T10:00:00Z"},
                 [{"concept": "ponv_history", "time": datetime(2019, 5, 1, tzinfo=UTC), "status": "resolved",
                   "recorded": datetime(2024, 2, 20, 10, tzinfo=UTC)}], id="condition-resolved-kept"),
    pytest.param({"resourceType": "Condition", "id": "c2", "subject": PATIENT, "code": cc(SCT, "1488000"),
                  "recordedDate": "2024-02-20T10:00:00Z"},
                 [{"concept": "ponv_history", "time": datetime(2024, 2, 20, 10, tzinfo=UTC), "status": None}],
                 id="condition-time-from-recorded-date"),
    pytest.param({"resourceType": "Condition", "id": "c3", "subject": PATIENT, "code": cc(SCT, "1488000"),
                  "verificationStatus": cc("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "refuted")}, [], id="condition-refuted"),
    pytest.param({"resourceType": "AllergyIntolerance", "id": "al1", "patient": PATIENT,
                  "code": cc(SCT, "300916003"), "recordedDate": "2024-02-20T10:00:00Z",
                  "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                       "active")},
                 [{"concept": "latex_allergy", "time": datetime(2024, 2, 20, 10, tzinfo=UTC),
                   "status": "active", "source": "AllergyIntolerance/al1"}], id="allergy"),
    pytest.param({"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
                  "subject": PATIENT, "medicationCodeableConcept": cc(RXNORM, "7804"),
                  "authoredOn": "2024-03-01T12:00:00Z"},
                 [{"concept": "opioid_prescribed", "time": at(12), "attrs": {"intent": "order"}}],
                 id="medication-request"),
    pytest.param({"resourceType": "MedicationRequest", "id": "mr3", "status": "active", "intent": "order",
                  "subject": PATIENT, "medicationCodeableConcept": cc(RXNORM, "7804"),
                  "authoredOn": "2024-03-01T12:00:00Z", "dispenseRequest": {"expectedSupplyDuration": {
                      "value": 5, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}}},
                 [{"concept": "opioid_prescribed", "value": 5, "unit": "d"}],
                 id="medication-request-days-of-supply"),
    pytest.param({"resourceType": "MedicationRequest", "id": "mr2", "status": "cancelled", "intent": "order",
                  "subject": PATIENT, "medicationCodeableConcept": cc(RXNORM, "7804")},
                 [], id="medication-request-cancelled"),
    # Oral oxycodone 10 mg x 1.5 = 15 MME (CDC 2022).
    pytest.param(med_admin("7804", 10, "mg"),
                 [{"concept": "opioid_given", "time": at(10), "value": 10, "unit": "mg",
                   "attrs": {"mme": 15.0, "route": "oral"}}], id="medication-administration-oxycodone-mme"),
    # 25 mcg/h patch x 2.4 = 60 MME per day worn (CDC 2022).
    pytest.param(med_admin("4337", 25, "ug/h", route="transdermal"),
                 [{"concept": "opioid_given", "value": 25,
                   "attrs": {"mme": 60.0, "mme_per": "day", "route": "transdermal"}}],
                 id="medication-administration-fentanyl-patch-mme-per-day"),
    # IV fentanyl 50 mcg: 50 x 0.3 = 15 MME (100 mcg IV = 30 mg oral morphine), never 50 x 2.4 = 120.
    pytest.param(med_admin("4337", 50, "mcg", route="iv"),
                 [{"concept": "opioid_given", "attrs": {"mme": 15.0, "route": "parenteral"}}],
                 id="medication-administration-iv-fentanyl-not-a-patch"),
    pytest.param(med_admin("4337", 0.025, "mg", route="iv"),
                 [{"concept": "opioid_given", "attrs": {
                     "route": "parenteral",
                     "mme_unconverted": "no MME factor for fentanyl parenteral in unit mg"}}],
                 id="medication-administration-unit-without-factor-unconverted"),
    pytest.param(med_admin("7804", 10, "mg", route=None),
                 [{"concept": "opioid_given", "attrs": {
                     "mme_unconverted": "route not recorded or not in the MME table"}}],
                 id="medication-administration-no-route-unconverted"),
    pytest.param(med_admin("7804", 10, "mg", route="epidural"),
                 [{"concept": "opioid_given", "attrs": {
                     "mme_unconverted": "route not recorded or not in the MME table"}}],
                 id="medication-administration-unknown-route-unconverted"),
    pytest.param(med_admin("paracetamol-iv", 1, "g"), [{"concept": "opioid_given", "attrs": {}}],
                 id="medication-administration-no-factor-no-mme"),
    pytest.param(med_admin("7804", 10, "mg", status="not-done"), [], id="medication-administration-not-done"),
]


@pytest.mark.parametrize(("resource", "expected"), FACT_ROWS)
def test_facts_from_resources_maps_each_rule(terms: Terminology, resource: dict[str, Any],
                                             expected: list[dict[str, Any]]) -> None:
    reading = read(terms, resource)
    assert reading.skipped == []
    facts = reading.facts.facts
    assert [f.concept for f in facts] == [e["concept"] for e in expected]
    for fact, want in zip(facts, expected, strict=True):
        for name, value in want.items():
            got = dict(fact.attrs) if name == "attrs" else getattr(fact, name)
            assert got == value, (fact.concept, name)


def test_facts_from_resources_date_only_starts_at_local_midnight(terms: Terminology) -> None:
    reading = read(terms, obs(effectiveDateTime="2024-03-01", valueInteger=2), tz=ZoneInfo("Europe/Paris"))
    assert reading.facts.facts[0].time == datetime(2024, 2, 29, 23, tzinfo=UTC)


def test_facts_from_resources_patient_gives_sex_and_birth_date(terms: Terminology) -> None:
    reading = read(terms, {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1961-07"})
    assert (reading.facts.sex, reading.facts.birth_date) == ("female", date(1961, 7, 1))
    assert (reading.facts.patient_id, reading.facts.enrolment_id) == ("p1", "e1")


TASK = {"resourceType": "Task", "id": "t1", "status": "cancelled", "intent": "order", "for": PATIENT,
        "identifier": [{"system": "http://other.example", "value": "x"},
                       {"system": TASK_SYSTEM, "value": "e1:pc6:0"}],
        "statusReason": cc("http://eras.example/reason", "patient-refused"),
        "owner": {"reference": "Practitioner/n7"},
        "authoredOn": "2024-03-01T08:00:00Z", "lastModified": "2024-03-01T09:15:00Z"}


def test_facts_from_resources_own_task_becomes_task_state(terms: Terminology) -> None:
    (state,) = read(terms, TASK).facts.tasks
    assert state.action_key == "e1:pc6:0"
    assert (state.status, state.at, state.reason) == ("cancelled", at(9, 15), "patient-refused")
    assert (state.by, state.source) == ("Practitioner/n7", "Task/t1")


def test_facts_from_resources_task_without_last_modified_uses_authored_on(terms: Terminology) -> None:
    task = {k: v for k, v in TASK.items() if k not in ("lastModified", "statusReason", "owner")}
    (state,) = read(terms, task).facts.tasks
    assert (state.at, state.reason, state.by) == (at(8), None, None)


def test_facts_from_resources_not_done_kept_apart(terms: Terminology) -> None:
    # Documented as not done: never a fact (no proof, anchor or condition input), but kept as
    # "documented not done" so the audit does not call it missing data.
    proc = {"resourceType": "Procedure", "id": "pr9", "status": "not-done", "subject": PATIENT,
            "code": cc(SCT, "229772003"), "performedDateTime": "2024-03-02T09:00:00Z",
            "statusReason": cc(SCT, "183944003")}
    reading = read(terms, proc, med_admin("7804", 10, "mg", status="not-done"))
    assert reading.facts.facts == ()
    (walk, opioid) = reading.facts.not_done
    assert (walk.concept, walk.time, walk.status, walk.source) == (
        "ambulation", at(9, day=2), "not-done", "Procedure/pr9")
    assert walk.attrs["status_reason"] == "183944003"
    assert (opioid.concept, opioid.status) == ("opioid_given", "not-done")


_DONE = {**{k: v for k, v in TASK.items() if k not in ("statusReason", "lastModified")},
         "status": "completed"}


@pytest.mark.parametrize(("fields", "expected"), [
    # executionPeriod.end is when the work was done, even when the Task was edited later
    ({"executionPeriod": {"start": "2024-03-01T08:00:00Z", "end": "2024-03-01T11:30:00Z"},
      "lastModified": "2024-03-01T14:00:00Z"}, at(11, 30)),
    # without it, the last modification is the completion
    ({"lastModified": "2024-03-01T14:00:00Z"}, at(14)),
    ({"executionPeriod": {"start": "2024-03-01T08:00:00Z"}, "lastModified": "2024-03-01T14:00:00Z"},
     at(14)),
    # without either, the server's meta.lastUpdated
    ({"meta": {"lastUpdated": "2024-03-01T16:45:00Z"}}, at(16, 45)),
])
def test_task_state_completion_time(terms: Terminology, fields: dict, expected: datetime) -> None:
    # The engine judges a completed Task by WHEN it was completed (done late after the window).
    (state,) = read(terms, {**_DONE, **fields}).facts.tasks
    assert (state.status, state.at) == ("completed", expected)


def test_facts_from_resources_foreign_task_ignored(terms: Terminology) -> None:
    task = {**TASK, "identifier": [{"system": "http://other.example", "value": "x"}]}
    reading = read(terms, task)
    assert reading.facts.tasks == () and reading.skipped == []


def test_facts_from_resources_malformed_resource_skipped_without_its_data(terms: Terminology) -> None:
    bad = obs(effectiveDateTime="2024-03-01T10:00:00", valueString="SECRET-NOTE")  # no time zone
    reading = read(terms, bad, obs(valueInteger=1))
    (skipped,) = reading.skipped
    assert (skipped.resource_type, skipped.resource_id) == ("Observation", "o1")
    assert "effectiveDateTime" in skipped.reason
    assert "SECRET" not in str(skipped) and "2024" not in str(skipped)
    assert len(reading.facts.facts) == 2


def test_facts_from_resources_other_patients_resource_skipped(terms: Terminology) -> None:
    reading = read(terms, obs(subject={"reference": "Patient/p2"}, valueInteger=1),
                   {"resourceType": "Patient", "id": "p2"})
    assert reading.facts.facts == ()
    assert [str(s) for s in reading.skipped] == [
        "Observation/o1: subject is not the patient being read", "Patient/p2: a different Patient"]


def test_facts_from_resources_unmapped_type_reported(terms: Terminology) -> None:
    reading = read(terms, {"resourceType": "Device", "id": "d1"})
    assert [str(s) for s in reading.skipped] == ["Device/d1: no mapping to facts for this resource type"]


def test_search_plan_one_search_per_type(terms: Terminology) -> None:
    plan = search_plan(terms, ["pain_score", "pain_documented", "ambulation", "inpatient_stay",
                               "surgery_booked", "opioid_given"], task_identifier_system=TASK_SYSTEM)
    assert plan == [
        ("Patient", {}),
        ("Appointment", {}),
        ("Encounter", {}),
        ("MedicationAdministration", {"code": f"{HOSPITAL_DRUG}|paracetamol-iv,"
                                              f"{RXNORM}|4337,{RXNORM}|7804"}),
        ("Observation", {"code": f"{LOINC}|72514-3,{SCT}|229772003"}),
        ("Procedure", {"code": f"{SCT}|229772003"}),
        ("ServiceRequest", {"code": "http://hospital.example/booking|spine-op"}),
        ("Task", {"identifier": f"{TASK_SYSTEM}|"}),
    ]


def test_search_plan_unknown_concept_raises(terms: Terminology) -> None:
    with pytest.raises(ValueError, match="concept 'nope' is not in terminology"):
        search_plan(terms, ["nope"])


def test_batch_bundle_relative_gets_for_the_patient(terms: Terminology) -> None:
    bundle = batch_bundle("p1", search_plan(terms, ["pain_score", "inpatient_stay"]))
    assert bundle["type"] == "batch"
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "GET", "url": "Patient/p1"},
        {"method": "GET", "url": "Encounter?patient=Patient/p1"},
        {"method": "GET", "url": f"Observation?patient=Patient/p1&code={LOINC}|72514-3"},
    ]


def test_batch_bundle_urls_are_the_whole_query_encoded_at_once() -> None:
    """The plan's parameters are encoded once per plan (they are the same for every patient):
    each URL is the one urlencode gives for the patient and the parameters together."""
    plan = [("Patient", {}), ("Encounter", {}), ("Observation", {"code": "http://x|a,http://x|b c"}),
            ("Task", {"identifier": "urn:sys\\|x|", "status": "ready"}),
            ("Procedure", {"patient": "other", "code": "s|1"})]  # a patient parameter takes its place
    safe = "/:|,$\\"
    for patient in ("p1", "p-2.b"):
        for _ in range(2):  # encoded, then from the memo
            urls = [e["request"]["url"] for e in batch_bundle(patient, plan)["entry"]]
            assert urls == [f"Patient/{patient}"] + [
                rtype + "?" + urlencode({"patient": f"Patient/{patient}", **params}, safe=safe)
                for rtype, params in plan[1:]]


def test_batch_bundle_bad_patient_id_raises() -> None:
    with pytest.raises(ValueError, match="not a valid FHIR id"):
        batch_bundle("p1&_id=p2", [("Patient", {})])


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}


def test_resources_from_batch_response_flattens_searchsets() -> None:
    patient = {"resourceType": "Patient", "id": "p1"}
    outcome = {"resource": {"resourceType": "OperationOutcome", "issue": []}, "search": {"mode": "outcome"}}
    observations = searchset(obs(), {**obs(), "id": "o2"})
    observations["entry"].append(outcome)
    response = {"resourceType": "Bundle", "type": "batch-response", "entry": [
        {"resource": patient, "response": {"status": "200 OK"}},
        {"resource": observations, "response": {"status": "200"}},
        {"resource": searchset(obs()), "response": {"status": "200 OK"}},
    ]}
    found = resources_from_batch_response(response)
    names = [f"{r['resourceType']}/{r['id']}" for r in found]
    assert names == ["Patient/p1", "Observation/o1", "Observation/o2"]


@pytest.mark.parametrize(("status", "error"), [("404 Not Found", FhirFatalError),
                                               ("503 Service Unavailable", FhirTemporaryError)])
def test_resources_from_batch_response_failed_entry_names_its_search(status: str, error: type) -> None:
    request = batch_bundle("p1", [("Patient", {}), ("Observation", {"code": f"{LOINC}|72514-3"})])
    failed = {"resourceType": "OperationOutcome",
              "issue": [{"severity": "error", "code": "not-found", "diagnostics": "unknown parameter"}]}
    response = {"resourceType": "Bundle", "type": "batch-response", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}, "response": {"status": "200 OK"}},
        {"response": {"status": status, "outcome": failed}},
    ]}
    with pytest.raises(error) as caught:
        resources_from_batch_response(response, request)
    assert type(caught.value) is error
    message = str(caught.value)
    assert f"GET Observation?patient=Patient/p1&code={LOINC}|72514-3" in message
    assert "unknown parameter" in message and status[:3] in message


def test_resources_from_batch_response_not_a_batch_response_raises() -> None:
    with pytest.raises(FhirFatalError, match="batch-response"):
        resources_from_batch_response({"resourceType": "OperationOutcome"})


def test_search_plan_reads_every_concept_of_the_default_terminology() -> None:
    # A concept bound to a resource type the adapter cannot read would never yield facts.
    from pathlib import Path

    from engine.terminology import load_terminology

    default = Path(__file__).resolve().parents[2] / "pathways" / "terminology" / "default.yaml"
    terms = load_terminology(default)
    plan = search_plan(terms, list(terms.concepts), task_identifier_system="urn:eras:task")
    searched = {rtype for rtype, _ in plan}
    assert searched >= {r for c in terms.concepts.values() for r in c.resources}
