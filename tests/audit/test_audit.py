"""The audit report's rules: cells, filters, derived attributes, coverage, ranking and groups."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.audit import AuditCase, audit_report, case_attributes
from engine.audit_cells import element_cell, is_missing
from engine.compliance import Ratio
from engine.results import ElementResult, Evaluation, Status
from tests.audit.cohort import LONDON, gold_cohort, lumbar, p01_compliant, p33_no_preparation


@pytest.mark.parametrize(("status", "counts", "cell", "missing"), [
    # counted: done, done late, documented not done, missing data (nothing documented) apart
    (Status.DONE, "done", "done", False),
    (Status.DONE_LATE, "not-done", "done-late", False),  # done after the window: not missing
    (Status.MISSED, "not-done", "missing", True),
    (Status.OVERDUE, "not-done", "missing", True),
    (Status.DECLINED, "not-done", "not-done", False),   # a documented refusal is not missing data
    (Status.DECLINED, None, "n-a-declined", False),     # contraindicated: listed apart
    (Status.NOT_APPLICABLE, None, "n-a", False),
    (Status.UPCOMING, None, "excluded", False),
    (Status.DUE, None, "excluded", False),
])
def test_element_cell_and_missing_by_status(status, counts, cell, missing) -> None:
    result = ElementResult("e", "post-op", "analgesia", status, counts=counts)
    assert (element_cell(result), is_missing(result)) == (cell, missing)


def _case(month_start: datetime, **attributes: str) -> AuditCase:
    evaluation = Evaluation("lumbar_fusion", 1, "p", "e", month_start, {"surgery_start": month_start},
                            {"procedure_type": "fusion", "apfel": 2}, (), (), None)
    return AuditCase(p01_compliant().build(), evaluation, attributes)


def test_case_attributes_derive_surgery_month_in_local_time_and_variant() -> None:
    # 31 August 23:30 UTC is 1 September 00:30 in London.
    case = _case(datetime(2025, 8, 31, 23, 30, tzinfo=UTC), surgeon="A")
    assert case_attributes(case, tz=LONDON) == {"procedure_type": "fusion", "surgery_month": "2025-09",
                                                "surgeon": "A"}
    assert case_attributes(case)["surgery_month"] == "2025-08"
    given = _case(datetime(2025, 8, 1, tzinfo=UTC), procedure_type="x")
    assert case_attributes(given)["procedure_type"] == "x"


def test_audit_report_filters_on_several_values_and_attributes() -> None:
    cohort = gold_cohort()
    both = audit_report(lumbar(), cohort, filters={"surgeon": ["A", "B"], "ward": "W1"}, tz=LONDON)
    assert [p.patient_id for p in both.patients] == ["P01", "P02", "P07", "P08", "P13", "P14", "P19",
                                                     "P20", "P25", "P26", "P32", "P35"]
    month = audit_report(lumbar(), cohort, filters={"surgery_month": "2026-04"}, tz=LONDON)
    assert [p.patient_id for p in month.patients] == ["P30"]


def test_audit_report_empty_cohort_has_no_ratios() -> None:
    report = audit_report(lumbar(), [], procedures=0)
    assert report.compliance.overall == Ratio() and report.completeness.coverage == Ratio(0, 0)
    assert report.trend == () and report.completeness.most_undocumented == ()
    assert report.outcomes is None


def test_audit_report_rejects_another_pathway() -> None:
    case = p01_compliant().case()
    other = AuditCase(case.facts, Evaluation("colorectal", 1, "p", "e", case.evaluation.now, {}, {}, (),
                                             (), None))
    with pytest.raises(ValueError, match="colorectal"):
        audit_report(lumbar(), [case, other])


def test_audit_report_top_missing_is_limited() -> None:
    report = audit_report(lumbar(), [p33_no_preparation().case()], top_missing=3)
    assert [r for _, r in report.completeness.most_undocumented] == [Ratio(1, 1)] * 3
    assert report.completeness.most_undocumented[0][0] == "patient_education"  # phase, then pathway order
