"""Patient outcomes for the audit (stay, readmission, PONV, opioids...) from facts, defined as data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from statistics import fmean
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from engine.errors import InvalidPathway, Problem
from engine.facts import Fact, FactIndex, PatientFacts
from engine.model import ConceptName, Identifier, OffsetText, Source, Window
from engine.offsets import Offset, parse_duration, parse_offset
from engine.results import Evaluation
from engine.terminology import Terminology
from engine.validation import problems_from_validation
from engine.yamlsource import KeyPath, read_yaml

DEFAULT_OUTCOMES = Path(__file__).resolve().parent.parent / "pathways" / "audit" / "outcomes.yaml"
_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)
OutcomeValue = float | bool | None


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


DurationText = Annotated[str, AfterValidator(_check_duration)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LengthOfStayDef(_Frozen):
    admission: Identifier = "admission"
    discharge: Identifier = "discharge"
    source: Source


class ReadmissionDef(_Frozen):
    concept: ConceptName
    discharge: Identifier = "discharge"
    within: OffsetText
    source: Source


class PonvDef(_Frozen):
    anchor: Identifier = "surgery_end"
    nausea_concept: ConceptName
    nausea_at_least: float
    rescue_after_nausea_above: float = Field(
        0, description="an antiemetic counts as rescue only after a nausea score above this")
    vomiting_concepts: tuple[ConceptName, ...] = ()
    rescue_concepts: tuple[ConceptName, ...] = ()
    windows: dict[Identifier, DurationText] = Field(min_length=1)
    source: Source


class MobilisationDef(_Frozen):
    anchor: Identifier = "surgery_end"
    concepts: tuple[ConceptName, ...] = Field(min_length=1)
    source: Source


class CatheterDef(_Frozen):
    inserted: ConceptName
    removed: ConceptName
    after: Identifier | None = Field(
        None, description="anchor before which insertions belong to an earlier episode")
    source: Source


class OpioidDef(_Frozen):
    concept: ConceptName
    mme_attr: str = "mme"
    unconverted_attr: str = "mme_unconverted"
    anchor: Identifier = "surgery_end"
    first_day: int = Field(0, ge=0, le=30)
    last_day: int = Field(3, ge=0, le=30)
    source: Source


class PainDayDef(_Frozen):
    concept: ConceptName
    anchor: Identifier = "surgery_end"
    day: int = Field(1, ge=0, le=30)
    source: Source


class OdiDef(_Frozen):
    concept: ConceptName
    baseline: Window
    follow_up: Window
    source: Source


class StepsDef(_Frozen):
    concept: ConceptName
    window: Window
    source: Source


class OutcomeDefinitions(_Frozen):
    """Which facts make each audited outcome, over which windows and thresholds."""

    outcomes: Identifier
    title: str
    source: Source
    length_of_stay: LengthOfStayDef
    readmission: ReadmissionDef
    ponv: PonvDef
    first_mobilisation: MobilisationDef
    urinary_catheter: CatheterDef
    opioids: OpioidDef
    pain_pod1: PainDayDef
    odi: OdiDef
    steps: StepsDef

    def concepts(self) -> list[tuple[KeyPath, str]]:
        """Every concept named, with its key path (checked against a terminology)."""
        p, m = self.ponv, self.first_mobilisation
        found: list[tuple[KeyPath, str]] = [
            (("readmission", "concept"), self.readmission.concept),
            (("ponv", "nausea_concept"), p.nausea_concept),
            (("urinary_catheter", "inserted"), self.urinary_catheter.inserted),
            (("urinary_catheter", "removed"), self.urinary_catheter.removed),
            (("opioids", "concept"), self.opioids.concept),
            (("pain_pod1", "concept"), self.pain_pod1.concept),
            (("odi", "concept"), self.odi.concept), (("steps", "concept"), self.steps.concept)]
        for key, names in (("vomiting_concepts", p.vomiting_concepts),
                           ("rescue_concepts", p.rescue_concepts)):
            found.extend((("ponv", key, i), name) for i, name in enumerate(names))
        found.extend((("first_mobilisation", "concepts", i), n) for i, n in enumerate(m.concepts))
        return found


def load_outcome_definitions(path: Path | str = DEFAULT_OUTCOMES,
                             terminology: Terminology | None = None) -> OutcomeDefinitions:
    """Load outcome definitions; raise InvalidPathway naming file, line and key of every problem."""
    doc = read_yaml(Path(path))
    try:
        definitions = OutcomeDefinitions.model_validate(doc.data)
    except ValidationError as exc:
        raise InvalidPathway(problems_from_validation(exc, doc)) from exc
    if terminology is not None:
        problems: list[Problem] = [
            doc.problem(key, f"unknown concept '{name}': bind it in the terminology file "
                        f"({terminology.name}) or fix the name")
            for key, name in definitions.concepts() if name not in terminology.concepts]
        if problems:
            raise InvalidPathway(problems)
    return definitions


@dataclass(frozen=True)
class PatientOutcomes:
    """One patient's outcomes; None where not recorded or not known yet at the evaluation instant."""

    patient_id: str
    length_of_stay_days: float | None
    readmitted: bool | None
    ponv: Mapping[str, bool | None]
    hours_to_mobilisation: float | None
    catheter_hours: float | None
    opioid_mme: float | None
    pain_pod1_mean: float | None
    pain_pod1_max: float | None
    odi_change: float | None
    daily_steps: float | None
    # Opioid doses in the MME window the table could not convert: counted, listed, not added.
    opioid_unconverted: float | None = None
    opioid_unconverted_doses: tuple[str, ...] = ()

    def values(self) -> dict[str, OutcomeValue]:
        """Every outcome by name, PONV windows flattened (e.g. ponv_24h), in a stable order."""
        return {"length_of_stay_days": self.length_of_stay_days, "readmitted": self.readmitted,
                **self.ponv, "hours_to_mobilisation": self.hours_to_mobilisation,
                "catheter_hours": self.catheter_hours, "opioid_mme": self.opioid_mme,
                "opioid_unconverted": self.opioid_unconverted,
                "pain_pod1_mean": self.pain_pod1_mean, "pain_pod1_max": self.pain_pod1_max,
                "odi_change": self.odi_change, "daily_steps": self.daily_steps}

    def stored(self) -> dict[str, OutcomeValue | list[str]]:
        """What the store keeps: every value, and the unconverted opioid doses by resource id."""
        return {**self.values(), "opioid_unconverted_doses": list(self.opioid_unconverted_doses)}


