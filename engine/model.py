"""The pathway language as frozen, format-neutral data: expressions and offsets kept as strings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
)

from engine.offsets import OFFSET_HELP, OFFSET_PATTERN, parse_duration, parse_offset

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
ConceptName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


def _check_offset(value: str) -> str:
    parse_offset(value)
    return value


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


# The pattern is for the JSON Schema (editors); validation uses parse_offset for a clearer message.
OffsetText = Annotated[
    str, AfterValidator(_check_offset),
    Field(description=OFFSET_HELP, json_schema_extra={"pattern": OFFSET_PATTERN}),
]
Expression = Annotated[
    str,
    StringConstraints(min_length=1),
    Field(description="FHIRPath; %name reads a concept's facts, a parameter or a score"),
]

Phase = Literal["pre-admission", "pre-op", "intra-op", "post-op", "post-discharge"]
PHASES: tuple[Phase, ...] = ("pre-admission", "pre-op", "intra-op", "post-op", "post-discharge")
Category = Literal[
    "education", "prehabilitation", "nutrition", "smoking", "alcohol", "anaemia", "glycaemia",
    "psychology", "discharge-planning", "fasting", "anaesthesia", "analgesia", "ponv",
    "antibiotics", "thromboprophylaxis", "fluids", "temperature", "catheters-drains",
    "oral-intake", "mobilisation", "monitoring", "rehabilitation", "follow-up", "bone-health",
]
ActionKind = Literal["task", "reminder", "patient-message"]
Priority = Literal["routine", "urgent", "asap", "stat"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Frozen):
    """Where an element or number comes from, so a clinician can check and change it."""

    guideline: str
    grade: str | None = Field(None, description="recommendation grade, e.g. 'strong'")
    evidence: str | None = Field(None, description="level of evidence, e.g. 'moderate'")
    note: str | None = None


class Window(_Frozen):
    """When an element may be done (opens), should be done (due) and stops counting (closes)."""

    anchor: Identifier = Field(description="an anchor name, or 'trigger' for triggered elements")
    opens: OffsetText | None = None
    due: OffsetText | None = None
    closes: OffsetText | None = None


class Recurrence(_Frozen):
    """Repeat the window every `every`, `count` times or until an offset from the same anchor."""

    every: OffsetText
    count: int | None = Field(None, ge=1, le=500)
    until: OffsetText | None = None
    stop_at: Identifier | None = Field(
        None, description="an anchor (e.g. discharge): no occurrence opens once it has passed")

    @field_validator("every")
    @classmethod
    def _positive(cls, value: str) -> str:
        parse_duration(value)
        return value


class Trigger(_Frozen):
    """Open one occurrence per fact of `concept` (matching `where`), anchored at that fact."""

    concept: ConceptName
    where: Expression | None = None
    after: Identifier | None = Field(None, description="only facts at or after this anchor")
    before: Identifier | None = Field(None, description="only facts up to this anchor (if known)")


class RecordPrompt(_Frozen):
    """A value the person completing the task is asked for (e.g. distance walked)."""

    concept: ConceptName
    label: str
    unit: str | None = None


class Action(_Frozen):
    """What the engine asks of whom when the element is due."""

    kind: ActionKind
    role: Identifier
    instructions: str
    priority: Priority = "routine"
    remind_before: OffsetText | None = Field(None, description="send a reminder this long before due")
    record: RecordPrompt | None = None


class Escalation(_Frozen):
    """Overdue by `after` → notify `notify`."""

    after: OffsetText
    notify: Identifier

    @field_validator("after")
    @classmethod
    def _positive(cls, value: str) -> str:
        parse_duration(value)
        return value


class EvidenceClause(_Frozen):
    """A further record the proof needs as well, e.g. analgesia given beside the reassessment."""

    concepts: tuple[ConceptName, ...] = Field(min_length=1, description="facts of any of these")
    where: Expression | None = Field(None, description="FHIRPath on each fact")
    min_count: int = Field(1, ge=1, le=100)
    within: Window | None = Field(None, description="defaults to the occurrence's window")


class Evidence(_Frozen):
    """What in the record proves the element was done."""

    concepts: tuple[ConceptName, ...] = Field(default=(), description="facts that prove it")
    where: Expression | None = Field(None, description="FHIRPath on each fact, e.g. 'value >= 3'")
    min_count: int = Field(1, ge=1, le=100)
    task: bool = Field(False, description="a completed Task for the action counts as proof")
    within: Window | None = Field(None, description="defaults to the occurrence's window")
    until: Identifier | None = Field(
        None, description="an anchor: facts after it prove nothing (e.g. surgery_end)")
    distinct: str | None = Field(
        None, description="count one fact per value of this attribute (its concept when absent)")
    also: tuple[EvidenceClause, ...] = Field(
        default=(), description="further records the facts need beside them: every clause must hold")


class Element(_Frozen):
    """One care element of a pathway."""

    id: Identifier
    title: str
    phase: Phase
    category: Category
    source: Source
    description: str | None = None
    applies_when: Expression | None = None
    window: Window
    recurrence: Recurrence | None = None
    trigger: Trigger | None = None
    action: Action | None = Field(None, description="omit for elements audited but not tasked")
    evidence: Evidence
    escalation: tuple[Escalation, ...] = ()


class AnchorDef(_Frozen):
    """How a named clinical time point is found in the patient's facts."""

    concept: ConceptName | None = None
    at: Literal["start", "end"] = "start"
    pick: Literal["first", "last"] = "first"
    fallback: Identifier | None = Field(None, description="another anchor used until this is known")
    builtin: Literal["enrolment"] | None = None
    where: Expression | None = Field(None, description="only facts matching this FHIRPath count")


