"""HL7 v2 parsing and ACKs without a socket: what is refused, with which code, and how ACKs escape text."""

from __future__ import annotations

import pytest

from fhir_adapters.hl7v2 import AckCode, ErrorCode, PatientId, V2Problem, ack_for, parse_message
from tests.utils.mllp import MRN_AUTHORITY, message


def test_hl7v2_reads_header_and_every_identifier_with_authority() -> None:
    parsed = parse_message(message("A40", "C1", "M1", prior_mrn="M0"))
    header = (parsed.message_type, parsed.event, parsed.version, parsed.control_id)
    assert header == ("ADT", "A40", "2.5.1", "C1")
    assert parsed.patient_ids == (PatientId("M1", MRN_AUTHORITY), PatientId("9434765919", "NHS"))
    assert parsed.prior_ids == (PatientId("M0", MRN_AUTHORITY),)
    assert parsed.dedup_key == "v2:EPIC^ROYALHOSP:C1"


def test_hl7v2_accepts_lf_and_crlf_segment_terminators() -> None:
    text = message("A01", "C2", "M1")
    for sep in ("\n", "\r\n"):
        assert parse_message(text.replace("\r", sep)).patient_ids[0] == PatientId("M1", MRN_AUTHORITY)


@pytest.mark.parametrize(("text", "code", "location"), [
    (message("A01", "", "M1"), ErrorCode.REQUIRED_FIELD_MISSING, "MSH^1^10"),
    ("\r".join(message("A01", "C3", "M1").split("\r")[:2]), ErrorCode.REQUIRED_FIELD_MISSING, "PID^1^3"),
    (message("A40", "C4", "M1").split("\rMRG")[0], ErrorCode.REQUIRED_FIELD_MISSING, "MRG^1^1"),
    ("PID|1||M1", ErrorCode.SEGMENT_SEQUENCE, "MSH"),
], ids=["no-control-id", "no-pid", "merge-without-mrg", "no-msh"])
def test_hl7v2_refuses_incomplete_messages(text: str, code: ErrorCode, location: str) -> None:
    with pytest.raises(V2Problem) as caught:
        parse_message(text)
    assert (caught.value.ack, caught.value.code, caught.value.location) == (AckCode.REJECT, code, location)


def test_hl7v2_ack_escapes_delimiters_in_the_error_text() -> None:
    parsed = parse_message(message("A01", "C5", "M1"))
    problem = V2Problem(AckCode.ERROR, ErrorCode.UNKNOWN_KEY, "a|b^c~d&e\\f", location="PID^1^3")
    segments = ack_for(parsed, AckCode.ERROR, problem).split("\r")
    assert [s[:3] for s in segments] == ["MSH", "MSA", "ERR"]
    assert segments[2].split("|")[8] == "a\\F\\b\\S\\c\\R\\d\\T\\e\\E\\f"
    assert segments[1].split("|")[:3] == ["MSA", "AE", "C5"]
