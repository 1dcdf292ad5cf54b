"""The patient view in a real browser: a tap on the worklist opens the timeline; statuses drawn; screenshot.

The patient is the hand-worked episode of tests/api/test_patient_pathway.py, seen at POD1 08:00.
"""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

from sqlmodel import Session

from store.db import make_engine
from store.models import Enrolment
from tests.api.conftest import api_app
from tests.api.test_patient_pathway import NOW, PID, WARD, hand_worked
from tests.audit.cohort import LONDON, lumbar
from tests.browser.test_worklist_page import HERE, ROOT, _require_browser
from tests.utils.audit import clear_audit, load_cases
from tests.utils.loopback import serve
from tests.utils.worklist import clear_ward, seed_action

SCREENSHOT = ROOT / "test-output" / "patient-timeline.png"
# element -> status and label, as the hand-worked episode says (test_patient_pathway.py)
EXPECTED = {"antibiotic_prophylaxis": ["done", "done"], "tranexamic_acid": ["done-late", "done late"],
            "patient_education": ["declined", "declined"], "urinary_catheter_removal": ["overdue", "overdue"]}


def test_patient_page_opens_from_the_worklist_and_draws_the_timeline(sqlite_url: str) -> None:
    node = _require_browser()
    engine = make_engine(sqlite_url)
    enrolment_id = f"{PID}-enr"
    clear_audit(engine, "lumbar_fusion", [enrolment_id])
    load_cases(engine, lumbar(), [hand_worked(PID, WARD).case(now=NOW)], tz=LONDON)
    with Session(engine) as session:
        enrolment = session.get(Enrolment, enrolment_id)
        assert enrolment is not None
    # the open catheter-removal task the worklist shows for this patient
    action = seed_action(engine, enrolment, "urinary_catheter_removal", opens=NOW - timedelta(hours=31),
                         due=NOW - timedelta(hours=1), closes=NOW + timedelta(hours=5), status="overdue")
    app = api_app(sqlite_url, timezone="Europe/London")
    app.state.clock = lambda: NOW
    SCREENSHOT.parent.mkdir(exist_ok=True)
    try:
        with serve(app) as base:
            run = subprocess.run([node, str(HERE / "patient.spec.mjs"), base, WARD, action.key, PID,
                                  json.dumps(EXPECTED), str(SCREENSHOT)],
                                 cwd=HERE, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr[-2000:]
        seen = json.loads(run.stdout.strip().splitlines()[-1])
        # every element of the pathway: a lane, or listed as not applicable under the chart
        assert seen["lanes"] + seen["notApplicable"] == len(lumbar().elements)
        assert seen["lanes"] > len(EXPECTED)
        assert seen["width"] >= 900  # the SVG fills a tablet's width (1024 px)
        assert SCREENSHOT.exists()
    finally:
        clear_audit(engine, "lumbar_fusion")  # its element results, then the enrolment with its task
        clear_ward(engine, [enrolment_id])
        engine.dispose()
