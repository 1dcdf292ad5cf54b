"""Six synthetic lumbar spine patients and their EHR timelines, scene by scene (demo data)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
SURGERY_DAY = datetime(2026, 4, 20, 8, 0, tzinfo=LONDON)  # a Monday
SCT, LOINC = "http://snomed.info/sct", "http://loinc.org"
ERAS = "http://eras-engine.org/fhir/CodeSystem/eras"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@dataclass(frozen=True)
class DemoPatient:
    id: str
    sex: str
    birth: str
    smoker: bool
    ponv_history: bool
    diabetic: bool
    hb: float
    variant: str  # fusion | decompression
    ward: str
    bed: str
    theatre_slot: int  # 0 = first case of the day
    first_pain: int
    nausea: int
    mobilised_h: float | None  # hours after surgery end, None = not documented
    catheter_out_h: float | None
    discharge_days: int

    @property
    def start(self) -> datetime:
        return SURGERY_DAY + timedelta(hours=3.5 * self.theatre_slot)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=2.5 if self.variant == "decompression" else 3.5)


PATIENTS = [
    DemoPatient("demo-ada", "female", "1958-04-02", False, True, False, 11.2, "fusion", "Ward 4B",
                "Bed 3", 0, 6, 6, 5, 18, 3),
    DemoPatient("demo-ben", "male", "1974-09-12", True, False, True, 14.1, "decompression",
                "Ward 4B", "Bed 5", 1, 7, 1, None, None, 2),
    DemoPatient("demo-cleo", "female", "1981-01-23", False, False, False, 13.4, "fusion", "Ward 4B",
                "Bed 8", 2, 3, 0, 4, 12, 2),
    DemoPatient("demo-dev", "male", "1949-06-30", False, True, True, 12.2, "fusion", "Ward 5A",
                "Bed 1", 0, 8, 7, 9, 30, 5),
    DemoPatient("demo-eve", "female", "1966-11-05", True, False, False, 12.6, "decompression",
                "Ward 5A", "Bed 2", 1, 4, 2, 6, 20, 2),
    DemoPatient("demo-finn", "male", "1990-02-14", False, False, False, 15.0, "fusion", "Ward 5A",
                "Bed 4", 2, 2, 0, 3, 10, 2),
]


def _ref(p: DemoPatient) -> dict[str, str]:
    return {"reference": f"Patient/{p.id}"}


def _cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _obs(p: DemoPatient, system: str, code: str, at: datetime, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "subject": _ref(p),
            "code": _cc(system, code), "effectiveDateTime": at.isoformat(), **value}


def _proc(p: DemoPatient, code: str, at: datetime, system: str = ERAS) -> dict[str, Any]:
    return {"resourceType": "Procedure", "status": "completed", "subject": _ref(p),
            "code": _cc(system, code), "performedDateTime": at.isoformat()}


def _med(p: DemoPatient, rxnorm: str, at: datetime, mg: float) -> dict[str, Any]:
    return {"resourceType": "MedicationAdministration", "status": "completed", "subject": _ref(p),
            "medicationCodeableConcept": _cc(RXNORM, rxnorm), "effectiveDateTime": at.isoformat(),
            "dosage": {"dose": {"value": mg, "unit": "mg", "code": "mg",
                                "system": "http://unitsofmeasure.org"}}}


def _stay(p: DemoPatient, end: datetime | None) -> dict[str, Any]:
    kind = "http://terminology.hl7.org/CodeSystem/location-physical-type"
    period = {"start": (p.start - timedelta(hours=2)).isoformat()}
    if end is not None:
        period["end"] = end.isoformat()
    return {"resourceType": "Encounter", "id": f"{p.id}-stay", "status": "finished" if end else "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": _ref(p), "period": period,
            "location": [{"location": {"display": p.ward}, "status": "active",
                          "physicalType": _cc(kind, "wa")},
                         {"location": {"display": p.bed}, "status": "active",
                          "physicalType": _cc(kind, "bd")}]}


def booked(p: DemoPatient) -> list[dict[str, Any]]:
    at = SURGERY_DAY - timedelta(days=42)
    code = (SCT, "55705006") if p.variant == "fusion" else (ERAS, "lumbar-decompression")
    out = [{"resourceType": "Patient", "id": p.id, "gender": p.sex, "birthDate": p.birth},
           {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": _ref(p),
            "code": _cc(*code), "occurrenceDateTime": p.start.isoformat(), "authoredOn": at.isoformat()},
           _obs(p, LOINC, "72166-2", at, valueCodeableConcept=_cc(
               SCT, "77176002" if p.smoker else "266919005"))]
    if p.diabetic:
        out.append({"resourceType": "Condition", "subject": _ref(p), "code": _cc(SCT, "73211009"),
                    "recordedDate": (at - timedelta(days=700)).isoformat()})
    if p.ponv_history:
        out.append({"resourceType": "Condition", "subject": _ref(p), "code": _cc(ERAS, "ponv-history"),
                    "recordedDate": (at - timedelta(days=1500)).isoformat()})
    return out


def labs(p: DemoPatient) -> list[dict[str, Any]]:
    at = SURGERY_DAY - timedelta(days=30)
    out = [_obs(p, LOINC, "718-7", at, valueQuantity={"value": p.hb, "unit": "g/dL", "code": "g/dL"}),
           _obs(p, LOINC, "1751-7", at, valueQuantity={"value": 3.9, "unit": "g/dL", "code": "g/dL"}),
           _proc(p, "preop-education", at + timedelta(days=3))]
    if p.diabetic:
        out.append(_obs(p, LOINC, "4548-4", at, valueQuantity={"value": 9.1, "unit": "%", "code": "%"}))
    if p.theatre_slot != 1:
        out.append(_proc(p, "prehabilitation", at + timedelta(days=1)))
    return out


def admission(p: DemoPatient) -> list[dict[str, Any]]:
    out = [_stay(p, None)]
    if not p.diabetic:
        out.append(_med(p, "161", p.start - timedelta(hours=1), 1000))
    return out


def surgery(p: DemoPatient) -> list[dict[str, Any]]:
    code = (SCT, "55705006") if p.variant == "fusion" else (ERAS, "lumbar-decompression")
    return [{"resourceType": "Procedure", "status": "completed", "subject": _ref(p), "code": _cc(*code),
             "performedPeriod": {"start": p.start.isoformat(), "end": p.end.isoformat()}},
            _proc(p, "pc6-bands-applied", p.start - timedelta(minutes=30)),
            _med(p, "26225", p.start + timedelta(minutes=20), 4),
            _proc(p, "urinary-catheter-inserted", p.start + timedelta(minutes=10))]


def recovery(p: DemoPatient) -> list[dict[str, Any]]:
    at = p.end + timedelta(hours=2)
    out = [_obs(p, LOINC, "72514-3", at, valueQuantity={"value": p.first_pain}),
           _obs(p, ERAS, "nausea-score", at, valueQuantity={"value": p.nausea})]
    if p.first_pain >= 4 and p.theatre_slot != 1:  # reassessed within the hour, except two
        out.append(_obs(p, LOINC, "72514-3", at + timedelta(minutes=45), valueQuantity={"value": 3}))
    return out


def mobilisation(p: DemoPatient) -> list[dict[str, Any]]:
    if p.mobilised_h is None:
        return []
    return [_proc(p, "out-of-bed", p.end + timedelta(hours=p.mobilised_h))]


def pod1(p: DemoPatient) -> list[dict[str, Any]]:
    out = []
    if p.catheter_out_h is not None:
        out.append(_proc(p, "urinary-catheter-removed", p.end + timedelta(hours=p.catheter_out_h)))
    day1 = (p.end + timedelta(days=1)).replace(hour=9, minute=0)
    walks = 3 if p.mobilised_h is not None and p.mobilised_h < 8 else 1
    out += [_proc(p, "370871008", day1 + timedelta(hours=4 * k), system=SCT) for k in range(walks)]
    return out


def discharge(p: DemoPatient) -> list[dict[str, Any]]:
    return [_stay(p, (p.end + timedelta(days=p.discharge_days)).replace(hour=11, minute=0))]


SCENES = [
    ("surgery booked (6 weeks before)", lambda p: SURGERY_DAY - timedelta(days=42, hours=-1), booked),
    ("pre-admission labs and education", lambda p: SURGERY_DAY - timedelta(days=26), labs),
    ("admitted on the day of surgery", lambda p: p.start - timedelta(minutes=90), admission),
    ("operation finished", lambda p: p.end + timedelta(minutes=5), surgery),
    ("pain and nausea scores in recovery", lambda p: p.end + timedelta(hours=3), recovery),
    ("mobilisation documented", lambda p: p.end + timedelta(hours=10), mobilisation),
    ("POD1: catheter out, walking", lambda p: (p.end + timedelta(days=1)).replace(hour=21), pod1),
    ("discharged", lambda p: (p.end + timedelta(days=p.discharge_days)).replace(hour=12), discharge),
]
