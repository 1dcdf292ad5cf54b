"""Channels: a signed webhook to a loopback receiver, SMTP to aiosmtpd, a Communication on the sandbox."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from aiosmtpd.controller import Controller
from fastapi import FastAPI, HTTPException, Request

from fhir_adapters.client import FhirClient
from fhir_adapters.sandbox import FhirSandbox
from flows.channels import (
    DELIVERY_IDENTIFIER_SYSTEM,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    EhrChannel,
    EmailChannel,
    Message,
    WebhookChannel,
    deliver,
)
from tests.utils.loopback import free_port, serve

MESSAGE = Message(
    kind="escalation",
    role="charge_nurse",
    ward="4B",
    action_key="e:urinary_catheter_removal:1",
    title="Urinary catheter removed",
    patient_ref="Patient/p1",
    bed="Bed 3",
    level=1,
    idempotency_key="eras-0123456789abcdef",
)


def _receiver() -> FastAPI:
    app = FastAPI()
    app.state.calls = []

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, Any]:
        app.state.calls.append((await request.body(), request.headers.get(SIGNATURE_HEADER),
                                request.headers.get(IDEMPOTENCY_HEADER)))
        if len(app.state.calls) == 1:
            raise HTTPException(status_code=503)
        return {}

    return app


async def test_webhook_signed_and_retried() -> None:
    app = _receiver()
    with serve(app) as base:
        result = await deliver(MESSAGE, [WebhookChannel(url=f"{base}/hook", secret=b"s3")], backoff=0)
    assert result[0].ok and result[0].attempts == 2
    body, signature, _ = app.state.calls[-1]
    assert signature == "sha256=" + hmac.new(b"s3", body, hashlib.sha256).hexdigest()
    # The retry carries the same key as the first attempt: the receiver can drop a repeat.
    assert [key for _, _, key in app.state.calls] == ["eras-0123456789abcdef"] * 2


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope.content)
        return "250 OK"


async def test_email_reaches_smtp_and_failed_webhook_does_not_block() -> None:
    inbox, port = _Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        dead = WebhookChannel(url=f"http://127.0.0.1:{free_port()}/hook", secret=b"x")
        email = EmailChannel(host="127.0.0.1", port=port, sender="eras@test", recipients=["ward4b@test"])
        results = await deliver(MESSAGE, [dead, email], attempts=2, backoff=0)
    finally:
        controller.stop()
    assert [r.ok for r in results] == [False, True]
    assert b"Urinary catheter removed" in inbox.messages[0]
    assert b"Message-ID: <eras-0123456789abcdef@eras-engine>" in inbox.messages[0]


async def test_ehr_channel_writes_one_communication_per_key(fhir_sandbox: FhirSandbox) -> None:
    patient = f"Patient/p-{free_port()}"
    message = Message(**{**MESSAGE.__dict__, "patient_ref": patient})
    async with FhirClient(fhir_sandbox.base_url) as fhir:
        results = await deliver(message, [EhrChannel(fhir=fhir)])
        again = await deliver(message, [EhrChannel(fhir=fhir)])  # a repeat after a crash
        found = await fhir.search("Communication", {"subject": patient})
    assert results[0].ok and again[0].ok
    assert len(found) == 1 and found[0]["payload"][0]["contentString"].startswith("escalation")
    assert found[0]["identifier"] == [{"system": DELIVERY_IDENTIFIER_SYSTEM,
                                       "value": "eras-0123456789abcdef"}]
