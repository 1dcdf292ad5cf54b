"""`eras pathway ...`: validate, show, export and simulate pathway files."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.console import Console
from rich.table import Table

from engine.errors import InvalidPathway, PathwayError
from engine.evaluate import evaluate
from engine.loader import load_pathway
from engine.model import PHASES, Pathway
from engine.patientfile import patient_from_json
from engine.results import Evaluation, Status

app = typer.Typer(help="Work with pathway files.", no_args_is_help=True)
console = Console()
err = Console(stderr=True, soft_wrap=True)

Terms = Annotated[Path | None, typer.Option("--terminology", "-t", help="site terminology file")]
_STYLE = {Status.DONE: "green", Status.OVERDUE: "bold red", Status.MISSED: "red",
          Status.DUE: "yellow", Status.DECLINED: "magenta", Status.NOT_APPLICABLE: "dim",
          Status.UPCOMING: "cyan"}


def _load(file: Path, terminology: Path | None) -> Pathway:
    try:
        return load_pathway(file, terminology)
    except InvalidPathway as exc:
        err.print(f"[red]invalid[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from exc


@app.command()
def validate(files: list[Path], terminology: Terms = None) -> None:
    """Check pathway files; every problem is printed with its file, line and key."""
    failed = 0
    for file in files:
        try:
            pathway = load_pathway(file, terminology)
        except InvalidPathway as exc:
            failed += 1
            err.print(f"[red]✗[/red] {exc}", highlight=False)
            continue
        console.print(f"[green]✓[/green] {file}: {pathway.id} v{pathway.version}, "
                      f"{len(pathway.elements)} elements")
    if failed:
        raise typer.Exit(1)


@app.command()
def show(file: Path, terminology: Terms = None) -> None:
    """The pathway's elements by phase, as a table."""
    pathway = _load(file, terminology)
    table = Table(title=f"{pathway.title} ({pathway.id} v{pathway.version})")
    for col in ("phase", "element", "category", "window", "who", "applies when", "source"):
        table.add_column(col, overflow="fold")
    for phase in PHASES:
        for el in (e for e in pathway.elements if e.phase == phase):
            w = el.window
            window = f"{w.anchor} {w.opens or ''}..{w.due or ''}..{w.closes or ''}"
            if el.recurrence:
                window += f" every {el.recurrence.every}"
            who = f"{el.action.role} ({el.action.kind})" if el.action else "audit only"
            table.add_row(phase, f"{el.id}\n{el.title}", el.category, window, who,
                          el.applies_when or "always", el.source.guideline)
    console.print(table)


@app.command()
def export(file: Path, format: Annotated[str, typer.Option("--format")] = "plandefinition",
           terminology: Terms = None) -> None:
    """Print the pathway as FHIR R4 (a Bundle of PlanDefinition + ActivityDefinitions)."""
    from fhir_adapters.plandefinition import export_bundle

    if format != "plandefinition":
        err.print(f"unknown format '{format}'; the only format is 'plandefinition'")
        raise typer.Exit(2)
    print(json.dumps(export_bundle(_load(file, terminology)), indent=2))


def _checkpoints(final: Evaluation, tz: ZoneInfo) -> list[tuple[str, datetime]]:
    marks = {
        "booked+1d": ("surgery_scheduled", timedelta(days=1)),
        "op-7d": ("surgery_start", timedelta(days=-7)), "op-1h": ("surgery_start", timedelta(hours=-1)),
        "end+6h": ("surgery_end", timedelta(hours=6)), "POD1 20:00": ("surgery_end", None),
        "POD3 20:00": ("surgery_end", None), "disch+2w": ("discharge", timedelta(weeks=2)),
        "disch+7w": ("discharge", timedelta(weeks=7)),
    }
    points = []
    for label, (anchor, delta) in marks.items():
        at = final.anchors.get(anchor)
        if at is None:
            continue
        if delta is None:
            day = int(label[3])
            local = at.astimezone(tz).date() + timedelta(days=day)
            points.append((label, datetime(local.year, local.month, local.day, 20, tzinfo=tz)))
        else:
            points.append((label, at + delta))
    return sorted(points, key=lambda p: p[1])


@app.command()
def simulate(
    file: Path,
    patient: Annotated[Path, typer.Option("--patient", help="synthetic patient JSON file")],
    tz_name: Annotated[str, typer.Option("--tz", help="hospital time zone")] = "Europe/London",
    at: Annotated[list[str] | None, typer.Option("--at", help="extra ISO instants")] = None,
    terminology: Terms = None,
) -> None:
    """Replay a patient's timeline: each element's status and due window at key moments."""
    pathway = _load(file, terminology)
    try:
        tz = ZoneInfo(tz_name)
        facts = patient_from_json(json.loads(patient.read_text(encoding="utf-8")))
    except (ZoneInfoNotFoundError, OSError, json.JSONDecodeError, PathwayError) as exc:
        err.print(f"cannot simulate: {exc}")
        raise typer.Exit(1) from exc
    horizon = max((f.recorded or f.end or f.time for f in facts.facts
                   if (f.recorded or f.end or f.time)), default=datetime.now(tz))
    final = evaluate(pathway, facts, now=horizon, tz=tz)
    points = _checkpoints(final, tz) + [(a, datetime.fromisoformat(a)) for a in at or []]
    evaluations = [(label, evaluate(pathway, facts, now=when, tz=tz)) for label, when in points]
    _print_schedule(pathway, facts.patient_id, final, evaluations, tz)


def _print_schedule(pathway: Pathway, patient_id: str, final: Evaluation,
                    evaluations: list[tuple[str, Evaluation]], tz: ZoneInfo) -> None:
    variables = ", ".join(f"{k}={v}" for k, v in final.variables.items())
    table = Table(title=f"{pathway.id} v{pathway.version} for {patient_id} ({variables})")
    table.add_column("element", overflow="fold")
    table.add_column("due window (local)", overflow="fold")
    for label, ev in evaluations:
        table.add_column(f"{label}\n{ev.now.astimezone(tz):%d %b %H:%M}", overflow="fold")
    last = evaluations[-1][1] if evaluations else final
    for phase in PHASES:
        for result in (r for r in last.elements if r.phase == phase):
            occ = result.occurrences
            window = "—"
            if occ:
                first, end = occ[0], occ[-1]
                start = first.opens or first.due
                window = (f"{start.astimezone(tz):%d %b %H:%M}" if start else "…") + " → " + (
                    f"{end.due.astimezone(tz):%d %b %H:%M}" if end.due else "…")
                if len(occ) > 1:
                    window += f" ({len(occ)}×)"
            cells = [_cell(ev.element(result.element_id)) for _, ev in evaluations]
            table.add_row(f"[dim]{phase}[/dim] {result.element_id}", window, *cells)
    console.print(table)


def _cell(result) -> str:  # type: ignore[no-untyped-def]
    style = _STYLE[result.status]
    text = result.status.value
    if result.occurrences_counted > 1:
        text += f" {result.occurrences_done}/{result.occurrences_counted}"
    return f"[{style}]{text}[/{style}]"
