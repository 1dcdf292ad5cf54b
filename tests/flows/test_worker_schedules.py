"""Two `eras worker` processes against a real Prefect server on PostgreSQL: stopping one with
SIGTERM leaves every deployment's schedule active, the exclusive ones limited to 1, and the
other worker goes on running the scheduled flows."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from fhir_adapters.sandbox import FhirSandbox
from flows.deployments import deployments
from store.db import make_engine
from tests.utils.databases import postgres_schema, postgres_server_url, require_postgres

ROOT = Path(__file__).resolve().parents[2]
ERAS = str(Path(sys.executable).with_name("eras"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _prefect_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the Prefect server (its own Alembic history)."""
    server = postgres_server_url()
    require_postgres(server)
    name = f"prefect_test_{secrets.token_hex(4)}"
    admin = make_engine(server).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _wait(predicate, seconds: float, what: str, procs: list[subprocess.Popen]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"a process exited ({proc.returncode}) while waiting for {what}:\n{out[-3000:]}")
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"timed out after {seconds} s waiting for {what}")


def _deployments(api: str) -> dict[str, dict]:
    response = httpx.post(f"{api}/deployments/filter", json={}, timeout=10)
    response.raise_for_status()
    return {d["name"]: d for d in response.json()}


def _runs(api: str, deployment_names: dict[str, str], state: str) -> dict[str, set[str]]:
    """Flow run ids in `state`, by deployment name: asked per deployment, because the scheduler
    creates up to 100 future runs for each and the API answers at most 200 per request, so one
    query across deployments could miss a whole deployment."""
    runs: dict[str, set[str]] = {}
    for deployment_id, name in deployment_names.items():
        body = {"deployments": {"id": {"any_": [deployment_id]}},
                "flow_runs": {"state": {"type": {"any_": [state]}}}, "limit": 200}
        response = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10)
        response.raise_for_status()
        found = {r["id"] for r in response.json()}
        if found:
            runs[name] = found
    return runs


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group, the last started first (a worker stops while the server it
    reports to still answers); SIGKILL one still running after 15 s."""
    for proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def test_sigterm_to_one_worker_leaves_the_schedules_active(tmp_path: Path,
                                                           fhir_sandbox: FhirSandbox) -> None:
    started = time.monotonic()
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ERAS_"))}
    with _prefect_database() as prefect_db, postgres_schema() as eras_db:
        server_env = {**base, "PREFECT_HOME": str(tmp_path / "prefect"),
                      "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db,
                      "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
                      # schedule runs within a second of the deployments' creation, not a minute
                      "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1"}
        server = _start([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                         "--port", str(port)], server_env, tmp_path / "server.log")
        procs = [server]
        try:
            _wait(lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200, 90,
                  "the Prefect server", procs)
            marks = {"server up": time.monotonic() - started}
            worker_env = {**base, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api,
                          "PREFECT_RUNNER_POLL_FREQUENCY": "1",
                          "ERAS_DATABASE_URL": eras_db, "ERAS_FHIR_BASE_URL": fhir_sandbox.base_url}
            metrics_port = _free_port()
            workers = [_start([ERAS, "worker", *args], worker_env, tmp_path / f"worker{i}.log")
                       for i, args in ((1, []), (2, ["--metrics-port", str(metrics_port)]))]
            procs += workers
            expected = {d.name for d in deployments(polling=False)}
            _wait(lambda: all("eras worker: serving" in (tmp_path / f"worker{i}.log").read_text()
                              for i in (1, 2)), 90, "both workers to serve", procs)
            assert set(_deployments(api)) == expected
            marks["workers serving"] = time.monotonic() - started

            os.killpg(workers[0].pid, signal.SIGTERM)
            stopped = workers[0].wait(30)
            procs.remove(workers[0])
            marks["worker stopped"] = time.monotonic() - started
            time.sleep(1.0)  # a pausing runner pauses in its shutdown, before it exits
            after = _deployments(api)
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            ids = {after[name]["id"]: name for name in expected}
            # The server keeps creating scheduled runs for every deployment...
            _wait(lambda: set(_runs(api, ids, "SCHEDULED")) | set(_runs(api, ids, "COMPLETED"))
                  >= expected, 90, "scheduled runs of every deployment", procs)
            marks["runs scheduled"] = time.monotonic() - started
            # ...and the remaining worker runs them (a run asked for now, not in a minute).
            run = httpx.post(f"{api}/deployments/{after['tick']['id']}/create_flow_run", json={},
                             timeout=10).json()
            _wait(lambda: run["id"] in _runs(api, ids, "COMPLETED").get("tick", set()), 90,
                  "the remaining worker to run tick", procs)
            marks["tick run"] = time.monotonic() - started
        finally:
            _stop(procs)
            marks["stopped"] = time.monotonic() - started
    print("\n" + "; ".join(f"{what} at {seconds:.1f} s" for what, seconds in marks.items()))
    for name in expected:
        assert after[name]["paused"] is False, name
        assert after[name]["schedules"] and all(s["active"] for s in after[name]["schedules"]), name
    stop_log = (tmp_path / "worker1.log").read_text()
    assert stopped == 0 and "Traceback" not in stop_log, stop_log[-3000:]
    assert "eras_apply_seconds_bucket" in metrics and "# TYPE eras_fhir_calls_total counter" in metrics
    limits = {name: (after[name].get("global_concurrency_limit") or {}).get("limit") for name in expected}
    assert limits == {"process-events": None, "tick": 1, "reminders": 1, "audit-report": 1}
