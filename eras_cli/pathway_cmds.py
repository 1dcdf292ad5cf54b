"""`eras pathway ...`: validate, show, export and simulate pathway files."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from engine.errors import InvalidPathway, PathwayError
from engine.evaluate import evaluate
from engine.facts import Fact, PatientFacts
from engine.loader import load_pathway
from engine.model import PHASES, Pathway, Score
from engine.offsets import parse_offset
from engine.patientfile import patient_from_json
from engine.plan import plan_of
from engine.results import ElementResult, Evaluation, Status

app = typer.Typer(help="Work with pathway files.", no_args_is_help=True)
console = Console()
err = Console(stderr=True, soft_wrap=True)

Terms = Annotated[Path | None, typer.Option("--terminology", "-t", help="site terminology file")]
_STYLE = {Status.DONE: "green", Status.DONE_LATE: "yellow", Status.OVERDUE: "bold red", Status.MISSED: "red",
          Status.DUE: "yellow", Status.DECLINED: "magenta", Status.NOT_APPLICABLE: "dim",
          Status.UPCOMING: "cyan"}
# Moments `simulate` replays: (column label, anchor, offset in the pathway language, local days in --tz).
_CHECKPOINTS = (
    ("booked+1d", "enrolment", "1d"), ("op-2w", "surgery_start", "-2w"),
    ("op-1h", "surgery_start", "-1h"), ("end+6h", "surgery_end", "6h"),
    ("POD1 20:00", "surgery_end", "day 1 20:00"), ("POD3 20:00", "surgery_end", "day 3 20:00"),
    ("disch+2w", "discharge", "2w"), ("disch+7w", "discharge", "7w"),
)
_LEGEND = (
    "[cyan]upcoming[/cyan]: not open yet · [yellow]due[/yellow]: open · [bold red]overdue[/bold red]: "
    "past due, still open · [red]missed[/red]: closed, nothing documented (missing data) · "
    "[green]done[/green] · "
    "[yellow]done-late[/yellow]: done after the window closed (not compliant) · "
    "[magenta]declined[/magenta]: task cancelled with a reason · [dim]n/a[/dim]: not applicable · "
    "n/m: occurrences done/counted"
)


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


def _checkpoints(final: Evaluation, facts: PatientFacts, tz: ZoneInfo,
                 horizon: datetime) -> list[tuple[str, datetime]]:
    anchors = {"enrolment": facts.enrolled_at, **{k: v for k, v in final.anchors.items() if v}}
    points = [(label, parse_offset(offset).apply(at, tz)) for label, anchor, offset in _CHECKPOINTS
              if (at := anchors.get(anchor)) is not None]
    # Past the last fact a replay would only guess; --at asks for such moments explicitly.
    return [(label, when) for label, when in points if when < horizon] + [("last fact", horizon)]


def _fail(message: str) -> NoReturn:
    err.print(f"[red]cannot simulate:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _read_patient(patient: Path) -> PatientFacts:
    try:
        data = json.loads(patient.read_text(encoding="utf-8"))
    except OSError as exc:
        _fail(f"cannot read {patient}: {exc.strerror or exc}")
    except json.JSONDecodeError as exc:
        _fail(f"{patient}:{exc.lineno}: not valid JSON ({exc.msg})")
    except UnicodeDecodeError:
        _fail(f"{patient}: not a UTF-8 text file")
    try:
        return patient_from_json(data)
    except PathwayError as exc:
        _fail(f"{patient}: {exc}")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # patient_from_json trusts the file's shape; say where to look rather than crash.
        _fail(f"{patient}: not a patient file ({type(exc).__name__}: {exc})")


def _in_concept_units(pathway: Pathway, facts: PatientFacts) -> PatientFacts:
    """Convert values to each concept's unit, as the FHIR adapter does (terminology `convert`)."""
    concepts = plan_of(pathway).terminology.concepts

    def one(fact: Fact) -> Fact:
        concept = concepts.get(fact.concept)
        if concept is None:
            return fact
        value, unit = concept.normalise(fact.value, fact.unit)
        return fact if unit == fact.unit else replace(fact, value=value, unit=unit)  # type: ignore[arg-type]

    return replace(facts, facts=tuple(one(f) for f in facts.facts))


def _horizon(facts: PatientFacts, tz: ZoneInfo) -> datetime:
    """The last moment the file knows of: the latest fact time, end, record time or task change."""
    times = [t for f in facts.facts for t in (f.time, f.end, f.recorded) if t is not None]
    times += [t.at for t in facts.tasks if t.at is not None]
    return max(times, default=datetime.now(tz))


def _instant(text: str, tz: ZoneInfo) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"--at '{text}' is not an ISO 8601 date-time")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)


