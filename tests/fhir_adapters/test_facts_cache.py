"""A resource version's facts are mapped once and reused by the next reading of the record:
the reading from the cache equals the reading from the resources, and anything the facts
depend on (the version, the terminology, the zone, the task identifier system) maps again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.terminology import Terminology, load_terminology
from fhir_adapters import facts as facts_module
from fhir_adapters.facts import FactsReading, facts_from_resources
from tests.fhir_adapters.test_facts import DATA, PATIENT, SCT, TASK, TASK_SYSTEM, cc, med_admin, obs
from tests.utils import ehr

SURGERY = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def versioned(resource: dict[str, Any], version: str = "1") -> dict[str, Any]:
    return {**resource, "meta": {**resource.get("meta", {}), "versionId": version}}


def unversioned(resource: dict[str, Any]) -> dict[str, Any]:
    """Never cached: a resource without meta.versionId is mapped at every reading."""
    return {**resource, "meta": {k: v for k, v in resource.get("meta", {}).items() if k != "versionId"}}


def record() -> list[dict[str, Any]]:
    """Every way a resource can end up: facts, a Task state, not-done, dropped, skipped."""
    end = SURGERY + timedelta(hours=3)
    resources = [ehr.patient("p1"), ehr.booking("p1", SURGERY, SURGERY - timedelta(days=30)),
                 ehr.smoking("p1", SURGERY - timedelta(days=29), current=True),
                 ehr.haemoglobin("p1", SURGERY - timedelta(days=20), 12.1),
                 ehr.stay("p1", SURGERY - timedelta(hours=3)), ehr.surgery("p1", SURGERY, end)]
    resources += [ehr.pain("p1", end + timedelta(hours=k), k) for k in range(5)]
    foreign = [{"system": "http://other.example", "value": "x"}]
    resources += [TASK, {**TASK, "id": "t2", "identifier": foreign},
                  {"resourceType": "Procedure", "id": "pr9", "status": "not-done", "subject": PATIENT,
                   "code": cc(SCT, "229772003"), "performedDateTime": "2024-03-02",
                   "statusReason": cc(SCT, "183944003")},
                  med_admin("7804", 10, "mg"), obs(status="entered-in-error", valueInteger=9),
                  obs(effectiveDateTime="2024-03-01T10:00:00", valueInteger=1, id="bad"),  # no zone
                  {"resourceType": "Device", "id": "d1"}]
    for n, resource in enumerate(resources):
        resource.setdefault("id", f"r{n}")
    return [versioned(r) for r in resources]


def read(resources: list[dict[str, Any]], terms: Terminology, *, tz: Any = UTC,
         task_system: str = TASK_SYSTEM) -> FactsReading:
    return facts_from_resources(resources, terms, patient_id="p1", enrolment_id="e1", enrolled_at=None,
                                parameters={}, task_identifier_system=task_system, local_tz=tz)


@pytest.fixture
def terms() -> Terminology:
    """A terminology of this test's own: no other test's reading is in the cache for it."""
    return load_terminology(DATA / "terminology.yaml")


def test_a_reading_from_the_cache_equals_one_from_the_resources(terms: Terminology, monkeypatch) -> None:
    resources = record()
    first = read(resources, terms)
    monkeypatch.setattr(facts_module, "MAPPERS", {})  # a second mapping would now skip them all
    again = read(resources, terms)
    monkeypatch.undo()
    uncached = read([unversioned(r) for r in resources], terms)
    assert first == again == uncached
    reading = first.facts
    assert {f.concept for f in reading.facts} >= {"pain_score", "spinal_fusion", "tobacco_smoking_status"}
    assert [t.action_key for t in reading.tasks] == ["e1:pc6:0"]
    assert [f.concept for f in reading.not_done] == ["ambulation"]
    assert [str(s).split(":")[0] for s in first.skipped] == ["Observation/bad", "Device/d1"]


def test_a_new_version_of_a_resource_is_mapped_again(terms: Terminology) -> None:
    score = obs(valueInteger=3, id="o7")
    before = read([versioned(score)], terms).facts.facts
    after = read([versioned({**score, "valueInteger": 8}, "2")], terms).facts.facts
    assert ({f.value for f in before}, {f.value for f in after}) == ({3}, {8})


def test_what_the_facts_depend_on_maps_them_again(terms: Terminology) -> None:
    walked = versioned({"resourceType": "Procedure", "id": "pr1", "status": "completed", "subject": PATIENT,
                        "code": cc(SCT, "229772003"), "performedDateTime": "2024-03-02"})  # a date only
    (utc,) = read([walked], terms).facts.facts
    (new_york,) = read([walked], terms, tz=ZoneInfo("America/New_York")).facts.facts
    assert (utc.time, new_york.time) == (datetime(2024, 3, 2, tzinfo=UTC),
                                         datetime(2024, 3, 2, 5, tzinfo=UTC))
    task = versioned(TASK)
    assert [t.action_key for t in read([task], terms).facts.tasks] == ["e1:pc6:0"]
    assert read([task], terms, task_system="http://other.example").facts.tasks[0].action_key == "x"
    without_pain = Terminology(
        name=terms.name, concepts={n: c for n, c in terms.concepts.items() if not n.startswith("pain")},
        decline_reasons=terms.decline_reasons, mme=terms.mme, subsumption=terms.subsumption)
    score = versioned(obs(valueInteger=3, id="o8"))
    assert [f.concept for f in read([score], terms).facts.facts] == ["pain_score", "pain_documented"]
    assert read([score], without_pain).facts.facts == ()
