"""Quality-facing audit responses carry only pseudonymous keys: no patient, enrolment, task or FHIR id.

The gold cohort's real ids are P01..P35 (patients), P01-enr.. (enrolments) and evidence such as
Task/P02-patient_education-0: none of them may appear in anything a quality user is sent.
"""

from __future__ import annotations

import re

import httpx

from tests.audit.test_gold_cohort_api import PATHWAY, Token, api, audit_app, auth, gold_loaded  # noqa: F401

REAL_ID = re.compile(r"P\d\d")
ROUTES = ("/audit/compliance", "/audit/completeness", "/audit/outcomes", "/audit/export/matrix.csv",
          "/audit/export/summary.csv", "/audit/export/declines.csv", "/audit/export/measure-report",
          "/audit/export/measure-report?kind=subject-list", "/ui/audit/dashboard")


async def _all_quality_responses(api: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:  # noqa: F811
    texts = {}
    for route in ROUTES:
        sep = "&" if "?" in route else "?"
        response = await api.get(f"{route}{sep}{PATHWAY}", headers=headers)
        assert response.status_code == 200, (route, response.text)
        texts[route] = response.text
    episodes = (await api.get(f"/audit/compliance?{PATHWAY}", headers=headers)).json()["patients"]
    for episode in episodes[:5]:
        for route in (f"/audit/patients/{episode['episode']}", f"/ui/audit/patient/{episode['episode']}"):
            response = await api.get(route, headers=headers)
            assert response.status_code == 200, (route, response.text)
            texts[route] = response.text
    return texts


async def test_audit_quality_responses_hold_no_real_id(api: httpx.AsyncClient, auth: Token) -> None:  # noqa: F811
    texts = await _all_quality_responses(api, auth("quality"))
    leaks = {route: REAL_ID.findall(text)[:3] for route, text in texts.items() if REAL_ID.search(text)}
    assert leaks == {}


async def test_audit_reidentify_role_sees_real_ids(api: httpx.AsyncClient, auth: Token) -> None:  # noqa: F811
    body = (await api.get(f"/audit/compliance?{PATHWAY}", headers=auth("reidentify", "quality"))).json()
    assert {p["episode"] for p in body["patients"]} >= {"P01-enr", "P02-enr"}
    timeline = (await api.get("/audit/patients/P02-enr", headers=auth("reidentify", "quality"))).json()
    assert timeline["patient"] == "P02"


async def test_audit_unknown_episode_is_404(api: httpx.AsyncClient, auth: Token) -> None:  # noqa: F811
    assert (await api.get("/audit/patients/ep-0000000000000000", headers=auth("quality"))).status_code == 404
    # a real enrolment id is not a key a quality user may use
    assert (await api.get("/audit/patients/P02-enr", headers=auth("quality"))).status_code == 404


async def test_audit_dates_at_the_end_of_time_are_422_not_500(api: httpx.AsyncClient,  # noqa: F811
                                                               auth: Token) -> None:  # noqa: F811
    # `to` is inclusive: its end is the next day, 10000-01-01, which no date can hold.
    response = await api.get(f"/audit/compliance?{PATHWAY}&to=9999-12-31", headers=auth("quality"))
    assert response.status_code == 422
    # `from` alone is representable: an empty cohort, not an error.
    response = await api.get(f"/audit/compliance?{PATHWAY}&from=9999-12-31", headers=auth("quality"))
    assert response.status_code == 200 and response.json()["patients"] == []
