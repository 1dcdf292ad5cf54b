"""Reminders and escalations reach people: routed per role, signed webhook + email, recorded."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request

from flows.apply import apply_patient
from flows.delivery import deliveries, delivering, load_routing
from flows.reminders import remind_once
from tests.flows.test_apply import booked_patient, seed
from tests.utils import ehr
from tests.utils.loopback import free_port, serve

SURGERY = datetime(2026, 4, 15, 8, 30, tzinfo=UTC)
END = SURGERY + timedelta(hours=3)


class Inbox:
    def __init__(self) -> None:
        self.mails: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.mails.append(envelope.content.decode())
        return "250 OK"


@pytest.fixture
def pager() -> Any:
    received: list[tuple[bytes, str]] = []
    app = FastAPI()

    @app.post("/page")
    async def page(request: Request) -> dict[str, str]:
        received.append((await request.body(), request.headers.get("X-ERAS-Signature", "")))
        return {"ok": "yes"}

    with serve(app) as url:
        yield url, received


@pytest.fixture
def smtp() -> Any:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


def routes(tmp_path: Path, pager_url: str, smtp_port: int) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(f"""
routes:
  - role: charge_nurse
    ward: "*"
    channels:
      - {{type: webhook, url: "{pager_url}/page", secret_env: ERAS_TEST_PAGER_SECRET}}
      - {{type: webhook, url: "http://127.0.0.1:9/dead", secret_env: ERAS_TEST_PAGER_SECRET}}
      - {{type: email, host: 127.0.0.1, port: {smtp_port}, sender: eras@test, to: [cn@test]}}
""")
    return path


async def test_overdue_escalation_is_delivered_once_and_recorded(make_runtime, new_patient_id, pager,
                                                                 smtp, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ERAS_TEST_PAGER_SECRET", "pager-secret")
    pager_url, pages = pager
    smtp_port, inbox = smtp
    async with make_runtime() as rt:
        await booked_patient(rt, new_patient_id, smoker=False)
        await seed(rt.ehr, ehr.stay(new_patient_id, SURGERY - timedelta(hours=3)),
                   ehr.surgery(new_patient_id, SURGERY, END))
        late = END + timedelta(hours=10, minutes=30)  # out of bed due at 6 h, escalated at 10 h
        await apply_patient(rt, new_patient_id, now=late)
        rt.deliver = delivering(load_routing(routes(tmp_path, pager_url, smtp_port), ehr=rt.ehr),
                                rt.db, lambda: late)
        sent = await remind_once(rt, now=late, deliver=rt.deliver)
        again = await remind_once(rt, now=late + timedelta(minutes=1), deliver=rt.deliver)
        mine = [n for n in sent if n.patient_id == new_patient_id]
        records = [d for d in deliveries(rt.db) if d.action_key in {n.action_key for n in mine}]
        requests = await rt.ehr.search("CommunicationRequest", {"subject": f"Patient/{new_patient_id}"})
    escalation = next(n for n in mine if n.kind == "escalation")
    assert escalation.role == "charge_nurse" and ":out_of_bed_day_of_surgery:" in escalation.action_key
    assert not [n for n in again if n.patient_id == new_patient_id]  # each level once
    # The shared test database may hold other tests' overdue tasks: look at this patient's page.
    body, signature = next((b, sig) for b, sig in pages if new_patient_id in b.decode())
    expected = hmac.new(b"pager-secret", body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    assert any("Overdue" in mail or "escalation" in mail for mail in inbox.mails)
    outcome = {(r.channel, r.ok) for r in records if r.kind == "escalation"}
    assert outcome == {("webhook", True), ("webhook", False), ("email", True)}  # a dead one blocks none
    assert any(r.get("priority") == "urgent" for r in requests)  # the escalation is in the EHR too


def test_load_routing_names_the_file_and_route(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("routes:\n  - role: nurse\n    channels: [{type: pigeon}]\n")
    with pytest.raises(ValueError, match=r"routes.yaml: routes\[0\].channels\[0\]: unknown channel"):
        load_routing(path, ehr=None)


async def test_patient_messages_after_discharge_go_to_the_patient(make_runtime, new_patient_id) -> None:
    discharged = END + timedelta(days=3)
    async with make_runtime() as rt:
        await booked_patient(rt, new_patient_id, smoker=True)
        await seed(rt.ehr, ehr.stay(new_patient_id, SURGERY - timedelta(hours=3), discharged),
                   ehr.surgery(new_patient_id, SURGERY, END))
        await apply_patient(rt, new_patient_id, now=discharged + timedelta(days=2))
        requests = await rt.ehr.search("CommunicationRequest", {"subject": f"Patient/{new_patient_id}"})
    to_patient = [r for r in requests if r.get("recipient") == [{"reference": f"Patient/{new_patient_id}"}]]
    keys = {r["identifier"][0]["value"].split(":")[1] for r in to_patient}
    assert {"step_goal_messages", "nicotine_free_reminder", "rehab_milestone_week_0_2"} <= keys
    assert all(r["payload"][0]["contentString"] for r in to_patient)
