"""What the audit charts plot, computed once for the page and its CSVs: the p-chart of monthly
ERAS-item compliance, the element × month grid, and compliance against length of stay."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import tzinfo

from sqlmodel import Session

from engine.audit import ElementSummary, month_bounds
from engine.audit_export import csv_text, percent
from engine.compliance import Ratio
from engine.p_chart import PChart, p_chart
from store.audit_queries import CohortFilter, element_counts
from store.audit_summary import StoredAudit


@dataclass(frozen=True)
class Stay:
    """One discharged patient: compliance (ERAS items, else all elements) and length of stay."""

    patient: str
    compliance: Ratio
    days: float


@dataclass(frozen=True)
class ChartData:
    measure: str  # what the p-chart and the scatter count: "ERAS items" or "all elements"
    p_chart: PChart
    months: tuple[str, ...]
    elements: tuple[ElementSummary, ...]
    grid: Mapping[tuple[str, str], Ratio]  # (element id, month) -> compliance; absent: no data
    stays: tuple[Stay, ...]


def chart_data(audit: StoredAudit, *, session: Session, cohort: CohortFilter, tz: tzinfo,
               label: Callable[[str], str]) -> ChartData:
    """The series behind every chart for this cohort (`label`: the patient id shown)."""
    items = audit.eras is not None
    by_month: dict[str, Ratio] = {}
    stays = []
    for p in audit.patients:
        ratio = (p.eras if items else p.compliance) or Ratio()
        if p.month is not None:
            by_month[p.month] = by_month.get(p.month, Ratio()) + ratio
        days = (p.outcomes or {}).get("length_of_stay_days")
        if days is not None and ratio.counted:
            stays.append(Stay(label(p.patient_ref), ratio, float(days)))
    months = tuple(sorted(by_month))
    return ChartData("ERAS items" if items else "all elements",
                     p_chart([(m, r.done, r.counted) for m, r in sorted(by_month.items())]), months,
                     audit.elements, element_months(session, cohort, months, tz), tuple(stays))


def element_months(session: Session, cohort: CohortFilter, months: tuple[str, ...],
                   tz: tzinfo) -> dict[tuple[str, str], Ratio]:
    """Compliance per element and local month of surgery: the cohort's element sums, one query
    per month within the cohort's own dates."""
    grid: dict[tuple[str, str], Ratio] = {}
    for month in months:
        start, end = month_bounds(month, tz)
        part = replace(cohort, start=max(start, cohort.start or start), end=min(end, cohort.end or end))
        for c in element_counts(session=session, cohort=part):
            if c.counted:
                grid[(c.element_id, month)] = Ratio(c.done, c.counted)
    return grid


def p_chart_csv(data: ChartData) -> str:
    chart = data.p_chart
    rows: list[list[object]] = [["month", "measure", "compliant", "eligible", "percent", "centre_percent",
                                 "lower_limit_percent", "upper_limit_percent", "outside_limits"]]
    rows += [[p.label, data.measure, p.done, p.counted, percent(Ratio(p.done, p.counted)),
              _pct(chart.centre), _pct(p.lower), _pct(p.upper), "yes" if p.outside else "no"]
             for p in chart.points]
    return csv_text(rows)


def heat_map_csv(data: ChartData) -> str:
    """One row per element and month with data, then the element over all months ('all')."""
    rows: list[list[object]] = [["element", "title", "eras_item", "month", "compliant", "eligible",
                                 "percent"]]
    for e in data.elements:
        cells = [(m, data.grid[(e.element_id, m)]) for m in data.months if (e.element_id, m) in data.grid]
        for month, r in [*cells, ("all", e.compliance)]:
            rows.append([e.element_id, e.title, e.eras_item or "", month, r.done, r.counted, percent(r)])
    return csv_text(rows)


def stays_csv(data: ChartData) -> str:
    rows: list[list[object]] = [["patient", "measure", "compliant", "eligible", "percent",
                                 "length_of_stay_days"]]
    rows += [[s.patient, data.measure, s.compliance.done, s.compliance.counted, percent(s.compliance),
              f"{s.days:.2f}"] for s in data.stays]
    return csv_text(rows)


CSVS: dict[str, Callable[[ChartData], str]] = {
    "p-chart": p_chart_csv, "heat-map": heat_map_csv, "length-of-stay": stays_csv}


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}"
