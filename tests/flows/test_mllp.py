"""The HL7 v2 listener against a real socket client, the sandbox EHR and the database."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlmodel import col, select

from flows.drain import drain_once
from flows.mllp import MllpSettings, start_mllp
from flows.runtime import Runtime
from store.db import make_engine, session_scope
from store.enrolments import enrol, find_enrolments
from store.models import InboxEvent
from tests.utils.mllp import (
    MRN_AUTHORITY,
    MRN_SYSTEM,
    NHS_AUTHORITY,
    NHS_SYSTEM,
    MllpClient,
    ack_code,
    ack_segment,
    message,
)
from tests.utils.notifications import clear_intake_tables

SENDER = "EPIC^ROYALHOSP"
EVENTS = ["A01", "A02", "A03", "A04", "A08", "A11", "A13", "S12", "S13", "S14", "S15", "R01"]


def write_authority_map(directory: Path) -> Path:
    path = directory / "authorities.yaml"
    path.write_text(f"{MRN_AUTHORITY}: {MRN_SYSTEM}\n{NHS_AUTHORITY}: {NHS_SYSTEM}\n")
    return path


def new_mrn() -> str:
    return f"M{uuid.uuid4().hex[:10].upper()}"


def new_control_id() -> str:
    return uuid.uuid4().hex[:20]


async def registered_patient(rt: Runtime, mrn: str) -> str:
    """A Patient in the EHR known by this MRN (and no NHS number: only the MRN routes)."""
    created = await rt.ehr.create({"resourceType": "Patient",
                                   "identifier": [{"system": MRN_SYSTEM, "value": mrn}]})
    return str(created["id"])


def events_of(rt: Runtime, *keys: str) -> list[InboxEvent]:
    with session_scope(rt.db) as session:
        statement = select(InboxEvent).where(col(InboxEvent.dedup_key).in_(keys)).order_by(
            col(InboxEvent.id))
        rows = list(session.exec(statement).all())
        for row in rows:
            session.expunge(row)
        return rows


@dataclass
class Feed:
    rt: Runtime
    port: int
    client: MllpClient
    woken: list[int]


@pytest.fixture
async def feed(make_runtime, tmp_path: Path) -> AsyncIterator[Feed]:  # type: ignore[no-untyped-def]
    async with make_runtime() as rt:
        clear_intake_tables(rt.db)
        settings = MllpSettings(host="127.0.0.1", port=0, authority_map_file=write_authority_map(tmp_path))
        woken: list[int] = []
        server = await start_mllp(rt, settings, on_stored=lambda: woken.append(1))
        port = server.sockets[0].getsockname()[1]
        client = await MllpClient.connect("127.0.0.1", port)
        try:
            yield Feed(rt, port, client, woken)
        finally:
            await client.close()
            server.close()
            clear_intake_tables(rt.db)


async def test_mllp_every_supported_type_is_stored_for_its_patient_and_acked(feed: Feed) -> None:
    mrn = new_mrn()
    patient_id = await registered_patient(feed.rt, mrn)
    ids = {event: new_control_id() for event in EVENTS}
    for event, control_id in ids.items():
        ack = await feed.client.send(message(event, control_id, mrn))
        assert ack_code(ack) == "AA", (event, ack)
        assert ack_segment(ack, "MSA")[2] == control_id
        assert ack_segment(ack, "ERR") == []
    rows = events_of(feed.rt, *(f"v2:{SENDER}:{c}" for c in ids.values()))
    assert [r.payload["hl7v2"] for r in rows if r.payload] == [
        f"{'SIU' if e[0] == 'S' else 'ORU' if e[0] == 'R' else 'ADT'}^{e}" for e in EVENTS]
    assert {r.patient_ref for r in rows} == {f"Patient/{patient_id}"}
    assert {r.status for r in rows} == {"pending"}
    assert len(feed.woken) == len(EVENTS)


async def test_mllp_patient_found_by_any_mapped_identifier_and_cached(feed: Feed) -> None:
    mrn = new_mrn()
    patient_id = await registered_patient(feed.rt, mrn)
    first, second = new_control_id(), new_control_id()
    assert ack_code(await feed.client.send(message("A01", first, mrn))) == "AA"
    trips = feed.rt.ehr.round_trips
    assert ack_code(await feed.client.send(message("A08", second, mrn))) == "AA"
    assert feed.rt.ehr.round_trips == trips  # the second message's patient came from the cache
    rows = events_of(feed.rt, f"v2:{SENDER}:{first}", f"v2:{SENDER}:{second}")
    assert [r.patient_ref for r in rows] == [f"Patient/{patient_id}"] * 2


async def test_mllp_broken_framing_is_refused_and_the_connection_goes_on(feed: Feed) -> None:
    mrn = new_mrn()
    await registered_patient(feed.rt, mrn)
    control_id = new_control_id()
    # No start block: the listener cannot trust the frame, so AR with ERR, nothing stored.
    await feed.client.send_raw(message("A01", control_id, mrn).encode() + b"\x1c\r")
    ack = await feed.client.read_ack()
    assert ack_code(ack) == "AR"
    assert ack_segment(ack, "ERR")[3].startswith("100^")
    assert "start block" in ack_segment(ack, "ERR")[8]
    # Not HL7 at all inside a proper frame.
    ack = await feed.client.send("hello, this is not HL7")
    assert ack_code(ack) == "AR" and "MSH" in ack_segment(ack, "ERR")[8]
    # A frame abandoned half-way, then the sender starts again: the complete one is taken.
    good = new_control_id()
    await feed.client.send_raw(b"\x0bMSH|^~\\&|EPIC|ROYALHOSP|ER")
    ack = await feed.client.send(message("A01", good, mrn))
    assert ack_code(ack) == "AA" and ack_segment(ack, "MSA")[2] == good
    assert [r.dedup_key for r in events_of(feed.rt, f"v2:{SENDER}:{control_id}",
                                           f"v2:{SENDER}:{good}")] == [f"v2:{SENDER}:{good}"]


async def test_mllp_unterminated_frame_then_hang_up_stores_nothing(feed: Feed) -> None:
    mrn = new_mrn()
    await registered_patient(feed.rt, mrn)
    control_id = new_control_id()
    await feed.client.send_raw(b"\x0b" + message("A01", control_id, mrn).encode())
    await feed.client.close()
    again = await MllpClient.connect("127.0.0.1", feed.port)
    try:
        assert ack_code(await again.send(message("A01", control_id, mrn))) == "AA"
    finally:
        await again.close()
    assert len(events_of(feed.rt, f"v2:{SENDER}:{control_id}")) == 1


@pytest.mark.parametrize(("text_args", "ack", "code", "words"), [
    ({"version": "2.2"}, "AR", "203", "version '2.2'"),
    ({"version": "3.0"}, "AR", "203", "version '3.0'"),
    ({"message_type": "MDM", "event": "T02"}, "AR", "200", "message type 'MDM'"),
    ({"event": "A05"}, "AR", "201", "event 'A05'"),
    ({"event": "A01", "authority": "OTHERHOSP", "nhs_number": None}, "AE", "204", "OTHERHOSP"),
], ids=["v2.2", "v3", "unknown-type", "unknown-event", "unmapped-authority"])
async def test_mllp_refusals_say_why_in_err(feed: Feed, text_args: dict, ack: str, code: str,
                                            words: str) -> None:
    control_id = new_control_id()
    args = {"event": "A01"} | text_args
    event = args.pop("event")
    answer = await feed.client.send(message(event, control_id, new_mrn(), **args))
    assert ack_code(answer) == ack
    assert ack_segment(answer, "MSA")[2] == control_id
    err = ack_segment(answer, "ERR")
    assert err[3].split("^")[0] == code and err[3].endswith("^HL70357")
    assert words in err[8]
    assert events_of(feed.rt, f"v2:{SENDER}:{control_id}") == []


async def test_mllp_patient_the_ehr_does_not_know_is_ae_with_err(feed: Feed) -> None:
    control_id = new_control_id()
    mrn = new_mrn()  # never registered in the EHR
    answer = await feed.client.send(message("A01", control_id, mrn))
    assert ack_code(answer) == "AE"
    err = ack_segment(answer, "ERR")
    assert err[2] == "PID^1^3" and err[3].startswith("204^Unknown key identifier")
    assert "no Patient in the EHR" in err[8] and mrn not in answer.split("MSA")[1]
    assert events_of(feed.rt, f"v2:{SENDER}:{control_id}") == []
    # Registered a moment later (the feed can overtake the FHIR API): the re-send is taken.
    await registered_patient(feed.rt, mrn)
    assert ack_code(await feed.client.send(message("A01", control_id, mrn))) == "AA"


async def test_mllp_duplicate_control_id_is_stored_once_and_acked_again(feed: Feed) -> None:
    mrn = new_mrn()
    await registered_patient(feed.rt, mrn)
    control_id = new_control_id()
    text = message("A01", control_id, mrn)
    assert ack_code(await feed.client.send(text)) == "AA"
    assert ack_code(await feed.client.send(text)) == "AA"
    assert len(events_of(feed.rt, f"v2:{SENDER}:{control_id}")) == 1
    assert len(feed.woken) == 1  # the repeat did not wake the drain for nothing


async def test_mllp_reordered_messages_keep_arrival_order_and_apply_once(feed: Feed) -> None:
    mrn = new_mrn()
    patient_id = await registered_patient(feed.rt, mrn)
    with session_scope(feed.rt.db) as session:  # an ERAS patient: a stay is no news otherwise
        enrol(session=session, patient_ref=f"Patient/{patient_id}", pathway_id="lumbar_fusion",
              pathway_version=1, parameters={}, enrolled_by="test", at=datetime(2026, 3, 10, 9, tzinfo=UTC))
    # The discharge overtakes the admission (sent later, MSH-7 earlier): both are taken in
    # arrival order; the drain reads the record over FHIR, so order cannot mislead it.
    discharge, admit = new_control_id(), new_control_id()
    await feed.client.send(message("A03", discharge, mrn, sent_at="20260312100000"))
    await feed.client.send(message("A01", admit, mrn, sent_at="20260310080000"))
    rows = events_of(feed.rt, f"v2:{SENDER}:{discharge}", f"v2:{SENDER}:{admit}")
    assert [r.dedup_key.rsplit(":", 1)[1] for r in rows] == [discharge, admit]
    assert rows[0].received_at <= rows[1].received_at
    result = await drain_once(feed.rt, worker="test-mllp")
    assert result.applied == [patient_id]
    assert {r.status for r in events_of(feed.rt, *(r.dedup_key for r in rows))} == {"done"}


async def test_mllp_a40_merge_moves_the_enrolment_to_the_surviving_patient(feed: Feed) -> None:
    survivor_mrn, merged_mrn = new_mrn(), new_mrn()
    survivor = await registered_patient(feed.rt, survivor_mrn)
    merged = await registered_patient(feed.rt, merged_mrn)
    at = datetime(2026, 3, 10, 9, tzinfo=UTC)
    with session_scope(feed.rt.db) as session:
        enrol(session=session, patient_ref=f"Patient/{merged}", pathway_id="lumbar_fusion",
              pathway_version=1, parameters={}, enrolled_by="test", at=at)
    control_id = new_control_id()
    text = message("A40", control_id, survivor_mrn, prior_mrn=merged_mrn)
    assert ack_code(await feed.client.send(text)) == "AA"
    with session_scope(feed.rt.db) as session:
        assert find_enrolments(session=session, patient_ref=f"Patient/{merged}") == []
        moved = find_enrolments(session=session, patient_ref=f"Patient/{survivor}")
        assert [(e.pathway_id, e.status) for e in moved] == [("lumbar_fusion", "active")]
    [row] = events_of(feed.rt, f"v2:{SENDER}:{control_id}")
    assert row.patient_ref == f"Patient/{survivor}"
    assert row.payload and row.payload["merged_from"] == f"Patient/{merged}"
    assert ack_code(await feed.client.send(text)) == "AA"  # a re-sent merge changes nothing
    with session_scope(feed.rt.db) as session:
        assert len(find_enrolments(session=session, patient_ref=f"Patient/{survivor}")) == 1


async def test_mllp_store_failure_is_ae_so_the_sender_sends_again(make_runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broken_db = make_engine(f"sqlite:///{tmp_path}/no-such-dir/eras.db")
    async with make_runtime() as rt:
        mrn = new_mrn()
        await registered_patient(rt, mrn)
        rt.db = broken_db
        settings = MllpSettings(port=0, authority_map_file=write_authority_map(tmp_path))
        server = await start_mllp(rt, settings)
        client = await MllpClient.connect("127.0.0.1", server.sockets[0].getsockname()[1])
        try:
            answer = await client.send(message("A01", new_control_id(), mrn))
        finally:
            await client.close()
            server.close()
    assert ack_code(answer) == "AE"
    assert ack_segment(answer, "ERR")[3].startswith("207^") and "send the message again" in answer



def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eras-mllp-test")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "mllp.crt", directory / "mllp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_mllp_over_tls_takes_messages_and_refuses_plain_tcp(make_runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cert_file, key_file = self_signed(tmp_path)
    async with make_runtime() as rt:
        mrn = new_mrn()
        await registered_patient(rt, mrn)
        settings = MllpSettings(port=0, authority_map_file=write_authority_map(tmp_path),
                                tls_cert_file=cert_file, tls_key_file=key_file)
        server = await start_mllp(rt, settings)
        port = server.sockets[0].getsockname()[1]
        trust = ssl.create_default_context(cafile=str(cert_file))
        client = await MllpClient.connect("127.0.0.1", port, tls=trust)
        plain = await MllpClient.connect("127.0.0.1", port)
        try:
            control_id = new_control_id()
            assert ack_code(await client.send(message("A01", control_id, mrn))) == "AA"
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError, AssertionError)):
                await plain.send(message("A01", new_control_id(), mrn), timeout=10)
        finally:
            await client.close()
            await plain.close()
            server.close()
        assert len(events_of(rt, f"v2:{SENDER}:{control_id}")) == 1
        clear_intake_tables(rt.db)


async def test_mllp_starts_inside_serve_only_when_its_port_is_set(make_runtime, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from eras_cli.mllp_cmds import start_if_configured
    from flows.settings import Settings

    monkeypatch.delenv("ERAS_MLLP_PORT", raising=False)
    monkeypatch.setenv("ERAS_MLLP_AUTHORITY_MAP_FILE", str(write_authority_map(tmp_path)))
    async with make_runtime() as rt:
        assert await start_if_configured(rt, Settings().mllp, on_stored=lambda: None) is None
        monkeypatch.setenv("ERAS_MLLP_PORT", "0")
        server = await start_if_configured(rt, Settings().mllp, on_stored=lambda: None)
        assert server is not None and server.sockets[0].getsockname()[1] > 0
        server.close()