class Parameter(_Frozen):
    """A pathway variant switch, e.g. procedure_type: fusion | decompression."""

    values: tuple[Identifier, ...] = Field(min_length=1)
    default: Identifier
    from_concepts: dict[Identifier, ConceptName] = Field(
        default_factory=dict, description="value chosen when the record has a fact of this concept"
    )
    setting: bool = Field(
        False, description="a site or enrolment setting (an optional drug, a rule set), not a "
        "patient variant: audits do not cut cohorts by it")

    def chosen(self, recorded: Callable[[str], bool]) -> Identifier:
        """The value whose concept the record holds (checked in the file's order), else the default."""
        return next((value for value, concept in self.from_concepts.items() if recorded(concept)),
                    self.default)


class ScoreItem(_Frozen):
    when: Expression
    points: int = 1
    label: str


class Score(_Frozen):
    """A computed variable (%name) summing points of conditions, e.g. the Apfel score."""

    title: str
    source: Source
    items: tuple[ScoreItem, ...] = Field(min_length=1)
    risk_by_points: dict[int, str] = Field(default_factory=dict)


class Library(_Frozen):
    """A shared file of elements and scores included by several pathways."""

    library: Identifier
    title: str
    include: tuple[str, ...] = ()
    scores: dict[Identifier, Score] = Field(default_factory=dict)
    elements: tuple[Element, ...] = ()


# A record after an element's window is "done late" only while the patient is still in the
# element's phase: post-operative paracetamol is not late pre-emptive analgesia, nor a 3-month
# ODI a late baseline.
DEFAULT_PHASE_ENDS: dict[Phase, str] = {
    "pre-admission": "surgery_start", "pre-op": "surgery_start", "intra-op": "surgery_end",
    "post-op": "discharge"}


class ErasItem(_Frozen):
    """One ERAS Society item (EIAS: one result per item) and the elements that make it up."""

    title: str
    elements: tuple[Identifier, ...] = Field(
        min_length=1, description="compliant when all of these that count are done")


class Audit(_Frozen):
    """How quality teams judge this pathway's compliance."""

    high_compliance: float = Field(0.7, gt=0, le=1, description="per-patient share counted as high")
    source: Source | None = None
    missing_data_limit: float = Field(
        0.1, ge=0, le=1, description="EIAS data quality: the largest share of an element's counted "
                                     "results that may be missing data (nothing documented)")
    eras_items: dict[int, ErasItem] = Field(
        default_factory=dict,
        description="ERAS item number -> its elements; the ERAS-item figure and the "
                    "high-compliance line count these; other elements are process measures")
    phase_ends: dict[Phase, Identifier] = Field(
        default_factory=lambda: dict(DEFAULT_PHASE_ENDS),
        description="the anchor ending each phase: proof after an element's window and before "
                    "its phase ends is 'done-late'; a phase without a (known) end has no limit")


class EpisodeScope(_Frozen):
    """Which facts belong to this episode (this booking and admission).

    Facts that happened before the earliest `starts` anchor minus `look_back` are hidden from every condition,
    anchor and evidence rule, except the `history` concepts (PONV history, smoking status,
    diagnoses...), which stay visible whenever they were recorded. A fact still going on at
    the bound (a stay, a catheter not yet removed) belongs to the episode.
    """

    starts: tuple[Identifier, ...] = Field(
        min_length=1, description="anchors; the earliest known one is the episode's start")
    look_back: Annotated[str, AfterValidator(_check_duration)] = Field(
        description="how far before the start this episode's facts go, e.g. '90d'")
    history: tuple[ConceptName, ...] = Field((), description="concepts visible from any time")
    source: Source


class Pathway(_Frozen):
    """A whole pathway, its includes already merged in."""

    id: Identifier
    version: int = Field(ge=1)
    title: str
    description: str | None = None
    source: Source
    enrols_on: tuple[ConceptName, ...] = Field(min_length=1)
    parameters: dict[Identifier, Parameter] = Field(default_factory=dict)
    include: tuple[str, ...] = ()
    anchors: dict[Identifier, AnchorDef]
    scores: dict[Identifier, Score] = Field(default_factory=dict)
    audit: Audit = Audit()
    episode: EpisodeScope | None = Field(None, description="omit: every fact is visible, whenever")
    elements: tuple[Element, ...] = ()
    # Set by the loader: the compiled plan (engine.plan.Plan). Not part of the file format.
    _plan: object = PrivateAttr(default=None)

    def element(self, element_id: str) -> Element:
        for el in self.elements:
            if el.id == element_id:
                return el
        raise KeyError(element_id)
