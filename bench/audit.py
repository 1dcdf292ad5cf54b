"""Audit report over 50,000 synthetic episodes (~40 element results each) on SQLite and PostgreSQL.

Times the full report the API computes (`store.audit_summary.stored_audit`: per element, phase,
patient, overall, high share, trend, completeness, outcome groups) against two floors on the same
data, in the same run:
- the old floor: one hand-written aggregation of per-element compliance (as before, through
  SQLAlchemy's `text`). The report returns far more than that (a row per patient with its
  outcomes, ERAS items, declines), so the ratio to it overstates the report's overhead;
- the fair floor: the hand-written SQL that reads what the report shows and no more: per element
  done, counted, missing (the covering index) and done late (its partial index); ERAS items per
  item (one pass over episodes); each patient's stored compliance, item masks and outcome values
  by surgery start; the declined results; through the bare driver, every row fetched and
  nothing done with them. Trend, completeness and outcome groups are sums of those
  rows, so the floor leaves them (and any Python) to the report. On SQLite the joins are written
  to scan the results' index as the report's are; PostgreSQL's driver parses the outcome JSON as
  it fetches, SQLite's hands back text.
Goal: <= 3x the fair floor on both databases, <= 2 s on PostgreSQL (quiet machine).
Usage: python -m bench.audit [episodes]
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text
from sqlmodel import Session

from engine.audit import eras_item_of
from engine.compliance import Ratio, item_ratios
from engine.loader import load_pathway
from engine.model import Pathway
from store.audit_queries import CohortFilter
from store.audit_summary import stored_audit
from store.db import make_engine
from store.migrate import upgrade
from store.results import item_masks
from tests.utils.databases import postgres_schema

ROOT = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Europe/London")
ELEMENTS_PER_EPISODE = 40
# (status, counts, missing, weight): a realistic mix, most elements done.
MIX = (("done", "done", False, 77), ("done-late", "not-done", False, 1),
       ("not-applicable", None, False, 10), ("missed", "not-done", True, 6),
       ("overdue", "not-done", True, 1), ("declined", "not-done", False, 1),
       ("declined", None, False, 1), ("upcoming", None, False, 3))
FLOOR_SQL = """
SELECT r.element_id, SUM(CASE WHEN r.counts = 'done' THEN 1 ELSE 0 END), COUNT(r.counts)
FROM element_result r JOIN audit_episode e ON e.enrolment_id = r.enrolment_id
WHERE e.pathway_id = 'lumbar_fusion' GROUP BY r.element_id
"""
COHORT = "e.pathway_id = 'lumbar_fusion' AND e.pathway_version = 1"
# {join}: SQLite told to scan the results' index and look episodes up (its planner, without
# statistics, would walk episodes and read every result row); a plain join elsewhere.
FAIR_FLOOR_SQL = (
    f"""SELECT r.element_id, SUM(CASE WHEN r.counts = 'done' THEN 1 ELSE 0 END), COUNT(r.counts),
    SUM(CASE WHEN r.missing THEN 1 ELSE 0 END) FROM element_result r {{join}} audit_episode e
    ON e.enrolment_id = r.enrolment_id WHERE {COHORT} GROUP BY r.element_id""",
    f"""SELECT r.element_id, COUNT(*) FROM element_result r {{join}} audit_episode e
    ON e.enrolment_id = r.enrolment_id WHERE r.status = 'done-late' AND {COHORT} GROUP BY r.element_id""",
    "SELECT {items} FROM audit_episode e WHERE " + COHORT,
    f"""SELECT e.enrolment_id, e.patient_ref, e.surgery_start, e.done, e.counted, e.missing, e.done_late,
    e.items_done, e.items_counted, o."values" FROM audit_episode e
    LEFT JOIN audit_outcome o ON o.enrolment_id = e.enrolment_id WHERE {COHORT}
    ORDER BY e.surgery_start, e.patient_ref""",
    f"""SELECT r.element_id, e.ward, r.occurrences FROM element_result r {{join}} audit_episode e
    ON e.enrolment_id = r.enrolment_id WHERE r.decline_reason IS NOT NULL AND {COHORT}""",
)
Row = tuple[object, ...]


def element_rows(i: int, pathway: Pathway) -> list[Row]:
    """Episode i's element results, the same on every call (its own seeded generator)."""
    rng = random.Random(i)
    elements = pathway.elements[:ELEMENTS_PER_EPISODE]
    picks = rng.choices(MIX, [m[3] for m in MIX], k=len(elements))
    at = datetime(2026, 1, 31, tzinfo=UTC)
    return [(f"e{i:07d}", el.id, el.phase, el.category, status, counts, missing,
             1 if counts == "done" else 0, 0 if counts is None else 1, "[]", "[]", at)
            for el, (status, counts, missing, _) in zip(elements, picks, strict=True)]


