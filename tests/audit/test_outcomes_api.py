"""Outcomes at any time: `GET /audit/outcomes` (quality role, pseudonymised) and
`eras audit outcomes`, over the gold cohort's stored outcomes, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from engine.outcomes import load_outcome_definitions
from eras_cli.main import app
from store.db import make_engine
from tests.audit.cohort import LONDON, gold_cohort, lumbar
from tests.audit.test_gold_cohort_api import Token, api, audit_app, auth, gold_loaded  # noqa: F401
from tests.utils.audit import clear_audit, load_cases

# P01 (compliant): surgery Mon 3 Nov 2025 09:00-13:00 UTC (GMT), admitted 05:00, discharged
# POD4 11:00 = Fri 7 Nov 11:00: stay 4 d 6 h = 4.25 days; out of bed at 18:00 = 5 h after the end.
P01 = {"length_of_stay_days": 4.25, "hours_to_mobilisation": 5.0}
NOV_3 = "pathway=lumbar_fusion&from=2025-11-03&to=2025-11-03"


async def test_audit_outcomes_api_quality_sees_pseudonymised_outcomes(api: httpx.AsyncClient,  # noqa: F811
                                                                    auth: Token,  # noqa: F811
                                                                    audit_app: FastAPI) -> None:  # noqa: F811
    response = await api.get(f"/audit/outcomes?{NOV_3}", headers=auth("quality"))
    assert response.status_code == 200
    episodes = {e["episode"]: e for e in response.json()["episodes"]}
    p01 = episodes[audit_app.state.audit.episodes("P01-enr")]
    assert {k: p01["outcomes"][k] for k in P01} == P01
    assert p01["outcomes"]["ponv_24h"] is False and p01["outcomes"]["opioid_unconverted"] == 0
    assert p01["patient"].startswith("anon-") and "P01" not in response.text


async def test_audit_outcomes_api_nurse_denied(api: httpx.AsyncClient, auth: Token) -> None:  # noqa: F811
    assert (await api.get(f"/audit/outcomes?{NOV_3}", headers=auth("nurse"))).status_code == 403


@pytest.fixture
def gold_store_with_outcomes(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    engine = make_engine(sqlite_url)
    ids = [c.evaluation.enrolment_id for c in gold_cohort()]
    clear_audit(engine, "lumbar_fusion", ids)
    load_cases(engine, lumbar(), gold_cohort(), outcomes=load_outcome_definitions(), tz=LONDON)
    monkeypatch.setenv("ERAS_DATABASE_URL", sqlite_url)
    yield sqlite_url
    clear_audit(engine, "lumbar_fusion", ids)
    engine.dispose()


def test_audit_outcomes_cli_csv(gold_store_with_outcomes: str) -> None:
    result = CliRunner().invoke(app, ["audit", "outcomes", "--from", "2025-11-03", "--to", "2025-11-03",
                                      "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = {r["enrolment"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert (rows["P01-enr"]["length_of_stay_days"], rows["P01-enr"]["hours_to_mobilisation"]) == ("4.25", "5")
    assert "Patient/" not in result.stdout


def test_audit_outcomes_cli_table(gold_store_with_outcomes: str) -> None:
    result = CliRunner().invoke(app, ["audit", "outcomes", "--from", "2025-11-01", "--to", "2025-12-31"])
    assert result.exit_code == 0, result.output
    assert "outcomes of 34 episodes" in result.stdout   # 35 patients, P30 operated in April 2026
