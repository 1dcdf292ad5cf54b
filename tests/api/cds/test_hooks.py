"""CDS Hooks calls as an EHR makes them, against the real app on SQLite and PostgreSQL, with the
protected sandbox FHIR server as the EHR: discovery, the three hooks, and how calls are refused.

Expected cards are worked by hand from the seeded store (element results and open tasks) and the
pathway file's titles and ERAS items (pathways/lumbar_fusion.yaml)."""

from __future__ import annotations

import pytest

from api.cds.cards import card_kind
from fhir_adapters.sandbox import FhirSandbox
from tests.api.cds.conftest import App, AppFactory, Signer, post_hook
from tests.utils.cds import (
    CPT,
    LOINC,
    SCT,
    auth,
    draft_orders,
    hook_body,
    new_patient_id,
    put_patient,
    seed_status,
)
from tests.utils.tcp_proxy import TcpProxy


async def test_discovery_lists_the_three_services_with_prefetch(cds: App, sign: Signer) -> None:
    _, client = cds
    response = await client.get("/cds-services", headers=auth(sign("/cds-services")))
    assert response.status_code == 200, response.text
    services = {s["id"]: s for s in response.json()["services"]}
    assert {s: services[s]["hook"] for s in services} == {
        "patient-view": "patient-view", "order-sign": "order-sign",
        "encounter-discharge": "encounter-discharge"}
    assert services["patient-view"]["prefetch"] == {"patient": "Patient/{{context.patientId}}"}
    assert services["encounter-discharge"]["prefetch"]["encounter"] == "Encounter/{{context.encounterId}}"


async def test_patient_view_with_prefetch_shows_overdue_next_and_compliance(cds: App, sign: Signer) -> None:
    app, client = cds
    pid = new_patient_id()
    seed_status(app.state.engine, pid)
    body = hook_body("patient-view", pid, prefetch={"patient": {"resourceType": "Patient", "id": pid}})
    response = await client.post("/cds-services/patient-view", json=body,
                                 headers=auth(sign("/cds-services/patient-view")))
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card_kind(card) == "pathway-status"
    assert card["indicator"] == "warning"
    # ERAS items counted: education (1) done, smoking (2) not done, fasting (10) done -> 2/3.
    assert card["summary"] == ("ERAS lumbar fusion: 1 overdue; next: Task walk_three_times_daily; "
                               "compliance 2/3 (67%)")
    assert "- Task urinary_catheter_removal" in card["detail"]
    assert card["links"] == [{"label": "Open the ERAS pathway", "url": "http://eras.test/launch",
                              "type": "smart"}]


async def test_patient_view_without_prefetch_reads_the_ehr_with_the_hooks_token(
        cds: App, sign: Signer, protected_fhir_sandbox: FhirSandbox) -> None:
    app, client = cds
    pid = new_patient_id()
    put_patient(protected_fhir_sandbox.base_url, {"resourceType": "Patient", "id": pid})
    seed_status(app.state.engine, pid)
    body = hook_body("patient-view", pid, fhir_server=protected_fhir_sandbox.base_url)
    response = await client.post("/cds-services/patient-view", json=body,
                                 headers=auth(sign("/cds-services/patient-view")))
    assert [card_kind(c) for c in response.json()["cards"]] == ["pathway-status"]


async def test_patient_view_not_enrolled_and_unknown_patient(
        cds: App, sign: Signer, protected_fhir_sandbox: FhirSandbox) -> None:
    _, client = cds
    known = new_patient_id()
    put_patient(protected_fhir_sandbox.base_url, {"resourceType": "Patient", "id": known})
    kinds = {}
    for pid in (known, new_patient_id()):
        body = hook_body("patient-view", pid, fhir_server=protected_fhir_sandbox.base_url)
        response = await client.post("/cds-services/patient-view", json=body,
                                     headers=auth(sign("/cds-services/patient-view")))
        assert response.status_code == 200, response.text
        kinds[pid == known] = [card_kind(c) for c in response.json()["cards"]]
    assert kinds == {True: ["not-enrolled"], False: []}


async def test_slow_ehr_gives_a_degraded_card(sqlite_cds_apps: AppFactory, sign: Signer,
                                             protected_fhir_sandbox: FhirSandbox) -> None:
    proxy = TcpProxy("127.0.0.1", protected_fhir_sandbox.port, delay=5.0)
    await proxy.up()
    slow_base = protected_fhir_sandbox.base_url.replace(f":{protected_fhir_sandbox.port}", f":{proxy.port}")
    try:
        async with sqlite_cds_apps(fhir_base=slow_base, budget_seconds=0.3) as (app, client):
            pid = new_patient_id()
            seed_status(app.state.engine, pid)
            response = await client.post("/cds-services/patient-view",
                                         json=hook_body("patient-view", pid, fhir_server=slow_base),
                                         headers=auth(sign("/cds-services/patient-view")))
    finally:
        await proxy.down()
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card_kind(card) == "status-unavailable"
    assert card["links"][0]["type"] == "smart"


async def test_encounter_discharge_lists_items_open_or_missed(cds: App, sign: Signer) -> None:
    app, client = cds
    pid = new_patient_id()
    seed_status(app.state.engine, pid)
    encounter = {"resourceType": "Encounter", "id": "enc-1", "status": "in-progress",
                 "subject": {"reference": f"Patient/{pid}"}}
    body = hook_body("encounter-discharge", pid, encounterId="enc-1",
                     prefetch={"patient": {"resourceType": "Patient", "id": pid}, "encounter": encounter})
    response = await client.post("/cds-services/encounter-discharge", json=body,
                                 headers=auth(sign("/cds-services/encounter-discharge")))
    [card] = response.json()["cards"]
    assert card_kind(card) == "discharge-open-items"
    assert card["summary"] == "2 ERAS items not done before discharge (1 missed)"
    assert card["detail"].splitlines() == [
        "- Smoking cessation counselling and referral: missed",
        "- Urinary catheter removed within 24 h of surgery end: open (overdue)"]


# (orders, suggested variant): default.yaml binds SNOMED 55705006 to spinal_fusion and CPT 63030
# to lumbar_decompression; the pathway checks fusion first, so fusion + decompression is fusion.
ORDERS = [
    ([(SCT, "55705006")], "fusion"),
    ([(CPT, "63030")], "decompression"),
    ([(CPT, "63030"), (SCT, "55705006")], "fusion"),
    ([(LOINC, "718-7")], None),
]


@pytest.mark.parametrize(("codings", "variant"), ORDERS, ids=["fusion", "decompression", "both", "unrelated"])
async def test_order_sign_suggests_enrolment_with_the_variant(
        sqlite_cds_apps: AppFactory, sign: Signer, codings: list[tuple[str, str]],
        variant: str | None) -> None:
    pid = new_patient_id()
    body = hook_body("order-sign", pid, draftOrders=draft_orders(*codings, pid=pid))
    async with sqlite_cds_apps() as (_, client):
        response = await post_hook(client, sign, body)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    if variant is None:
        assert cards == []
        return
    [card] = cards
    assert card_kind(card) == "enrolment-suggestion"
    assert card["selectionBehavior"] == "at-most-one"
    [suggestion] = card["suggestions"]
    assert suggestion["label"].endswith(f"({variant})")