@dataclass(frozen=True)
class _Ctx:
    index: FactIndex
    anchors: Mapping[str, datetime | None]
    now: datetime
    tz: tzinfo


def patient_outcomes(facts: PatientFacts, evaluation: Evaluation, *, definitions: OutcomeDefinitions,
                     tz: tzinfo = UTC) -> PatientOutcomes:
    """Outcomes from the facts known at the evaluation's instant; anchors come from the evaluation."""
    ctx = _Ctx(facts.visible_at(evaluation.now), evaluation.anchors, evaluation.now, tz)
    d = definitions
    pain = _pain_day(ctx, d.pain_pod1)
    mme = _opioid_mme(ctx, d.opioids)
    return PatientOutcomes(
        patient_id=facts.patient_id,
        length_of_stay_days=_length_of_stay(ctx, d.length_of_stay),
        readmitted=_readmitted(ctx, d.readmission),
        ponv={name: _ponv(ctx, d.ponv, length) for name, length in d.ponv.windows.items()},
        hours_to_mobilisation=_hours_to_mobilisation(ctx, d.first_mobilisation),
        catheter_hours=_catheter_hours(ctx, d.urinary_catheter),
        opioid_mme=None if mme is None else mme[0],
        pain_pod1_mean=None if pain is None else fmean(pain),
        pain_pod1_max=None if pain is None else max(pain),
        odi_change=_odi_change(ctx, d.odi),
        daily_steps=_mean_steps(ctx, d.steps),
        opioid_unconverted=None if mme is None else float(len(mme[1])),
        opioid_unconverted_doses=() if mme is None else mme[1],
    )


def _numbers(facts: Iterable[Fact]) -> list[float]:
    return [float(f.value) for f in facts
            if isinstance(f.value, int | float) and not isinstance(f.value, bool)]


def _known_by(ctx: _Ctx, found: bool, window_end: datetime) -> bool | None:
    """True when the event happened; False only once its window is over; None until then."""
    if found:
        return True
    return False if window_end <= ctx.now else None


def _length_of_stay(ctx: _Ctx, d: LengthOfStayDef) -> float | None:
    start, end = ctx.anchors.get(d.admission), ctx.anchors.get(d.discharge)
    if start is None or end is None:
        return None
    return (end - start) / _DAY


def _readmitted(ctx: _Ctx, d: ReadmissionDef) -> bool | None:
    discharge = ctx.anchors.get(d.discharge)
    if discharge is None:
        return None
    limit = parse_offset(d.within).apply(discharge, ctx.tz)
    stays = [f for f in ctx.index.between(d.concept, discharge, limit)
             if f.time is not None and f.time > discharge]
    return _known_by(ctx, bool(stays), limit)


