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


# Lapses a patient's care team made: each one leaves one kind of documentation out (or late),
# so the differences in compliance between patients can be read off this list.
LAPSES = {
    "smoking": "no stop-smoking referral",
    "psych": "no PHQ-9/GAD-7 screening",
    "prehab": "no prehabilitation referral",
    "odi": "no baseline ODI",
    "education": "no pre-operative education",
    "discharge_plan": "no discharge planning before admission",
    "paracetamol": "no pre-emptive paracetamol",
    "antibiotic_early": "cefazolin 75 min before incision",
    "opioid_review": "no pre-operative opioid review",
    "glycaemic": "high HbA1c not referred",
    "fasting": "fasting checklist ticked without times",
    "vte": "no mechanical VTE prophylaxis recorded",
    "gdft": "goal-directed fluids not recorded",
    "normothermia": "35.6 C at the end of surgery",
    "ponv3": "2 antiemetic classes for a high-risk patient",
    "pain_reassess": "NRS >= 4 reassessed only after 3 h",
    "pain_monitoring": "night-time pain scores missed",
    "walks": "walked once a day only",
    "analgesia_task": "the analgesia-prescribed task left open",
    "oral": "oral intake not charted",
    "pc6": "PC6 bands not checked or removed",
}


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
    catheter_out_h: float | None  # None = no catheter placed (recorded as such)
    discharge_days: int
    lapses: frozenset[str] = frozenset()

    @property
    def start(self) -> datetime:
        return SURGERY_DAY + timedelta(hours=3.5 * self.theatre_slot)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=2.5 if self.variant == "decompression" else 3.5)

    @property
    def discharged(self) -> datetime:
        # Discharged at 11:00 on POD2, earlier (10:00) after a longer stay: the demo's last clock.
        day = (self.end + timedelta(days=self.discharge_days)).replace(minute=0)
        return day.replace(hour=11 if self.discharge_days <= 2 else 10)

    def lapsed(self, lapse: str) -> bool:
        return lapse in self.lapses


PATIENTS = [
    # Anaemic (iron started in time), PONV history: high risk given only 2 antiemetic classes.
    DemoPatient("demo-ada", "female", "1958-04-02", False, True, False, 11.2, "fusion", "Ward 4B",
                "Bed 3", 0, 6, 6, 5, 18, 3, frozenset({"ponv3"})),
    # Smoker with poorly controlled diabetes, second case: most pre-admission work not done,
    # never charted as out of bed, catheter out only at 40 h.
    DemoPatient("demo-ben", "male", "1974-09-12", True, False, True, 14.1, "decompression",
                "Ward 4B", "Bed 5", 1, 7, 1, None, 40, 2,
                frozenset({"smoking", "psych", "prehab", "discharge_plan", "glycaemic", "fasting",
                           "pain_reassess", "pain_monitoring", "walks", "oral", "analgesia_task"})),
    # Uneventful; the anaesthetic record lacks the goal-directed fluid entry.
    DemoPatient("demo-cleo", "female", "1981-01-23", False, False, False, 13.4, "fusion", "Ward 4B",
                "Bed 8", 2, 3, 0, 4, None, 2, frozenset({"gdft"})),
    # 76, diabetic, PONV history: a hard stay (catheter 30 h, late mobilisation) and many gaps.
    DemoPatient("demo-dev", "male", "1949-06-30", False, True, True, 12.2, "fusion", "Ward 5A",
                "Bed 1", 0, 8, 7, 9, 30, 3,
                frozenset({"education", "opioid_review", "odi", "psych", "discharge_plan",
                           "fasting", "paracetamol", "antibiotic_early", "normothermia", "ponv3",
                           "pain_reassess", "pain_monitoring", "walks", "oral", "pc6", "vte",
                           "analgesia_task"})),
    # Smoker, decompression: no stop-smoking referral, fasting without times, few walks.
    DemoPatient("demo-eve", "female", "1966-11-05", True, False, False, 13.6, "decompression",
                "Ward 5A", "Bed 2", 1, 4, 2, 6, None, 2, frozenset({"smoking", "fasting", "walks"})),
    # Fast track: everything done, except the baseline ODI questionnaire he never returned.
    DemoPatient("demo-finn", "male", "1990-02-14", False, False, False, 15.0, "fusion", "Ward 5A",
                "Bed 4", 2, 2, 0, 3, None, 2, frozenset({"odi"})),
]


