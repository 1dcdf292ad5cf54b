"""`eras serve` with Prefect (the default) stops cleanly on SIGTERM: exit 0, the in-process Prefect
server's child and every other child gone, and every notification it acknowledged still stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select

from fhir_adapters.sandbox import FhirSandbox
from store.db import make_engine
from store.models import InboxEvent
from tests.utils.loopback import free_port
from tests.utils.notifications import backport_bundle, observation
from tests.utils.processes import alive, descendants

ERAS = str(Path(sys.executable).with_name("eras"))
NOTIFICATIONS = 12


@pytest.mark.multiprocess
def test_sigterm_stops_serve_and_its_prefect_server_and_keeps_the_inbox(
    tmp_path: Path, fhir_sandbox: FhirSandbox
) -> None:
    port, database = free_port(), f"sqlite:///{tmp_path / 'serve.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ERAS_"))}
    env |= {"ERAS_DATABASE_URL": database, "ERAS_FHIR_BASE_URL": fhir_sandbox.base_url,
            "ERAS_SUBSCRIPTIONS": json.dumps({"sub-a": "token-a"}), "ERAS_WORKLIST_DEV_MODE": "true",
            "PREFECT_HOME": str(tmp_path / "prefect")}
    base, log_path = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    sent = [observation() for _ in range(NOTIFICATIONS)]
    # Ticks every second as Prefect flow runs: the first one starts Prefect's server as a child.
    with log_path.open("w") as log:
        proc = subprocess.Popen([ERAS, "serve", "--port", str(port), "--tick-seconds", "1"],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            children = _wait_for_children(proc, base, log_path)
            for number, resource in enumerate(sent, start=1):
                answer = httpx.post(f"{base}/fhir/notifications/sub-a", timeout=30,
                                    json=backport_bundle("sub-a", events=[(number, resource)]),
                                    headers={"Authorization": "Bearer token-a"})
                assert answer.status_code == 200, answer.text
            children |= descendants(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=90)
    output = log_path.read_text()
    assert code == 0 and "Traceback" not in output, output
    assert [pid for pid in children if alive(pid)] == [], output
    engine = make_engine(database)
    with Session(engine) as session:
        stored = session.exec(select(InboxEvent.resource_id).where(
            col(InboxEvent.resource_id).in_([r["id"] for r in sent]))).all()
    engine.dispose()
    assert sorted(stored) == sorted(r["id"] for r in sent)


def _wait_for_children(proc: subprocess.Popen[bytes], base: str, log_path: Path) -> set[int]:
    """Once the API answers and a child (Prefect's server) runs: the children; fails after 2 min."""
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
        children = descendants(proc.pid)
        if children and _healthy(f"{base}/healthz"):
            return children
        time.sleep(0.2)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
