"""An interface engine's side of the HL7 v2 feed: v2.5.1 messages and a raw-socket MLLP client."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
MRN_AUTHORITY = "HOSPMRN"
MRN_SYSTEM = "urn:oid:2.16.840.1.113883.19.5.99"
NHS_AUTHORITY = "NHS"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"

# The segments that follow MSH/EVN/PID for each type (v2.5.1 abstract message structures).
_STRUCTURE = {"A01": "ADT_A01", "A02": "ADT_A02", "A03": "ADT_A03", "A04": "ADT_A01",
              "A08": "ADT_A01", "A11": "ADT_A09", "A13": "ADT_A01", "A40": "ADT_A39",
              "S12": "SIU_S12", "S13": "SIU_S12", "S14": "SIU_S12", "S15": "SIU_S12",
              "R01": "ORU_R01"}


def message(event: str, control_id: str, mrn: str, *, version: str = "2.5.1",
            message_type: str | None = None, prior_mrn: str | None = None,
            authority: str = MRN_AUTHORITY, sent_at: str = "20260310081500",
            nhs_number: str | None = "9434765919") -> str:
    """One HL7 v2 message, segments joined by CR, as an interface engine sends it."""
    kind = message_type or {"S": "SIU", "R": "ORU"}.get(event[0], "ADT")
    structure = _STRUCTURE.get(event, f"{kind}_{event}")
    msh = (f"MSH|^~\\&|EPIC|ROYALHOSP|ERAS|ROYALHOSP|{sent_at}||{kind}^{event}^{structure}|"
           f"{control_id}|P|{version}")
    nhs = f"~{nhs_number}^^^{NHS_AUTHORITY}^NH" if nhs_number else ""
    pid = f"PID|1||{mrn}^^^{authority}^MR{nhs}||Testpatient^Ann||19600501|F"
    body = {
        "ADT": [f"EVN|{event}|{sent_at}", pid, "PV1|1|I|W5B^12^1^ROYALHOSP||||||||||||||||V1"],
        "SIU": [f"SCH|APPT{control_id}|APPT{control_id}||||SURG^Surgery|||60|min", pid,
                "AIS|1||55705006^Lumbar spinal fusion^SCT|20260312090000"],
        "ORU": [pid, "OBR|1||LAB1|2951-2^Sodium^LN|||20260310080000",
                "OBX|1|NM|2951-2^Sodium^LN||139|mmol/L|||||F"],
    }.get(kind, [f"EVN|{event}|{sent_at}", pid])
    if event == "A40":
        body = [f"EVN|A40|{sent_at}", pid, f"MRG|{prior_mrn}^^^{authority}^MR"]
    return "\r".join([msh, *body])


def frame(text: str) -> bytes:
    return VT + text.encode() + FS + CR


class MllpClient:
    """Send frames, read ACK frames; the raw socket lets a test break the framing on purpose."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> MllpClient:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_ack(self, timeout: float = 30.0) -> str:
        block = await asyncio.wait_for(self.reader.readuntil(FS + CR), timeout)
        assert block.startswith(VT), block
        return block[1:-2].decode()

    async def send(self, text: str, timeout: float = 30.0) -> str:
        await self.send_raw(frame(text))
        return await self.read_ack(timeout)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


def ack_code(ack: str) -> str:
    """MSA-1 of an ACK."""
    msa = next(s for s in ack.split("\r") if s.startswith("MSA|"))
    return msa.split("|")[1]


def ack_segment(ack: str, name: str) -> list[str]:
    """The fields of one ACK segment (MSA, ERR), or [] when absent."""
    for segment in ack.split("\r"):
        if segment.startswith(name + "|"):
            return segment.split("|")
    return []
