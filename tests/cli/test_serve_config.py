"""`eras serve` configured by a `.env` file alone: it starts, and the API and runtime share one store."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import httpx

from fhir_adapters.sandbox import FhirSandbox
from tests.api.test_main import _worklist_answer
from tests.utils.loopback import free_port
from tests.utils.processes import server_process


def test_serve_with_everything_in_env_file_starts_on_one_store(
    tmp_path: Path, fhir_sandbox: FhirSandbox
) -> None:
    (tmp_path / ".env").write_text(
        "ERAS_DATABASE_URL=sqlite:///./site.db\n"
        "ERAS_WORKLIST_DEV_MODE=true\n"
        "ERAS_TIMEZONE=America/New_York\n"
        f"ERAS_FHIR_BASE_URL={fhir_sandbox.base_url}\n"
        'ERAS_SUBSCRIPTIONS={"ehr": "s3cret"}\n',
        encoding="utf-8",
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    eras = str(Path(sys.executable).with_name("eras"))
    command = [eras, "serve", "--port", str(port), "--no-prefect"]
    with server_process(command, base=base, cwd=tmp_path, env={}):
        assert _worklist_answer(base).status_code == 200
        ack = httpx.post(f"{base}/fhir/notifications/ehr", content=b"{}",
                         headers={"Authorization": "Bearer s3cret", "Content-Type": "application/fhir+json"})
        assert ack.status_code != 401  # the subscription secret came from .env too
    assert not (tmp_path / "eras.db").exists()  # no second, default store
    with sqlite3.connect(tmp_path / "site.db") as db:  # the runtime migrated the store the API used
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"inbox_event", "planned_action", "alembic_version"} <= tables
