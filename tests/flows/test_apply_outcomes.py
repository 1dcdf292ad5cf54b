"""Outcomes computed and stored as data arrives: every apply reads what the outcomes need
(opioid administrations no element uses) and keeps them, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flows.apply import apply_patient
from store.audit_queries import episode_outcome
from store.db import session_scope
from store.enrolments import find_enrolments
from tests.utils import ehr

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
IV, ORAL = "47625008", "26643006"
BOOKED_AT = datetime(2026, 2, 20, 10, tzinfo=UTC)
START = datetime(2026, 4, 15, 8, 30, tzinfo=UTC)      # Wednesday; London is on BST (UTC+1)
END = START + timedelta(hours=3)                     # 11:30 UTC = 12:30 local, POD0
AFTER_POD3 = datetime(2026, 4, 19, 9, tzinfo=UTC)     # POD3 (Sat 18 Apr local) ended 23:00 UTC


def dose(pid: str, code: str, at: datetime, value: float, unit: str, route: str) -> dict[str, Any]:
    return {"resourceType": "MedicationAdministration", "status": "completed",
            "subject": {"reference": f"Patient/{pid}"},
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
            "effectiveDateTime": at.isoformat(),
            "dosage": {"route": {"coding": [{"system": ehr.SCT, "code": route}]},
                       "dose": {"value": value, "unit": unit}}}


async def test_apply_stores_mme_from_opioid_doses_no_element_reads(make_runtime, new_patient_id) -> None:
    pid = new_patient_id
    async with make_runtime() as rt:
        await rt.ehr.transaction(ehr.transaction(
            ehr.patient(pid), ehr.booking(pid, START, BOOKED_AT), ehr.stay(pid, START - timedelta(hours=3)),
            ehr.surgery(pid, START, END),
            dose(pid, "4337", END + timedelta(hours=1), 50, "mcg", IV),    # IV fentanyl 50 x 0.3 = 15
            dose(pid, "7804", END + timedelta(days=1), 10, "mg", ORAL),    # oxycodone 10 x 1.5 = 15
            dose(pid, "7052", END + timedelta(days=2), 4, "mg", IV),       # IV morphine 4 x 3 = 12
            dose(pid, "7804", END + timedelta(days=2), 2, "tablet", ORAL)))  # unknown unit
        await apply_patient(rt, pid, now=END + timedelta(hours=2))
        with session_scope(rt.db) as session:
            enrolment = find_enrolments(session=session, patient_ref=f"Patient/{pid}")[0]
            early = episode_outcome(session=session, enrolment_id=enrolment.id)
        await apply_patient(rt, pid, now=AFTER_POD3)
        with session_scope(rt.db) as session:
            late = episode_outcome(session=session, enrolment_id=enrolment.id)
    assert early is not None and early["opioid_mme"] is None      # POD0-3 not over: no partial sum
    assert late is not None
    assert late["opioid_mme"] == 15 + 15 + 12                      # 42, not 120 + 15 + 4
    assert late["opioid_unconverted"] == 1
    assert len(late["opioid_unconverted_doses"]) == 1
    assert late["opioid_unconverted_doses"][0].startswith("MedicationAdministration/")
