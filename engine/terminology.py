"""Concept bindings: abstract concepts named by pathways, bound to codes by a (site) terminology file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import InvalidPathway
from engine.mme import MmeTable
from engine.model import ConceptName, Identifier, Source
from engine.subsumption import SubsumptionTable, load_subsumption, merge_tables
from engine.validation import problems_from_validation
from engine.yamlsource import SourceDoc, read_yaml


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Coding(_Frozen):
    system: str
    code: str
    display: str | None = None
    attrs: dict[str, float | str] = Field(
        default_factory=dict, description="data carried with the code, e.g. mme_factor"
    )


class UnitConversion(_Frozen):
    """value_in_canonical_unit = value × factor + add (e.g. °F → °C: 0.5556, -17.7778)."""

    factor: float
    add: float = 0.0


Conversions = dict[str, float | UnitConversion]


class Concept(_Frozen):
    """A concept and the codes that mean it; `resources` says where facts of it are found."""

    title: str
    resources: tuple[str, ...] = Field(
        default=(), description="FHIR resource types holding it; empty for coded values"
    )
    codings: tuple[Coding, ...] = ()
    unit: str | None = Field(None, description="the unit conditions compare values in (UCUM)")
    convert: Conversions = Field(
        default_factory=dict, description="other units → factor (or factor and add) to `unit`")
    source: str | None = None

    def normalise(self, value: object, unit: str | None) -> tuple[object, str | None]:
        """A numeric value in this concept's unit, when the terminology says how to convert."""
        if self.unit is None or unit == self.unit or unit not in self.convert:
            return value, unit
        if not isinstance(value, int | float) or isinstance(value, bool):
            return value, unit
        rule = self.convert[unit]
        factor, add = (rule, 0.0) if isinstance(rule, int | float) else (rule.factor, rule.add)
        return round(value * factor + add, 6), self.unit


class ConceptOverride(_Frozen):
    """A site's change to a concept: replace its codes, or add local ones."""

    title: str | None = None
    resources: tuple[str, ...] | None = None
    codings: tuple[Coding, ...] | None = None
    add_codings: tuple[Coding, ...] = ()
    unit: str | None = None
    convert: Conversions | None = None
    source: str | None = None


class DeclineReason(_Frozen):
    display: str
    counts_as: Literal["not-done", "not-applicable"]
    source: str | None = None


class TerminologyFile(_Frozen):
    terminology: Identifier
    extends: str | None = Field(None, description="path of the file this one overrides")
    source: Source | None = None
    concepts: dict[ConceptName, Concept | ConceptOverride] = Field(default_factory=dict)
    decline_reasons: dict[str, DeclineReason] = Field(default_factory=dict)
    mme: MmeTable | None = Field(None, description="opioid MME conversion (replaces the base's)")
    subsumption: tuple[str, ...] = Field(
        (), description="paths of subsumption tables (added to the base's): parent codes bind children")


class Terminology(_Frozen):
    """The merged bindings a pathway is checked and run against."""

    name: str
    concepts: dict[str, Concept]
    decline_reasons: dict[str, DeclineReason]
    mme: MmeTable | None = None
    subsumption: SubsumptionTable | None = None

    def concept(self, name: str) -> Concept:
        return self.concepts[name]

    def concepts_for(self, system: str, code: str) -> tuple[str, ...]:
        """Every concept that the code (system|code) means."""
        return self._by_code().get((system, code), ())

    def _by_code(self) -> dict[tuple[str, str], tuple[str, ...]]:
        cached: dict[tuple[str, str], tuple[str, ...]] | None = self.__dict__.get("_index")
        if cached is None:
            index: dict[tuple[str, str], list[str]] = {}
            for name, concept in self.concepts.items():
                for coding in concept.codings:
                    index.setdefault((coding.system, coding.code), []).append(name)
            cached = {key: tuple(v) for key, v in index.items()}
            self.__dict__["_index"] = cached
        return cached

    def with_subsumption(self, table: SubsumptionTable) -> Terminology:
        """This terminology with `table` added: every concept binding a parent code also binds
        its descendants (codes it already lists keep their place and display)."""
        tables = (self.subsumption, table) if self.subsumption is not None else (table,)
        merged = merge_tables(self.name, tables)
        concepts = {name: _expanded(concept, merged) for name, concept in self.concepts.items()}
        return self.model_copy(update={"concepts": concepts, "subsumption": merged})


def _expanded(concept: Concept, table: SubsumptionTable) -> Concept:
    have = {(c.system, c.code) for c in concept.codings}
    added: list[Coding] = []
    for coding in concept.codings:
        for child in table.descendants(coding.system, coding.code):
            if child.key not in have:
                have.add(child.key)
                added.append(Coding(system=child.system, code=child.code, display=child.display))
    return concept.model_copy(update={"codings": concept.codings + tuple(added)}) if added else concept


def _parse(doc: SourceDoc) -> TerminologyFile:
    try:
        return TerminologyFile.model_validate(doc.data)
    except ValidationError as exc:
        raise InvalidPathway(problems_from_validation(exc, doc)) from exc


def _merge(base: Terminology, site: TerminologyFile, doc: SourceDoc) -> Terminology:
    concepts = dict(base.concepts)
    problems = []
    for name, change in site.concepts.items():
        if isinstance(change, Concept):
            concepts[name] = change
            continue
        if name not in concepts:
            problems.append(doc.problem(("concepts", name), f"overrides unknown concept '{name}'"
                                        " (give it a title and codings to add it)"))
            continue
        old = concepts[name]
        concepts[name] = Concept(
            title=change.title or old.title,
            resources=old.resources if change.resources is None else change.resources,
            codings=(old.codings if change.codings is None else change.codings)
            + change.add_codings,
            unit=change.unit or old.unit,
            convert=old.convert if change.convert is None else change.convert,
            source=change.source or old.source,
        )
    if problems:
        raise InvalidPathway(problems)
    reasons = {**base.decline_reasons, **site.decline_reasons}
    merged = Terminology(name=site.terminology, concepts=concepts, decline_reasons=reasons,
                         mme=site.mme or base.mme)
    tables = [base.subsumption] if base.subsumption is not None else []
    tables += [load_subsumption(Path(doc.file).parent / path) for path in site.subsumption]
    return merged.with_subsumption(merge_tables(site.terminology, tables)) if tables else merged


def load_terminology(path: Path | str, _seen: tuple[Path, ...] = ()) -> Terminology:
    """Load a terminology file, following `extends` to the file it overrides."""
    path = Path(path).resolve()
    if path in _seen:
        raise InvalidPathway([read_yaml(path).problem(("extends",), "extends itself in a cycle")])
    doc = read_yaml(path)
    parsed = _parse(doc)
    if parsed.extends is None:
        base = Terminology(name=parsed.terminology, concepts={}, decline_reasons={})
    else:
        base = load_terminology(path.parent / parsed.extends, (*_seen, path))
    return _merge(base, parsed, doc)
