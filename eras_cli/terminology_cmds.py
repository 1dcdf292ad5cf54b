"""`eras terminology check`: the EHR's codes that no concept binds, to write the site terminology file."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

# The runtime's modules are imported when the command runs: every `eras` command imports this
# module (tests/cli/test_cli_imports.py).
if TYPE_CHECKING:
    from fhir_adapters.code_survey import UnboundCode
    from flows.runtime import Runtime

app = typer.Typer(help="Site terminology: find the EHR's codes the bindings miss.", no_args_is_help=True)
console = Console()


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"


@app.command()
def check(
    patients: Annotated[int, typer.Option(help="sample this many patients (a Patient search)")] = 20,
    patient: Annotated[list[str] | None, typer.Option(help="sample these patient ids instead")] = None,
    since: Annotated[datetime | None, typer.Option(
        help="read all changed since DATE (a system-wide search: where the EHR allows it)")] = None,
    output: Annotated[Format, typer.Option("--format", help="text or json")] = Format.TEXT,
) -> None:
    """Read a sample of the EHR's data for the resource types the pathways use and list, per
    resource type and concept, the codes seen that no concept binds."""
    from engine.plan import plan_of
    from eras_cli.patient_cmds import _run
    from eras_cli.patient_cmds import settings as runtime_settings
    from fhir_adapters.code_survey import CODED_ELEMENTS, unbound_codes
    from flows.config import open_runtime
    from flows.poll import watched_types

    async def go() -> tuple[int, list[UnboundCode]]:
        async with open_runtime(runtime_settings(), migrate=False) as rt:
            types = [t for t in watched_types(rt) if t in CODED_ELEMENTS]
            resources = await _sample(rt, types, patients=patients, patient_ids=patient or [], since=since)
            terminologies = [plan_of(p).terminology for p in rt.pathways.values()]
            return len(resources), unbound_codes(terminologies, resources)

    read, rows = _run(go())
    if output is Format.JSON:
        print(json.dumps({"resources_read": read, "unbound": [r.as_dict() for r in rows]}, indent=2))
        return
    _print(read, rows)


async def _sample(rt: Runtime, types: list[str], *, patients: int, patient_ids: list[str],
                  since: datetime | None) -> list[dict[str, Any]]:
    from fhir_adapters.facts import resources_from_batch_response

    if since is not None:
        found: list[dict[str, Any]] = []
        for rtype in types:
            params = {"_lastUpdated": f"ge{since.date().isoformat()}", "_count": "100"}
            found += await rt.ehr.search(rtype, params, max_pages=20)
        return found
    if not patient_ids:
        sample = await rt.ehr.search("Patient", {"_count": str(patients)}, max_pages=1)
        patient_ids = [str(p["id"]) for p in sample if p.get("resourceType") == "Patient"][:patients]
    found = []
    for pid in patient_ids:  # patient-scoped searches: what every EHR's FHIR API answers
        request = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"{rtype}?patient=Patient/{pid}&_count=200"}}
            for rtype in types]}
        found += resources_from_batch_response(await rt.ehr.batch(request), request)
    return found


def _print(read: int, rows: list[UnboundCode]) -> None:
    console.print(f"{read} resources read; {len(rows)} codes no concept binds")
    for rtype in sorted({r.resource_type for r in rows}):
        table = Table(title=rtype, title_justify="left")
        for column in ("concept", "element", "system|code", "count", "example display"):
            table.add_column(column, justify="right" if column == "count" else "left")
        for r in (r for r in rows if r.resource_type == rtype):
            table.add_row(r.concept, r.element, f"{r.system}|{r.code}", str(r.count), r.display)
        console.print(table)