def _ref(p: DemoPatient) -> dict[str, str]:
    return {"reference": f"Patient/{p.id}"}


def _cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _obs(p: DemoPatient, system: str, code: str, at: datetime, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "subject": _ref(p),
            "code": _cc(system, code), "effectiveDateTime": at.isoformat(), **value}


def _score(p: DemoPatient, system: str, code: str, at: datetime, value: float) -> dict[str, Any]:
    return _obs(p, system, code, at, valueQuantity={"value": value})


def _proc(p: DemoPatient, code: str, at: datetime, system: str = ERAS) -> dict[str, Any]:
    return {"resourceType": "Procedure", "status": "completed", "subject": _ref(p),
            "code": _cc(system, code), "performedDateTime": at.isoformat()}


def _order(p: DemoPatient, code: str, at: datetime, rtype: str = "ServiceRequest") -> dict[str, Any]:
    coded = {"code": _cc(ERAS, code)} if rtype == "ServiceRequest" else {
        "medicationCodeableConcept": _cc(ERAS, code)}
    return {"resourceType": rtype, "status": "active", "intent": "order", "subject": _ref(p),
            **coded, "authoredOn": at.isoformat()}


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


def _procedure_code(p: DemoPatient) -> tuple[str, str]:
    # Laminectomy (SNOMED 5431005) chooses the decompression variant by terminology data.
    return (SCT, "55705006") if p.variant == "fusion" else (SCT, "5431005")


def booked(p: DemoPatient) -> list[dict[str, Any]]:
    at = SURGERY_DAY - timedelta(days=42)
    out: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": p.id, "gender": p.sex, "birthDate": p.birth},
        {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": _ref(p),
         "code": _cc(*_procedure_code(p)), "occurrenceDateTime": p.start.isoformat(),
         "authoredOn": at.isoformat()},
        _obs(p, LOINC, "72166-2", at, valueCodeableConcept=_cc(
            SCT, "449868002" if p.smoker else "266919005"))]
    if p.diabetic:
        out.append({"resourceType": "Condition", "subject": _ref(p), "code": _cc(SCT, "44054006"),
                    "recordedDate": (at - timedelta(days=700)).isoformat()})
    if p.ponv_history:
        out.append({"resourceType": "Condition", "subject": _ref(p), "code": _cc(ERAS, "ponv-history"),
                    "recordedDate": (at - timedelta(days=1500)).isoformat()})
    return out + pre_assessment(p, at + timedelta(days=7))


def pre_assessment(p: DemoPatient, at: datetime) -> list[dict[str, Any]]:
    """The pre-assessment clinic 5 weeks before surgery, minus the patient's lapses."""
    out = [] if p.lapsed("education") else [_proc(p, "preop-education", at)]
    if p.smoker and not p.lapsed("smoking"):
        out.append(_proc(p, "smoking-cessation-intervention", at))
    if not p.lapsed("psych"):
        out += [_score(p, LOINC, "44261-6", at, 5), _score(p, LOINC, "70274-6", at, 4)]
    if not p.lapsed("odi"):
        out.append(_obs(p, LOINC, "97909-6", at, valueQuantity={"value": 46, "unit": "%", "code": "%"}))
    if not p.lapsed("opioid_review"):
        out.append(_obs(p, ERAS, "preop-opioid-use-reviewed", at, valueBoolean=True))
    if not p.lapsed("discharge_plan"):
        out.append(_proc(p, "discharge-plan", at))
    if not p.lapsed("prehab"):
        out.append(_proc(p, "prehabilitation", at))
    return out


def labs(p: DemoPatient) -> list[dict[str, Any]]:
    at = SURGERY_DAY - timedelta(days=21)
    out = [_obs(p, LOINC, "718-7", at, valueQuantity={"value": p.hb, "unit": "g/dL", "code": "g/dL"}),
           _obs(p, LOINC, "1751-7", at, valueQuantity={"value": 3.9, "unit": "g/dL", "code": "g/dL"}),
           _obs(p, LOINC, "62292-8", at, valueQuantity={"value": 31, "unit": "ng/mL", "code": "ng/mL"})]
    if p.hb < 13:  # anaemic before major surgery (both sexes): iron the next day
        out.append(_order(p, "iron-therapy", at + timedelta(days=1), "MedicationRequest"))
    if p.diabetic:
        out.append(_obs(p, LOINC, "4548-4", at, valueQuantity={"value": 9.1, "unit": "%", "code": "%"}))
        if not p.lapsed("glycaemic"):
            out.append(_proc(p, "glycaemic-optimisation-referral", at + timedelta(days=1)))
    return out


