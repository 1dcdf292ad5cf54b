"""ORU^R01 results as FHIR Observations, for sites whose FHIR API does not serve results.

Each OBX becomes one Observation with the code, value and unit as the message sends them,
for the Patient the message was routed to. Its identifier (sender, MSH-10 and OBX-1) is
stable, so the transaction of conditional creates that writes them is idempotent: a re-sent
message creates nothing twice.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import urlencode

from fhir_adapters.facts import escape_search_token
from fhir_adapters.hl7v2 import V2Message, field_text
from fhir_adapters.plandefinition import CANONICAL_BASE

log = logging.getLogger(__name__)
RESULT_IDENTIFIER_SYSTEM = f"{CANONICAL_BASE}/identifier/hl7v2-result"
# HL7 table 0396 coding systems with a FHIR system URI; others become LOCAL_SYSTEM/<name>.
CODING_SYSTEMS = {"LN": "http://loinc.org", "SCT": "http://snomed.info/sct",
                  "SNM": "http://snomed.info/sct", "UCUM": "http://unitsofmeasure.org"}
LOCAL_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/hl7v2"
# OBX-11 (HL7 table 0085) -> Observation.status
STATUSES = {"F": "final", "C": "corrected", "A": "amended", "P": "preliminary", "R": "preliminary",
            "S": "preliminary", "I": "registered", "O": "registered", "X": "cancelled",
            "D": "entered-in-error", "W": "entered-in-error"}
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$")


def coding_system(name: str) -> str:
    return CODING_SYSTEMS.get(name, f"{LOCAL_SYSTEM}/{name or 'unnamed'}")


def v2_instant(text: str, tz: tzinfo) -> str | None:
    """An HL7 v2 TS/DTM (YYYY[MM[DD[HH[MM[SS]]]]][+/-ZZZZ]) as a FHIR dateTime; no zone: `tz`."""
    match = _TS.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    if hour is None:
        return "-".join(part for part in (year, month, day) if part)
    when = datetime(int(year), int(month), int(day), int(hour), int(minute or 0), int(second or 0))
    if zone:
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        aware = when.replace(tzinfo=timezone(-offset if zone[0] == "-" else offset))
    else:
        aware = when.replace(tzinfo=tz)
    return aware.isoformat()


def _coded(message: V2Message, field: int, occurrence: int) -> dict[str, Any] | None:
    """A CE/CWE field as a CodeableConcept (identifier ^ text ^ coding system)."""
    def part(component: int) -> str:
        return field_text(message.raw, "OBX", field, component=component, occurrence=occurrence)
    code, text = part(1), part(2)
    if not code:
        return None
    coding = {"system": coding_system(part(3)), "code": code} | ({"display": text} if text else {})
    return {"coding": [coding]} | ({"text": text} if text else {})


def _value(message: V2Message, occurrence: int) -> dict[str, Any] | None:
    """Observation.value[x] from OBX-2 (value type), OBX-5 and OBX-6 (units)."""
    def obx(field: int, component: int = 1) -> str:
        return field_text(message.raw, "OBX", field, component=component, occurrence=occurrence)
    kind = obx(2)
    if kind in ("NM", "SN"):
        raw = obx(5, 2) if kind == "SN" else obx(5)
        try:
            number = float(raw)
        except ValueError:
            return None
        unit_code, unit_text, unit_system = obx(6, 1), obx(6, 2), obx(6, 3)
        quantity: dict[str, Any] = {"value": int(number) if number.is_integer() else number}
        if unit_code:
            quantity |= {"unit": unit_text or unit_code, "code": unit_code}
            if unit_system:
                quantity["system"] = coding_system(unit_system)
        return {"valueQuantity": quantity}
    if kind in ("ST", "TX", "FT"):
        return {"valueString": obx(5)} if obx(5) else None
    if kind in ("CE", "CWE", "CNE"):
        coded = _coded(message, 5, occurrence)
        return {"valueCodeableConcept": coded} if coded else None
    return None


def observations_from_oru(message: V2Message, patient_id: str, tz: tzinfo) -> list[dict[str, Any]]:
    """One Observation per OBX that has a code and a value of a type we read (NM, SN, ST, TX,
    FT, CE, CWE, CNE); other OBX are left out and logged by position and type only."""
    assert message.raw is not None
    observed = field_text(message.raw, "OBR", 7)
    out = []
    for occurrence in range(1, len(message.raw.segments("OBX")) + 1):
        code, value = _coded(message, 3, occurrence), _value(message, occurrence)
        set_id = field_text(message.raw, "OBX", 1, occurrence=occurrence) or str(occurrence)
        if code is None or value is None:
            kind = field_text(message.raw, "OBX", 2, occurrence=occurrence)
            log.warning("HL7 %s OBX %s (type %s) not written: no code or no readable value",
                        message.control_id, set_id, kind or "none")
            continue
        when = v2_instant(field_text(message.raw, "OBX", 14, occurrence=occurrence) or observed, tz)
        status = STATUSES.get(field_text(message.raw, "OBX", 11, occurrence=occurrence), "unknown")
        identifier = f"{message.sender}:{message.control_id}:{set_id}"
        obs = {"resourceType": "Observation", "status": status,
               "identifier": [{"system": RESULT_IDENTIFIER_SYSTEM, "value": identifier}],
               "code": code, "subject": {"reference": f"Patient/{patient_id}"}, **value}
        if when:
            obs["effectiveDateTime"] = when
        out.append(obs)
    return out


def results_transaction(observations: list[dict[str, Any]]) -> dict[str, Any]:
    """Conditional creates on the results' identifiers, all or none."""
    entries = []
    for obs in observations:
        ident = obs["identifier"][0]
        token = f"{escape_search_token(ident['system'])}|{escape_search_token(ident['value'])}"
        condition = urlencode({"identifier": token})
        entries.append({"resource": obs,
                        "request": {"method": "POST", "url": "Observation", "ifNoneExist": condition}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
