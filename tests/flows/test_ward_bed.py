"""Ward and bed from Encounter.location: sandbox Locations (bed -> room -> ward), display fallback."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_adapters.client import FhirClient
from flows.apply import apply_patient
from flows.runtime import Runtime
from store.db import session_scope
from store.enrolments import find_enrolments
from tests.utils import ehr

BOOKED_AT = datetime(2026, 2, 20, 10, tzinfo=UTC)
SURGERY = datetime(2026, 4, 15, 8, 30, tzinfo=UTC)
AFTER = SURGERY + timedelta(hours=6)
KIND = "http://terminology.hl7.org/CodeSystem/location-physical-type"


async def _location(client: FhirClient, name: str, kind: str, part_of: str | None = None) -> str:
    rid = f"loc-{uuid.uuid4().hex[:10]}"
    loc: dict[str, Any] = {"resourceType": "Location", "id": rid, "name": name, "status": "active",
                           "physicalType": {"coding": [{"system": KIND, "code": kind}]}}
    if part_of:
        loc["partOf"] = {"reference": f"Location/{part_of}"}
    await client.update(loc)
    return rid


def _stay(pid: str, *entries: dict[str, Any]) -> dict[str, Any]:
    stay = ehr.stay(pid, SURGERY - timedelta(hours=2))
    stay["location"] = [{"status": "active", **entry} for entry in entries]
    return stay


async def _ward_and_bed(rt: Runtime, pid: str, stay: dict[str, Any]) -> tuple[str | None, str | None]:
    await rt.ehr.transaction(ehr.transaction(ehr.patient(pid), ehr.booking(pid, SURGERY, BOOKED_AT),
                                             ehr.surgery(pid, SURGERY), stay))
    await apply_patient(rt, pid, now=AFTER)
    with session_scope(rt.db) as session:
        [row] = find_enrolments(session=session, patient_ref=f"Patient/{pid}")
        return row.ward, row.bed


async def test_bed_location_resolves_through_room_to_ward(make_runtime, new_patient_id) -> None:
    async with make_runtime() as rt:
        ward = await _location(rt.ehr, "Ward 5B", "wa")
        room = await _location(rt.ehr, "Room 3", "ro", part_of=ward)
        bed = await _location(rt.ehr, "Bed 12", "bd", part_of=room)
        # the display is stale (a transfer renamed nothing in the entry): the Locations win
        stay = _stay(new_patient_id, {"location": {"reference": f"Location/{bed}", "display": "Old ward"}})
        assert await _ward_and_bed(rt, new_patient_id, stay) == ("Ward 5B", "Bed 12")
        trips = rt.round_trips
        await apply_patient(rt, new_patient_id, now=AFTER + timedelta(hours=1))
        reads_again = rt.round_trips - trips
    # the second apply reads the record and writes; the Locations come from the cache
    assert reads_again <= 2


async def test_display_holding_ward_and_bed_is_split(make_runtime, new_patient_id) -> None:
    async with make_runtime() as rt:
        stay = _stay(new_patient_id, {"location": {"display": "Ward 5B, bed 12"}})
        assert await _ward_and_bed(rt, new_patient_id, stay) == ("Ward 5B", "bed 12")


async def test_site_pattern_splits_its_own_display_form(make_runtime, new_patient_id) -> None:
    async with make_runtime() as rt:
        rt = replace(rt, ward_bed=re.compile(r"^(?P<ward>[A-Z0-9]+)-(?P<bed>\d+)$"))
        stay = _stay(new_patient_id, {"location": {"display": "W5B-12"}})
        assert await _ward_and_bed(rt, new_patient_id, stay) == ("W5B", "12")


async def test_unknown_location_falls_back_to_the_entry_display(make_runtime, new_patient_id) -> None:
    async with make_runtime() as rt:
        ward = await _location(rt.ehr, "Spine ward", "wa")
        stay = _stay(new_patient_id,
                     {"location": {"reference": f"Location/{ward}"}},
                     {"location": {"reference": "Location/no-such-bed", "display": "Bed 4"},
                      "physicalType": {"coding": [{"system": KIND, "code": "bd"}]}})
        assert await _ward_and_bed(rt, new_patient_id, stay) == ("Spine ward", "Bed 4")
