"""HL7 v2 patient identifiers (PID-3 with assigning authority) to FHIR Patient ids, by identifier search."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from fhir_adapters.client import FhirClient
from fhir_adapters.errors import FhirFatalError, FhirTemporaryError
from fhir_adapters.hl7v2 import AckCode, ErrorCode, PatientId, V2Problem


def load_authority_map(path: Path) -> dict[str, str]:
    """`ASSIGNING_AUTHORITY: identifier-system-uri` pairs from a YAML file.

    The key is PID-3's CX.4 namespace id as the feed sends it ("" for identifiers sent
    without one); the value is the system the EHR's FHIR API uses for that identifier.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read the HL7 authority map {path}: {exc}") from exc
    if not isinstance(data, dict) or not data or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
    ):
        raise ValueError(f"the HL7 authority map {path} must map assigning authorities to "
                         "identifier system URIs (a YAML mapping of strings)")
    return dict(data)


class PatientIndex:
    """Finds the FHIR Patient for a message's identifiers; found mappings are cached (LRU).

    Not-found answers are not cached: the registration may reach the EHR's FHIR API a moment
    after the feed's message.
    """

    def __init__(self, ehr: FhirClient, systems: Mapping[str, str], *, size: int = 50_000) -> None:
        self._ehr, self._systems, self._size = ehr, dict(systems), size
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.searches = 0

    def cached(self, ids: Sequence[PatientId]) -> str | None:
        """The Patient id if a mapping is already known, without asking the EHR."""
        for i in ids:
            key = (self._systems.get(i.authority), i.value)
            if key in self._cache:
                self._cache.move_to_end(key)  # type: ignore[arg-type]
                return self._cache[key]  # type: ignore[index]
        return None

    async def patient_for(self, ids: Sequence[PatientId], *, location: str = "PID^1^3") -> str:
        """The Patient id for the first identifier with a mapped authority the EHR knows."""
        keys = [(self._systems[i.authority], i.value) for i in ids if i.authority in self._systems]
        if not keys:
            seen = ", ".join(sorted({i.authority or "(none)" for i in ids}))
            raise V2Problem(AckCode.ERROR, ErrorCode.UNKNOWN_KEY,
                            f"no identifier has an assigning authority in the authority map "
                            f"(authorities sent: {seen})", location=location)
        cached = self.cached(ids)
        if cached is not None:
            return cached
        for key in keys:
            patient_id = await self._search(key, location)
            if patient_id is not None:
                self._remember(key, patient_id)
                return patient_id
        systems = ", ".join(sorted({system for system, _ in keys}))
        raise V2Problem(AckCode.ERROR, ErrorCode.UNKNOWN_KEY,
                        f"no Patient in the EHR has the identifier sent (systems: {systems})",
                        location=location)

    def forget(self, ids: Iterable[PatientId]) -> None:
        """Drop cached mappings (a merge moves identifiers between patients)."""
        for i in ids:
            if i.authority in self._systems:
                self._cache.pop((self._systems[i.authority], i.value), None)

    async def _search(self, key: tuple[str, str], location: str) -> str | None:
        system, value = key
        self.searches += 1
        try:
            found = await self._ehr.search("Patient", {"identifier": f"{system}|{value}",
                                                       "_count": "5"}, max_pages=1)
        except FhirTemporaryError as exc:
            raise V2Problem(AckCode.ERROR, ErrorCode.INTERNAL_ERROR,
                            "the EHR's FHIR API is unreachable; send the message again later",
                            location=location) from exc
        except FhirFatalError as exc:
            raise V2Problem(AckCode.ERROR, ErrorCode.INTERNAL_ERROR,
                            f"the EHR refused the Patient identifier search ({exc.status})",
                            location=location) from exc
        # Some servers match identifier values loosely: keep exact matches only.
        ids = sorted({str(r["id"]) for r in found if _has_identifier(r, system, value)})
        if len(ids) > 1:
            raise V2Problem(AckCode.ERROR, ErrorCode.UNKNOWN_KEY,
                            f"the identifier sent (system {system}) matches {len(ids)} Patients "
                            "in the EHR", location=location)
        return ids[0] if ids else None

    def _remember(self, key: tuple[str, str], patient_id: str) -> None:
        self._cache[key] = patient_id
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)


def _has_identifier(resource: Mapping[str, Any], system: str, value: str) -> bool:
    if resource.get("resourceType") != "Patient" or not resource.get("id"):
        return False
    return any(i.get("system") == system and i.get("value") == value
               for i in resource.get("identifier") or [] if isinstance(i, Mapping))
