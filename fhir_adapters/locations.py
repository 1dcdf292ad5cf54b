"""Ward and bed of a stay: Encounter.location resolved to Locations (bed -> room -> ward via partOf).

The order of trust: the Location resources the entries reference (their `physicalType` and
`partOf` chain), then an entry's display split by the site's pattern ("Ward 5B, bed 12"), then
the entries' own `physicalType` and display text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fhir_adapters.client import FhirClient
from fhir_adapters.errors import FhirFatalError

# location-physical-type codes -> what the worklist calls them
PHYSICAL_KINDS = {"wa": "ward", "ro": "room", "bd": "bed"}
# "Ward 5B, bed 12" -> ward "Ward 5B", bed "bed 12" (ERAS_FHIR_WARD_BED_PATTERN replaces it)
DEFAULT_WARD_BED_PATTERN = r"(?i)^\s*(?P<ward>[^,;]+?)\s*[,;]\s*(?P<bed>bed\b.*?)\s*$"
MAX_CHAIN = 6  # bed -> room -> ward -> building -> site: deeper is a loop or a modelling error
Resource = Mapping[str, Any]


def compile_ward_bed_pattern(pattern: str) -> re.Pattern[str]:
    """The pattern, checked to name the groups `ward` and `bed`."""
    compiled = re.compile(pattern)
    missing = {"ward", "bed"} - set(compiled.groupindex)
    if missing:
        raise ValueError(f"the ward/bed pattern needs the named groups {', '.join(sorted(missing))}")
    return compiled


DEFAULT_PATTERN = compile_ward_bed_pattern(DEFAULT_WARD_BED_PATTERN)


def ward_and_bed(entries: list[Any], locations: Mapping[str, Resource],
                 pattern: re.Pattern[str] = DEFAULT_PATTERN) -> dict[str, str]:
    """Current ward and bed of an Encounter's `location` entries (R4B models)."""
    current = _current(entries)
    out: dict[str, str] = {}
    for entry in reversed(current):  # the latest entry's Locations first
        for loc in chain(entry.location.reference, locations):
            kind = _kind(loc.get("physicalType"))
            if kind in ("ward", "bed") and loc.get("name"):
                out.setdefault(kind, str(loc["name"]))
    for entry in reversed(current):
        match = pattern.match(entry.location.display or "")
        if match and not out:
            out = {"ward": match["ward"], "bed": match["bed"]}
    for kind, name in _from_entries(entries).items():
        out.setdefault(kind, name)
    return out


def chain(reference: str | None, locations: Mapping[str, Resource]) -> list[Resource]:
    """The Location referenced and those it is part of, nearest first (cycles cut)."""
    found: list[Resource] = []
    seen: set[str] = set()
    while reference and reference not in seen and len(found) < MAX_CHAIN:
        seen.add(reference)
        loc = locations.get(_local(reference))
        if loc is None:
            break
        found.append(loc)
        reference = (loc.get("partOf") or {}).get("reference")
    return found


def _local(reference: str) -> str:
    """`Location/id` of a relative or absolute reference (history suffix dropped)."""
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:])


def _kind(physical_type: Any) -> str | None:
    codings = (physical_type or {}).get("coding") or []
    return _kind_of([c.get("code") for c in codings if isinstance(c, Mapping)])


def _kind_of(codes: list[Any]) -> str | None:
    kinds = [PHYSICAL_KINDS.get(str(code)) for code in codes]
    return next((k for k in kinds if k), "other" if codes else None)


def _entry_kind(entry: Any) -> str | None:
    """`_kind` of the entry's physicalType, read off the model (a model_dump per entry cost
    more than the rest of the stay's facts)."""
    physical = entry.physicalType
    return _kind_of([c.code for c in physical.coding or []] if physical is not None else [])


def _current(entries: list[Any]) -> list[Any]:
    active = [loc for loc in entries if loc.status == "active"]
    return active or entries[-1:]


def _from_entries(entries: list[Any]) -> dict[str, str]:
    """Per kind the last current entry typed so; untyped current entries fill the kinds still
    missing, in order (first ward, then bed). Names are displays, else the referenced id."""
    out: dict[str, str] = {}
    kinds = [_entry_kind(e) for e in entries]
    for kind in ("ward", "bed"):
        chosen = _current([e for e, k in zip(entries, kinds, strict=True) if k == kind])
        if chosen:
            out[kind] = _entry_name(chosen[-1])
    untyped = _current([e for e, k in zip(entries, kinds, strict=True) if k is None])
    for kind in ("ward", "bed"):
        if kind not in out and untyped:
            out[kind] = _entry_name(untyped.pop(0))
    return out


def _entry_name(entry: Any) -> str:
    ref = entry.location
    return ref.display or (ref.reference or "").rsplit("/", 1)[-1]


class LocationCache:
    """Location resources by `Location/id`, kept `ttl` seconds: wards and beds rarely change,
    so a patient's apply seldom costs a Location read."""

    def __init__(self, ttl: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._held: dict[tuple[str, str], tuple[float, Resource]] = {}

    def get(self, base: str, ref: str) -> Resource | None:
        held = self._held.get((base, ref))
        return held[1] if held is not None and self.clock() - held[0] < self.ttl else None

    def put(self, base: str, resource: Resource) -> None:
        self._held[(base, f"Location/{resource.get('id')}")] = (self.clock(), resource)


LOCATIONS = LocationCache()


async def resolve_locations(client: FhirClient, resources: Iterable[Resource],
                            cache: LocationCache = LOCATIONS) -> list[dict[str, Any]]:
    """The Locations the Encounters' entries reference and their `partOf` chains, read by id
    (EHRs that refuse searches naming no patient allow reads) unless cached; a Location the
    EHR does not have is left out (the entry's display stands in)."""
    wanted = {_local(str(e["location"]["reference"])) for r in resources
              if r.get("resourceType") == "Encounter" for e in r.get("location") or []
              if isinstance((e.get("location") or {}).get("reference"), str)}
    found: dict[str, Resource] = {}
    for _ in range(MAX_CHAIN):
        wanted = {ref for ref in wanted if ref.startswith("Location/") and ref not in found}
        if not wanted:
            break
        for ref in sorted(wanted):
            loc = cache.get(client.base_url, ref) or await _read(client, ref, cache)
            if loc is not None:
                found[ref] = loc
        wanted = {_local(parent) for ref in wanted if ref in found
                  if isinstance(parent := (found[ref].get("partOf") or {}).get("reference"), str)}
    return [dict(loc) for loc in found.values()]


async def _read(client: FhirClient, ref: str, cache: LocationCache) -> Resource | None:
    try:
        loc = await client.read("Location", ref.split("/", 1)[1])
    except FhirFatalError as exc:
        if exc.status in (404, 410):
            return None
        raise
    cache.put(client.base_url, loc)
    return loc
