"""Fingerprints of what decides an evaluation's results, so that history re-evaluates only what changed.

An element's result depends on its own definition and on what every element shares: the anchors,
parameters, scores, episode scope and audit settings of the pathway, the terminology (concepts,
decline reasons, codes), the hospital's zone and its rules, and the engine's code (with Python's
and FHIRPath's versions). No element reads another's
result (conditions read facts, parameters and scores), so an element whose digest and the shared
digest are unchanged gives the same result from the same facts at the same instant.
"""

from __future__ import annotations

import hashlib
import sys
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import tzinfo
from functools import cache
from importlib import metadata, resources
from pathlib import Path

from engine.model import Pathway
from engine.plan import plan_of

ENGINE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class PlanDigest:
    """The digests of one plan: `shared` (what every element depends on), one per element, and
    `digest` naming the whole (both), under which stored results record the plan that made them."""

    digest: str
    shared: str
    elements: Mapping[str, str]

    def changed(self, old: PlanDigest) -> frozenset[str] | None:
        """Elements whose results may differ from `old`'s: the added and changed ones, and the
        removed ones (whose results go); None when the shared digest differs (all of them)."""
        if old.shared != self.shared:
            return None
        return frozenset(e for e, d in self.elements.items() if old.elements.get(e) != d) | (
            old.elements.keys() - self.elements.keys())


def _sha(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


@cache
def source_digest(*roots: Path) -> str:
    """The digest of the Python sources under `roots` (directories or files), read once a process."""
    files = sorted({f for root in roots for f in ([root] if root.is_file() else root.rglob("*.py"))})
    return _sha(*(part for f in files for part in (f.name, f.read_bytes())))


def _zone_rules(tz: tzinfo) -> bytes:
    """The zone's rules as the system's time zone database holds them (new rules move local days)."""
    key = getattr(tz, "key", None)
    if not isinstance(key, str):
        return b""
    for root in zoneinfo.TZPATH:
        path = Path(root) / key
        if path.is_file():
            return path.read_bytes()
    try:  # zoneinfo's fallback: the tzdata package
        return resources.files("tzdata.zoneinfo").joinpath(*key.split("/")).read_bytes()
    except (ModuleNotFoundError, OSError):
        return b""


@cache
def _runtime() -> str:
    """Python's version and FHIRPath's, which the engine's results depend on as on its own code."""
    return f"{sys.version_info[:3]} fhirpathpy {metadata.version('fhirpathpy')}"


def plan_digest(pathway: Pathway, tz: tzinfo, *, code: Iterable[Path] = ()) -> PlanDigest:
    """The plan's digests with the zone `tz` and the engine's code (and the sources `code`, e.g.
    the store's that turns results into rows); worked out once per loaded pathway."""
    plan = plan_of(pathway)
    key = (str(tz), *map(str, code))
    cached = plan.digests.get(key)
    if isinstance(cached, PlanDigest):
        return cached
    # Conservative: the whole pathway but its elements and version (a version number decides no
    # result), the whole terminology, the zone and its rules, and the code.
    shared = _sha(pathway.model_dump_json(exclude={"elements", "version"}),
                  plan.terminology.model_dump_json(), str(tz), _zone_rules(tz), _runtime(),
                  source_digest(ENGINE_DIR, *code))
    elements = {el.id: _sha(el.model_dump_json()) for el in pathway.elements}
    digest = PlanDigest(_sha(shared, *(f"{e}={d}" for e, d in sorted(elements.items()))), shared, elements)
    plan.digests[key] = digest
    return digest
