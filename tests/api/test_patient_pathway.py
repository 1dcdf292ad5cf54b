"""One patient's pathway at a glance: a hand-worked lumbar timeline through the API, the page and the audit.

The episode (reference/clinical.md, windows from pathways/lumbar_fusion.yaml): surgery 3 Nov 2025
09:00-13:00 UTC (London is on UTC in November), admitted 05:00, booked (enrolled) 10 weeks before;
seen at POD1 08:00 (`NOW`, 19 h after surgery end). Everything else is the gold cohort's compliant
episode (tests/audit/cohort.py), except:
- antibiotic prophylaxis at 08:30: inside its window (60 min before incision, 08:00-09:00) -> done;
- tranexamic acid at 11:00: its window is 30 min before to 1 h after surgery start (08:30-10:00),
  and 11:00 is before the intra-op phase ends (surgery end) -> done late, not compliant;
- education declined by the patient (Task cancelled, reason patient-refused) -> declined;
- a urinary catheter placed at surgery and not removed: removal due 18 h after surgery end
  (4 Nov 07:00), window closing at 24 h (4 Nov 13:00) -> overdue at 08:00.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlmodel import Session, col, select

from store.db import make_engine
from store.models import AccessLogEntry
from tests.api.conftest import api_app
from tests.audit.cohort import LONDON, D, Episode, H, compliant, lumbar
from tests.utils.audit import clear_audit, load_cases

START = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
NOW = datetime(2025, 11, 4, 8, 0, tzinfo=UTC)
WARD, OTHER = "4B", "5A"
PID, HOSTILE_PID = "TL1", "TL2"
# FHIR text the pages show: a ward (a Location's name) and an evidence reference, both with markup.
HOSTILE_WARD = '4B"><script>alert(1)</script>'
HOSTILE_SOURCE = "Observation/<img src=x onerror=alert(2)>"
Auth = Callable[..., dict[str, str]]


def hand_worked(patient_id: str, ward: str) -> Episode:
    ep = compliant(patient_id, START, ward=ward)
    ep.drop("tranexamic_acid_administered").add("tranexamic_acid_administered", START + 2 * H)
    ep.drop("preop_education_delivered").decline("patient_education", "patient-refused", START - 7 * D)
    return ep.add("urinary_catheter_inserted", START)


def hostile(patient_id: str) -> Episode:
    ep = hand_worked(patient_id, HOSTILE_WARD)
    ep.facts = [replace(f, source=HOSTILE_SOURCE) if f.concept == "antibiotic_prophylaxis_administered" else f
                for f in ep.facts]
    return ep


def iso(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(UTC).isoformat()


@pytest.fixture(scope="module")
def seeded(db_url: str) -> Iterator[str]:
    engine = make_engine(db_url)
    ids = [f"{PID}-enr", f"{HOSTILE_PID}-enr"]
    clear_audit(engine, "lumbar_fusion", ids)
    load_cases(engine, lumbar(), [hand_worked(PID, WARD).case(now=NOW), hostile(HOSTILE_PID).case(now=NOW)],
               tz=LONDON)
    yield db_url
    clear_audit(engine, "lumbar_fusion", ids)
    engine.dispose()


@pytest.fixture
async def app(seeded: str) -> AsyncIterator[FastAPI]:
    application = api_app(seeded, timezone="Europe/London", audit={"pseudonym_key": SecretStr("tl-key")})
    async with application.router.lifespan_context(application):
        application.state.clock = lambda: NOW
        yield application
        with Session(application.state.engine) as session:
            mine = select(AccessLogEntry).where(col(AccessLogEntry.resource).contains("TL"))
            for entry in session.exec(mine):
                session.delete(entry)
            session.commit()


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://eras.test") as http:
        yield http


@pytest.fixture
def auth(app: FastAPI) -> Auth:
    def make(role: str, *wards: str, subject: str = "user.a") -> dict[str, str]:
        return {"Authorization": f"Bearer {app.state.worklist.dev_issuer.issue(subject, (role,), wards)}"}
    return make


def _elements(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (pathway,) = body["pathways"]
    return {e["element"]: e for phase in pathway["phases"] for e in phase["elements"]}


async def test_pathway_statuses_and_windows_are_the_hand_worked_ones(api: httpx.AsyncClient,
                                                                     auth: Auth) -> None:
    response = await api.get(f"/patients/{PID}/pathway", headers=auth("nurse", WARD))
    assert response.status_code == 200, response.text
    (pathway,) = response.json()["pathways"]
    assert [p["phase"] for p in pathway["phases"]] == ["pre-admission", "pre-op", "intra-op", "post-op",
                                                       "post-discharge"]
    assert {a["anchor"]: iso(a["at"]) for a in pathway["anchors"]} == {
        "enrolment": "2025-08-25T09:00:00+00:00", "admission": "2025-11-03T05:00:00+00:00",
        "surgery_start": "2025-11-03T09:00:00+00:00", "surgery_end": "2025-11-03T13:00:00+00:00"}
    elements = _elements(response.json())
    got = {e: (elements[e]["status"], [(iso(w["opens"]), w["due"] and iso(w["due"]), iso(w["closes"]),
                                        w["done_at"] and iso(w["done_at"])) for w in elements[e]["windows"]])
           for e in ("antibiotic_prophylaxis", "tranexamic_acid", "urinary_catheter_removal")}
    assert got == {
        "antibiotic_prophylaxis": ("done", [("2025-11-03T08:00:00+00:00", "2025-11-03T09:00:00+00:00",
                                             "2025-11-03T09:00:00+00:00", "2025-11-03T08:30:00+00:00")]),
        "tranexamic_acid": ("done-late", [("2025-11-03T08:30:00+00:00", "2025-11-03T10:00:00+00:00",
                                           "2025-11-03T10:00:00+00:00", "2025-11-03T11:00:00+00:00")]),
        "urinary_catheter_removal": ("overdue", [("2025-11-03T01:00:00+00:00", "2025-11-04T07:00:00+00:00",
                                                  "2025-11-04T13:00:00+00:00", None)]),
    }
    assert elements["patient_education"]["status"] == "declined"
    assert elements["tranexamic_acid"]["label"] == "done late"
    assert elements["supervised_exercise_fusion"]["status"] == "upcoming"  # 8 weeks after surgery
    assert "evidence" not in elements["antibiotic_prophylaxis"]["windows"][0]  # only on demand


async def test_pathway_evidence_and_decline_reason_on_demand(api: httpx.AsyncClient, auth: Auth) -> None:
    elements = _elements((await api.get(f"/patients/{PID}/pathway?evidence=true",
                                        headers=auth("nurse", WARD))).json())
    (given,) = elements["antibiotic_prophylaxis"]["windows"]
    assert [(p["resource"], iso(p["at"])) for p in given["evidence"]] == [
        (f"{PID}/antibiotic_prophylaxis_administered/0", "2025-11-03T08:30:00+00:00")]
    (declined,) = elements["patient_education"]["windows"]
    assert (declined["decline_reason"], declined["decline_display"]) == ("patient-refused", "Patient refused")
    assert [p["resource"] for p in declined["evidence"]] == [f"Task/{PID}-patient_education-0"]


async def test_pathway_read_is_in_the_access_log(app: FastAPI, api: httpx.AsyncClient, auth: Auth) -> None:
    own = await api.get(f"/patients/{PID}/pathway", headers=auth("nurse", WARD, subject="n.own"))
    assert own.status_code == 200
    assert (await api.get(f"/ui/patients/{PID}/timeline",
                          headers=auth("nurse", OTHER, subject="n.other"))).status_code == 403
    with Session(app.state.engine) as session:
        entries = session.exec(select(AccessLogEntry).where(
            col(AccessLogEntry.actor).in_(["n.own", "n.other"]))).all()
    assert {(e.actor, e.resource, e.outcome) for e in entries} == {
        ("n.own", f"Patient/{PID}/pathway", "ok"), ("n.other", f"ward/{WARD}", "denied")}


async def test_pathway_identified_view_is_the_wards_and_admins(api: httpx.AsyncClient, auth: Auth) -> None:
    # every role x ward cell is in tests/api/worklist/test_permissions.py; here both routes
    for path in (f"/patients/{PID}/pathway", f"/ui/patients/{PID}/timeline"):
        assert (await api.get(path, headers=auth("nurse", OTHER))).status_code == 403, path
        assert (await api.get(path, headers=auth("quality", WARD))).status_code == 403, path
        assert (await api.get(path, headers=auth("admin"))).status_code == 200, path


async def test_pathway_unknown_or_malformed_patient(api: httpx.AsyncClient, auth: Auth) -> None:
    assert (await api.get("/patients/nobody-here/pathway", headers=auth("admin"))).status_code == 404
    assert (await api.get("/patients/a%3Cb/pathway", headers=auth("admin"))).status_code == 422
    assert (await api.get(f"/patients/{PID}/pathway")).status_code == 401


async def test_page_fragment_draws_each_element_with_its_status(api: httpx.AsyncClient, auth: Auth) -> None:
    page = (await api.get(f"/ui/patients/{PID}")).text  # the shell: no data, no token needed
    assert f'data-patient="{PID}"' in page and "surgery" not in page
    html = (await api.get(f"/ui/patients/{PID}/timeline", headers=auth("nurse", WARD))).text
    for element, status in (("antibiotic_prophylaxis", "done"), ("tranexamic_acid", "done-late"),
                            ("patient_education", "declined"), ("urinary_catheter_removal", "overdue")):
        assert f'data-element="{element}" data-status="{status}"' in html
    assert "Patient refused" in html and f"Task/{PID}-patient_education-0" in html
    assert 'class="legend"' in html and "missed (missing data)" in html


async def test_audit_drill_down_shows_the_timeline_pseudonymised(api: httpx.AsyncClient, auth: Auth) -> None:
    cohort = f"/audit/compliance?pathway=lumbar_fusion&ward={WARD}"
    body = (await api.get(cohort, headers=auth("quality"))).json()
    (key,) = [p["episode"] for p in body["patients"]]
    html = (await api.get(f"/ui/audit/patient/{key}", headers=auth("quality"))).text
    assert '<svg class="timeline"' in html
    assert 'data-element="tranexamic_acid" data-status="done-late"' in html
    assert key in html and PID not in html  # no patient, enrolment, task or FHIR id
    assert '<span class="evidence">Task (' in html  # proof: its resource type and time only


async def test_page_escapes_fhir_text(api: httpx.AsyncClient, auth: Auth) -> None:
    html = (await api.get(f"/ui/patients/{HOSTILE_PID}/timeline", headers=auth("admin"))).text
    assert 'data-element="antibiotic_prophylaxis" data-status="done"' in html
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(2)&gt;" in html
