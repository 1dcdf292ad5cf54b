"""`eras audit report`: the compliance audit of a period, from the store, in the terminal or as CSV."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from time import perf_counter
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from eras_cli.patient_cmds import settings as runtime_settings

# The store, the audit and the recompute are imported when a command runs: every `eras` command
# imports this module (tests/cli/test_cli_imports.py).
if TYPE_CHECKING:
    from store.audit_summary import StoredAudit
    from store.episode_outcomes import EpisodeOutcomes

app = typer.Typer(help="Quality audit: compliance, completeness and outcomes.", no_args_is_help=True)
console = Console()


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"


# The cohort options every audit command takes.
FromDay = Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="first surgery day")]
ToDay = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="last surgery day (included)")]
PathwayId = Annotated[str, typer.Option(help="pathway id")]
OutputFormat = Annotated[Format, typer.Option("--format", help="table or csv")]


def _instant(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tz).astimezone(UTC)


@app.command()
def report(
    from_: FromDay, to: ToDay, pathway: PathwayId = "lumbar_fusion", fmt: OutputFormat = Format.TABLE,
) -> None:
    """Compliance per element and phase, overall, high-compliance share, trend and completeness."""
    from sqlmodel import Session

    from flows.config import load_pathways
    from store.audit_queries import CohortFilter
    from store.audit_summary import stored_audit
    from store.db import database_url, make_engine

    cfg = runtime_settings()
    loaded = load_pathways(cfg)  # with the site terminology, as the runtime runs them
    if pathway not in loaded:
        console.print(f"[red]unknown pathway[/red] {pathway} (configured: {', '.join(loaded)})")
        raise typer.Exit(2)
    tz = ZoneInfo(cfg.timezone)
    chosen = loaded[pathway]
    cohort = CohortFilter(pathway_id=pathway, pathway_version=chosen.version,
                          start=_instant(from_.date(), tz), end=_instant(to.date() + timedelta(days=1), tz))
    engine = make_engine(database_url(cfg.database_url))
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        progress.add_task(f"auditing {pathway} {from_.date()}..{to.date()}", total=None)
        with Session(engine) as session:
            audit = stored_audit(chosen, session=session, cohort=cohort, tz=tz)
    engine.dispose()
    if fmt is Format.CSV:
        write_csv(audit)
    else:
        console.print(audit_table(audit))


@app.command()
def recompute(
    pathway: Annotated[str, typer.Option(help="pathway id (its configured, current version)")],
    workers: Annotated[int, typer.Option(help="processes (default: one per core)")] = 0,
    full: Annotated[bool, typer.Option(
        "--full", help="re-evaluate every episode in full (after a change the plan's digests do "
                       "not cover, e.g. new time zone rules)")] = False,
) -> None:
    """Re-evaluate every stored episode of a pathway from its stored facts (after a version
    change), on every core: only the elements the new version changed, unless what every element
    shares changed; safe to re-run: results that come out the same are not rewritten."""
    from sqlmodel import Session

    from engine.loader import load_pathway
    from flows.recompute import RecomputeJob
    from flows.recompute import recompute as run_recompute
    from store.db import database_url, make_engine
    from store.episode_facts import episodes_without_facts

    cfg = runtime_settings()
    files = {load_pathway(path, cfg.terminology).id: path for path in cfg.pathways}
    if pathway not in files:
        console.print(f"[red]unknown pathway[/red] {pathway} (configured: {', '.join(files)})")
        raise typer.Exit(2)
    job = RecomputeJob(database_url(cfg.database_url), files[pathway], cfg.terminology, cfg.timezone,
                       incremental=not full)
    started = perf_counter()
    with _progress(f"recomputing {pathway}") as step:
        done = run_recompute(job, pathway, workers=workers or None, progress=step)
    took = perf_counter() - started
    engine = make_engine(job.database_url)
    with Session(engine) as session:
        skipped = episodes_without_facts(session=session, pathway_id=pathway)
    engine.dispose()
    note = f"; {skipped} without stored facts skipped (apply them again)" if skipped else ""
    Console(stderr=True).print(
        f"recomputed {done.total} episodes of {pathway} in {took:.1f} s: {done.full} in full, "
        f"{done.incremental} in the changed elements only, {done.unchanged} unchanged{note}", soft_wrap=True)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr when it is a terminal, else a line every tenth of the way."""
    err = Console(stderr=True)
    if not err.is_terminal:
        shown = [-1]

        def line(done: int, total: int) -> None:
            tenth = 10 * done // total if total else 10
            if tenth > shown[0]:
                shown[0] = tenth
                err.print(f"{label}: {done}/{total}", soft_wrap=True)
        yield line
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def write_csv(audit: StoredAudit) -> None:
    from engine.audit_cells import Breakdown
    from engine.audit_export import percent

    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["level", "element", "phase", "done", "counted", "percent", "missing", "done_late",
                  "not_done"])
    for e in audit.elements:
        out.writerow(["element", e.element_id, e.phase, e.compliance.done, e.compliance.counted,
                      percent(e.compliance), e.missing.done, e.breakdown.done_late,
                      e.breakdown.not_done])
    for phase, ratio in audit.phases.items():
        b = audit.phase_breakdown.get(phase, Breakdown())
        out.writerow(["phase", "", phase, ratio.done, ratio.counted, percent(ratio), b.missing,
                      b.done_late, b.not_done])
    out.writerow(["overall", "", "", audit.overall.done, audit.overall.counted, percent(audit.overall),
                  audit.completeness.missing.done, audit.breakdown.done_late, audit.breakdown.not_done])
    if audit.eras is not None:
        out.writerow(["eras-items", "", "", audit.eras.done, audit.eras.counted, percent(audit.eras),
                      "", "", ""])


