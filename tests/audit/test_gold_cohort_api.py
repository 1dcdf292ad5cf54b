"""The gold cohort through the store, the audit API and its CSV: the hand-worked numbers, exactly."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from fhir.resources.R4B.measure import Measure
from fhir.resources.R4B.measurereport import MeasureReport
from pydantic import SecretStr
from sqlmodel import Session, col, select

from api.audit_app import mount_audit
from api.audit_settings import AuditSettings
from api.main import create_app
from api.worklist_app import mount_worklist
from api.worklist_settings import WorklistSettings
from engine.outcomes import load_outcome_definitions
from store.db import make_engine
from store.models import AuditLog
from tests.api.conftest import api_settings
from tests.audit.cohort import LONDON, gold_cohort, lumbar
from tests.audit.test_gold_cohort import (
    ELEMENT_COMPLIANCE,
    HIGH,
    INTRA_OP,
    MISSING,
    MOST_UNDOCUMENTED,
    OVERALL,
    PATIENT_COMPLIANCE,
    TREND,
)
from tests.utils.audit import clear_audit, load_cases

Token = Callable[..., dict[str, str]]
PATHWAY = "pathway=lumbar_fusion"


@pytest.fixture(scope="module")
def gold_loaded(db_url: str) -> Iterator[str]:
    engine = make_engine(db_url)
    ids = [c.evaluation.enrolment_id for c in gold_cohort()]
    clear_audit(engine, "lumbar_fusion", ids)
    load_cases(engine, lumbar(), gold_cohort(), outcomes=load_outcome_definitions(), tz=LONDON)
    yield db_url
    clear_audit(engine, "lumbar_fusion", ids)
    engine.dispose()


@pytest.fixture
async def audit_app(gold_loaded: str) -> AsyncIterator[FastAPI]:
    app = create_app(api_settings(gold_loaded))
    mount_worklist(app, WorklistSettings(dev_mode=True), pathways={"lumbar_fusion": lumbar()})
    mount_audit(app, AuditSettings(pseudonym_key=SecretStr("gold-key"), timezone="Europe/London"))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def api(audit_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=audit_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://eras.test") as http:
        yield http


@pytest.fixture
def auth(audit_app: FastAPI) -> Token:
    def make(*roles: str) -> dict[str, str]:
        token = audit_app.state.worklist.dev_issuer.issue("q.user", roles, ())
        return {"Authorization": f"Bearer {token}"}
    return make


def _pair(body: dict[str, int]) -> tuple[int, int]:
    return body["done"], body["counted"]


async def test_gold_api_per_patient_and_element(api: httpx.AsyncClient, auth: Token) -> None:
    body = (await api.get(f"/audit/compliance?{PATHWAY}", headers=auth("admin"))).json()
    assert {p["patient"]: _pair(p) for p in body["patients"]} == PATIENT_COMPLIANCE
    elements = {e["element"]: _pair(e) for e in body["elements"]}
    assert {k: elements[k] for k in ELEMENT_COMPLIANCE} == ELEMENT_COMPLIANCE
    assert tuple(map(sum, zip(*elements.values(), strict=True))) == (OVERALL.done, OVERALL.counted)


async def test_gold_api_overall_phase_high_trend(api: httpx.AsyncClient, auth: Token) -> None:
    body = (await api.get(f"/audit/compliance?{PATHWAY}", headers=auth("quality"))).json()
    assert _pair(body["overall"]) == (OVERALL.done, OVERALL.counted)
    assert _pair(body["phases"]["intra-op"]) == (INTRA_OP.done, INTRA_OP.counted)
    assert _pair(body["high"]) == (HIGH.done, HIGH.counted)
    got = [(t["month"], t["patients"], _pair(t["compliance"]), _pair(t["high"])) for t in body["trend"]]
    assert got == [(m, n, (c.done, c.counted), (h.done, h.counted)) for m, n, c, h in TREND]


async def test_gold_api_completeness(api: httpx.AsyncClient, auth: Token) -> None:
    body = (await api.get(f"/audit/completeness?{PATHWAY}&unenrolled=5", headers=auth("quality"))).json()
    assert _pair(body["coverage"]) == (35, 40)
    assert _pair(body["missing"]) == (MISSING.done, MISSING.counted)
    assert [(m["element"], _pair(m)) for m in body["most_undocumented"]] == [
        (e, (r.done, r.counted)) for e, r in MOST_UNDOCUMENTED]


async def test_gold_api_outcome_groups(api: httpx.AsyncClient, auth: Token) -> None:
    body = (await api.get(f"/audit/compliance?{PATHWAY}", headers=auth("quality"))).json()
    high, lower = body["outcomes"]
    assert (high["patients"], lower["patients"]) == (33, 2)
    stay = high["stats"]["length_of_stay_days"]
    assert (stay["n"], stay["median"]) == (32, 4.25)
    assert (high["stats"]["readmitted"]["n"], high["stats"]["readmitted"]["events"]) == (32, 1)


async def test_gold_api_filter_by_variant(api: httpx.AsyncClient, auth: Token) -> None:
    body = (await api.get(f"/audit/compliance?{PATHWAY}&variant=decompression",
                          headers=auth("admin"))).json()
    assert [p["patient"] for p in body["patients"]] == ["P13", "P14"]
    assert _pair(body["overall"]) == (41 + 40, 41 + 41)


async def test_gold_api_matrix_csv_agrees(api: httpx.AsyncClient, auth: Token) -> None:
    text = (await api.get(f"/audit/export/matrix.csv?{PATHWAY}", headers=auth("admin"))).text
    rows = {r["patient_id"]: r for r in csv.DictReader(io.StringIO(text))}
    assert {pid: (int(r["done"]), int(r["counted"])) for pid, r in rows.items()} == PATIENT_COMPLIANCE
    assert rows["P03"]["preemptive_gabapentinoid"] == "n-a"
    assert rows["P30"]["walk_three_times_daily"] == "excluded"
    for element, (done, counted) in ELEMENT_COMPLIANCE.items():
        cells = [r[element] for r in rows.values()]
        assert (cells.count("done"), cells.count("done") + cells.count("not-done")) == (done, counted)


async def test_gold_api_summary_csv_agrees(api: httpx.AsyncClient, auth: Token) -> None:
    text = (await api.get(f"/audit/export/summary.csv?{PATHWAY}", headers=auth("quality"))).text
    overall = next(r for r in csv.DictReader(io.StringIO(text)) if r["level"] == "overall")
    assert (int(overall["done"]), int(overall["counted"]), overall["missing"]) == (1366, 1429, "61")


async def test_audit_api_nurse_denied_and_recorded(api: httpx.AsyncClient, auth: Token,
                                                   audit_app: FastAPI) -> None:
    response = await api.get(f"/audit/compliance?{PATHWAY}", headers=auth("nurse"))
    assert response.status_code == 403
    with Session(audit_app.state.engine) as session:
        entries = list(session.exec(select(AuditLog).where(col(AuditLog.resource) == "/audit/compliance")))
    assert entries and entries[-1].outcome == "denied"


async def test_audit_api_quality_sees_pseudonyms(api: httpx.AsyncClient, auth: Token) -> None:
    body = (await api.get(f"/audit/compliance?{PATHWAY}", headers=auth("quality"))).json()
    names = {p["patient"] for p in body["patients"]}
    assert len(names) == 35 and all(n.startswith("anon-") for n in names)
    again = (await api.get(f"/audit/compliance?{PATHWAY}", headers=auth("quality"))).json()
    assert {p["patient"] for p in again["patients"]} == names
    matrix = (await api.get(f"/audit/export/matrix.csv?{PATHWAY}", headers=auth("quality"))).text
    assert "P01" not in matrix


async def test_audit_api_drill_down_shows_decline_and_proof(api: httpx.AsyncClient, auth: Token) -> None:
    body = (await api.get("/audit/patients/P02-enr", headers=auth("reidentify", "quality"))).json()
    assert body["patient"] == "P02"
    edu = next(e for e in body["elements"] if e["element"] == "patient_education")
    assert (edu["status"], edu["decline_reason"], edu["evidence"]) == (
        "declined", "patient-refused", ["Task/P02-patient_education-0"])
    assert edu["occurrences"][0]["closes"] is not None
    assert body["outcomes"]["length_of_stay_days"] == 4.25


async def test_audit_api_measure_report_valid_r4b(api: httpx.AsyncClient, auth: Token) -> None:
    body = (await api.get(f"/audit/export/measure-report?{PATHWAY}&kind=subject-list",
                          headers=auth("quality"))).json()
    MeasureReport.model_validate(body)
    assert all(e["item"]["reference"].startswith("Patient/anon-") for c in body["contained"]
               for e in c.get("entry", [])[:1])
    Measure.model_validate((await api.get(f"/audit/measure?{PATHWAY}", headers=auth("quality"))).json())
