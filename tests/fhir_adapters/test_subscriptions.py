"""The Subscriptions `eras subscribe` prints are valid R4 and are accepted by a FHIR server."""

from __future__ import annotations

import json

import httpx
import pytest
from fhir.resources.R4B.subscription import Subscription
from typer.testing import CliRunner

from eras_cli.main import app
from fhir_adapters.subscriptions import backport_subscription, r4_subscriptions

TYPES = ["Encounter", "Observation", "Procedure"]


def test_r4_subscriptions_one_per_type_valid() -> None:
    subs = r4_subscriptions(TYPES, endpoint="https://e/fhir/notifications/ehr",
                            secret_header="Authorization: Bearer x", reason="ERAS")
    assert [s["criteria"] for s in subs] == ["Encounter?", "Observation?", "Procedure?"]
    for sub in subs:
        Subscription.model_validate(sub)


def test_backport_subscription_filters_every_type_valid() -> None:
    sub = backport_subscription(TYPES, endpoint="https://e/fhir/notifications/ehr",
                                secret_header="Authorization: Bearer x", reason="ERAS")
    Subscription.model_validate(sub)
    filters = [e["valueString"] for e in sub["_criteria"]["extension"]]
    assert filters == ["Encounter?", "Observation?", "Procedure?"]


@pytest.mark.parametrize("style", ["r4", "backport"])
def test_subscribe_prints_and_creates(fhir_sandbox, tmp_path, monkeypatch, style) -> None:
    monkeypatch.setenv("ERAS_DATABASE_URL", f"sqlite:///{tmp_path}/s.db")
    monkeypatch.setenv("ERAS_FHIR_BASE_URL", fhir_sandbox.base_url)
    monkeypatch.setenv("ERAS_SUBSCRIPTIONS", '{"ehr": "s3cret"}')  # what the intake will check
    runner = CliRunner()
    printed = runner.invoke(app, ["subscribe", "--endpoint", "https://eras.example/fhir/notifications",
                                  "--style", style])
    assert printed.exit_code == 0, printed.output
    subs = json.loads(printed.stdout[: printed.stdout.rindex("]") + 1])
    assert all(s["channel"]["endpoint"] == "https://eras.example/fhir/notifications/ehr" for s in subs)
    assert "s3cret" not in printed.stdout  # the secret is never printed
    created = runner.invoke(app, ["subscribe", "--endpoint", "https://eras.example/fhir/notifications",
                                  "--style", style, "--create"])
    assert created.exit_code == 0, created.output
    assert created.output.count("created Subscription/") == len(subs)
    stored = httpx.get(f"{fhir_sandbox.base_url}/Subscription", params={"_count": "1000"}).json()
    headers = {h for e in stored.get("entry", []) for h in e["resource"]["channel"].get("header", [])}
    assert "Authorization: Bearer s3cret" in headers  # the credential the intake checks for "ehr"
