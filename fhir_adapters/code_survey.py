"""Codes an EHR uses that the site terminology does not bind: what `eras terminology check` reports."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from engine.terminology import Terminology

# The coded elements the fact mapping (fhir_adapters.facts) reads concepts from, per type.
CODED_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Observation": ("code", "valueCodeableConcept"),
    "Procedure": ("code",),
    "Condition": ("code",),
    "ServiceRequest": ("code",),
    "AllergyIntolerance": ("code",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "MedicationAdministration": ("medicationCodeableConcept",),
    "DocumentReference": ("type",),
    "Encounter": ("type",),
    "Appointment": ("serviceType", "appointmentType"),
}
UNBOUND = "unbound"


@dataclass(frozen=True)
class UnboundCode:
    """A code seen `count` times that no concept binds.

    `concept` is what another coding of the same CodeableConcept is bound to (the code is a
    local synonym the site may add there), or "unbound" when nothing in it is bound.
    """

    resource_type: str
    element: str
    concept: str
    system: str
    code: str
    count: int
    display: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def unbound_codes(terminologies: Sequence[Terminology],
                  resources: Iterable[Mapping[str, Any]]) -> list[UnboundCode]:
    """Every unbound code in the resources' coded elements, most frequent first per group."""
    counts: dict[tuple[str, str, str, str, str], int] = {}
    displays: dict[tuple[str, str, str, str, str], str] = {}
    for resource in resources:
        rtype = str(resource.get("resourceType"))
        for element in CODED_ELEMENTS.get(rtype, ()):
            for codings in _codeable_concepts(resource.get(element)):
                unbound = [c for c in codings if not _bound(terminologies, c)]
                concept = _sibling_concept(terminologies, codings) if unbound else UNBOUND
                for coding in unbound:
                    key = (rtype, element, concept, str(coding.get("system", "")), str(coding["code"]))
                    counts[key] = counts.get(key, 0) + 1
                    displays.setdefault(key, str(coding.get("display") or ""))
    rows = [UnboundCode(*key, count=n, display=displays[key]) for key, n in counts.items()]
    return sorted(rows, key=lambda r: (r.resource_type, r.concept, -r.count, r.system, r.code))


def _codeable_concepts(value: Any) -> list[list[Mapping[str, Any]]]:
    """The codings of each CodeableConcept of an element (one or a list of them)."""
    items = value if isinstance(value, list) else [value]
    return [[c for c in item.get("coding") or [] if isinstance(c, Mapping) and c.get("code")]
            for item in items if isinstance(item, Mapping)]


def _bound(terminologies: Sequence[Terminology], coding: Mapping[str, Any]) -> bool:
    system, code = str(coding.get("system", "")), str(coding.get("code", ""))
    return any(t.concepts_for(system, code) for t in terminologies)


def _sibling_concept(terminologies: Sequence[Terminology], codings: list[Mapping[str, Any]]) -> str:
    names = sorted({name for t in terminologies for c in codings
                    for name in t.concepts_for(str(c.get("system", "")), str(c.get("code", "")))})
    return ", ".join(names) or UNBOUND


def codes_enrolling_nothing(pathways: Sequence[tuple[Terminology, frozenset[str]]],
                            resources: Iterable[Mapping[str, Any]]) -> list[str]:
    """`system|code` of procedures (done or requested) that no pathway enrols on.

    `pathways` pairs each pathway's terminology with its enrolling concepts (`enrols_on`):
    this is why a patient with an operation on record is "not on any pathway".
    """
    seen: set[str] = set()
    for resource in resources:
        if resource.get("resourceType") not in ("Procedure", "ServiceRequest"):
            continue
        for codings in _codeable_concepts(resource.get("code")):
            pairs = [(str(c.get("system", "")), str(c["code"])) for c in codings]
            if not any(set(t.concepts_for(s, c)) & wanted for t, wanted in pathways for s, c in pairs):
                seen.update(f"{s}|{c}" for s, c in pairs)
    return sorted(seen)
