"""`eras audit recompute` re-evaluates only what a pathway change touches, and the stored rows come
out exactly as re-evaluating each episode alone and recording it: every column of every
element_result and audit_episode row, on both databases, for each kind of change.

Two databases start from the same store (episodes recorded by version 1 as apply records them:
results, the plan that decided them, the facts read): one is recomputed, the other gets
`reevaluate` (each episode alone, in full) recorded episode by episode. The gold cohort (35
hand-worked episodes at the audit instant) and 30 synthetic ones caught mid-pathway.
"""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.forkserver
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, text, update
from sqlmodel import Session, col

import flows.recompute
from bench.synthetic import synthetic_patient
from engine.evaluate import evaluate
from engine.facts import PatientFacts
from engine.loader import load_pathway
from engine.model import Pathway
from flows.recompute import Recomputed, RecomputeJob, recompute, reevaluate
from store.db import make_engine
from store.episode_facts import record_facts, stored_episodes
from store.models import (
    AuditEpisode,
    AuditOutcome,
    ElementResultRow,
    Enrolment,
    EpisodeFacts,
    PlanDigestRow,
)
from store.results import RecordedEpisode, episode_attributes, record_many_results, recorded_plan
from tests.audit.cohort import LONDON, LUMBAR, gold_cohort, lumbar
from tests.utils.databases import postgres_schema, sqlite_database

TZ = "Europe/London"
CATHETER = 'urinary_catheter_removed.exists()"\n    window: {anchor: surgery_end, opens: -12h, due: 18h, '
PROTEIN = "  - id: protein_supplementation\n"
AFTER_PROTEIN = "  - id: discharge_opioid_limit_and_taper\n"


@dataclass(frozen=True)
class Stored:
    facts: PatientFacts
    now: Any
    ward: str | None
    surgeon: str | None


def _episodes() -> list[Stored]:
    out = [Stored(replace(c.facts, future_tolerance=timedelta(minutes=5)), c.evaluation.now,
                  c.attributes.get("ward"), c.attributes.get("surgeon")) for c in gold_cohort()]
    rng = random.Random(14)
    for i in range(30):
        facts, now = synthetic_patient(i, rng)
        out.append(Stored(replace(facts, enrolment_id=f"syn-{i:02d}"), now, f"W{i % 3}", None))
    return out


EPISODES = _episodes()


# Each change: how version 2 is written from version 1's text, and what the recompute must do.
def _window(t: str) -> str:
    """Version 2 lets the urinary catheter stay up to 48 h, not 24 h (a made-up change)."""
    return _one(t, CATHETER + "closes: 24h}", CATHETER + "closes: 48h}")


def _item_shared(t: str) -> str:
    """Nutrition screening (ERAS item 4, with the dietitian referral and vitamin D screening)
    counts albumin from 90 days before surgery, not 30: the item's result needs all three."""
    return _one(t, 'window: {anchor: surgery_start, opens: -30d, due: -14d, closes: "0"}',
                'window: {anchor: surgery_start, opens: -90d, due: -14d, closes: "0"}')


def _not_applicable(t: str) -> str:
    """Catheter removal applies only with a drain too (made up): with no drain it no longer
    counts, nor does ERAS item 22 (with drain removal) for those episodes."""
    return _one(t, '"%urinary_catheter_inserted.exists() or %urinary_catheter_removed.exists()"',
                '"%urinary_catheter_removed.exists() and %surgical_drain_removed.exists()"')


def _reads_another(t: str) -> str:
    """Catheter removal applies only with mechanical VTE prophylaxis recorded (made up): the
    changed element reads facts that neither it nor what every element shares read before (an
    incremental re-evaluation must decode them; about half the episodes have them)."""
    return _one(t, '"%urinary_catheter_inserted.exists() or %urinary_catheter_removed.exists()"',
                '"%urinary_catheter_removed.exists() and %mechanical_vte_prophylaxis.exists()"')


def _added(t: str) -> str:
    """A second catheter element (48 h), beside the first."""
    block = t[t.index("  - id: urinary_catheter_removal\n"):t.index("  - id: drain_removal\n")]
    extra = _one(_one(block, "id: urinary_catheter_removal\n", "id: urinary_catheter_removal_48h\n"),
                 CATHETER + "closes: 24h}", CATHETER + "closes: 48h}")
    return _one(t, "  - id: drain_removal\n", extra + "  - id: drain_removal\n")


def _removed(t: str) -> str:
    """Protein supplementation (a process measure, in no ERAS item) no longer planned."""
    return t[:t.index(PROTEIN)] + t[t.index(AFTER_PROTEIN):]


def _anchor(t: str) -> str:
    """What every element shares: post-operative windows count from surgery start (made up)."""
    return _one(t, "surgery_end: {concept: spine_surgery, at: end,",
                "surgery_end: {concept: spine_surgery, at: start,")


def _one(t: str, old: str, new: str) -> str:
    assert t.count(old) == 1, old
    return t.replace(old, new)


