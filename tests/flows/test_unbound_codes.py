"""Unbound codes counted as apply reads the sandbox EHR: metric, /runtime/status, bounded, no patient data."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from engine.plan import plan_of
from flows.apply import apply_patient
from flows.unbound_codes import OTHER, UNBOUND_CODES, UnboundCodeCounter
from tests.api.conftest import api_app
from tests.flows.conftest import lumbar
from tests.utils import ehr

BOOKED_AT = datetime(2026, 2, 20, 10, tzinfo=UTC)
SURGERY = datetime(2026, 4, 15, 8, 30, tzinfo=UTC)
NOW = datetime(2026, 3, 10, 9, tzinfo=UTC)
LOCAL = "http://hospital.example/fhir/CodeSystem/lab"


def _with_local_code(resource: dict[str, Any], element: str, code: str, display: str) -> dict[str, Any]:
    resource.setdefault(element, {"coding": []})
    concept = resource[element][0] if isinstance(resource[element], list) else resource[element]
    concept["coding"].append({"system": LOCAL, "code": code, "display": display})
    return resource


def _rows(code: str) -> list[dict[str, Any]]:
    return [row for row in UNBOUND_CODES.top() if row["code"] == f"{LOCAL}|{code}"]


async def test_apply_counts_unbound_codes_once_per_resource_version(make_runtime, new_patient_id) -> None:
    hb_code, stay_code = f"hb-{uuid.uuid4().hex[:8]}", f"adm-{uuid.uuid4().hex[:8]}"
    pid = new_patient_id
    hb = _with_local_code(ehr.haemoglobin(pid, BOOKED_AT, 12.5), "code", hb_code,
                          f"Hb of {pid}")  # a display that names the patient must not leak
    stay = ehr.stay(pid, SURGERY - timedelta(hours=2))
    stay["type"] = [{"coding": []}]
    stay = _with_local_code(stay, "type", stay_code, "Elective admission")
    async with make_runtime() as rt:
        await rt.ehr.transaction(ehr.transaction(
            ehr.patient(pid), ehr.booking(pid, SURGERY, BOOKED_AT), hb, stay))
        await apply_patient(rt, pid, now=NOW)
        await apply_patient(rt, pid, now=NOW + timedelta(hours=1))  # the same versions again
    assert _rows(hb_code) == [{"resource_type": "Observation", "code": f"{LOCAL}|{hb_code}",
                               "resources": 1}]
    assert _rows(stay_code) == [{"resource_type": "Encounter", "code": f"{LOCAL}|{stay_code}",
                                 "resources": 1}]
    # the LOINC code beside the local one is bound, so it is not counted
    assert not [row for row in UNBOUND_CODES.top() if row["code"] == "http://loinc.org|718-7"]


async def test_runtime_status_and_metrics_show_the_top_unbound_codes(make_runtime, new_patient_id,
                                                                   db_url) -> None:
    code, pid = f"alb-{uuid.uuid4().hex[:8]}", new_patient_id
    obs = _with_local_code(ehr.haemoglobin(pid, BOOKED_AT, 11.0), "code", code, "local Hb")
    async with make_runtime() as rt:
        await rt.ehr.transaction(ehr.transaction(ehr.patient(pid), ehr.booking(pid, SURGERY, BOOKED_AT), obs))
        await apply_patient(rt, pid, now=NOW)
    app = api_app(db_url)
    async with app.router.lifespan_context(app):
        admin = app.state.worklist.dev_issuer.issue("admin.a", ("admin",), ())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://eras.test") as http:
            status = (await http.get("/runtime/status", headers={"Authorization": f"Bearer {admin}"})).json()
            metrics = (await http.get("/metrics")).text
    row = {"resource_type": "Observation", "code": f"{LOCAL}|{code}", "resources": 1}
    assert row in status["unbound_codes"]
    samples = {(s.labels.get("resource_type"), s.labels.get("code")): s.value
               for family in text_string_to_metric_families(metrics) if family.name == "eras_unbound_codes"
               for s in family.samples}
    assert samples[("Observation", f"{LOCAL}|{code}")] == 1
    assert pid not in metrics and pid not in str(status["unbound_codes"])


def _observation(rid: str, code: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid, "meta": {"versionId": "1"}, "status": "final",
            "code": {"coding": [{"system": LOCAL, "code": code}]}}


def test_cardinality_is_bounded_by_max_codes_and_top() -> None:
    counter = UnboundCodeCounter(top=2, max_codes=2)
    terms = [plan_of(lumbar()).terminology]
    # a: 3 resources, b: 2, c and d arrive after two codes are tracked -> "other" (2)
    resources = [_observation(f"o{i}", code) for i, code in enumerate("aaabbcd")]
    counter.observe(terms, resources)
    counter.observe(terms, resources[:3])  # already counted versions
    assert counter.top() == [{"resource_type": "Observation", "code": f"{LOCAL}|a", "resources": 3},
                             {"resource_type": "Observation", "code": f"{LOCAL}|b", "resources": 2}]
    wide = UnboundCodeCounter(top=5, max_codes=2)
    wide.observe(terms, resources)
    assert {"resource_type": "Observation", "code": OTHER, "resources": 2} in wide.top()
    assert len(wide.top()) == 3


def test_a_resource_version_is_surveyed_once_and_a_new_version_or_terminology_again() -> None:
    counter = UnboundCodeCounter()
    terms = [plan_of(lumbar()).terminology]
    first = _observation("o1", "x")
    counter.observe(terms, [first])
    counter.observe(terms, [{**first, "code": {"coding": [{"system": LOCAL, "code": "y"}]}}])  # same version
    assert [row["code"] for row in counter.top()] == [f"{LOCAL}|x"]
    newer = {**first, "meta": {"versionId": "2"}, "code": {"coding": [{"system": LOCAL, "code": "y"}]}}
    counter.observe(terms, [newer])
    assert sorted(row["code"] for row in counter.top()) == [f"{LOCAL}|x", f"{LOCAL}|y"]
    unversioned = {k: v for k, v in first.items() if k != "meta"}
    counter.observe(terms, [unversioned])
    counter.observe(terms, [{**unversioned, "code": {"coding": [{"system": LOCAL, "code": "z"}]}}])
    assert f"{LOCAL}|z" in [row["code"] for row in counter.top()]  # no version: surveyed every time
    other_terms = [plan_of(lumbar()).terminology.model_copy()]
    counter.observe(other_terms, [{**first, "code": {"coding": [{"system": LOCAL, "code": "w"}]}}])
    assert f"{LOCAL}|w" in [row["code"] for row in counter.top()]  # other terminologies: again
