"""The HL7 v2 feed: an MLLP listener whose messages become inbox events, ACKed once committed.

The hybrid topology: the interface engine sends ADT, SIU and ORU events; the drain then reads
the patient's facts over FHIR as for any other event. One MLLP connection is one ordered
stream (the sender waits for each ACK), so a patient's messages reach the inbox in order.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from datetime import datetime
from functools import partial

from hl7.mllp import HL7StreamReader, HL7StreamWriter, InvalidBlockError, start_hl7_server
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from fhir_adapters.errors import FhirError
from fhir_adapters.hl7v2 import (
    AckCode,
    ErrorCode,
    V2Message,
    V2Problem,
    ack_for,
    parse_message,
    partial_message,
)
from fhir_adapters.hl7v2_results import observations_from_oru, results_transaction
from fhir_adapters.patient_index import PatientIndex, load_authority_map
from flows.mllp_options import DEFAULT_PORT, MllpSettings
from flows.runtime import Runtime
from store.db import session_scope
from store.enrolments import move_enrolments
from store.inbox import InboxKind, find_event, store_event
from store.models import InboxEventCreate

log = logging.getLogger(__name__)
_VT = b"\x0b"


def tls_context(settings: MllpSettings) -> ssl.SSLContext | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    if settings.tls_client_ca_file is not None:
        context.load_verify_locations(settings.tls_client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class MllpIntake:
    """One message in, one ACK out: AA only once its inbox event is committed."""

    def __init__(self, rt: Runtime, index: PatientIndex,
                 on_stored: Callable[[], None] | None = None) -> None:
        self.rt, self.index, self.on_stored = rt, index, on_stored
        self.write_results = rt.results is not None  # ORU observations go to the results store

    async def handle(self, text: str) -> str:
        try:
            message = parse_message(text)
        except V2Problem as problem:
            log.warning("HL7 message refused: %s (%s)", problem.text, problem.code.value)
            return ack_for(partial_message(text), problem.ack, problem)
        try:
            await self._take(message)
        except V2Problem as problem:
            log.warning("HL7 %s^%s %s not taken: %s", message.message_type, message.event,
                        message.control_id, problem.text)
            return ack_for(message, problem.ack, problem)
        return ack_for(message, AckCode.ACCEPT)

    async def _take(self, message: V2Message) -> None:
        patient_id = None if message.is_merge else self.index.cached(message.patient_ids)
        if patient_id is None:
            # Before asking the EHR: a re-send of what we hold is ACKed again, whatever the
            # EHR says now. With the patient known, the insert itself drops a duplicate.
            if await self._in_store(partial(_stored, key=message.dedup_key)):
                return
            patient_id = await self.index.patient_for(message.patient_ids)
        if self.write_results and message.message_type == "ORU":
            await self._write_results(message, patient_id)
        prior_id = None
        if message.is_merge:
            prior_id = await self.index.patient_for(message.prior_ids, location="MRG^1^1")
        new = await self._in_store(partial(_store, message=message, patient_id=patient_id,
                                           prior_id=prior_id, at=self.rt.clock()))
        if message.is_merge:
            self.index.forget(message.prior_ids)
        if new and self.on_stored is not None:
            self.on_stored()

    async def _write_results(self, message: V2Message, patient_id: str) -> None:
        """The OBX as Observations in the results store, before the event that makes the drain
        read them; conditional creates make a re-send harmless. No store transaction is open."""
        observations = observations_from_oru(message, patient_id, self.rt.tz)
        if not observations or self.rt.results is None:
            return
        try:
            await self.rt.results.transaction(results_transaction(observations))
        except FhirError as exc:
            log.error("HL7 %s results not written to the FHIR store: %s", message.control_id,
                      type(exc).__name__)
            raise V2Problem(AckCode.ERROR, ErrorCode.INTERNAL_ERROR, "the results could not be "
                            "written to the FHIR store; send the message again") from exc

    async def _in_store(self, work: Callable[..., bool]) -> bool:
        """Run a store transaction off the event loop; a store failure asks for a re-send."""
        try:
            return await asyncio.to_thread(_transaction, self.rt, work)
        except SQLAlchemyError as exc:
            log.error("HL7 message not stored: %s", type(exc).__name__)
            raise V2Problem(AckCode.ERROR, ErrorCode.INTERNAL_ERROR,
                            "the event could not be stored; send the message again") from exc


def _transaction(rt: Runtime, work: Callable[..., bool]) -> bool:
    with session_scope(rt.db) as session:
        return work(session=session)


def _stored(*, session: Session, key: str) -> bool:
    return find_event(session=session, dedup_key=key) is not None


def _store(*, session: Session, message: V2Message, patient_id: str, prior_id: str | None,
           at: datetime) -> bool:
    """The event, and for a merge the enrolments moved, in one transaction."""
    payload: dict[str, object] = dict(message.summary())
    merged = prior_id is not None and prior_id != patient_id
    if merged:
        payload["merged_from"] = f"Patient/{prior_id}"
    event = InboxEventCreate(source=f"mllp:{message.sender}", kind=InboxKind.EVENT,
                             dedup_key=message.dedup_key, resource_type="Patient",
                             resource_id=patient_id, patient_ref=f"Patient/{patient_id}",
                             payload=payload)
    _, new = store_event(session=session, event=event, at=at)
    if new and merged:
        move_enrolments(session=session, from_ref=f"Patient/{prior_id}",
                        to_ref=f"Patient/{patient_id}", at=at)
    return new


async def serve_connection(intake: MllpIntake, settings: MllpSettings,
                           reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
    """Read frames until the sender hangs up; answer each with its ACK."""
    try:
        while True:
            try:
                block = await asyncio.wait_for(reader.readblock(), settings.idle_timeout)
            except InvalidBlockError:
                ack = _refuse("MLLP framing: the frame does not begin with the start block <VT>")
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                return  # the sender hung up (or went silent): what it did not see ACKed, it re-sends
            except ValueError:  # a frame over the reader's limit
                ack = _refuse("MLLP framing: the frame is longer than the listener accepts")
            else:
                # A start block inside the frame: the sender gave up on a frame and began
                # another; the last one is the message it is waiting for an ACK of.
                text = block.rsplit(_VT, 1)[-1].decode(settings.encoding, errors="replace")
                ack = await intake.handle(text)
            writer.writeblock(ack.encode(settings.encoding, errors="replace"))
            await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()


def _refuse(text: str) -> str:
    """The AR for a frame that holds no message we can read (so no MSH to answer)."""
    log.warning("MLLP frame refused: %s", text)
    return ack_for(None, AckCode.REJECT, V2Problem(AckCode.REJECT, ErrorCode.SEGMENT_SEQUENCE, text))


async def start_mllp(rt: Runtime, settings: MllpSettings, *,
                     on_stored: Callable[[], None] | None = None) -> asyncio.Server:
    """Listen for the HL7 v2 feed; `on_stored` (the drain's wake-up) runs after each new event.

    `eras serve` calls this when ERAS_MLLP_PORT is set; `eras mllp` runs it on its own.
    """
    if settings.authority_map_file is None:
        raise ValueError("the HL7 listener needs ERAS_MLLP_AUTHORITY_MAP_FILE (assigning "
                         "authority -> FHIR identifier system)")
    index = PatientIndex(rt.ehr, load_authority_map(settings.authority_map_file))
    intake = MllpIntake(rt, index, on_stored=on_stored)
    port = DEFAULT_PORT if settings.port is None else settings.port  # 0: any free port
    server = await start_hl7_server(partial(serve_connection, intake, settings), settings.host,
                                    port, ssl=tls_context(settings))
    log.info("HL7 v2 listener on %s:%s%s", settings.host, server.sockets[0].getsockname()[1],
             " (TLS)" if settings.tls_cert_file else "")
    return server