@dataclass(frozen=True)
class Change:
    name: str
    edit: Callable[[str], str]
    expect: str  # full, incremental or unchanged: how every episode is recomputed
    moves_results: bool  # whether some stored element result must change


CHANGES = [
    Change("window", _window, "incremental", True),
    Change("item shared", _item_shared, "incremental", True),
    Change("not applicable", _not_applicable, "incremental", True),
    Change("reads another concept", _reads_another, "incremental", True),
    Change("added", _added, "incremental", True),
    Change("removed", _removed, "incremental", True),
    Change("anchor", _anchor, "full", True),
    Change("version only", lambda t: t, "unchanged", False),
]


@pytest.fixture(scope="module", autouse=True)
def _workers_forked_from_a_warm_server() -> Iterator[None]:
    """`recompute` spawns its workers: each is a new interpreter importing the engine and the store
    (2 s of CPU), and the two start at once on a 2-core machine, 8-10 s of the 10-12 s each call
    takes here (the chunks themselves take 0.5 s). In this module, which calls it 22 times, they
    are forked from a forkserver that imported flows.recompute once: like spawned workers they
    inherit nothing of this process (no database connection, the reason recompute spawns), and
    each still loads the pathway file and opens its own engine. The spawn start method itself
    stays tested by tests/audit/test_recompute.py and `eras audit recompute` in tests/cli."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["flows.recompute"])

    def forkserver(method: str) -> multiprocessing.context.BaseContext:
        assert method == "spawn", method  # what recompute asks for; only that is replaced
        return context

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flows.recompute, "get_context", forkserver)
        yield
    stop = getattr(multiprocessing.forkserver._forkserver, "_stop", None)
    if stop is not None:  # the server would otherwise wait, idle, for this process to exit
        stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def databases(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[str, str]]:
    """Two fresh databases of one kind: the one recomputed, and the reference."""
    if request.param == "sqlite":
        directory = tmp_path_factory.mktemp("recompute")
        with sqlite_database(directory) as one, sqlite_database(directory) as two:
            yield one, two
    else:
        with postgres_schema() as one, postgres_schema() as two:
            yield one, two


def _version_2(tmp: Path, edit: Callable[[str], str], name: str = "lumbar_fusion.yaml") -> Path:
    text_ = LUMBAR.read_text()
    assert "\nversion: 1\n" in text_
    directory = tmp / name.removesuffix(".yaml")
    directory.mkdir()
    (directory / "library").symlink_to(LUMBAR.parent / "library")  # its includes
    path = directory / "lumbar_fusion.yaml"
    path.write_text(edit(text_).replace("\nversion: 1\n", "\nversion: 2\n"))
    return path


@functools.cache
def _version_1() -> tuple[RecordedEpisode, ...]:
    """The episodes evaluated by version 1, once per module (evaluation is pure: the same facts
    at the same instant give the same results); every _store writes them anew."""
    plan = recorded_plan(lumbar(), LONDON)
    recorded = []
    for e in EPISODES:
        ev = evaluate(lumbar(), e.facts, now=e.now, tz=LONDON)
        attrs = episode_attributes(lumbar(), ev, e.facts, ward=e.ward, surgeon=e.surgeon)
        recorded.append(RecordedEpisode(e.facts.enrolment_id, ev, attrs, e.now, plan))
    return tuple(recorded)


def _store(url: str) -> None:
    """The episodes as apply leaves them with version 1: results, their plan, the facts read."""
    engine = make_engine(url)
    with Session(engine) as session:
        for table in (ElementResultRow, AuditOutcome, EpisodeFacts, AuditEpisode, Enrolment, PlanDigestRow):
            session.execute(delete(table))
        for e in EPISODES:
            session.add(Enrolment(id=e.facts.enrolment_id, patient_ref=f"Patient/{e.facts.patient_id}",
                                  pathway_id="lumbar_fusion", pathway_version=1, status="active",
                                  enrolled_at=e.now, enrolled_by="test", updated_at=e.now))
        session.flush()
        record_many_results(session=session, episodes=_version_1())
        for e in EPISODES:
            record_facts(session=session, enrolment_id=e.facts.enrolment_id, facts=e.facts, at=e.now)
        session.commit()
    engine.dispose()


def _alone(url: str, pathway: Pathway) -> None:
    """The reference: each stored episode re-evaluated alone, in full, and recorded."""
    engine = make_engine(url)
    plan = recorded_plan(pathway, LONDON)
    with Session(engine) as session:
        stored = stored_episodes(session=session, enrolment_ids=[e.facts.enrolment_id for e in EPISODES])
        for episode in stored:
            record_many_results(session=session, episodes=[reevaluate(pathway, episode, LONDON, plan)])
        session.commit()
    engine.dispose()


Snapshot = dict[tuple[str, str, str], dict[str, Any]]


def _rows(url: str) -> Snapshot:
    """Every column of every element_result and audit_episode row, as the database holds it."""
    engine = make_engine(url)
    out: Snapshot = {}
    with engine.connect() as connection:
        for r in connection.execute(text("SELECT * FROM element_result")).mappings():
            out[("element_result", r["enrolment_id"], r["element_id"])] = dict(r)
        for r in connection.execute(text("SELECT * FROM audit_episode")).mappings():
            out[("audit_episode", r["enrolment_id"], "")] = dict(r)
    engine.dispose()
    return out


def _results(rows: Snapshot) -> Snapshot:
    return {key: row for key, row in rows.items() if key[0] == "element_result"}


def _expected(kind: str, n: int) -> Recomputed:
    return Recomputed(**{kind: n})


@pytest.mark.parametrize("change", CHANGES, ids=[c.name for c in CHANGES])
def test_recompute_equals_each_episode_alone(databases: tuple[str, str], tmp_path: Path,
                                             change: Change) -> None:
    recomputed, reference = databases
    v2 = _version_2(tmp_path, change.edit)
    for url in databases:
        _store(url)
    before = _rows(recomputed)
    done = recompute(RecomputeJob(recomputed, v2, None, TZ), "lumbar_fusion", workers=2, chunk=8)
    _alone(reference, load_pathway(v2))
    assert done == _expected(change.expect, len(EPISODES))
    after = _rows(recomputed)
    assert after == _rows(reference)
    assert (_results(after) != _results(before)) is change.moves_results
    assert {row["pathway_version"] for key, row in after.items() if key[0] == "audit_episode"} == {2}


def test_recompute_with_another_terminology_is_full(databases: tuple[str, str], tmp_path: Path) -> None:
    """A site terminology (one more code for catheter removal) is shared by every element."""
    recomputed, reference = databases
    site = tmp_path / "site.yaml"
    site.write_text(f"terminology: site_test\nextends: {LUMBAR.parent / 'terminology' / 'default.yaml'}\n"
                    "concepts:\n  urinary_catheter_removed:\n    add_codings:\n"
                    "      - {system: 'http://example.org/local', code: CATH-OUT}\n")
    for url in databases:
        _store(url)
    done = recompute(RecomputeJob(recomputed, LUMBAR, site, TZ), "lumbar_fusion", workers=2, chunk=8)
    _alone(reference, load_pathway(LUMBAR, site))
    assert done == _expected("full", len(EPISODES))
    assert _rows(recomputed) == _rows(reference)


def test_recompute_without_change_writes_nothing(databases: tuple[str, str]) -> None:
    """Version 1 again: decided in SQL, no facts read, no row written (the stored rows stay as
    they are, to the instant each was evaluated)."""
    recomputed, _ = databases
    _store(recomputed)
    before = _rows(recomputed)
    seen: list[tuple[int, int]] = []
    done = recompute(RecomputeJob(recomputed, LUMBAR, None, TZ), "lumbar_fusion", workers=2,
                     progress=lambda d, total: seen.append((d, total)))
    assert done == _expected("unchanged", len(EPISODES))
    assert seen == [(len(EPISODES), len(EPISODES))]
    assert _rows(recomputed) == before


def test_unknown_plan_or_newer_facts_evaluate_in_full(databases: tuple[str, str], tmp_path: Path) -> None:
    """Three episodes name a plan the store does not know (recorded by a build that kept it
    elsewhere), two have facts newer than their results (an apply stored facts, not results):
    those five are evaluated in full, the rest in the changed element only; rows as alone."""
    recomputed, reference = databases
    v2 = _version_2(tmp_path, _window)
    unknown = [e.facts.enrolment_id for e in EPISODES[:3]]
    newer = {e.facts.enrolment_id: e.now + timedelta(hours=30) for e in EPISODES[-2:]}
    for url in databases:
        _store(url)
        engine = make_engine(url)
        with Session(engine) as session:
            session.execute(update(AuditEpisode).where(col(AuditEpisode.enrolment_id).in_(unknown))
                            .values(plan_digest="0" * 64))
            for eid, at in newer.items():
                session.execute(update(EpisodeFacts).where(col(EpisodeFacts.enrolment_id) == eid)
                                .values(evaluated_at=at))
            session.commit()
        engine.dispose()
    done = recompute(RecomputeJob(recomputed, v2, None, TZ), "lumbar_fusion", workers=2, chunk=8)
    _alone(reference, load_pathway(v2))
    assert done == Recomputed(full=5, incremental=len(EPISODES) - 5)
    assert _rows(recomputed) == _rows(reference)
    again = recompute(RecomputeJob(recomputed, v2, None, TZ), "lumbar_fusion", workers=2)
    assert again == _expected("unchanged", len(EPISODES))


def test_recompute_incremental_off_evaluates_everything(databases: tuple[str, str]) -> None:
    """`--full`: every episode evaluated in full even when nothing changed; nothing rewritten."""
    recomputed, _ = databases
    _store(recomputed)
    before = _rows(recomputed)
    done = recompute(RecomputeJob(recomputed, LUMBAR, None, TZ, incremental=False), "lumbar_fusion",
                     workers=2)
    assert done == _expected("full", len(EPISODES))
    assert _rows(recomputed) == before
