"""CSV exports of an audit report: the element x patient matrix and the compliance summary."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from engine.audit import AuditReport
from engine.compliance import Ratio

MATRIX_TAIL = ("done", "counted", "percent")
SUMMARY_HEADER = ("level", "element", "phase", "done", "counted", "percent", "missing")


def percent(ratio: Ratio) -> str:
    """Percent with one decimal, empty when nothing was counted (never a 0 that means n/a)."""
    return "" if ratio.value is None else f"{ratio.value * 100:.1f}"


def _write(rows: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def matrix_csv(report: AuditReport) -> str:
    """One row per patient, one column per element (done / not-done / excluded / n-a), then the
    patient's done, counted and percent."""
    ids = [e.element_id for e in report.elements]
    rows: list[list[object]] = [["patient_id", *ids, *MATRIX_TAIL]]
    for p in report.patients:
        overall = p.compliance.overall
        rows.append([p.patient_id, *(p.cells.get(i, "n-a") for i in ids),
                     overall.done, overall.counted, percent(overall)])
    return _write(rows)


def summary_csv(report: AuditReport) -> str:
    """Per element, then per phase, then overall: done, counted, percent, and missing data."""
    rows: list[list[object]] = [list(SUMMARY_HEADER)]
    for e in report.elements:
        rows.append(["element", e.element_id, e.phase, e.compliance.done, e.compliance.counted,
                     percent(e.compliance), e.missing.done])
    missing_by_phase: dict[str, int] = {}
    for e in report.elements:
        missing_by_phase[e.phase] = missing_by_phase.get(e.phase, 0) + e.missing.done
    for phase, ratio in report.phases.items():
        rows.append(["phase", "", phase, ratio.done, ratio.counted, percent(ratio),
                     missing_by_phase.get(phase, 0)])
    overall = report.compliance.overall
    rows.append(["overall", "", "", overall.done, overall.counted, percent(overall),
                 report.completeness.missing.done])
    return _write(rows)
