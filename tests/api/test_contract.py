"""The API contract: schemathesis (`--checks all`) against the served `/openapi.json`, with 0 failures.

The real app is served by uvicorn on loopback (a SQLite store of its own, the sandbox FHIR server as
the EHR), and schemathesis' own command line runs the operations the schema lists, so routes added
later are covered without a change here. It runs once per kind of caller that reaches different
code: an admin over every other operation, and a ward nurse, a quality auditor (dev-signed tokens)
and a notifier (a subscription's credential) over theirs. The deterministic mode (no seed, no
example database) makes the run the same on every machine; a few examples per operation keep it
short. A failure prints schemathesis' report, with the request that broke the contract.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from fhir_adapters.sandbox import FhirSandbox
from tests.api.conftest import CREDENTIALS, api_app
from tests.utils.loopback import serve

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES_PER_OPERATION = 4

# caller -> the operations it runs: the admin runs every operation but the audit's (refused or not,
# each answer must keep the contract), the others the ones their credential opens. The quality run
# covers the audit (the same code answers admins): its ten cohort filters make it the longest.
CALLERS = {
    "admin": "^(?!/(ui/)?audit)",
    "nurse": "^/(ui/)?worklist",
    "quality": "^/(ui/)?audit",
    "notifier": "^/fhir/",
}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, fhir_sandbox: FhirSandbox
) -> Iterator[tuple[FastAPI, str]]:
    database = tmp_path_factory.mktemp("contract") / "store.db"
    app = api_app(f"sqlite:///{database}", fhir={"base_url": fhir_sandbox.base_url})
    with serve(app) as base_url:
        yield app, base_url


def _authorization(app: FastAPI, caller: str) -> str:
    if caller == "notifier":
        return f"Bearer {CREDENTIALS['sub-a']}"
    return f"Bearer {app.state.worklist.dev_issuer.issue(f'{caller}.contract', (caller,), ('4B',))}"


@pytest.mark.parametrize("caller", CALLERS)
def test_every_operation_keeps_the_contract(served: tuple[FastAPI, str], caller: str, tmp_path: Path) -> None:
    app, base_url = served
    command = [
        str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{base_url}/openapi.json",
        "--checks", "all", "--max-examples", str(EXAMPLES_PER_OPERATION), "--generation-deterministic",
        "--workers", "1", "--no-color", "--include-path-regex", CALLERS[caller],
        "--header", f"Authorization: {_authorization(app, caller)}",
    ]
    # In a scratch directory: schemathesis keeps a cache in its working directory.
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    summary = run.stdout[run.stdout.rfind("SUMMARY"):]
    print(f"schemathesis as {caller}:\n{summary}")
    tested = re.search(r"Tested: (\d+)", summary)
    assert tested is not None and int(tested[1]) > 0, run.stdout + run.stderr  # it ran, not only loaded
    assert run.returncode == 0, run.stdout
