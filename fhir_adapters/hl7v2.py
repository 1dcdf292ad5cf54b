"""HL7 v2 messages the engine takes in (ADT, SIU, ORU): parse with python-hl7, check, acknowledge."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import hl7
from hl7.exceptions import HL7Exception

# Message types whose event is worth a re-evaluation; anything else is refused (AR 200/201).
SUPPORTED_EVENTS: dict[str, frozenset[str]] = {
    "ADT": frozenset({"A01", "A02", "A03", "A04", "A08", "A11", "A13", "A40"}),
    "SIU": frozenset({"S12", "S13", "S14", "S15"}),
    "ORU": frozenset({"R01"}),
}
# Versions whose MSH, PID-3 (CX with assigning authority) and MRG-1 read as we read them.
SUPPORTED_VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8"})
MERGE_EVENT = "A40"


class AckCode(StrEnum):
    """HL7 table 0008 (original mode): accepted, error (may be re-sent), rejected (do not re-send)."""

    ACCEPT = "AA"
    ERROR = "AE"
    REJECT = "AR"


class ErrorCode(StrEnum):
    """HL7 table 0357: what was wrong, carried in ERR-3."""

    SEGMENT_SEQUENCE = "100"
    REQUIRED_FIELD_MISSING = "101"
    UNSUPPORTED_MESSAGE_TYPE = "200"
    UNSUPPORTED_EVENT_CODE = "201"
    UNSUPPORTED_VERSION = "203"
    UNKNOWN_KEY = "204"
    INTERNAL_ERROR = "207"


_ERROR_TEXT = {
    ErrorCode.SEGMENT_SEQUENCE: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    ErrorCode.UNSUPPORTED_VERSION: "Unsupported version id",
    ErrorCode.UNKNOWN_KEY: "Unknown key identifier",
    ErrorCode.INTERNAL_ERROR: "Application internal error",
}


class V2Problem(Exception):
    """Why a message is not accepted: the ACK code, the table 0357 code, where, and one sentence.

    The sentence never carries patient identifiers or clinical values: it goes back to the
    sender and into logs.
    """

    def __init__(self, ack: AckCode, code: ErrorCode, text: str, *, location: str = "") -> None:
        super().__init__(text)
        self.ack, self.code, self.text, self.location = ack, code, text, location


@dataclass(frozen=True)
class PatientId:
    """One CX repetition: the value and its assigning authority (CX.4 namespace id)."""

    value: str
    authority: str


@dataclass(frozen=True)
class V2Message:
    """What the engine needs of a message; the facts themselves are read over FHIR."""

    control_id: str
    message_type: str
    event: str
    version: str
    sender: str  # MSH-3^MSH-4: control ids are unique per sending application and facility
    sent_at: str  # MSH-7 as sent (a local time without zone is common)
    patient_ids: tuple[PatientId, ...]
    prior_ids: tuple[PatientId, ...] = ()  # MRG-1 of a merge: the identifiers that go away
    raw: hl7.Message | None = field(default=None, compare=False, repr=False)

    @property
    def dedup_key(self) -> str:
        return f"v2:{self.sender}:{self.control_id}"

    @property
    def is_merge(self) -> bool:
        return self.message_type == "ADT" and self.event == MERGE_EVENT

    def summary(self) -> dict[str, str]:
        """The inbox payload: which message it was, without patient data."""
        return {"hl7v2": f"{self.message_type}^{self.event}", "control_id": self.control_id,
                "version": self.version, "sender": self.sender, "sent_at": self.sent_at}


def parse_message(text: str) -> V2Message:
    """Parse and check one message; a V2Problem says what the ACK must say."""
    message = _parse(text)
    control_id = field_text(message, "MSH", 10)
    if not control_id:
        raise V2Problem(AckCode.REJECT, ErrorCode.REQUIRED_FIELD_MISSING,
                        "MSH-10 (message control id) is empty", location="MSH^1^10")
    version = field_text(message, "MSH", 12)
    if version not in SUPPORTED_VERSIONS:
        raise V2Problem(AckCode.REJECT, ErrorCode.UNSUPPORTED_VERSION,
                        f"HL7 version '{version}' is not supported (2.3 to 2.8 are)",
                        location="MSH^1^12")
    message_type = field_text(message, "MSH", 9, component=1)
    event = field_text(message, "MSH", 9, component=2)
    if message_type not in SUPPORTED_EVENTS:
        raise V2Problem(AckCode.REJECT, ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
                        f"message type '{message_type}' is not taken (ADT, SIU, ORU are)",
                        location="MSH^1^9^1")
    if event not in SUPPORTED_EVENTS[message_type]:
        taken = ", ".join(sorted(SUPPORTED_EVENTS[message_type]))
        raise V2Problem(AckCode.REJECT, ErrorCode.UNSUPPORTED_EVENT_CODE,
                        f"{message_type} event '{event}' is not taken ({taken} are)",
                        location="MSH^1^9^2")
    patient_ids = _identifiers(message, "PID", 3)
    if not patient_ids:
        raise V2Problem(AckCode.REJECT, ErrorCode.REQUIRED_FIELD_MISSING,
                        "PID-3 (patient identifier list) is missing", location="PID^1^3")
    prior_ids = _identifiers(message, "MRG", 1) if message_type == "ADT" and event == MERGE_EVENT else ()
    if message_type == "ADT" and event == MERGE_EVENT and not prior_ids:
        raise V2Problem(AckCode.REJECT, ErrorCode.REQUIRED_FIELD_MISSING,
                        "an A40 merge needs MRG-1 (prior patient identifier list)", location="MRG^1^1")
    sender = f"{field_text(message, 'MSH', 3)}^{field_text(message, 'MSH', 4)}"
    return V2Message(control_id=control_id, message_type=message_type, event=event, version=version,
                     sender=sender, sent_at=field_text(message, "MSH", 7), patient_ids=patient_ids,
                     prior_ids=prior_ids, raw=message)


def _parse(text: str) -> hl7.Message:
    # Interface engines differ in segment terminators; HL7 says CR, some send LF or CRLF.
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    if not text.startswith("MSH") or len(text) < 8:
        raise V2Problem(AckCode.REJECT, ErrorCode.SEGMENT_SEQUENCE,
                        "the message does not start with an MSH segment", location="MSH")
    try:
        return hl7.parse(text)
    except (HL7Exception, ValueError, IndexError) as exc:
        raise V2Problem(AckCode.REJECT, ErrorCode.SEGMENT_SEQUENCE,
                        f"the message cannot be parsed ({type(exc).__name__})") from exc


def field_text(message: hl7.Message, segment: str, number: int, *, repeat: int = 1,
               component: int = 1, occurrence: int = 1) -> str:
    """One component of the `occurrence`-th such segment as text, '' when absent (python-hl7
    numbers MSH fields as HL7 does)."""
    try:
        return str(message.extract_field(segment, occurrence, number, repeat, component)).strip()
    except (KeyError, IndexError):
        return ""


def _identifiers(message: hl7.Message, segment: str, number: int) -> tuple[PatientId, ...]:
    """Every CX repetition of a field that has both a value and an assigning authority."""
    try:
        field_ = message.segment(segment)[number]
    except (KeyError, IndexError):
        return ()
    found = []
    for repeat in range(1, len(field_) + 1 if isinstance(field_, hl7.Field) else 2):
        value = field_text(message, segment, number, repeat=repeat, component=1)
        authority = field_text(message, segment, number, repeat=repeat, component=4)
        if value:
            found.append(PatientId(value=value, authority=authority))
    return tuple(found)


def ack_for(message: V2Message | None, code: AckCode, problem: V2Problem | None = None,
            *, now: datetime | None = None) -> str:
    """The ACK (MSH, MSA and, for a problem, ERR) as segments joined by CR."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    if message is not None and message.raw is not None:
        ack = message.raw.create_ack(code.value, message_id=f"ACK{message.control_id}"[:199])
        ack.segment("MSH")[7] = stamp
        segments = [s for s in str(ack).split("\r") if s]
    else:
        segments = [f"MSH|^~\\&|ERAS||||{stamp}||ACK|ACK|P|2.5.1", f"MSA|{code.value}|"]
    if problem is not None:
        text = _escape(problem.text)
        segments[1] = f"{segments[1]}|{text[:80]}"
        segments.append(f"ERR||{problem.location}|{problem.code.value}^{_ERROR_TEXT[problem.code]}"
                        f"^HL70357|E||||{text}")
    return "\r".join(segments)


def _escape(text: str) -> str:
    """HL7 escape sequences for the delimiters, so a message text cannot break the ACK."""
    out = text.replace("\\", "\\E\\")
    for char, seq in (("|", "\\F\\"), ("^", "\\S\\"), ("~", "\\R\\"), ("&", "\\T\\"), ("\r", " ")):
        out = out.replace(char, seq)
    return out


def partial_message(text: str) -> V2Message | None:
    """The message's header for an ACK when the message itself was refused, if it has one."""
    try:
        message = _parse(text)
    except V2Problem:
        return None
    return V2Message(control_id=field_text(message, "MSH", 10), message_type="", event="",
                     version=field_text(message, "MSH", 12), sender="", sent_at="",
                     patient_ids=(), raw=message)