def _ponv(ctx: _Ctx, d: PonvDef, length: str) -> bool | None:
    start = ctx.anchors.get(d.anchor)
    if start is None:
        return None
    end = parse_offset(length).apply(start, ctx.tz)
    nausea = [v for v in _numbers(ctx.index.between(d.nausea_concept, start, end))
              if v >= d.nausea_at_least]
    vomiting = [f for c in d.vomiting_concepts for f in ctx.index.between(c, start, end)]
    # Rescue: an antiemetic after a nausea record (not any antiemetic after surgery end, which
    # may be end-of-surgery prophylaxis).
    felt = [f.time for f in ctx.index.between(d.nausea_concept, start, end) if f.time is not None
            and isinstance(f.value, int | float) and f.value > d.rescue_after_nausea_above]
    rescue = [f for c in d.rescue_concepts for f in ctx.index.between(c, start, end)
              if felt and f.time is not None and f.time > felt[0]]
    return _known_by(ctx, bool(nausea or vomiting or rescue), end)


def _hours_to_mobilisation(ctx: _Ctx, d: MobilisationDef) -> float | None:
    start = ctx.anchors.get(d.anchor)
    if start is None:
        return None
    times = [f.time for c in d.concepts for f in ctx.index.between(c, start, None)
             if f.time is not None]
    return None if not times else (min(times) - start) / _HOUR


def _catheter_hours(ctx: _Ctx, d: CatheterDef) -> float | None:
    since = None if d.after is None else ctx.anchors.get(d.after)
    if d.after is not None and since is None:
        return None
    inserted = [f.time for f in ctx.index.between(d.inserted, since, None) if f.time is not None]
    if not inserted:
        return None
    removed = [f.time for f in ctx.index.between(d.removed, inserted[0], None) if f.time is not None]
    return None if not removed else (removed[0] - inserted[0]) / _HOUR


def _opioid_mme(ctx: _Ctx, d: OpioidDef) -> tuple[float, tuple[str, ...]] | None:
    """MME from the anchor (or local day `first_day`, if later) to the end of local day `last_day`,
    and the doses that could not be converted (by source); None until that day is over, as a
    partial sum would read as low consumption."""
    anchor = ctx.anchors.get(d.anchor)
    if anchor is None:
        return None
    start = max(anchor, Offset(day=d.first_day).apply(anchor, ctx.tz))
    end = Offset(day=d.last_day + 1).apply(anchor, ctx.tz)
    if ctx.now < end:
        return None
    facts = [f for f in ctx.index.between(d.concept, start, end) if f.time is not None and f.time < end]
    doses = [f.attrs.get(d.mme_attr) for f in facts]
    unconverted = tuple(f.source or f.concept for f in facts if f.attrs.get(d.unconverted_attr))
    return (float(sum(v for v in doses if isinstance(v, int | float) and not isinstance(v, bool))),
            unconverted)


def _pain_day(ctx: _Ctx, d: PainDayDef) -> list[float] | None:
    anchor = ctx.anchors.get(d.anchor)
    if anchor is None:
        return None
    start = Offset(day=d.day).apply(anchor, ctx.tz)
    end = Offset(day=d.day + 1).apply(anchor, ctx.tz)
    if ctx.now < end:
        return None
    scores = _numbers(f for f in ctx.index.between(d.concept, start, end)
                      if f.time is not None and f.time < end)
    return scores or None


def _window(ctx: _Ctx, w: Window) -> tuple[datetime | None, datetime | None] | None:
    anchor = ctx.anchors.get(w.anchor)
    if anchor is None:
        return None
    opens = parse_offset(w.opens).apply(anchor, ctx.tz) if w.opens else None
    closes = parse_offset(w.closes).apply(anchor, ctx.tz) if w.closes else None
    return opens, closes


def _in_window(ctx: _Ctx, concept: str, w: Window) -> list[float]:
    bounds = _window(ctx, w)
    return [] if bounds is None else _numbers(ctx.index.between(concept, *bounds))


def _odi_change(ctx: _Ctx, d: OdiDef) -> float | None:
    baseline, follow_up = _in_window(ctx, d.concept, d.baseline), _in_window(ctx, d.concept, d.follow_up)
    if not baseline or not follow_up:
        return None
    return follow_up[0] - baseline[-1]


def _mean_steps(ctx: _Ctx, d: StepsDef) -> float | None:
    steps = _in_window(ctx, d.concept, d.window)
    return fmean(steps) if steps else None
