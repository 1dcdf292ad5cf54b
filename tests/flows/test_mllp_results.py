"""ORU^R01 results written to the FHIR results store over a real MLLP socket, then read by apply."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fhir_adapters.client import FhirClient
from fhir_adapters.hl7v2_results import RESULT_IDENTIFIER_SYSTEM
from fhir_adapters.sandbox import FhirSandbox
from flows.apply import apply_patient
from flows.drain import drain_once
from flows.mllp import MllpSettings, start_mllp
from tests.flows.test_apply import tasks_of
from tests.flows.test_mllp import SENDER, new_control_id, new_mrn, registered_patient, write_authority_map
from tests.utils import ehr
from tests.utils.mllp import MllpClient, ack_code, ack_segment, message
from tests.utils.notifications import clear_intake_tables

BOOKED_AT = datetime(2026, 2, 20, 10, tzinfo=UTC)
SURGERY = datetime(2026, 4, 15, 8, 30, tzinfo=UTC)
NOW = datetime(2026, 3, 10, 9, tzinfo=UTC)


def _oru(control_id: str, mrn: str) -> str:
    """An ORU^R01 with a haemoglobin (LOINC, g/dL, local time), a comment and an image (ED)."""
    header = message("R01", control_id, mrn).split("\r")[:2]  # MSH and PID
    return "\r".join([*header, "OBR|1||LAB9|58410-2^CBC panel^LN|||20260301070000",
                      "OBX|1|NM|718-7^Hemoglobin^LN||10.5|g/dL^g/dL^UCUM|13.0-17.0|L|||F|||20260301073000",
                      "OBX|2|ST|8251-1^Comment^LN||sample slightly haemolysed||||||F",
                      "OBX|3|ED|11502-2^Report^LN||^application^pdf^Base64^JVBERi0=||||||F"])


async def test_oru_results_are_written_once_and_apply_reads_them(
        make_runtime, task_store: FhirSandbox, tmp_path: Path) -> None:
    async with make_runtime() as rt, FhirClient(task_store.base_url) as store:
        rt.results, rt.clock = store, lambda: NOW
        clear_intake_tables(rt.db)
        mrn = new_mrn()
        pid = await registered_patient(rt, mrn)
        await rt.ehr.transaction(ehr.transaction(ehr.booking(pid, SURGERY, BOOKED_AT)))
        await apply_patient(rt, pid)
        assert "anaemia_iron_therapy" not in await tasks_of(rt.ehr, pid)  # no Hb anywhere yet

        server = await start_mllp(rt, MllpSettings(port=0, authority_map_file=write_authority_map(tmp_path)))
        client = await MllpClient.connect("127.0.0.1", server.sockets[0].getsockname()[1])
        control_id = new_control_id()
        try:
            first = await client.send(_oru(control_id, mrn))
            again = await client.send(_oru(control_id, mrn))  # the sender missed the ACK: re-sent
        finally:
            await client.close()
            server.close()
        stored = await store.search("Observation", {"patient": f"Patient/{pid}"})
        in_ehr = await rt.ehr.search("Observation", {"patient": f"Patient/{pid}"})
        drained = await drain_once(rt, worker="test-oru")  # the ORU's event applies the patient
        tasks = await tasks_of(rt.ehr, pid)
        clear_intake_tables(rt.db)
    assert ack_code(first) == "AA" and ack_code(again) == "AA" and ack_segment(first, "ERR") == []
    by_code = {o["code"]["coding"][0]["code"]: o for o in stored}
    assert sorted(by_code) == ["718-7", "8251-1"]  # once each; the ED report is not a value we read
    hb = by_code["718-7"]
    assert hb["code"]["coding"][0]["system"] == "http://loinc.org"
    assert hb["valueQuantity"] == {"value": 10.5, "unit": "g/dL", "code": "g/dL",
                                   "system": "http://unitsofmeasure.org"}
    assert hb["subject"] == {"reference": f"Patient/{pid}"} and hb["status"] == "final"
    assert hb["effectiveDateTime"].startswith("2026-03-01T07:30:00")  # London is on GMT in March
    assert hb["identifier"] == [{"system": RESULT_IDENTIFIER_SYSTEM, "value": f"{SENDER}:{control_id}:1"}]
    assert by_code["8251-1"]["valueString"] == "sample slightly haemolysed"
    assert in_ehr == []  # written to the store, not the EHR
    assert drained.applied == [pid]
    # Hb 10.5 g/dL < 13 (Munoz 2017, lumbar pathway item 5): iron therapy, known only from the store
    assert "anaemia_iron_therapy" in tasks

