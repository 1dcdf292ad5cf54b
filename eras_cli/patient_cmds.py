"""`eras enrol`, `eras unenrol`, `eras apply`: act on one patient against the configured EHR."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

# The runtime's modules (store, FHIR client, flows) are imported when a command runs: every
# `eras` command imports this module, `eras pathway validate` included (tests/cli/test_cli_imports.py).
if TYPE_CHECKING:
    from flows.apply import ApplyResult
    from flows.runtime import Runtime
    from flows.settings import Settings

console = Console()
err = Console(stderr=True, soft_wrap=True)


def settings() -> Settings:
    from pydantic import ValidationError

    from flows.settings import Settings

    try:
        return Settings()
    except (ValidationError, ValueError) as exc:
        err.print(f"[red]configuration error[/red]: {exc}")
        raise typer.Exit(2) from exc


def _run(coro):
    from engine.errors import PathwayError
    from fhir_adapters.errors import FhirError
    from store.locks import SingleProcessOnly

    try:
        return asyncio.run(coro)
    except FhirError as exc:
        err.print(f"[red]FHIR error[/red]: {exc}")
        raise typer.Exit(1) from exc
    except (PathwayError, LookupError, ValueError, KeyError, SingleProcessOnly) as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from exc


def enrol(patient_id: str, pathway: Annotated[str, typer.Option("--pathway")],
          variant: Annotated[str | None, typer.Option("--variant")] = None) -> None:
    """Enrol a patient on a pathway (enrolling twice is a no-op)."""
    from flows.config import open_runtime
    from flows.enrolment import enrol_patient

    async def go() -> None:
        async with open_runtime(settings()) as rt:
            row, created = enrol_patient(rt, patient_id, pathway, variant=variant, by="cli")
        word = "enrolled" if created else "already enrolled"
        console.print(f"Patient/{patient_id} {word} on {row.pathway_id} v{row.pathway_version} "
                      f"(enrolment {row.id}, parameters {row.parameters or {}})")
    _run(go())


def unenrol(patient_id: str, pathway: Annotated[str, typer.Option("--pathway")],
            reason: Annotated[str, typer.Option("--reason")]) -> None:
    """Exclude a patient from a pathway with a reason; the next apply cancels their Tasks."""
    from flows.config import open_runtime
    from flows.enrolment import unenrol_patient

    async def go() -> None:
        async with open_runtime(settings()) as rt:
            row = unenrol_patient(rt, patient_id, pathway, reason=reason)
        console.print(f"Patient/{patient_id} exited {row.pathway_id}: {row.exit_reason}")
    _run(go())


def apply(patient_id: str) -> None:
    """Read the patient's record, evaluate their pathways and write the work back."""
    from flows.apply import apply_patient
    from flows.config import open_runtime
    from store.locks import claim_single_process

    async def go() -> tuple[ApplyResult, str]:
        async with open_runtime(settings()) as rt:
            claim_single_process(rt.db)  # SQLite: not beside a running `eras serve`
            result = await apply_patient(rt, patient_id)
            return result, "" if result.evaluations else await _why_not_enrolled(rt, patient_id)
    result, why = _run(go())
    _print_result(result, why)


async def _why_not_enrolled(rt: Runtime, patient_id: str) -> str:
    """Name the procedure codes on record that no pathway enrols on (a site binding to add)."""
    from engine.plan import plan_of
    from fhir_adapters.code_survey import codes_enrolling_nothing
    from fhir_adapters.facts import resources_from_batch_response

    request = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"{rtype}?patient=Patient/{patient_id}"}}
        for rtype in ("Procedure", "ServiceRequest")]}
    resources = resources_from_batch_response(await rt.ehr.batch(request), request)
    pathways = [(plan_of(p).terminology, frozenset(p.enrols_on)) for p in rt.pathways.values()]
    codes = codes_enrolling_nothing(pathways, resources)
    if not codes:
        return "no enrolling procedure"
    return "; ".join(f"procedure code {code} is not bound to an enrolling concept" for code in codes)


def _print_result(result: ApplyResult, why: str = "no enrolling procedure") -> None:
    from engine.results import Status

    if not result.evaluations:
        console.print(f"Patient/{result.patient_id}: not on any pathway ({why})")
    for ev in result.evaluations:
        table = Table(title=f"Patient/{result.patient_id} on {ev.pathway_id} v{ev.pathway_version}")
        for col in ("element", "phase", "status", "due"):
            table.add_column(col)
        for r in ev.elements:
            if r.status is Status.NOT_APPLICABLE:
                continue
            due = next((o.due for o in r.occurrences if o.due), None)
            table.add_row(r.element_id, r.phase, r.status.value, due.isoformat() if due else "")
        console.print(table)
    console.print(f"{result.written} resources written in {result.round_trips} FHIR round trips"
                  + (f"; skipped: {', '.join(result.skipped)}" if result.skipped else ""))
