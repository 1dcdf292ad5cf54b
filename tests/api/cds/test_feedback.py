"""Accepting an order-sign suggestion enrols the patient once, with the card's variant, even when
the EHR posts the feedback twice and to two API replicas at once (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlmodel import Session

from store.enrolments import find_enrolments
from tests.api.cds.conftest import AppFactory, Signer, post_hook
from tests.utils.cds import CPT, auth, draft_orders, hook_body, new_patient_id


def _decompression(pid: str) -> dict[str, Any]:
    """An order-sign call whose draft order is a lumbar discectomy (CPT 63030: decompression)."""
    return hook_body("order-sign", pid, draftOrders=draft_orders((CPT, "63030"), pid=pid))


async def test_feedback_accepted_twice_on_two_replicas_enrols_once(cds_apps: AppFactory,
                                                                  sign: Signer) -> None:
    pid = new_patient_id()
    async with cds_apps() as (app, first), cds_apps() as (_, second):
        signed = await post_hook(first, sign, _decompression(pid))
        [card] = signed.json()["cards"]
        feedback = {"feedback": [{"card": card["uuid"], "outcome": "accepted",
                                  "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                                  "outcomeTimestamp": "2026-12-07T01:30:00Z"}]}
        path = "/cds-services/order-sign/feedback"
        answers = await asyncio.gather(*(client.post(path, json=feedback, headers=auth(sign(path)))
                                         for client in (first, second, first)))
        assert [a.status_code for a in answers] == [200, 200, 200]
        with Session(app.state.engine) as session:
            enrolments = find_enrolments(session=session, patient_ref=f"Patient/{pid}")
        assert [(e.pathway_id, e.parameters, e.status) for e in enrolments] == [
            ("lumbar_fusion", {"procedure_type": "decompression"}, "active")]
        # Enrolled now, the next order-sign for the same procedure suggests nothing more.
        again = await post_hook(second, sign, _decompression(pid))
        assert again.json()["cards"] == []


REFUSED = {
    "overridden": lambda card: {"card": card["uuid"], "outcome": "overridden"},
    "other-card": lambda card: {"card": "5e6f1f43-0d0e-4c8f-9a57-2b1f1c1c1c1c", "outcome": "accepted",
                                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]},
}


@pytest.mark.parametrize("shape", list(REFUSED))
async def test_feedback_that_accepts_nothing_enrols_nobody(cds_apps: AppFactory, sign: Signer,
                                                           shape: str) -> None:
    pid = new_patient_id()
    async with cds_apps() as (app, client):
        signed = await post_hook(client, sign, _decompression(pid))
        [card] = signed.json()["cards"]
        path = "/cds-services/order-sign/feedback"
        response = await client.post(path, headers=auth(sign(path)),
                                     json={"feedback": [REFUSED[shape](card)]})
        assert response.status_code == 200
        with Session(app.state.engine) as session:
            assert find_enrolments(session=session, patient_ref=f"Patient/{pid}") == []
