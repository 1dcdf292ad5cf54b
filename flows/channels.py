"""Reminder and escalation channels behind one small interface: webhook, email, the EHR.

A failed channel never blocks the others: `deliver` tries each and reports every outcome.
Messages name the task and the ward/bed, never clinical values. Every message carries the
idempotency key of its (action, level): the webhook's `Idempotency-Key` header, the email's
Message-ID, the Communication's identifier (created only if none has it), so that a repeat
after a crash between sending and recording is one the receiver can recognise and drop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Protocol

import httpx

from fhir_adapters.client import FhirClient
from fhir_adapters.plandefinition import CANONICAL_BASE

SIGNATURE_HEADER = "X-ERAS-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DELIVERY_IDENTIFIER_SYSTEM = f"{CANONICAL_BASE}/identifier/delivery"


@dataclass(frozen=True)
class Message:
    """A reminder or escalation: to a role on a ward, about one task."""

    kind: str  # "reminder" or "escalation"
    role: str
    ward: str
    action_key: str
    title: str
    patient_ref: str
    bed: str | None = None
    level: int = 0
    idempotency_key: str = ""  # the same for every attempt at this (action, level)


@dataclass(frozen=True)
class Delivery:
    """What happened on one channel."""

    channel: str
    ok: bool
    attempts: int
    error: str | None = None


class Channel(Protocol):
    name: str

    async def send(self, message: Message) -> None:
        """Deliver, or raise."""


@dataclass
class WebhookChannel:
    """A JSON POST signed with HMAC-SHA256 (hex, in X-ERAS-Signature), to a paging or chat integration."""

    url: str
    secret: bytes
    name: str = "webhook"
    transport: httpx.AsyncBaseTransport | None = None

    async def send(self, message: Message) -> None:
        body = json.dumps(
            {"sent_at": datetime.now(UTC).isoformat(), **message.__dict__}, sort_keys=True
        ).encode()
        signature = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        async with httpx.AsyncClient(transport=self.transport, timeout=10.0) as http:
            response = await http.post(
                self.url,
                content=body,
                headers={"Content-Type": "application/json", SIGNATURE_HEADER: f"sha256={signature}",
                         IDEMPOTENCY_HEADER: message.idempotency_key},
            )
            response.raise_for_status()


@dataclass
class EmailChannel:
    """Plain-text email over SMTP."""

    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    name: str = "email"

    async def send(self, message: Message) -> None:
        email = EmailMessage()
        email["From"], email["To"] = self.sender, ", ".join(self.recipients)
        email["Message-ID"] = f"<{message.idempotency_key}@eras-engine>"
        email["Subject"] = (
            f"ERAS {message.kind}: {message.title} ({message.ward} {message.bed or ''})".strip()
        )
        email.set_content(
            f"{message.title}\nWard {message.ward}, bed {message.bed or '-'}\n"
            f"Task {message.action_key}\nOpen the worklist to act."
        )
        await asyncio.to_thread(self._send, email)

    def _send(self, email: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            smtp.send_message(email)


@dataclass
class EhrChannel:
    """A Communication in the EHR, to the role, about the patient."""

    fhir: FhirClient
    name: str = "ehr"

    async def send(self, message: Message) -> None:
        key = f"{DELIVERY_IDENTIFIER_SYSTEM}|{message.idempotency_key}"
        await self.fhir.create(
            {
                "resourceType": "Communication",
                "identifier": [{"system": DELIVERY_IDENTIFIER_SYSTEM, "value": message.idempotency_key}],
                "status": "completed",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://eras-engine.org/fhir/CodeSystem/eras-role",
                                "code": message.role,
                            }
                        ]
                    }
                ],
                "subject": {"reference": message.patient_ref},
                "sent": datetime.now(UTC).isoformat(),
                "payload": [{"contentString": f"{message.kind}: {message.title}"}],
            },
            if_none_exist=f"identifier={key}",
        )


@dataclass
class Routing:
    """Which channels serve a (role, ward); '*' as ward matches every ward."""

    routes: Mapping[tuple[str, str], Sequence[Channel]] = field(default_factory=dict)

    def channels(self, role: str, ward: str) -> Sequence[Channel]:
        return self.routes.get((role, ward)) or self.routes.get((role, "*")) or ()


async def deliver(
    message: Message, channels: Sequence[Channel], *, attempts: int = 3, backoff: float = 0.2
) -> list[Delivery]:
    """Send on every channel concurrently, retrying each; one failing never stops the rest."""
    return list(await asyncio.gather(*(_one(c, message, attempts, backoff) for c in channels)))


async def _one(channel: Channel, message: Message, attempts: int, backoff: float) -> Delivery:
    error = None
    for attempt in range(1, attempts + 1):
        try:
            await channel.send(message)
            return Delivery(channel=channel.name, ok=True, attempts=attempt)
        except Exception as exc:  # any failure of one channel is recorded, never raised
            error = type(exc).__name__
            if attempt < attempts:
                await asyncio.sleep(backoff * attempt)
    return Delivery(channel=channel.name, ok=False, attempts=attempts, error=error)
