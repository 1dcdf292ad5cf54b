"""A launch from the EHR in a real browser: the ward's worklist opens signed in, a task is completed."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from fhir_adapters.sandbox import FhirSandbox
from store.db import make_engine
from tests.api.conftest import api_app
from tests.api.smart.conftest import smart_settings
from tests.browser.test_worklist_page import HERE, _require_browser
from tests.utils.loopback import serve
from tests.utils.smart_server import smart_server
from tests.utils.worklist import clear_ward, create_task, seed_action, seed_enrolment


def test_launch_with_a_ward_opens_its_worklist_signed_in(sqlite_url: str, fhir_sandbox: FhirSandbox) -> None:
    node = _require_browser()
    ward, pid = f"W{uuid.uuid4().hex[:5]}", f"pt-{uuid.uuid4().hex[:10]}"
    engine = make_engine(sqlite_url)
    enrolment = seed_enrolment(engine, ward=ward, patient_id=pid)
    task = create_task(fhir_sandbox.base_url, pid)
    action = seed_action(engine, enrolment, "urinary_catheter_removal",
                         due=datetime.now(UTC) - timedelta(hours=1), fhir_id=task["id"],
                         fhir_version=task["meta"]["versionId"])
    try:
        with smart_server() as ehr:
            launch = ehr.launch(fhirContext=[{"reference": f"Location/{ward}"}])
            app = api_app(sqlite_url, fhir={"base_url": fhir_sandbox.base_url}, smart=smart_settings(ehr))
            with serve(app) as base:
                url = f"{base}/launch?{httpx.QueryParams({'iss': ehr.iss, 'launch': launch})}"
                run = subprocess.run([node, str(HERE / "launch.spec.mjs"), url, action.key], cwd=HERE,
                                     capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr[-2000:]
        assert f"landed on /ui/worklist?ward={ward}" in run.stdout
        assert httpx.get(f"{fhir_sandbox.base_url}/Task/{task['id']}").json()["status"] == "completed"
    finally:
        clear_ward(engine, [enrolment.id])
        engine.dispose()
