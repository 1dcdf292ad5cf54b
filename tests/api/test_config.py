"""The one settings tree: prefixed groups, `.env` for everything, one time zone, the README's table."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from api.main import create_app
from engine.plan import plan_of
from flows.config import load_pathways
from flows.settings import Settings, settings_env_vars
from store.models import Enrolment
from tests.utils.worklist import clear_ward, seed_action, seed_enrolment

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ERAS_* variable from the caller, and an empty working directory (no stray `.env`)."""
    for name in list(os.environ):
        if name.startswith("ERAS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_settings_groups_read_from_prefixed_variables(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERAS_FHIR_BASE_URL", "https://ehr.example/fhir")
    monkeypatch.setenv("ERAS_FHIR_TIMEOUT", "5")
    monkeypatch.setenv("ERAS_WORKLIST_OIDC_ISSUER", "https://idp.example")
    monkeypatch.setenv("ERAS_AUDIT_PSEUDONYM_KEY", "k")
    monkeypatch.setenv("ERAS_TASK_STORE_URL", "https://store.example/fhir")
    settings = Settings()
    assert settings.fhir.base_url == "https://ehr.example/fhir" and settings.fhir.timeout == 5.0
    assert settings.worklist.oidc_issuer == "https://idp.example"
    assert settings.audit.pseudonym_key is not None and settings.audit.pseudonym_key.get_secret_value() == "k"
    assert settings.task_store.url == "https://store.example/fhir"


def test_settings_env_file_feeds_every_group_and_paths_become_absolute(clean_env: Path) -> None:
    (clean_env / "subs.yaml").write_text("ehr: from-file\n", encoding="utf-8")
    (clean_env / ".env").write_text(
        "ERAS_DATABASE_URL=sqlite:///./store.db\n"
        "ERAS_TIMEZONE=America/New_York\n"
        "ERAS_WORKLIST_DEV_MODE=true\n"
        "ERAS_AUDIT_REPORT_DIR=reports\n"
        "ERAS_FHIR_BASE_URL=https://ehr.example/fhir\n"
        "ERAS_SUBSCRIPTIONS_FILE=subs.yaml\n"
        'ERAS_PATHWAYS=["site/pathway.yaml"]\n',
        encoding="utf-8",
    )
    settings = Settings()
    assert settings.timezone == "America/New_York"
    assert settings.worklist.dev_mode is True
    assert settings.fhir.base_url == "https://ehr.example/fhir"
    assert settings.pathways == [clean_env / "site" / "pathway.yaml"]
    assert settings.subscriptions_file == clean_env / "subs.yaml"
    assert {k: v.get_secret_value() for k, v in settings.subscriptions.items()} == {"ehr": "from-file"}


def test_settings_subscriptions_file_variable_is_not_a_subscription(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "subs.json").write_text('{"b": "from-file"}', encoding="utf-8")
    monkeypatch.setenv("ERAS_SUBSCRIPTIONS", '{"a": "from-env"}')
    monkeypatch.setenv("ERAS_SUBSCRIPTIONS_FILE", "subs.json")
    assert set(Settings().subscriptions) == {"a", "b"}


def test_settings_per_area_time_zones_are_gone(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERAS_WORKLIST_TIMEZONE", "Asia/Tokyo")
    monkeypatch.setenv("ERAS_AUDIT_TIMEZONE", "Asia/Tokyo")
    assert Settings().timezone == "Europe/London"
    assert "ERAS_WORKLIST_TIMEZONE" not in settings_env_vars()
    assert "ERAS_AUDIT_TIMEZONE" not in settings_env_vars()


def test_settings_missing_credentials_name_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERAS_FHIR_AUTH", "smart-backend")
    monkeypatch.setenv("ERAS_FHIR_CLIENT_ID", "engine")
    with pytest.raises(ValueError, match="ERAS_FHIR_PRIVATE_KEY_FILE, ERAS_FHIR_KEY_ID"):
        Settings()


def _readme_table_variables() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| variable | default | meaning |", 1)[1].split("\n\n", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`(ERAS_[A-Z0-9_]+)`", cell)}


def test_readme_configuration_table_lists_exactly_the_settings() -> None:
    assert _readme_table_variables() == settings_env_vars()


async def test_worklist_pod_follows_eras_timezone_alone(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only ERAS_TIMEZONE names a zone (dev sign-in aside): the worklist counts days in it.

    Surgery ended 2026-01-14 22:30 in New York (EST, UTC-5) = 2026-01-15 03:30 UTC. The ward
    looks at 2026-01-15 14:00 UTC = 09:00 in New York, the next calendar day there: POD1.
    (In Europe/London, UTC+0 in January, both instants fall on 15 January: it would say POD0.)
    """
    monkeypatch.setenv("ERAS_TIMEZONE", "America/New_York")
    monkeypatch.setenv("ERAS_WORKLIST_DEV_MODE", "true")
    now = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
    app = create_app()
    async with app.router.lifespan_context(app):
        app.state.clock = lambda: now
        enrolment = seed_enrolment(app.state.engine, ward="5A", now=now)
        with Session(app.state.engine) as session:
            row = session.get(Enrolment, enrolment.id)
            assert row is not None
            row.anchors = {"surgery_end": "2026-01-14T22:30:00-05:00"}
            session.add(row)
            session.commit()
        seed_action(app.state.engine, enrolment, "urinary_catheter_removal",
                    opens=datetime(2026, 1, 15, 12, 0, tzinfo=UTC),
                    due=datetime(2026, 1, 15, 16, 0, tzinfo=UTC))
        token = app.state.worklist.dev_issuer.issue("nurse.a", ("nurse",), ("5A",))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://eras.test") as api:
            response = await api.get("/worklist?ward=5A", headers={"Authorization": f"Bearer {token}"})
        clear_ward(app.state.engine, [enrolment.id])
    assert response.status_code == 200
    assert [item["pod"] for item in response.json()["items"]] == [1]
    assert (clean_env / "eras.db").exists()  # the default store, in the working directory


def test_relative_paths_resolve_against_cwd_then_against_the_naming_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ERAS_TERMINOLOGY is relative to the working directory; the `extends` inside it is relative
    to the terminology file, wherever the process runs from later."""
    site = clean_env / "conf" / "site.yaml"
    site.parent.mkdir()
    default = ROOT / "pathways" / "terminology" / "default.yaml"
    relative = os.path.relpath(default, site.parent)
    site.write_text(f"terminology: site\nextends: {relative}\n", encoding="utf-8")
    monkeypatch.setenv("ERAS_TERMINOLOGY", "conf/site.yaml")
    settings = Settings()
    assert settings.terminology == site
    monkeypatch.chdir(ROOT / "tests")  # a later chdir (a flow run, a service manager) changes nothing
    loaded = load_pathways(settings)
    assert "lumbar_fusion" in loaded
    assert plan_of(loaded["lumbar_fusion"]).terminology.name == "site"
