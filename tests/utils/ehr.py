"""FHIR resources for seeding the sandbox EHR, coded as pathways/terminology/default.yaml binds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ERAS = "http://eras-engine.org/fhir/CodeSystem/eras"


def _iso(at: datetime) -> str:
    return at.isoformat()


def _code(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def patient(pid: str, *, sex: str = "female", birth: str = "1960-05-01") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": sex, "birthDate": birth}


def booking(pid: str, at: datetime, authored: datetime, *, code: str = "55705006",
            system: str = SCT) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "subject": {"reference": f"Patient/{pid}"}, "code": _code(system, code),
            "occurrenceDateTime": _iso(at), "authoredOn": _iso(authored)}


def surgery(pid: str, start: datetime, end: datetime | None = None) -> dict[str, Any]:
    period = {"start": _iso(start)} | ({"end": _iso(end)} if end else {})
    return {"resourceType": "Procedure", "status": "completed" if end else "in-progress",
            "subject": {"reference": f"Patient/{pid}"}, "code": _code(SCT, "55705006"),
            "performedPeriod": period}


def stay(pid: str, start: datetime, end: datetime | None = None, *, ward: str = "Ward 4B",
         bed: str = "Bed 12") -> dict[str, Any]:
    period = {"start": _iso(start)} | ({"end": _iso(end)} if end else {})
    kind = "http://terminology.hl7.org/CodeSystem/location-physical-type"
    return {"resourceType": "Encounter", "status": "finished" if end else "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": f"Patient/{pid}"}, "period": period,
            "location": [
                {"location": {"display": ward}, "status": "active",
                 "physicalType": _code(kind, "wa")},
                {"location": {"display": bed}, "status": "active",
                 "physicalType": _code(kind, "bd")}]}


def observation(pid: str, system: str, code: str, at: datetime, *, value: float | None = None,
                unit: str | None = None, coded: tuple[str, str] | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                           "subject": {"reference": f"Patient/{pid}"}, "code": _code(system, code),
                           "effectiveDateTime": _iso(at)}
    if value is not None:
        obs["valueQuantity"] = {"value": value} | ({"unit": unit, "code": unit} if unit else {})
    if coded is not None:
        obs["valueCodeableConcept"] = _code(*coded)
    return obs


def smoking(pid: str, at: datetime, *, current: bool) -> dict[str, Any]:
    value = (SCT, "77176002") if current else (SCT, "266919005")
    return observation(pid, LOINC, "72166-2", at, coded=value)


def haemoglobin(pid: str, at: datetime, value: float, unit: str = "g/dL") -> dict[str, Any]:
    return observation(pid, LOINC, "718-7", at, value=value, unit=unit)


def pain(pid: str, at: datetime, score: int) -> dict[str, Any]:
    return observation(pid, LOINC, "72514-3", at, value=score)


def procedure(pid: str, code: str, at: datetime, system: str = ERAS) -> dict[str, Any]:
    return {"resourceType": "Procedure", "status": "completed",
            "subject": {"reference": f"Patient/{pid}"}, "code": _code(system, code),
            "performedDateTime": _iso(at)}


def transaction(*resources: dict[str, Any]) -> dict[str, Any]:
    """A transaction creating the resources (a Patient keeps its id via PUT)."""
    entries = []
    for res in resources:
        if res["resourceType"] == "Patient":
            entries.append({"resource": res, "request": {"method": "PUT", "url": f"Patient/{res['id']}"}})
        else:
            entries.append({"resource": res, "request": {"method": "POST", "url": res["resourceType"]}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
