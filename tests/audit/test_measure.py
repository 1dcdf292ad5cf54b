"""The FHIR Measure generated from a pathway and the audit's MeasureReports validate as R4B."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from fhir.resources.R4B.measure import Measure
from fhir.resources.R4B.measurereport import MeasureReport

from engine.audit import AuditReport, audit_report, elements_in_order
from fhir_adapters.measure import HIGH, OVERALL, ReportType, measure_report, pathway_measure
from tests.audit.cohort import LONDON, gold_cohort, lumbar


@pytest.fixture(scope="module")
def report() -> AuditReport:
    return audit_report(lumbar(), gold_cohort(), tz=LONDON)


def _report(report: AuditReport, kind: ReportType) -> dict[str, Any]:
    return measure_report(lumbar(), report, period_start=date(2025, 11, 1), period_end=date(2026, 4, 30),
                          generated=datetime(2026, 5, 1, tzinfo=UTC), kind=kind)


def _counts(group: dict[str, Any]) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in group["population"]}


def test_pathway_measure_is_valid_r4b_with_a_group_per_element() -> None:
    measure = pathway_measure(lumbar())
    Measure.model_validate(measure)
    ids = [g["id"] for g in measure["group"]]
    assert ids[:-2] == [el.id.replace("_", "-") for el in elements_in_order(lumbar())]
    assert ids[-2:] == [OVERALL, HIGH]
    assert measure["scoring"]["coding"][0]["code"] == "proportion"


def test_summary_measure_report_matches_the_audit(report: AuditReport) -> None:
    data = _report(report, "summary")
    MeasureReport.model_validate(data)
    assert data["type"] == "summary" and data["measure"].endswith("/Measure/lumbar-fusion|1")
    groups = {g["id"]: g for g in data["group"]}
    assert _counts(groups["urinary-catheter-removal"]) == {
        "initial-population": 35, "denominator": 3, "numerator": 1}
    assert groups["urinary-catheter-removal"]["measureScore"]["value"] == pytest.approx(1 / 3)
    assert "measureScore" not in groups["drain-removal"]  # nobody had a drain: no score, not 0
    assert _counts(groups[OVERALL])["numerator"] == report.compliance.overall.done
    assert _counts(groups[HIGH]) == {"initial-population": 35, "denominator": 35, "numerator": 33}


def test_subject_list_measure_report_lists_patients_per_population(report: AuditReport) -> None:
    data = _report(report, "subject-list")
    MeasureReport.model_validate(data)
    assert data["type"] == "subject-list"
    lists = {c["id"]: c for c in data["contained"]}
    group = next(g for g in data["group"] if g["id"] == "urinary-catheter-removal")
    numerator = next(p for p in group["population"] if p["code"]["coding"][0]["code"] == "numerator")
    members = lists[numerator["subjectResults"]["reference"].removeprefix("#")]
    assert (members["resourceType"], members["status"]) == ("List", "current")
    assert [e["item"]["reference"] for e in members["entry"]] == ["Patient/P10"]
