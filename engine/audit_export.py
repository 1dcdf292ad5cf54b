"""CSV exports of an audit report: the element x patient matrix and the compliance summary."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from engine.audit import AuditReport
from engine.audit_cells import Breakdown
from engine.compliance import Ratio

MATRIX_TAIL = ("done", "counted", "percent")
# missing = nothing documented (EIAS missing data); not_done = documented not done (declined);
# done_late = done after the window. done + done_late + not_done + missing = counted.
SUMMARY_HEADER = ("level", "element", "phase", "done", "counted", "percent", "missing",
                  "done_late", "not_done", "missing_percent", "missing_over_limit")
DECLINES_HEADER = ("element", "ward", "reason", "patients")


def percent(ratio: Ratio) -> str:
    """Percent with one decimal, empty when nothing was counted (never a 0 that means n/a)."""
    return "" if ratio.value is None else f"{ratio.value * 100:.1f}"


def csv_text(rows: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def matrix_csv(report: AuditReport) -> str:
    """One row per patient, one column per element (a `engine.audit.Cell`: done, done-late,
    not-done, missing, excluded, n-a, n-a-declined), then the patient's done, counted, percent."""
    ids = [e.element_id for e in report.elements]
    rows: list[list[object]] = [["patient_id", *ids, *MATRIX_TAIL]]
    for p in report.patients:
        overall = p.compliance.overall
        rows.append([p.patient_id, *(p.cells.get(i, "n-a") for i in ids),
                     overall.done, overall.counted, percent(overall)])
    return csv_text(rows)


def _split(b: Breakdown, limit: float | None) -> list[object]:
    missing = Ratio(b.missing, b.counted)
    over = "" if limit is None or missing.value is None else ("yes" if missing.value > limit else "no")
    return [b.missing, b.done_late, b.not_done, percent(missing), over]


def summary_csv(report: AuditReport) -> str:
    """Per element, then per phase, then overall: done, counted, percent, then the split of
    what was not compliant and the EIAS missing-data share (per element against the limit)."""
    rows: list[list[object]] = [list(SUMMARY_HEADER)]
    limit = report.completeness.missing_limit
    for e in report.elements:
        rows.append(["element", e.element_id, e.phase, e.compliance.done, e.compliance.counted,
                     percent(e.compliance), *_split(e.breakdown, limit)])
    for phase, ratio in report.phases.items():
        rows.append(["phase", "", phase, ratio.done, ratio.counted, percent(ratio),
                     *_split(report.phase_breakdown.get(phase, Breakdown()), None)])
    overall = report.compliance.overall
    rows.append(["overall", "", "", overall.done, overall.counted, percent(overall),
                 *_split(report.breakdown, None)])
    return csv_text(rows)


def declines_csv(report: AuditReport) -> str:
    """Declines that made an element not applicable (never counted): patients by element, ward
    and reason, so a shrinking denominator is visible."""
    rows: list[list[object]] = [list(DECLINES_HEADER)]
    rows.extend([d.element_id, d.ward, d.reason, d.patients] for d in report.declined_not_applicable)
    return csv_text(rows)
