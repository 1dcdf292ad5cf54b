"""Re-evaluate a pathway's stored episodes (after a version change) on every core, in chunks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlmodel import Session

from engine.evaluate import evaluate
from engine.fingerprint import PlanDigest
from engine.loader import load_pathway
from engine.model import Pathway
from engine.patientfile import patient_from_json
from engine.plan import concepts_read
from store.db import make_engine, reading
from store.episode_facts import StoredEpisode, renumber_decided, stored_episode_ids, stored_episodes
from store.results import (
    RecordedEpisode,
    episode_attributes,
    incremental_figures,
    record_many_results,
    recorded_plan,
    stored_plans,
)

CHUNK = 500


@dataclass(frozen=True)
class RecomputeJob:
    """What each worker loads once: the database, the pathway file (and site terminology), the zone.
    `incremental=False` re-evaluates every episode in full (a change the digests cannot see)."""

    database_url: str
    pathway_file: Path
    terminology: Path | None
    timezone: str
    incremental: bool = True

    def load(self) -> tuple[Pathway, ZoneInfo, PlanDigest]:
        """The pathway (with the site terminology), the zone and the plan's digests."""
        tz = ZoneInfo(self.timezone)
        pathway = load_pathway(self.pathway_file, self.terminology)
        return pathway, tz, recorded_plan(pathway, tz)


@dataclass(frozen=True)
class Recomputed:
    """Episodes re-evaluated in full, re-evaluated only in the elements the new plan changed, and
    left as they were (the plan that decided them is the new one)."""

    full: int = 0
    incremental: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.full + self.incremental + self.unchanged

    def __add__(self, other: Recomputed) -> Recomputed:
        return Recomputed(self.full + other.full, self.incremental + other.incremental,
                          self.unchanged + other.unchanged)


@dataclass
class _Worker:
    pathway: Pathway
    engine: Engine
    tz: ZoneInfo
    plan: PlanDigest
    incremental: bool
    known: dict[str, PlanDigest]  # plans that decided stored results, read once


_worker: _Worker | None = None


def _start(job: RecomputeJob) -> None:
    """Per worker process: load the pathway and open the database once."""
    global _worker
    pathway, tz, plan = job.load()
    _worker = _Worker(pathway, make_engine(job.database_url), tz, plan,
                      job.incremental and incremental_figures(pathway), {})


def reevaluate(pathway: Pathway, episode: StoredEpisode, tz: ZoneInfo, plan: PlanDigest | None = None,
               changed: frozenset[str] | None = None) -> RecordedEpisode:
    """One episode evaluated alone from its stored facts, at the instant it was last evaluated.
    With `changed`, only those elements may differ from the stored results (decided by an earlier
    plan that shares the rest, from the same facts at the same instant): just they are evaluated
    and rewritten, and the episode's stored figures are updated for them; only the facts they (and
    what every element shares) can read are decoded."""
    facts = patient_from_json(episode.facts, None if changed is None else concepts_read(pathway, changed))
    evaluation = evaluate(pathway, facts, now=episode.evaluated_at, tz=tz, only=changed)
    attributes = episode_attributes(pathway, evaluation, facts, ward=episode.ward, surgeon=episode.surgeon)
    return RecordedEpisode(episode.enrolment_id, evaluation, attributes, episode.evaluated_at, plan, changed)


def _changed(w: _Worker, episode: StoredEpisode) -> frozenset[str] | None:
    """The elements to re-evaluate, or None for all of them: the plan that decided the stored
    results is unknown, shares less with the new one, or decided them from other facts."""
    old = w.known.get(episode.plan_digest or "")
    if not w.incremental or old is None or not episode.results_from_these_facts:
        return None
    return w.plan.changed(old)


def recompute_chunk(enrolment_ids: Sequence[str]) -> Recomputed:
    """Re-evaluate these episodes and write their results in one transaction (in a worker)."""
    assert _worker is not None, "recompute_chunk runs in a pool started with _start"
    w = _worker
    with Session(reading(w.engine)) as session:  # SQLite: no write lock while evaluating
        episodes = stored_episodes(session=session, enrolment_ids=enrolment_ids)
        unknown = {e.plan_digest for e in episodes if e.plan_digest is not None} - w.known.keys()
        if unknown and w.incremental:
            w.known.update(stored_plans(session=session, digests=unknown))
    recorded = [reevaluate(w.pathway, e, w.tz, w.plan, _changed(w, e)) for e in episodes]
    partly = sum(1 for r in recorded if r.touched is not None)
    with Session(w.engine) as session:
        record_many_results(session=session, episodes=recorded)
        session.commit()
    return Recomputed(full=len(recorded) - partly, incremental=partly)


def _chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def recompute(job: RecomputeJob, pathway_id: str, *, workers: int | None = None, chunk: int = CHUNK,
              progress: Callable[[int, int], None] | None = None) -> Recomputed:
    """Re-evaluate every stored episode of the pathway. Episodes the new plan already decided
    (from their stored facts) are left, in SQL, without reading their facts; the others are
    re-evaluated in the elements the plan changed, or in full when more than elements changed.
    Each chunk commits on its own and rewrites only results that changed, so a re-run (or a run
    after a crash) is safe."""
    pathway, _, plan = job.load()
    engine = make_engine(job.database_url)
    with Session(engine) as session:
        unchanged = 0
        if job.incremental:
            unchanged = renumber_decided(session=session, pathway_id=pathway_id, plan=plan.digest,
                                         version=pathway.version)
        ids = stored_episode_ids(session=session, pathway_id=pathway_id,
                                 unless_plan=plan.digest if job.incremental else None)
        session.commit()
    engine.dispose()
    done = Recomputed(unchanged=unchanged)
    if progress:
        progress(done.total, len(ids) + unchanged)
    if not ids:
        return done
    # Spawned, not forked: a worker must not inherit the parent's database connections.
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, initializer=_start,
                             initargs=(job,), mp_context=get_context("spawn")) as pool:
        for future in as_completed([pool.submit(recompute_chunk, c) for c in _chunks(ids, chunk)]):
            done += future.result()
            if progress:
                progress(done.total, len(ids) + unchanged)
    return done