def audit_table(audit: StoredAudit) -> Table:
    from engine.audit_cells import Breakdown

    items = "" if audit.eras is None else f"ERAS items {audit.eras}, "
    table = Table(title=f"{audit.pathway_id} v{audit.pathway_version}: {len(audit.patients)} patients, "
                        f"{items}all elements {audit.overall}, at >= {audit.high_threshold:.0%}: "
                        f"{audit.high}")
    for name in ("Element", "Phase", "Compliance", "Done late", "Not done", "Missing"):
        table.add_column(name, justify="left" if name in ("Element", "Phase") else "right")
    for e in audit.elements:
        table.add_row(e.title, e.phase, str(e.compliance), str(e.breakdown.done_late),
                      str(e.breakdown.not_done), str(e.missing.done))
    for phase, ratio in audit.phases.items():
        b = audit.phase_breakdown.get(phase, Breakdown())
        table.add_row(f"[b]{phase}[/b]", "", str(ratio), str(b.done_late), str(b.not_done),
                      str(b.missing))
    for t in audit.trend:
        table.add_row(f"[i]month {t.month}[/i]", f"{t.patients} patients", str(t.compliance), "", "", "")
    return table


@app.command()
def outcomes(
    from_: FromDay, to: ToDay, pathway: PathwayId = "lumbar_fusion", fmt: OutputFormat = Format.TABLE,
) -> None:
    """Each episode's outcomes (stay, readmission, PONV, MME, catheter hours...) as kept by apply;
    episodes by enrolment id, no patient ids."""
    from sqlmodel import Session

    from store.audit_queries import CohortFilter
    from store.db import database_url, make_engine
    from store.episode_outcomes import episode_outcomes

    cfg = runtime_settings()
    tz = ZoneInfo(cfg.timezone)
    cohort = CohortFilter(pathway_id=pathway, pathway_version=None, start=_instant(from_.date(), tz),
                          end=_instant(to.date() + timedelta(days=1), tz))
    engine = make_engine(database_url(cfg.database_url))
    with Session(engine) as session:
        rows = episode_outcomes(session=session, cohort=cohort)
    engine.dispose()
    names = list(dict.fromkeys(k for r in rows for k in r.values if k != "opioid_unconverted_doses"))
    if fmt is Format.CSV:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["enrolment", "surgery_start", *names, "opioid_unconverted_doses"])
        for r in rows:
            out.writerow([r.enrolment_id, _cell(r.surgery_start), *(_cell(r.values.get(n)) for n in names),
                          " ".join(r.values.get("opioid_unconverted_doses") or [])])
        return
    console.print(outcomes_table(pathway, rows, names))


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def outcomes_table(pathway: str, rows: list[EpisodeOutcomes], names: list[str]) -> Table:
    table = Table(title=f"{pathway}: outcomes of {len(rows)} episodes")
    table.add_column("Enrolment")
    for name in names:
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(r.enrolment_id, *(_cell(r.values.get(n)) for n in names))
    return table