@app.command()
def simulate(
    file: Path,
    patient: Annotated[Path, typer.Option("--patient", help="synthetic patient JSON file")],
    tz_name: Annotated[str, typer.Option("--tz", help="hospital time zone")] = "Europe/London",
    at: Annotated[list[str] | None, typer.Option(
        "--at", help="extra moments (ISO 8601; local time in --tz without an offset)")] = None,
    terminology: Terms = None,
) -> None:
    """Replay a patient's timeline: each element's status at key moments of the pathway."""
    pathway = _load(file, terminology)
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        _fail(f"unknown time zone '{tz_name}'")
    facts = _in_concept_units(pathway, _read_patient(patient))
    horizon = _horizon(facts, tz)
    try:
        final = evaluate(pathway, facts, now=horizon, tz=tz)
        points = _checkpoints(final, facts, tz, horizon) + [(a, _instant(a, tz)) for a in at or []]
        evaluations = [(label, evaluate(pathway, facts, now=when, tz=tz))
                       for label, when in sorted(points, key=lambda p: p[1])]
    except PathwayError as exc:
        _fail(f"{patient}: {exc}")
    _print_header(pathway, facts, final, tz)
    console.print(_schedule(evaluations, tz))
    _print_footer(pathway, facts, evaluations)


def _local(at: datetime | None, tz: ZoneInfo, fmt: str = "%d %b %H:%M") -> str:
    return "…" if at is None else f"{at.astimezone(tz):{fmt}}"


def _print_header(pathway: Pathway, facts: PatientFacts, final: Evaluation, tz: ZoneInfo) -> None:
    """Who the patient is, the variant and scores the conditions read, and the anchor times."""
    v = final.variables
    who = ", ".join(str(x) for x in (v.get("sex"), None if v.get("age") is None else f"{v['age']} y")
                    if x) or "sex and age unknown"
    variant = "".join(f", {name} {v[name]}" for name in pathway.parameters)
    console.print(f"[bold]{facts.patient_id}[/bold] ({who}) on {pathway.id} v{pathway.version}{variant}",
                  highlight=False)
    if pathway.scores:
        console.print("scores: " + ", ".join(_score(name, score, v.get(name))
                                             for name, score in pathway.scores.items()), highlight=False)
    anchors = ", ".join(f"{name} {_local(at, tz)}" for name, at in final.anchors.items() if at is not None)
    console.print(f"anchors ({tz.key}): {anchors}", highlight=False)


def _score(name: str, score: Score, points: object) -> str:
    risk = score.risk_by_points.get(points) if isinstance(points, int) else None
    return f"{name} {points}" + (f" (risk {risk})" if risk else "")


def _schedule(evaluations: list[tuple[str, Evaluation]], tz: ZoneInfo) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("element", no_wrap=True)
    table.add_column("opens → due (local)", no_wrap=True)
    for label, ev in evaluations:
        table.add_column(f"{label}\n{_local(ev.now, tz)}", no_wrap=True)
    latest = max((ev for _, ev in evaluations), key=lambda ev: ev.now)
    for phase in PHASES:
        results = [r for r in latest.elements if r.phase == phase]
        if results:
            table.add_row(f"[bold]{phase}[/bold]")
        for result in results:
            cells = [_cell(ev.element(result.element_id)) for _, ev in evaluations]
            table.add_row(f"  {result.element_id}", _window(result, tz), *cells,
                          end_section=result is results[-1])
    return table


def _window(result: ElementResult, tz: ZoneInfo) -> str:
    """From the first occurrence's opening to the last one's due time (× occurrences listed)."""
    occ = result.occurrences
    if not occ:
        return "—"
    text = f"{_local(occ[0].opens or occ[0].due, tz)} → {_local(occ[-1].due, tz)}"
    return text + (f" ×{len(occ)}" if len(occ) > 1 else "")


def _cell(result: ElementResult) -> str:
    style = _STYLE[result.status]
    text = "n/a" if result.status is Status.NOT_APPLICABLE else result.status.value
    if result.occurrences_counted > 1:
        text += f" {result.occurrences_done}/{result.occurrences_counted}"
    return f"[{style}]{text}[/{style}]"


def _print_footer(pathway: Pathway, facts: PatientFacts,
                  evaluations: list[tuple[str, Evaluation]]) -> None:
    console.print(_LEGEND, highlight=False)
    known = plan_of(pathway).terminology.concepts
    unknown = sorted({f.concept for f in facts.facts if f.concept not in known})
    if unknown:
        err.print(f"[yellow]ignored[/yellow] facts of concepts the terminology does not know: "
                  f"{', '.join(unknown)}", highlight=False)
    for warning in dict.fromkeys(w for _, ev in evaluations for w in ev.warnings):
        err.print(f"[yellow]warning[/yellow] {warning}", highlight=False)
