"""`eras serve` as a real process: probes and metrics answer, the scheduled definitions run, and
SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from fhir_adapters.sandbox import FhirSandbox

ROOT = Path(__file__).resolve().parents[2]
ERAS = str(Path(sys.executable).with_name("eras"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fhir_calls(text: str) -> float:
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "eras_fhir_calls_total")


def test_serve_answers_probes_and_runs_the_schedule(tmp_path: Path, fhir_sandbox: FhirSandbox) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ERAS_"))}
    env |= {"ERAS_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
            "ERAS_FHIR_BASE_URL": fhir_sandbox.base_url, "ERAS_LOG_FORMAT": "json",
            "ERAS_WORKLIST_DEV_MODE": "true",
            # System-wide searches query the EHR on every run even with nobody enrolled
            # (the default, per-patient mode, has no one to ask about here).
            "ERAS_POLL_MODE": "system"}
    log = (tmp_path / "serve.log").open("w")
    # Polling every second: poll-ehr queries the EHR, which the FHIR-call counter must show.
    proc = subprocess.Popen([ERAS, "serve", "--port", str(port), "--no-prefect", "--poll-seconds", "1"],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        ready = httpx.get(f"{base}/readyz", timeout=10)
        first = _fhir_calls(httpx.get(f"{base}/metrics", timeout=10).text)
        deadline, second = time.monotonic() + 30, first
        while second <= first and time.monotonic() < deadline:  # the next poll-ehr run, 1 s on
            time.sleep(0.2)
            second = _fhir_calls(httpx.get(f"{base}/metrics", timeout=10).text)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "database": "ok", "ehr": "ok"})
    assert second > first  # the poll-ehr definition ran on its interval, through the runtime's client
    # uvicorn shuts down gracefully, then the runtime and the children stop: a clean stop exits 0.
    output = (tmp_path / "serve.log").read_text()
    assert code == 0 and "Traceback" not in output, output
    # ERAS_LOG_FORMAT=json: log records come out as JSON lines (the console banner does not).
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert records and all(set(r) >= {"ts", "level", "logger", "message"} for r in records)
    # the start-up line says which polling mode runs, that the site chose it, and why
    polling = [r["message"] for r in records if r["message"].startswith("EHR polling")]
    assert polling and polling[0].startswith("EHR polling every 1 s in system mode (set by ERAS_POLL_MODE")
    assert "across all patients" in polling[0]


def test_serve_stops_cleanly_on_sigint(tmp_path: Path, fhir_sandbox: FhirSandbox) -> None:
    """Ctrl-C ends `eras serve` without a traceback (its runtime thread once shadowed
    `Thread._stop`: "'Event' object is not callable")."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "ERAS_")) and k != "DO_NOT_TRACK"}
    env |= {"ERAS_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
            "ERAS_FHIR_BASE_URL": fhir_sandbox.base_url, "ERAS_WORKLIST_DEV_MODE": "true"}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([ERAS, "serve", "--port", str(port), "--no-prefect"],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert code == 0 and "Traceback" not in output, output


def test_eras_command_turns_prefect_telemetry_off() -> None:
    """A hospital network must see no phone-home: the `eras` entry point switches Prefect's
    client telemetry (DO_NOT_TRACK) and server analytics off before Prefect is imported."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PREFECT_") and k != "DO_NOT_TRACK"}
    probe = ("import os, eras_cli.main, prefect.settings as s; "
             "print(os.environ.get('DO_NOT_TRACK'), s.get_current_settings().server.analytics_enabled)")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.split() == ["1", "False"]
