"""`eras audit recompute`: a new pathway version re-evaluates stored episodes from their stored
facts, on a process pool, each exactly as evaluating it alone would; a re-run changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from engine.audit import AuditCase
from engine.audit_cells import is_missing
from engine.evaluate import evaluate
from engine.loader import load_pathway
from engine.model import Pathway
from flows.recompute import RecomputeJob, recompute
from store.episode_facts import record_facts
from store.models import AuditEpisode, ElementResultRow
from tests.audit.cohort import LONDON, gold_cohort, lumbar
from tests.utils.audit import clear_audit, load_cases

ROOT = Path(__file__).resolve().parents[2]
CATHETER = 'urinary_catheter_removed.exists()"\n    window: {anchor: surgery_end, opens: -12h, due: 18h, '
V1_WINDOW = CATHETER + "closes: 24h}"
# Version 2 lets the urinary catheter stay up to 48 h (a made-up change, for the test only).
V2_WINDOW = CATHETER + "closes: 48h}"


@pytest.fixture(scope="module")
def version_2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = (ROOT / "pathways" / "lumbar_fusion.yaml").read_text()
    assert text.count(V1_WINDOW) == 1 and "\nversion: 1\n" in text
    directory = tmp_path_factory.mktemp("v2")
    (directory / "library").symlink_to(ROOT / "pathways" / "library")  # its includes
    path = directory / "lumbar_fusion.yaml"
    path.write_text(text.replace(V1_WINDOW, V2_WINDOW).replace("\nversion: 1\n", "\nversion: 2\n"))
    return path


@pytest.fixture(scope="module")
def stored(db_engine: Engine) -> Iterator[tuple[AuditCase, ...]]:
    """The gold cohort stored as apply leaves it: v1 results and the facts each evaluation read."""
    cases = gold_cohort()[:12]
    ids = [c.evaluation.enrolment_id for c in cases]
    clear_audit(db_engine, "lumbar_fusion", ids)
    load_cases(db_engine, lumbar(), cases)
    with Session(db_engine) as session:
        for c in cases:
            record_facts(session=session, enrolment_id=c.evaluation.enrolment_id, facts=c.facts,
                         at=c.evaluation.now)
        session.commit()
    yield cases
    clear_audit(db_engine, "lumbar_fusion", ids)


Results = dict[tuple[str, str], tuple[str, str | None, bool]]


def _results(engine: Engine, cases: tuple[AuditCase, ...]) -> Results:
    ids = [c.evaluation.enrolment_id for c in cases]
    with Session(engine) as session:
        rows = session.exec(select(ElementResultRow).where(col(ElementResultRow.enrolment_id).in_(ids)))
        return {(r.enrolment_id, r.element_id): (r.status, r.counts, r.missing) for r in rows}


def _alone(pathway: Pathway, cases: tuple[AuditCase, ...]) -> Results:
    """Each episode evaluated on its own, in this process, from the facts in memory."""
    out = {}
    for c in cases:
        ev = evaluate(pathway, c.facts, now=c.evaluation.now, tz=LONDON)
        for r in ev.elements:
            out[(ev.enrolment_id, r.element_id)] = (r.status.value, r.counts, is_missing(r))
    return out


def test_recompute_equals_evaluating_each_episode_alone(db_url: str, db_engine: Engine, version_2: Path,
                                                        stored: tuple[AuditCase, ...]) -> None:
    job = RecomputeJob(db_url, version_2, None, "Europe/London")
    seen: list[tuple[int, int]] = []
    # Stored by load_cases without the plan that decided them: each re-evaluated in full.
    assert recompute(job, "lumbar_fusion", workers=2, chunk=5,
                     progress=lambda done, total: seen.append((done, total))).full == len(stored)
    assert seen[0] == (0, len(stored)) and seen[-1] == (len(stored), len(stored))
    assert _results(db_engine, stored) == _alone(load_pathway(version_2), stored)
    with Session(db_engine) as session:
        versions = set(session.exec(select(AuditEpisode.pathway_version).where(
            col(AuditEpisode.pathway_id) == "lumbar_fusion")))
        # P09: catheter removed at surgery end + 26 h: missed in v1 (closes 24 h), done in v2 (48 h).
        p09 = session.get(ElementResultRow, ("P09-enr", "urinary_catheter_removal"))
    assert versions == {2}
    assert p09 is not None and (p09.status, p09.counts) == ("done", "done")


def test_recompute_again_rewrites_nothing(db_url: str, db_engine: Engine, version_2: Path,
                                          stored: tuple[AuditCase, ...]) -> None:
    job = RecomputeJob(db_url, version_2, None, "Europe/London")
    recompute(job, "lumbar_fusion", workers=2)
    with Session(db_engine) as session:
        before = _evaluated_at(session, stored)
    assert recompute(job, "lumbar_fusion", workers=2).unchanged == len(stored)
    with Session(db_engine) as session:
        after = _evaluated_at(session, stored)
    assert after == before


def _evaluated_at(session: Session, cases: tuple[AuditCase, ...]) -> dict[tuple[str, str], object]:
    ids = [c.evaluation.enrolment_id for c in cases]
    rows = session.exec(select(ElementResultRow).where(col(ElementResultRow.enrolment_id).in_(ids)))
    return {(r.enrolment_id, r.element_id): r.evaluated_at for r in rows}
