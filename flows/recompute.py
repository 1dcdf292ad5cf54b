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
from engine.loader import load_pathway
from engine.model import Pathway
from engine.patientfile import patient_from_json
from engine.terminology import load_terminology
from store.db import make_engine, reading
from store.episode_facts import StoredEpisode, stored_episode_ids, stored_episodes
from store.results import RecordedEpisode, episode_attributes, record_many_results

CHUNK = 500


@dataclass(frozen=True)
class RecomputeJob:
    """What each worker loads once: the database, the pathway file (and site terminology), the zone."""

    database_url: str
    pathway_file: Path
    terminology: Path | None
    timezone: str


@dataclass
class _Worker:
    pathway: Pathway
    engine: Engine
    tz: ZoneInfo


_worker: _Worker | None = None


def _start(job: RecomputeJob) -> None:
    """Per worker process: load the pathway and open the database once."""
    global _worker
    terms = load_terminology(job.terminology) if job.terminology else None
    _worker = _Worker(load_pathway(job.pathway_file, terms), make_engine(job.database_url),
                      ZoneInfo(job.timezone))


def reevaluate(pathway: Pathway, episode: StoredEpisode, tz: ZoneInfo) -> RecordedEpisode:
    """One episode evaluated alone from its stored facts, at the instant it was last evaluated."""
    facts = patient_from_json(episode.facts)
    evaluation = evaluate(pathway, facts, now=episode.evaluated_at, tz=tz)
    attributes = episode_attributes(pathway, evaluation, facts, ward=episode.ward, surgeon=episode.surgeon)
    return RecordedEpisode(episode.enrolment_id, evaluation, attributes, episode.evaluated_at)


def recompute_chunk(enrolment_ids: Sequence[str]) -> int:
    """Re-evaluate these episodes and write their results in one transaction (in a worker)."""
    assert _worker is not None, "recompute_chunk runs in a pool started with _start"
    w = _worker
    with Session(reading(w.engine)) as session:  # SQLite: no write lock while evaluating
        episodes = stored_episodes(session=session, enrolment_ids=enrolment_ids)
    recorded = [reevaluate(w.pathway, e, w.tz) for e in episodes]
    with Session(w.engine) as session:
        record_many_results(session=session, episodes=recorded)
        session.commit()
    return len(recorded)


def _chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def recompute(job: RecomputeJob, pathway_id: str, *, workers: int | None = None, chunk: int = CHUNK,
              progress: Callable[[int, int], None] | None = None) -> int:
    """Re-evaluate every stored episode of the pathway; returns how many. Each chunk commits on
    its own and rewrites only results that changed, so a re-run (or a run after a crash) is safe."""
    engine = make_engine(job.database_url)
    with Session(engine) as session:
        ids = stored_episode_ids(session=session, pathway_id=pathway_id)
    engine.dispose()
    done = 0
    if progress:
        progress(done, len(ids))
    # Spawned, not forked: a worker must not inherit the parent's database connections.
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, initializer=_start,
                             initargs=(job,), mp_context=get_context("spawn")) as pool:
        for future in as_completed([pool.submit(recompute_chunk, c) for c in _chunks(ids, chunk)]):
            done += future.result()
            if progress:
                progress(done, len(ids))
    return done
