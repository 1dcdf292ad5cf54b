"""The nightly audit's report files: periods, and the summary and MeasureReport it writes."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime
from pathlib import Path

from fhir.resources.R4B.measurereport import MeasureReport
from sqlmodel import Session

from flows.audit_report import Period, previous_periods, write_period_report
from store.db import make_engine
from tests.audit.cohort import LONDON, gold_cohort, lumbar
from tests.utils.audit import clear_audit, load_cases


def test_previous_periods_on_first_of_month_is_last_month() -> None:
    day, month = previous_periods(date(2025, 12, 1))
    assert (day.label, day.first, day.last) == ("2025-11-30", date(2025, 11, 30), date(2025, 11, 30))
    assert (month.label, month.first, month.last) == ("2025-11", date(2025, 11, 1), date(2025, 11, 30))


def test_write_period_report_month_of_gold_cohort(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    ids = [c.evaluation.enrolment_id for c in gold_cohort()]
    clear_audit(engine, "lumbar_fusion", ids)
    load_cases(engine, lumbar(), gold_cohort())
    try:
        with Session(engine) as session:
            november = Period("2025-11", date(2025, 11, 1), date(2025, 11, 30))
            files = write_period_report(session, lumbar(), november, tz=LONDON, directory=tmp_path,
                                        generated=datetime(2025, 12, 1, tzinfo=UTC))
        rows = list(csv.DictReader(files[0].open()))
        overall = next(r for r in rows if r["level"] == "overall")
        assert (int(overall["done"]), int(overall["counted"])) == (733, 746)  # TREND's 2025-11
        MeasureReport.model_validate(json.loads(files[1].read_text()))
    finally:
        clear_audit(engine, "lumbar_fusion", ids)
        engine.dispose()


async def test_nightly_report_goes_to_eras_audit_report_dir(sqlite_url: str, tmp_path: Path,
                                                            monkeypatch, fhir_sandbox) -> None:  # type: ignore[no-untyped-def]
    """The scheduled audit-report (no directory parameter) writes where the setting says."""
    from flows.config import open_runtime
    from flows.prefect_flows import audit_report_work
    from flows.settings import Settings

    reports = tmp_path / "reports"
    monkeypatch.setenv("ERAS_AUDIT_REPORT_DIR", str(reports))
    monkeypatch.setenv("ERAS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ERAS_FHIR_BASE_URL", fhir_sandbox.base_url)
    async with open_runtime(Settings(), migrate=False) as rt:
        files = await audit_report_work(rt, today=date(2025, 12, 1))
    assert files and {Path(f).parent for f in files} == {reports / "lumbar_fusion"}  # per pathway