def admission(p: DemoPatient) -> list[dict[str, Any]]:
    out = [_stay(p, None),
           _score(p, ERAS, "apfel-score", p.start - timedelta(minutes=80), 3 if p.ponv_history else 1)]
    if not p.lapsed("paracetamol"):
        out.append(_med(p, "161", p.start - timedelta(hours=1), 1000))
    if p.lapsed("fasting"):
        out.append(_obs(p, ERAS, "fasting-status", p.start - timedelta(hours=2), valueBoolean=True))
    else:
        out += [_obs(p, ERAS, "last-clear-fluids", p.start - timedelta(minutes=150), valueBoolean=True),
                _obs(p, ERAS, "last-solid-food", p.start - timedelta(hours=9), valueBoolean=True)]
    if not p.diabetic:
        out.append(_obs(p, ERAS, "carbohydrate-drink", p.start - timedelta(minutes=150),
                        valueBoolean=True))
    if not p.lapsed("vte"):
        out.append(_proc(p, "mechanical-vte-prophylaxis", p.start - timedelta(minutes=20)))
    return out


def surgery(p: DemoPatient) -> list[dict[str, Any]]:
    out = [{"resourceType": "Procedure", "status": "completed", "subject": _ref(p),
            "code": _cc(*_procedure_code(p)),
            "performedPeriod": {"start": p.start.isoformat(), "end": p.end.isoformat()}},
           _proc(p, "pc6-bands-applied", p.start - timedelta(minutes=30)),
           _med(p, "2180", p.start - timedelta(minutes=75 if p.lapsed("antibiotic_early") else 30),
                2000),                                                       # cefazolin
           _med(p, "10691", p.start + timedelta(minutes=5), 1000),          # tranexamic acid
           _med(p, "3264", p.start + timedelta(minutes=15), 4),             # dexamethasone
           _med(p, "26225", p.end - timedelta(minutes=30), 4),              # ondansetron
           _score(p, LOINC, "8310-5", p.end - timedelta(minutes=10),
                  35.6 if p.lapsed("normothermia") else 36.5)]
    if p.ponv_history and not p.lapsed("ponv3"):
        out.append(_med(p, "3648", p.end - timedelta(minutes=20), 0.625))  # droperidol: 3rd class
    if not p.lapsed("gdft"):
        out.append(_proc(p, "goal-directed-fluid-therapy", p.start + timedelta(minutes=20)))
    if p.catheter_out_h is None:
        out.append(_proc(p, "no-catheter-or-drain", p.end))
    else:
        out.append(_proc(p, "urinary-catheter-inserted", p.start + timedelta(minutes=10)))
    return out


def recovery(p: DemoPatient) -> list[dict[str, Any]]:
    at = p.end + timedelta(hours=2)
    out = [_score(p, LOINC, "72514-3", at, p.first_pain), _score(p, ERAS, "nausea-score", at, p.nausea),
           _obs(p, ERAS, "pc6-bands-checked", p.end + timedelta(minutes=30), valueBoolean=True)
           if not p.lapsed("pc6") else _score(p, ERAS, "nausea-score", p.end, 0),
           _med(p, "5640", p.end + timedelta(hours=1), 400)]                # ibuprofen
    if not p.lapsed("oral"):
        out.append(_obs(p, ERAS, "oral-fluids", p.end + timedelta(hours=2, minutes=30),
                        valueBoolean=True))
    if p.nausea >= 4:  # rescue with a class not used for prophylaxis (or the same, when all used)
        out.append(_med(p, "3648" if p.lapsed("ponv3") or not p.ponv_history else "26225",
                        at + timedelta(minutes=15), 0.625))
    if p.first_pain >= 4:
        out.append(_med(p, "7804", at + timedelta(minutes=10), 5))         # oxycodone
        later = timedelta(hours=3) if p.lapsed("pain_reassess") else timedelta(minutes=45)
        out.append(_score(p, LOINC, "72514-3", at + later, 3))
    return out


def mobilisation(p: DemoPatient) -> list[dict[str, Any]]:
    if p.mobilised_h is None:
        return []
    return [_proc(p, "out-of-bed", p.end + timedelta(hours=p.mobilised_h))]


