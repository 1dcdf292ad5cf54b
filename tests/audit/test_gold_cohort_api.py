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

from engine.outcomes import load_outcome_definitions
from store.db import make_engine
from store.models import AccessLogEntry
from tests.api.conftest import api_app
from tests.audit.cohort import LONDON, gold_cohort, lumbar
from tests.audit.test_eras_items import COHORT_ITEMS, PATIENT_ITEMS
from tests.audit.test_gold_cohort import (
    BREAKDOWN,
    COUNTED_CELLS,
    DECLINED_NOT_APPLICABLE,
    ELEMENT_BREAKDOWN,
    ELEMENT_COMPLIANCE,
    HIGH,
    INTRA_OP,
    INTRA_OP_BREAKDOWN,
    MISSING,
    MOST_UNDOCUMENTED,
    OVERALL,
    P29_BREAKDOWN,
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
    app = api_app(gold_loaded, timezone="Europe/London", audit={"pseudonym_key": SecretStr("gold-key")})
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
    # P28's PC6 bands declined as contraindicated; P03's gabapentinoid decline is plain n/a:
    # the gabapentinoid is a site setting, off by default (test_gold_cohort.py)
    assert rows["P28"]["pc6_bands_applied"] == "n-a-declined"
    assert rows["P03"]["preemptive_gabapentinoid"] == "n-a"
    assert rows["P30"]["walk_three_times_daily"] == "excluded"
    for element, (done, counted) in ELEMENT_COMPLIANCE.items():
        cells = [r[element] for r in rows.values()]
        assert (cells.count("done"), sum(cells.count(c) for c in COUNTED_CELLS)) == (done, counted)


async def test_gold_api_summary_csv_agrees(api: httpx.AsyncClient, auth: Token) -> None:
    text = (await api.get(f"/audit/export/summary.csv?{PATHWAY}", headers=auth("quality"))).text
    overall = next(r for r in csv.DictReader(io.StringIO(text)) if r["level"] == "overall")
    assert (int(overall["done"]), int(overall["counted"]), int(overall["missing"])) == (
        1366, 1429, MISSING.done)


async def test_audit_api_nurse_denied_and_recorded(api: httpx.AsyncClient, auth: Token,
                                                   audit_app: FastAPI) -> None:
    response = await api.get(f"/audit/compliance?{PATHWAY}", headers=auth("nurse"))
    assert response.status_code == 403
    with Session(audit_app.state.engine) as session:
        query = select(AccessLogEntry).where(col(AccessLogEntry.resource) == "/audit/compliance")
        entries = list(session.exec(query))
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


def _split(body: dict[str, int]) -> tuple[int, int, int, int]:
    return body["done"], body["done_late"], body["not_done"], body["missing"]


async def test_gold_api_done_late_not_done_missing_apart(api: httpx.AsyncClient, auth: Token) -> None:
    # The stored audit (both databases) gives the engine's hand-worked split.
    body = (await api.get(f"/audit/compliance?{PATHWAY}", headers=auth("admin"))).json()
    b = BREAKDOWN
    assert _split(body["breakdown"]) == (b.done, b.done_late, b.not_done, b.missing)
    elements = {e["element"]: e for e in body["elements"]}
    for element, want in ELEMENT_BREAKDOWN.items():
        assert _split(elements[element]["breakdown"]) == (
            want.done, want.done_late, want.not_done, want.missing), element
    i = INTRA_OP_BREAKDOWN
    assert _split(body["phase_breakdown"]["intra-op"]) == (i.done, i.done_late, i.not_done, i.missing)
    patients = {p["patient"]: p for p in body["patients"]}
    p29 = P29_BREAKDOWN
    assert _split(patients["P29"]["breakdown"]) == (p29.done, p29.done_late, p29.not_done, p29.missing)


async def test_gold_api_eras_items(api: httpx.AsyncClient, auth: Token) -> None:
    body = (await api.get(f"/audit/compliance?{PATHWAY}", headers=auth("admin"))).json()
    assert _pair(body["eras"]) == (COHORT_ITEMS.done, COHORT_ITEMS.counted)
    assert _pair(body["high"]) == (HIGH.done, HIGH.counted)  # by ERAS items: all but P33, P35
    patients = {p["patient"]: p for p in body["patients"]}
    for patient, pair in PATIENT_ITEMS.items():
        assert _pair(patients[patient]["eras"]) == pair, patient
    elements = {e["element"]: e for e in body["elements"]}
    assert elements["pain_score_every_4h"]["eras_item"] is None  # a process measure
    assert elements["out_of_bed_day_of_surgery"]["eras_item"] == 19
    assert _pair(body["items"]["22"]) == (1, 3)


async def test_gold_api_declined_not_applicable_and_missing_limit(api: httpx.AsyncClient,
                                                                  auth: Token) -> None:
    body = (await api.get(f"/audit/compliance?{PATHWAY}", headers=auth("admin"))).json()
    assert [(d["element"], d["ward"], d["reason"], d["patients"]) for d in body["declined_not_applicable"]] \
        == [(d.element_id, d.ward, d.reason, d.patients) for d in DECLINED_NOT_APPLICABLE]
    done = (await api.get(f"/audit/completeness?{PATHWAY}", headers=auth("quality"))).json()
    assert done["missing_limit"] == 0.1
    assert set(done["over_limit"]) == {"glycaemic_optimisation", "ponv_prophylaxis_high_risk",
                                       "ponv_rescue_vomiting", "nsaid_within_limits",
                                       "nicotine_free_reminder"}
    text = (await api.get(f"/audit/export/declines.csv?{PATHWAY}", headers=auth("admin"))).text
    rows = [(r["element"], r["ward"], r["reason"], int(r["patients"]))
            for r in csv.DictReader(io.StringIO(text))]
    assert rows == [(d.element_id, d.ward, d.reason, d.patients) for d in DECLINED_NOT_APPLICABLE]


async def test_gold_dashboard_shows_items_split_and_declines(api: httpx.AsyncClient, auth: Token) -> None:
    page = (await api.get(f"/ui/audit/dashboard?{PATHWAY}", headers=auth("quality"))).text
    e = COHORT_ITEMS
    assert f"<strong>ERAS items</strong> {e.done}/{e.counted} ({e.done / e.counted:.0%})" in page
    b = BREAKDOWN
    assert (f"done late {b.done_late} &middot; not done (documented) {b.not_done} "
            f"&middot; missing data {b.missing}") in page
    assert '<table id="declines">' in page and "<td>contraindicated</td>" in page
    assert "(over the limit)" in page  # glycaemic_optimisation and the other small denominators


def _month_of(patient: str) -> str:
    """Surgery months of the gold cohort: P01-P18 November, P30 April (still in hospital), the
    rest December."""
    number = int(patient[1:])
    return "2025-11" if number <= 18 else "2026-04" if number == 30 else "2025-12"


async def _chart_rows(api: httpx.AsyncClient, auth: Token, chart: str, query: str = PATHWAY,
                      role: str = "quality") -> list[dict[str, str]]:
    response = await api.get(f"/audit/charts/{chart}.csv?{query}", headers=auth(role))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_gold_p_chart_csv_sums_each_months_items(api: httpx.AsyncClient, auth: Token) -> None:
    expected: dict[str, list[int]] = {}
    for n in range(1, 36):
        done, counted = PATIENT_ITEMS.get(f"P{n:02d}", (18, 18))
        month = expected.setdefault(_month_of(f"P{n:02d}"), [0, 0])
        month[0] += done
        month[1] += counted
    rows = await _chart_rows(api, auth, "p-chart")
    assert {r["month"]: [int(r["compliant"]), int(r["eligible"])] for r in rows} == expected
    centre = 100 * COHORT_ITEMS.done / COHORT_ITEMS.counted
    assert {r["centre_percent"] for r in rows} == {f"{centre:.1f}"}
    assert all(float(r["lower_limit_percent"]) < float(r["percent"]) <= float(r["upper_limit_percent"])
               for r in rows if r["outside_limits"] == "no")


async def test_gold_heat_map_csv_all_months_is_the_element_compliance(api: httpx.AsyncClient,
                                                                     auth: Token) -> None:
    rows = await _chart_rows(api, auth, "heat-map")
    overall = {r["element"]: (int(r["compliant"]), int(r["eligible"])) for r in rows if r["month"] == "all"}
    assert {k: overall[k] for k in ELEMENT_COMPLIANCE} == ELEMENT_COMPLIANCE
    by_month: dict[str, list[int]] = {}
    for r in rows:
        if r["month"] != "all":
            total = by_month.setdefault(r["element"], [0, 0])
            total[0] += int(r["compliant"])
            total[1] += int(r["eligible"])
    assert {k: tuple(v) for k, v in by_month.items()} == {k: v for k, v in overall.items() if v[1]}


async def test_gold_stay_csv_is_pseudonymous_and_filtered(api: httpx.AsyncClient, auth: Token) -> None:
    rows = await _chart_rows(api, auth, "length-of-stay")
    assert len(rows) == 34  # every patient but P30, still in hospital
    assert all(r["patient"].startswith("anon-") for r in rows)
    assert {r["length_of_stay_days"] for r in rows} == {"4.25"}
    lowest = sorted((int(r["compliant"]), int(r["eligible"])) for r in rows)[:2]
    assert lowest == [(8, 18), (12, 18)]  # P33, P35
    some = await _chart_rows(api, auth, "length-of-stay", f"{PATHWAY}&variant=decompression")
    assert len(some) == 2  # P13 and P14
    months = await _chart_rows(api, auth, "p-chart", f"{PATHWAY}&from=2025-12-01&to=2025-12-31")
    assert [r["month"] for r in months] == ["2025-12"]


async def test_gold_chart_csv_refused_to_clinical_roles(api: httpx.AsyncClient, auth: Token) -> None:
    response = await api.get(f"/audit/charts/p-chart.csv?{PATHWAY}", headers=auth("nurse"))
    assert response.status_code == 403
    page = (await api.get(f"/ui/audit/dashboard?{PATHWAY}&ward=", headers=auth("quality"))).text
    assert f'href="/audit/charts/heat-map.csv?{PATHWAY}&amp;ward="' in page  # the page's own filters
