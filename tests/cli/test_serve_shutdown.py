"""`eras serve` with Prefect (the default) stops promptly and cleanly on SIGTERM, whether Prefect's
temporary server is still starting or flow runs have run: exit 0 well within STOPS_WITHIN, the
Prefect server's process and every other child gone, every notification it acknowledged still
stored, and the flow runs' logs in Prefect's database. A SIGTERM while it migrates the store
lets the migrations finish and stops before serving, with exit 0 too."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select

from fhir_adapters.sandbox import FhirSandbox
from store.db import make_engine
from store.migrate import current_revision, head_revision
from store.models import InboxEvent
from tests.utils.loopback import free_port
from tests.utils.notifications import backport_bundle, observation
from tests.utils.processes import alive, descendants

ERAS = str(Path(sys.executable).with_name("eras"))
NOTIFICATIONS = 12
# From SIGTERM to exit. A stop used to wait for Prefect's server to finish starting (then up to
# a 30 s join), and after flow runs for Prefect's flush of their logs to the ended server (a minute).
STOPS_WITHIN = 15.0
FLOW_RUN_DONE = "Finished in state Completed()"  # Prefect's line at the end of each flow run


@pytest.mark.multiprocess
@pytest.mark.parametrize("moment", ["prefect-starting", "flow-runs-done"])
def test_sigterm_stops_serve_promptly_with_its_prefect_server_and_keeps_the_inbox(
    tmp_path: Path, fhir_sandbox: FhirSandbox, moment: str
) -> None:
    port, database = free_port(), f"sqlite:///{tmp_path / 'serve.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ERAS_"))}
    env |= {"ERAS_DATABASE_URL": database, "ERAS_FHIR_BASE_URL": fhir_sandbox.base_url,
            "ERAS_SUBSCRIPTIONS": json.dumps({"sub-a": "token-a"}), "ERAS_WORKLIST_DEV_MODE": "true",
            "PREFECT_HOME": str(tmp_path / "prefect")}
    base, log_path = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    sent = [observation() for _ in range(NOTIFICATIONS)]
    with contextlib.ExitStack() as stack:
        if moment == "prefect-starting":  # its database hangs: the server's start never ends
            env |= {"PREFECT_SERVER_DATABASE_CONNECTION_URL": stack.enter_context(_hung_database()),
                    "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "600"}
        else:  # the flow runs' logs wait in the process until it stops: the stop must send them
            env["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] = "600"
        log = stack.enter_context(log_path.open("w"))
        # Ticks every second as Prefect flow runs: the first one starts Prefect's server as a child.
        proc = subprocess.Popen([ERAS, "serve", "--port", str(port), "--tick-seconds", "1"],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            children = _wait_for_children(proc, base, log_path)
            if moment == "flow-runs-done":
                _wait_for_log(proc, log_path, FLOW_RUN_DONE)
            for number, resource in enumerate(sent, start=1):
                answer = httpx.post(f"{base}/fhir/notifications/sub-a", timeout=30,
                                    json=backport_bundle("sub-a", events=[(number, resource)]),
                                    headers={"Authorization": "Bearer token-a"})
                assert answer.status_code == 200, answer.text
            children |= descendants(proc.pid)
        finally:
            took = _terminate(proc)
    output = _stopped_cleanly(proc, took, log_path, moment)
    assert [pid for pid in children if alive(pid)] == [], output
    engine = make_engine(database)
    with Session(engine) as session:
        stored = session.exec(select(InboxEvent.resource_id).where(
            col(InboxEvent.resource_id).in_([r["id"] for r in sent]))).all()
    engine.dispose()
    assert sorted(stored) == sorted(r["id"] for r in sent)
    if moment == "flow-runs-done":
        assert FLOW_RUN_DONE in _prefect_logs(tmp_path / "prefect" / "prefect.db"), output


def _stopped_cleanly(proc: subprocess.Popen[bytes], took: float | None, log_path: Path, moment: str) -> str:
    """eras serve ended within STOPS_WITHIN s of SIGTERM, with 0 and no traceback; its output."""
    output = log_path.read_text()
    assert took is not None, f"eras serve still ran {STOPS_WITHIN} s after SIGTERM:\n{output}"
    print(f"{moment}: SIGTERM to exit {took:.2f} s")
    assert proc.returncode == 0 and "Traceback" not in output, output
    return output


def _prefect_logs(path: Path) -> list[str]:
    """The messages Prefect's server stored in its database (PREFECT_HOME's, by default)."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return [message for (message,) in connection.execute("SELECT message FROM log")]


@pytest.mark.multiprocess
def test_sigterm_while_serve_migrates_finishes_the_migrations_and_exits_0(
    tmp_path: Path, fhir_sandbox: FhirSandbox
) -> None:
    database, log_path = f"sqlite:///{tmp_path / 'serve.db'}", tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ERAS_"))}
    env |= {"ERAS_DATABASE_URL": database, "ERAS_FHIR_BASE_URL": fhir_sandbox.base_url,
            "PREFECT_HOME": str(tmp_path / "prefect")}
    with log_path.open("w") as log:
        proc = subprocess.Popen([ERAS, "serve", "--port", str(free_port())],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_log(proc, log_path, "Running upgrade")  # the first migration has begun
        finally:
            took = _terminate(proc)
    output = _stopped_cleanly(proc, took, log_path, "migrating")
    assert "API on" not in output  # stopped before serving
    engine = make_engine(database)
    assert current_revision(engine) == head_revision()
    engine.dispose()


@contextlib.contextmanager
def _hung_database() -> Iterator[str]:
    """A PostgreSQL address whose server takes connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{listener.getsockname()[1]}/prefect"


def _terminate(proc: subprocess.Popen[bytes]) -> float | None:
    """SIGTERM; the seconds until the process exited, or None (then it and its children are
    killed) if it still ran STOPS_WITHIN seconds later."""
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    try:
        proc.wait(timeout=STOPS_WITHIN)
    except subprocess.TimeoutExpired:
        for pid in descendants(proc.pid) | {proc.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        return None
    return time.monotonic() - signalled


def _wait_for_children(proc: subprocess.Popen[bytes], base: str, log_path: Path) -> set[int]:
    """Once the API answers and a child (Prefect's server) runs: the children; fails after 2 min."""
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
        children = descendants(proc.pid)
        if children and _healthy(f"{base}/healthz"):
            return children
        time.sleep(0.2)


def _wait_for_log(proc: subprocess.Popen[bytes], log_path: Path, line: str) -> None:
    """Once `line` is in the process's output; fails after 2 min."""
    deadline = time.monotonic() + 120
    while line not in log_path.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.2)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
