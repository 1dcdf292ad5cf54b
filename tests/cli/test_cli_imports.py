"""`eras` commands that run no Prefect flow start without importing Prefect or the API, and
the pathway-file commands without the store either.

Importing Prefect costs seconds of CPU per process (its jsonschema format checkers build Lark
parsers at import), paid by every `eras pathway validate` or `eras parked`; only `serve` and
`worker` need it. Each probe runs in a fresh interpreter, so nothing a test imported counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Only `serve` and `worker` use these (flows.deployments and flows.loops import Prefect).
SERVE_ONLY = ("prefect", "fastapi", "api.main", "flows.deployments", "flows.loops")
# What `eras pathway ...` and `--help` need none of: the store, the settings, the FHIR client.
RUNTIME = ("sqlmodel", "sqlalchemy", "flows.settings", "flows.config", "httpx")

_PROBE = """
import json, sys
sys.path.insert(0, {root!r})
sys.argv = ["eras", *{args!r}]
from eras_cli.main import app
code = 0
if sys.argv[1:]:
    try:
        app()
    except SystemExit as exc:
        code = exc.code
print(json.dumps({{"code": code, "loaded": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def _probe(args: list[str], env: dict[str, str] | None = None) -> dict:
    # -I: a clean interpreter (no PYTHONPATH, no user site); the probe puts this checkout first.
    out = subprocess.run([sys.executable, "-I", "-c", _PROBE.format(root=str(ROOT), args=args,
                                                                    heavy=SERVE_ONLY + RUNTIME)],
                         env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_cli_imports_no_prefect_nor_the_store() -> None:
    assert _probe([])["loaded"] == []


@pytest.mark.parametrize("args", [["--help"], ["pathway", "validate", "pathways/lumbar_fusion.yaml"]])
def test_pathway_commands_import_no_prefect_nor_the_store(args: list[str]) -> None:
    assert _probe(args) == {"code": 0, "loaded": []}


def test_parked_imports_the_store_but_no_prefect(db_url: str) -> None:
    result = _probe(["parked"], {**os.environ, "ERAS_DATABASE_URL": db_url})
    assert result["code"] == 0
    assert [m for m in result["loaded"] if m in SERVE_ONLY] == []
    assert "flows.config" in result["loaded"]  # the probe sees what the command did import
