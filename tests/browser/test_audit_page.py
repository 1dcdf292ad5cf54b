"""The audit dashboard in a real browser: sign in as quality, charts render, drill down, screenshot."""

from __future__ import annotations

import json
import subprocess

from pydantic import SecretStr

from engine.outcomes import load_outcome_definitions
from store.db import make_engine
from tests.api.conftest import api_app
from tests.audit.cohort import LONDON, gold_cohort, lumbar
from tests.browser.test_worklist_page import HERE, ROOT, _require_browser
from tests.utils.audit import clear_audit, load_cases
from tests.utils.loopback import serve

SCREENSHOT = ROOT / "test-output" / "audit.png"


def test_audit_page_renders_charts_for_quality(sqlite_url: str) -> None:
    node = _require_browser()
    engine = make_engine(sqlite_url)
    ids = [c.evaluation.enrolment_id for c in gold_cohort()]
    clear_audit(engine, "lumbar_fusion", ids)
    load_cases(engine, lumbar(), gold_cohort(), outcomes=load_outcome_definitions(), tz=LONDON)
    app = api_app(sqlite_url, audit={"pseudonym_key": SecretStr("browser")})
    SCREENSHOT.parent.mkdir(exist_ok=True)
    try:
        with serve(app) as base:
            run = subprocess.run([node, str(HERE / "audit.spec.mjs"), base, str(SCREENSHOT)], cwd=HERE,
                                 capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr[-2000:]
        seen = json.loads(run.stdout.strip().splitlines()[-1])
        assert seen["bars"] == len(lumbar().elements)
        assert seen["points"] == 3 and seen["dots"] == 34  # all but P30, still in hospital
        assert seen["clipped"] == [] and seen["csvName"] == "lumbar_fusion-p-chart.csv"
        assert SCREENSHOT.exists()
    finally:
        clear_audit(engine, "lumbar_fusion", ids)
        engine.dispose()
