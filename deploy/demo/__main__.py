"""`make demo`: a sandbox EHR, `eras serve`, six patients' timelines replayed as FHIR writes plus
notifications on an accelerated clock; then each ward's worklist and each patient's statuses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from deploy.demo.timeline import COMPLETED_TASKS, PATIENTS, SCENES
from engine.compliance import patient_compliance
from fhir_adapters.client import FhirClient
from fhir_adapters.sandbox import FhirSandbox

console = Console(width=150)
SECRET = "demo-secret"  # the simulated EHR's notifier credential, for this run only
KEY_ELEMENTS = [
    ("patient_education", "educ"), ("smoking_cessation", "smoke"), ("anaemia_iron_therapy", "iron"),
    ("glycaemic_optimisation", "HbA1c"), ("pc6_bands_applied", "PC6"),
    ("ponv_prophylaxis_high_risk", "PONV3+"), ("pain_reassessment_within_1h", "pain1h"),
    ("out_of_bed_day_of_surgery", "OOB"), ("walk_three_times_daily", "walk3x"),
    ("urinary_catheter_removal", "cath24h"), ("supervised_exercise_decompression", "rehab-D"),
]
MARK = {"done": "[green]done[/]", "missed": "[red]missed[/]", "overdue": "[bold red]overdue[/]",
        "declined": "[magenta]declined[/]", "not-applicable": "[dim]n/a[/]", "due": "[yellow]due[/]",
        "upcoming": "[cyan]later[/]"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    def __init__(self, work: Path, sandbox: FhirSandbox) -> None:
        self.work, self.sandbox = work, sandbox
        self.clock = work / "clock"
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.db_url = f"sqlite:///{work / 'eras-demo.db'}"
        self.env = {**os.environ, "ERAS_DATABASE_URL": self.db_url,
                    "ERAS_FHIR_BASE_URL": sandbox.base_url, "ERAS_CLOCK_FILE": str(self.clock),
                    "ERAS_SUBSCRIPTIONS": json.dumps({"demo-ehr": SECRET}),
                    "ERAS_WORKLIST_DEV_MODE": "true", "ERAS_TIMEZONE": "Europe/London",
                    "PREFECT_HOME": str(work / "prefect"), "ERAS_LOG_LEVEL": "WARNING"}

    def set_clock(self, at: datetime) -> None:
        self.clock.write_text(at.isoformat(), encoding="utf-8")

    def start_serve(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "eras_cli.main", "serve", "--port", str(self.port),
               "--tick-seconds", "2"]
        return subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=open(self.work / "serve.log", "wb"))  # noqa: SIM115

    async def wait_ready(self, http: httpx.AsyncClient) -> None:
        for _ in range(600):
            try:
                if (await http.get(f"{self.api}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit(f"eras serve did not start; see {self.work / 'serve.log'}")

    def inbox_open(self) -> int:
        engine = create_engine(self.db_url)
        with engine.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM inbox_event WHERE status IN "
                                  "('pending', 'processing')")).scalar_one()
        engine.dispose()
        return int(n)

    async def wait_drained(self) -> None:
        for _ in range(600):
            if self.inbox_open() == 0:
                return
            await asyncio.sleep(0.1)
        raise SystemExit("the inbox did not drain within a minute")


async def write_and_notify(ehr: FhirClient, http: httpx.AsyncClient, api: str,
                           resource: dict[str, Any]) -> None:
    if "id" in resource:
        saved, _ = await ehr.update(resource)
    else:
        saved = await ehr.create(resource)
    response = await http.post(f"{api}/fhir/notifications/demo-ehr", json=saved,
                               headers={"Authorization": f"Bearer {SECRET}"})
    response.raise_for_status()


async def replay(demo: Demo, ehr: FhirClient, http: httpx.AsyncClient) -> None:
    for number, (label, when, build, who) in enumerate(SCENES, start=1):
        concerned = [p for p in PATIENTS if who(p)]
        at = max(when(p) for p in concerned)
        demo.set_clock(at)
        t0 = time.perf_counter()
        writes = 0
        for patient in concerned:
            for resource in build(patient):
                await write_and_notify(ehr, http, demo.api, resource)
                writes += 1
        await demo.wait_drained()
        if label in COMPLETED_TASKS:
            await asyncio.sleep(2.5)  # the tick writes the Tasks that have just opened
            writes += await complete_tasks(ehr, http, demo.api, at, *COMPLETED_TASKS[label])
            await demo.wait_drained()
        await asyncio.sleep(2.5)  # one tick and one reminders run at this simulated time
        tasks = await ehr.search("Task", {"_count": "1000"})
        open_ = sum(1 for t in tasks if t["status"] in ("ready", "requested"))
        console.print(f"[bold]{number}. {label}[/] — clock {at:%a %d %b %H:%M}: {writes} FHIR writes + "
                      f"notifications, processed in {time.perf_counter() - t0:.1f} s; EHR now holds "
                      f"{len(tasks)} Tasks ({open_} open)")
        if label.startswith("mobilisation"):
            await print_worklists(demo, http)


async def complete_tasks(ehr: FhirClient, http: httpx.AsyncClient, api: str, at: datetime,
                         element: str, lapse: str) -> int:
    """The care team completes the open Task for `element` of every patient without `lapse`."""
    done = 0
    keep = {f"Patient/{p.id}" for p in PATIENTS if not p.lapsed(lapse)}
    for task in await ehr.search("Task", {"_count": "1000"}):
        codes = [c.get("code") for c in task.get("code", {}).get("coding", [])]
        if (element in codes and task.get("for", {}).get("reference") in keep
                and task.get("status") in ("requested", "ready", "in-progress")):
            await write_and_notify(ehr, http, api, {**task, "status": "completed",
                                                    "lastModified": at.isoformat()})
            done += 1
    return done


async def print_worklists(demo: Demo, http: httpx.AsyncClient) -> None:
    wards = sorted({p.ward for p in PATIENTS})
    token = (await http.post(f"{demo.api}/auth/dev-token", json={
        "subject": "demo-charge-nurse", "roles": ["charge_nurse"], "wards": wards})).json()["access_token"]
    for ward in wards:
        response = await http.get(f"{demo.api}/worklist", params={"ward": ward, "window": "12h"},
                                  headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        body = response.json()
        items = body["items"]  # the most urgent page; `total` counts every open task
        table = Table(title=f"{ward} worklist ({body['total']} open tasks)", title_justify="left")
        for col in ("status", "due", "bed", "POD", "task", "who"):
            table.add_column(col)
        for item in items[:14]:
            due = datetime.fromisoformat(item["due"]).astimezone(PATIENTS[0].start.tzinfo) \
                if item.get("due") else None
            table.add_row(MARK.get(item["status"], item["status"]), f"{due:%a %H:%M}" if due else "",
                          str(item.get("bed") or ""), str(item.get("pod", "")), item["title"], item["role"])
        console.print(table)


async def print_statuses(demo: Demo) -> None:
    from flows.apply import read_and_evaluate
    from flows.config import open_runtime
    from flows.settings import Settings

    os.environ.update(demo.env)
    async with open_runtime(Settings(), migrate=False) as rt:
        table = Table(title="Element statuses at the end (selected elements; compliance over all)",
                      title_justify="left")
        for col in ("patient", "variant", "apfel", *(short for _, short in KEY_ELEMENTS), "compliance"):
            table.add_column(col)
        for p in PATIENTS:
            [(_, ev, _facts)] = await read_and_evaluate(rt, p.id)
            cells = [MARK.get(ev.element(e).status.value, ev.element(e).status.value)
                     for e, _ in KEY_ELEMENTS]
            pc = patient_compliance(ev)
            table.add_row(f"{p.id} ({p.sex[0].upper()}, {'smoker' if p.smoker else 'non-smoker'})",
                          p.variant, str(ev.variables.get("apfel")), *cells, str(pc.overall))
        console.print(table)


async def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eras-demo-") as tmp, FhirSandbox() as sandbox:
        demo = Demo(Path(tmp), sandbox)
        demo.set_clock(SCENES[0][1](PATIENTS[0]))
        console.print(f"[bold]ERAS pathway engine demo[/]: sandbox EHR at {sandbox.base_url}, "
                      f"eras serve at {demo.api} (SQLite store, in-process Prefect for tick/reminders)")
        serve = demo.start_serve()
        try:
            async with httpx.AsyncClient(timeout=30) as http, FhirClient(sandbox.base_url) as ehr:
                await demo.wait_ready(http)
                await replay(demo, ehr, http)
            await print_statuses(demo)
        finally:
            serve.send_signal(signal.SIGINT)
            try:
                serve.wait(timeout=20)
            except subprocess.TimeoutExpired:
                serve.kill()
        console.print(f"demo finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