def episodes(n: int, pathway: Pathway, rng: random.Random) -> Iterator[tuple[Row, Row, Row]]:
    """(enrolment, audit_episode with its totals as the engine stores them, outcome) rows;
    surgery over the months of 2025."""
    items = eras_item_of(pathway)
    base = datetime(2025, 1, 1, 8, tzinfo=UTC)
    for i in range(n):
        eid, start = f"e{i:07d}", base + timedelta(minutes=rng.randrange(365 * 24 * 60))
        ward, sex = f"W{rng.randrange(1, 5)}", rng.choice(("female", "male"))
        rows = element_rows(i, pathway)
        done, counted = sum(r[7] for r in rows), sum(r[8] for r in rows)  # type: ignore[misc]
        missing, late = sum(1 for r in rows if r[6]), sum(1 for r in rows if r[4] == "done-late")
        counted_items, done_items = item_masks(item_ratios(
            {str(r[1]): Ratio(r[7], r[8]) for r in rows}, items))  # type: ignore[arg-type]
        yield ((eid, f"Patient/p{i:07d}", "lumbar_fusion", 1, "{}", "{}", "completed", start, "bench", start,
                ward, 0),
               (eid, f"Patient/p{i:07d}", "lumbar_fusion", 1, start, rng.choice(("fusion", "decompression")),
                "{}", ward, sex, rng.randrange(35, 90), rng.randrange(0, 5), done, counted, missing, late,
                counted_items, done_items, start),
               (eid, json.dumps({"length_of_stay_days": round(rng.uniform(1.5, 9), 2),
                                 "readmitted": rng.random() < 0.05}), start))


def results(n: int, pathway: Pathway) -> Iterator[Row]:
    for i in range(n):
        yield from element_rows(i, pathway)


ENROLMENT = ("id, patient_ref, pathway_id, pathway_version, parameters, anchors, status, enrolled_at, "
             "enrolled_by, updated_at, ward, failure_count")
EPISODE = ("enrolment_id, patient_ref, pathway_id, pathway_version, surgery_start, variant, parameters, "
           "ward, sex, age_at_surgery, apfel, done, counted, missing, done_late, items_counted, items_done, "
           "updated_at")
OUTCOME = "enrolment_id, \"values\", computed_at"
RESULT = ("enrolment_id, element_id, phase, category, status, counts, missing, occurrences_done, "
          "occurrences_counted, evidence, occurrences, evaluated_at")


def _sqlite_value(v: object) -> object:
    """An instant as the store's UTCDateTime writes it on SQLite (naive UTC, microseconds)."""
    return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v


def load_sqlite(engine: Engine, tables: dict[str, tuple[str, list[Row] | Iterator[Row]]]) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")  # the store's engine runs the driver in autocommit mode
        for table, (columns, rows) in tables.items():
            marks = ", ".join("?" * len(columns.split(",")))
            cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                            ([_sqlite_value(v) for v in r] for r in rows))
        raw.commit()
    finally:
        raw.close()


def load_postgres(engine: Engine, tables: dict[str, tuple[str, list[Row] | Iterator[Row]]]) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for table, (columns, rows) in tables.items():
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for r in rows:
                    copy.write_row(r)
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def seed(engine: Engine, pathway: Pathway, n: int) -> None:
    rng = random.Random(6)
    enrol, epis, outs = zip(*episodes(n, pathway, rng), strict=True)
    tables = {"enrolment": (ENROLMENT, list(enrol)), "audit_episode": (EPISODE, list(epis)),
              "audit_outcome": (OUTCOME, list(outs)), "element_result": (RESULT, results(n, pathway))}
    (load_sqlite if engine.dialect.name == "sqlite" else load_postgres)(engine, tables)


def best(run: Callable[[], object], times: int = 3) -> float:
    run()
    out = []
    for _ in range(times):
        t0 = time.perf_counter()
        run()
        out.append(time.perf_counter() - t0)
    return min(out)


def run_sql(engine: Engine, pathway: Pathway, statements: tuple[str, ...]) -> Callable[[], object]:
    """Each statement through the bare driver, every row fetched."""
    join = "CROSS JOIN" if engine.dialect.name == "sqlite" else "JOIN"
    items = ", ".join(f"SUM(CASE WHEN e.items_done & {1 << n} != 0 THEN 1 ELSE 0 END), "
                      f"SUM(CASE WHEN e.items_counted & {1 << n} != 0 THEN 1 ELSE 0 END)"
                      for n in sorted(set(eras_item_of(pathway).values())))
    ready = [s.format(join=join, items=items) for s in statements]

    def run() -> object:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            out = []
            for statement in ready:
                cur.execute(statement)
                out.append(cur.fetchall())
            raw.rollback()
            return out
        finally:
            raw.close()
    return run


def measure(name: str, url: str, pathway: Pathway, n: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    t0 = time.perf_counter()
    seed(engine, pathway, n)
    seeded = time.perf_counter() - t0
    print(f"{name}: seeded {n} episodes x {ELEMENTS_PER_EPISODE} elements in {seeded:.1f} s", flush=True)
    cohort = CohortFilter(pathway_id="lumbar_fusion", pathway_version=1)
    with Session(engine) as session:
        audit = stored_audit(pathway, session=session, cohort=cohort, tz=TZ)
        assert len(audit.patients) == n
        report = best(lambda: stored_audit(pathway, session=session, cohort=cohort, tz=TZ))
        floor = best(lambda: session.connection().execute(text(FLOOR_SQL)).all())
    fair = best(run_sql(engine, pathway, FAIR_FLOOR_SQL))
    print(f"{name}: full report {report:.3f} s; fair floor (the report's reads) {fair:.3f} s, "
          f"ratio {report / fair:.2f}x; old floor (per-element SQL) {floor:.3f} s, "
          f"ratio {report / floor:.2f}x  "
          f"(overall {audit.overall}, high {audit.high}, {len(audit.trend)} months)")
    engine.dispose()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    pathway = load_pathway(ROOT / "pathways" / "lumbar_fusion.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        measure("sqlite", f"sqlite:///{tmp}/audit.db", pathway, n)
    with postgres_schema(migrate=False) as url:
        measure("postgresql", url, pathway, n)


if __name__ == "__main__":
    main()
