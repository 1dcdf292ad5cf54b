"""Full-pathway evaluations per second on one core, against a naive FHIRPath-over-everything baseline.

The naive baseline has the same semantics but evaluates every condition and every evidence
lookup as FHIRPath over the patient's whole fact bundle, with no index and no memoisation.
Run: .venv/bin/python bench/engine.py [--patients 10000] [--naive-patients 300]
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import engine.evaluate as evaluate_module  # noqa: E402
from bench.synthetic import synthetic_patient  # noqa: E402
from engine.context import EvaluationContext  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.expressions import compile_expression  # noqa: E402
from engine.facts import FactIndex  # noqa: E402
from engine.loader import load_pathway  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


_SLOW: dict[str, object] = {}


def _slow(text: str):  # type: ignore[no-untyped-def]
    """The expression compiled for fhirpathpy only (parsing is not what the baseline measures)."""
    if text not in _SLOW:
        _SLOW[text] = compile_expression(text, fast=False)
    return _SLOW[text]


class _NaiveIndex(FactIndex):
    """Every lookup is a FHIRPath `where` over the whole bundle."""

    def __init__(self, facts: list) -> None:
        super().__init__({})
        self.bundle = [f.as_fhirpath() for f in facts]
        self.facts = facts

    def get(self, concept: str) -> list:
        expr = _slow(f"%facts.where(concept = '{concept}')")
        wanted = expr.evaluate({}, {"facts": self.bundle})
        ids = {id(x) for x in wanted}
        return sorted((f for f, d in zip(self.facts, self.bundle, strict=True) if id(d) in ids),
                      key=lambda f: (f.time is None, f.time))

    def between(self, concept, start, end):  # type: ignore[no-untyped-def]
        return [f for f in self.get(concept) if f.time is not None
                and (start is None or f.time >= start) and (end is None or f.time <= end)]


class NaiveContext(EvaluationContext):
    def _index(self, facts, now):  # type: ignore[no-untyped-def]
        return _NaiveIndex([f for f in facts.facts if (f.recorded or f.time) is None
                            or (f.recorded or f.time) <= now])

    def var(self, name: str):  # type: ignore[no-untyped-def]
        return [f.as_fhirpath() for f in self.index.get(name)] if name not in self._vars \
            else self._vars[name]

    def truthy(self, expr) -> bool:  # type: ignore[no-untyped-def]
        env = {name: self.var(name) for name in expr.variables}
        return _slow(expr.text).truthy({}, env)

    def fact_matches(self, expr, fact) -> bool:  # type: ignore[no-untyped-def]
        if expr is None:
            return True
        env = {n: self.var(n) for n in expr.variables}
        return _slow(expr.text).truthy(fact.as_fhirpath(), env)


def _run(pathway, patients, tz) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for facts, now in patients:
        t0 = time.perf_counter()
        evaluate(pathway, facts, now=now, tz=tz)
        times.append(time.perf_counter() - t0)
    return times


def _report(label: str, times: list[float]) -> float:
    q = statistics.quantiles(times, n=100)
    rate = len(times) / sum(times)
    print(f"{label:>8}: {len(times):>6} evaluations, {rate:8.0f} evaluations/s, "
          f"p50 {q[49] * 1e3:6.2f} ms, p95 {q[94] * 1e3:6.2f} ms")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pathway", default=str(ROOT / "pathways" / "lumbar_fusion.yaml"))
    ap.add_argument("--terminology", default=None)
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--naive-patients", type=int, default=300)
    args = ap.parse_args()
    pathway = load_pathway(args.pathway, args.terminology)
    tz = ZoneInfo("Europe/London")
    rng = random.Random(42)
    patients = [synthetic_patient(i, rng) for i in range(args.patients)]
    n_facts = statistics.mean(len(p.facts) for p, _ in patients)
    print(f"pathway {pathway.id} v{pathway.version}: {len(pathway.elements)} elements; "
          f"{args.patients} synthetic patients, {n_facts:.0f} facts each on average; one core")
    # The 10,000 patients' facts are a benchmark artefact (a worker holds one patient at a time):
    # move them out of the collector's way so its full scans measure evaluation, not the fixture.
    gc.collect()
    gc.freeze()
    fast = _report("engine", _run(pathway, patients, tz))
    evaluate_module.EvaluationContext = NaiveContext  # type: ignore[misc]
    try:
        naive = _report("naive", _run(pathway, patients[: args.naive_patients], tz))
    finally:
        evaluate_module.EvaluationContext = EvaluationContext  # type: ignore[misc]
    print(f"ratio: {fast / naive:.1f}x the naive baseline (goal >= 20x; goal >= 1,000/s)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MiB (10,000 patients' facts held in memory)")


if __name__ == "__main__":
    main()
