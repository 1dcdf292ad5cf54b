"""Builders for engine tests: the test pathway and patients with a surgery at a fixed time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from engine.facts import Fact, PatientFacts, TaskState
from engine.loader import load_pathway
from engine.model import Pathway

DATA = Path(__file__).parent / "data"
LONDON = ZoneInfo("Europe/London")
# Surgery on Saturday 28 March 2026, the day before British Summer Time starts.
SURGERY_START = datetime(2026, 3, 28, 10, 0, tzinfo=UTC)
SURGERY_END = datetime(2026, 3, 28, 15, 0, tzinfo=UTC)
BOOKED = SURGERY_START - timedelta(days=60)

_cache: dict[str, Pathway] = {}


def pathway() -> Pathway:
    if "p" not in _cache:
        _cache["p"] = load_pathway(DATA / "valid" / "pathway.yaml", DATA / "terms.yaml")
    return _cache["p"]


def surgery(with_end: bool = True) -> Fact:
    return Fact("spinal_fusion", SURGERY_START, SURGERY_END if with_end else None,
                source="Procedure/surg", recorded=BOOKED)


def patient(*facts: Fact, sex: str = "female", tasks: tuple[TaskState, ...] = (),
            parameters: dict[str, str] | None = None, birth: date = date(1960, 6, 1)) -> PatientFacts:
    return PatientFacts(patient_id="p1", enrolment_id="enr1", sex=sex, birth_date=birth,
                        enrolled_at=BOOKED, parameters=parameters or {},
                        facts=(surgery(), *facts), tasks=tasks)


def at(hours_from_end: float) -> datetime:
    return SURGERY_END + timedelta(hours=hours_from_end)
