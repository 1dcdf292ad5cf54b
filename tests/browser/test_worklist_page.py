"""The worklist page in a real browser: sign in, open a ward, complete a task, check the EHR's Task."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from api.worklist.paging import PAGE_SIZE
from fhir_adapters.sandbox import FhirSandbox
from store.db import make_engine
from tests.api.conftest import api_app
from tests.utils.loopback import serve
from tests.utils.worklist import clear_ward, create_task, seed_action, seed_enrolment, seed_ward_tasks

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "test-output" / "worklist.png"


def _require_browser() -> str:
    # `make test` installs Debian's chromium first (deploy/browser/install.sh): a missing
    # browser is a set-up error, not a reason to pass silently.
    assert CHROMIUM.exists(), "chromium not found at /usr/bin/chromium: run deploy/browser/install.sh"
    node = shutil.which("node")
    assert node is not None, "node is needed for the browser test"
    if not (HERE / "node_modules" / "playwright-core").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True)
    return node


def test_worklist_page_completes_task_in_ehr(sqlite_url: str, fhir_sandbox: FhirSandbox) -> None:
    """A ward of 2,000 open tasks shows its most urgent page first and "Show more" reaches the
    next (the time to the first tasks is printed: speed is the bench's business); on the
    test's own ward a task is completed and the EHR's Task says so."""
    node = _require_browser()
    ward, pid = f"W{uuid.uuid4().hex[:5]}", f"pt-{uuid.uuid4().hex[:10]}"
    big = f"B{uuid.uuid4().hex[:5]}"
    engine = make_engine(sqlite_url)
    crowd = seed_ward_tasks(engine, datetime.now(UTC), ward=big, total=2000, on_ward=2000)
    enrolment = seed_enrolment(engine, ward=ward, patient_id=pid)
    task = create_task(fhir_sandbox.base_url, pid)
    action = seed_action(
        engine,
        enrolment,
        "urinary_catheter_removal",
        due=datetime.now(UTC) - timedelta(hours=1),
        fhir_id=task["id"],
        fhir_version=task["meta"]["versionId"],
    )
    app = api_app(sqlite_url, fhir={"base_url": fhir_sandbox.base_url})
    SCREENSHOT.parent.mkdir(exist_ok=True)
    try:
        with serve(app) as base:
            run = subprocess.run(
                [node, str(HERE / "worklist.spec.mjs"), base, ward, action.key, str(SCREENSHOT), big],
                cwd=HERE,
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert run.returncode == 0, run.stderr[-2000:]
        seen = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"\nworklist first render, 2,000 open tasks: {seen['firstRender']} ms from reload to the "
              f"first tasks (first contentful paint {seen['paint']:.0f} ms)")
        assert (seen["firstPage"], seen["afterMore"]) == (PAGE_SIZE, 2 * PAGE_SIZE)
        assert seen["shown"] == f"Showing {PAGE_SIZE} of 2000 open tasks, most urgent first."
        stored = httpx.get(f"{fhir_sandbox.base_url}/Task/{task['id']}").json()
        assert stored["status"] == "completed"
        assert SCREENSHOT.exists()
    finally:
        clear_ward(engine, [enrolment.id, *crowd])
        engine.dispose()

