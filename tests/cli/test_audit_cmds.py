"""`eras audit report` on the gold cohort in a SQLite store: the table and the CSV; `recompute`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from eras_cli.main import app
from store.db import make_engine
from store.episode_facts import record_facts
from tests.audit.cohort import gold_cohort, lumbar
from tests.utils.audit import clear_audit, load_cases


@pytest.fixture
def gold_store(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    engine = make_engine(sqlite_url)
    ids = [c.evaluation.enrolment_id for c in gold_cohort()]
    clear_audit(engine, "lumbar_fusion", ids)
    load_cases(engine, lumbar(), gold_cohort())
    monkeypatch.setenv("ERAS_DATABASE_URL", sqlite_url)
    yield sqlite_url
    clear_audit(engine, "lumbar_fusion", ids)
    engine.dispose()


def test_audit_report_csv_matches_gold(gold_store: str) -> None:
    result = CliRunner().invoke(app, ["audit", "report", "--from", "2025-11-01", "--to", "2025-12-31",
                                      "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    overall = next(r for r in rows if r["level"] == "overall")
    # P30 (operated in April 2026) is outside the period.
    assert (int(overall["done"]), int(overall["counted"])) == (1366 - 29, 1429 - 30)
    # P30's one not-done element (PC6 removal overdue) is missing data: 56 - 1 (MISSING in
    # test_gold_cohort.py: 63 not done less 2 declines and 5 done late); the 5 done late and
    # 2 documented declines are all in Nov-Dec 2025.
    assert tuple(int(overall[k]) for k in ("missing", "done_late", "not_done")) == (55, 5, 2)
    items = next(r for r in rows if r["level"] == "eras-items")
    # tests/audit/test_eras_items.py: 603/634 over all 35; P30 (18/18) is outside the period.
    assert (int(items["done"]), int(items["counted"])) == (603 - 18, 634 - 18)


def test_audit_report_table_prints_elements(gold_store: str) -> None:
    result = CliRunner().invoke(app, ["audit", "report", "--from", "2025-11-01", "--to", "2026-04-30"])
    assert result.exit_code == 0, result.output
    assert "35 patients" in result.stdout and "1366/1429" in result.stdout


def test_audit_recompute_reports_progress_and_skips_episodes_without_facts(
        gold_store: str) -> None:
    """Three episodes have stored facts, the other 32 were stored without: three re-evaluated,
    32 named as skipped, then none on a re-run; stderr is not a terminal here, so progress comes as
    plain lines."""
    engine = make_engine(gold_store)
    with Session(engine) as session:
        for case in gold_cohort()[:3]:
            record_facts(session=session, enrolment_id=case.evaluation.enrolment_id, facts=case.facts,
                         at=case.evaluation.now)
        session.commit()
    engine.dispose()
    result = CliRunner().invoke(app, ["audit", "recompute", "--pathway", "lumbar_fusion", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "recomputing lumbar_fusion: 0/3" in result.stderr
    assert "recomputing lumbar_fusion: 3/3" in result.stderr
    assert "recomputed 3 episodes of lumbar_fusion" in result.stderr
    assert ": 3 in full, 0 in the changed elements only, 0 unchanged" in result.stderr
    assert "32 without stored facts skipped" in result.stderr
    # Stored before plans were kept: evaluated in full once, then known decided by this plan.
    again = CliRunner().invoke(app, ["audit", "recompute", "--pathway", "lumbar_fusion", "--workers", "1"])
    assert again.exit_code == 0, again.output
    assert ": 0 in full, 0 in the changed elements only, 3 unchanged" in again.stderr
    assert "recomputing lumbar_fusion: 3/3" in again.stderr