def ward_stay(p: DemoPatient) -> list[dict[str, Any]]:
    """Everything charted on the ward from surgery end to discharge, in time order."""
    out: list[tuple[datetime, dict[str, Any]]] = []
    end, home = p.end, p.discharged
    if p.catheter_out_h is not None:
        t = end + timedelta(hours=p.catheter_out_h)
        out.append((t, _proc(p, "urinary-catheter-removed", t)))
    if not p.lapsed("pc6"):
        t = p.start + timedelta(hours=23)
        out.append((t, _proc(p, "pc6-bands-removed", t)))
    for block in range(30):  # one pain score 1 h into each 4-hourly block (at discharge at the latest)
        opens = end + timedelta(hours=4 * block)
        t = min(opens + timedelta(hours=1), home - timedelta(minutes=15))
        night = t.astimezone(LONDON).hour < 6
        if opens < home and not (night and p.lapsed("pain_monitoring")):
            out.append((t, _score(p, LOINC, "72514-3", t, 2)))
    for k in range(4):  # regular paracetamol, three doses in each 24 h block
        for dose_h in (3, 9, 15):
            t = end + timedelta(days=k, hours=dose_h)
            if t < home:
                out.append((t, _med(p, "161", t, 1000)))
    for day in range(1, p.discharge_days + 1):
        date = (end + timedelta(days=day)).astimezone(LONDON)
        walks = (9,) if p.lapsed("walks") else ((7, 9, 10) if day == p.discharge_days else (9, 13, 17))
        for hour in walks:
            t = date.replace(hour=hour, minute=0)
            if t < home:
                out.append((t, _proc(p, "370871008", t, system=SCT)))
    day1 = (end + timedelta(days=1)).astimezone(LONDON).replace(hour=8, minute=0)
    if not p.lapsed("oral"):
        out.append((day1, _obs(p, ERAS, "oral-diet", day1, valueBoolean=True)))
    out.append((day1, _order(p, "protein-supplement", day1 + timedelta(hours=2), "MedicationRequest")))
    return [r for _, r in sorted(out, key=lambda pair: pair[0])]


def _pod1_evening(p: DemoPatient) -> datetime:
    return (p.end + timedelta(days=1)).astimezone(LONDON).replace(hour=21, minute=0)


def pod1(p: DemoPatient) -> list[dict[str, Any]]:
    return [r for r in ward_stay(p) if _when(r) <= _pod1_evening(p)]


def discharge(p: DemoPatient) -> list[dict[str, Any]]:
    return [r for r in ward_stay(p) if _when(r) > _pod1_evening(p)] + [_stay(p, p.discharged)]


def _when(resource: dict[str, Any]) -> datetime:
    stamp = (resource.get("effectiveDateTime") or resource.get("performedDateTime")
             or resource.get("authoredOn"))
    return datetime.fromisoformat(str(stamp))


def _morning(p: DemoPatient) -> bool:
    return p.theatre_slot < 2


def _afternoon(p: DemoPatient) -> bool:
    return p.theatre_slot >= 2


def _everyone(p: DemoPatient) -> bool:
    return True


# Tasks the care team completes in the EHR at the end of a scene (the element, and the lapse
# that leaves it open): the anaesthetist completes "post-operative analgesia prescribed" at the
# end of each theatre list.
COMPLETED_TASKS = {
    "morning list finished": ("multimodal_analgesia_prescribed", "analgesia_task"),
    "afternoon list finished": ("multimodal_analgesia_prescribed", "analgesia_task"),
}

# (label, when, what is written, for whom): the clock of a scene is the latest `when` of the
# patients it concerns.
SCENES = [
    ("surgery booked (6 weeks before), pre-assessment",
     lambda p: SURGERY_DAY - timedelta(days=35, hours=-1), booked, _everyone),
    ("pre-admission labs", lambda p: SURGERY_DAY - timedelta(days=19), labs, _everyone),
    ("admitted on the day of surgery", lambda p: p.start - timedelta(minutes=90), admission, _everyone),
    ("morning list finished", lambda p: p.end + timedelta(minutes=5), surgery, _morning),
    ("afternoon list finished", lambda p: p.end + timedelta(minutes=5), surgery, _afternoon),
    ("pain and nausea scores in recovery", lambda p: p.end + timedelta(hours=3), recovery, _everyone),
    ("mobilisation documented", lambda p: p.end + timedelta(hours=10), mobilisation, _everyone),
    ("POD1: catheter out, walking, pain scores", lambda p: _pod1_evening(p), pod1, _everyone),
    ("discharged", lambda p: p.discharged + timedelta(minutes=30), discharge, _everyone),
]
