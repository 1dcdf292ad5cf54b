"""`eras terminology check` against the sandbox EHR seeded with codes the default terminology lacks."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from eras_cli.main import app
from fhir_adapters.sandbox import FhirSandbox

LOCAL_LAB = "http://royalhosp.example/lab-codes"
OPCS4 = "http://www.datadictionary.nhs.uk/opcs-4"
LOCAL_PROBLEMS = "http://royalhosp.example/problem-codes"


def obs(pid: str, *codings: tuple[str, str, str]) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": s, "code": c, "display": d} for s, c, d in codings]},
            "effectiveDateTime": "2026-03-10T08:00:00+00:00"}


def proc(pid: str, system: str, code: str, display: str) -> dict[str, Any]:
    return {"resourceType": "Procedure", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": system, "code": code, "display": display}]},
            "performedDateTime": "2026-03-11T09:00:00+00:00"}


@pytest.fixture
def seeded(fhir_sandbox: FhirSandbox, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    pid = f"pt-{uuid.uuid4().hex[:12]}"
    base = fhir_sandbox.base_url
    httpx.put(f"{base}/Patient/{pid}", json={"resourceType": "Patient", "id": pid}).raise_for_status()
    hb = ("http://loinc.org", "718-7", "Hemoglobin [Mass/volume] in Blood")
    for resource in [
        obs(pid, hb, (LOCAL_LAB, "HGB1", "Haemoglobin (local)")),  # a local synonym of haemoglobin
        obs(pid, hb, (LOCAL_LAB, "HGB1", "Haemoglobin (local)")),
        obs(pid, hb),  # bound: not reported
        obs(pid, (LOCAL_LAB, "VITD", "Vitamin D (25-OH)")),  # nothing in it bound
        proc(pid, OPCS4, "V25.2", "Primary decompression of lumbar spine"),  # the site's own code
        proc(pid, "http://snomed.info/sct", "55705006", "Spinal fusion"),  # bound: not reported
        # a diabetes subtype, bound through the shipped subsumption table, beside a local code
        {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"}, "code": {"coding": [
            {"system": "http://snomed.info/sct", "code": "81531005", "display": "DM type 2 in obese"},
            {"system": LOCAL_PROBLEMS, "code": "DM2OB", "display": "Diabetes type 2, obese"}]}},
    ]:
        httpx.post(f"{base}/{resource['resourceType']}", json=resource).raise_for_status()
    monkeypatch.setenv("ERAS_FHIR_BASE_URL", base)
    monkeypatch.setenv("ERAS_DATABASE_URL", sqlite_url)
    return pid


def test_terminology_check_json_lists_unbound_codes_per_type_and_concept(seeded: str) -> None:
    result = CliRunner().invoke(app, ["terminology", "check", "--patient", seeded, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["resources_read"] == 7  # the 4 Observations, 2 Procedures and the Condition seeded
    rows = {(r["resource_type"], r["concept"], r["system"], r["code"]): (r["count"], r["display"])
            for r in report["unbound"]}
    assert rows == {
        ("Observation", "haemoglobin", LOCAL_LAB, "HGB1"): (2, "Haemoglobin (local)"),
        ("Observation", "unbound", LOCAL_LAB, "VITD"): (1, "Vitamin D (25-OH)"),
        ("Procedure", "unbound", OPCS4, "V25.2"): (1, "Primary decompression of lumbar spine"),
        ("Condition", "diabetes", LOCAL_PROBLEMS, "DM2OB"): (1, "Diabetes type 2, obese"),
    }


def test_terminology_check_text_names_each_code(seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one table row per line
    result = CliRunner().invoke(app, ["terminology", "check", "--patient", seeded])
    assert result.exit_code == 0, result.output
    assert "7 resources read; 4 codes no concept binds" in result.stdout
    line = next(x for x in result.stdout.splitlines() if f"{OPCS4}|V25.2" in x)
    assert "unbound" in line and "Primary decompression of lumbar spine" in line


def test_apply_says_which_procedure_code_is_not_bound(fhir_sandbox: FhirSandbox, sqlite_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pid = f"pt-{uuid.uuid4().hex[:12]}"
    base = fhir_sandbox.base_url
    httpx.put(f"{base}/Patient/{pid}", json={"resourceType": "Patient", "id": pid}).raise_for_status()
    # The site codes its decompressions in OPCS-4, which the default terminology does not bind.
    decompression = proc(pid, OPCS4, "V25.2", "Primary decompression")
    httpx.post(f"{base}/Procedure", json=decompression).raise_for_status()
    monkeypatch.setenv("ERAS_FHIR_BASE_URL", base)
    monkeypatch.setenv("ERAS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ERAS_WRITE_TARGET", "none")
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(app, ["apply", pid])
    assert result.exit_code == 0, result.output
    assert (f"Patient/{pid}: not on any pathway (procedure code {OPCS4}|V25.2 is not bound to an "
            "enrolling concept)") in result.stdout
