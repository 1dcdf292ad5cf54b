"""Compliance arithmetic, one implementation for the engine and the audit: done ÷ counted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from engine.results import ElementResult, Evaluation

K = TypeVar("K")


@dataclass(frozen=True)
class Ratio:
    """done of counted; not-applicable, upcoming and not-yet-due are never counted."""

    done: int = 0
    counted: int = 0

    @property
    def value(self) -> float | None:
        return None if self.counted == 0 else self.done / self.counted

    def __add__(self, other: Ratio) -> Ratio:
        return Ratio(self.done + other.done, self.counted + other.counted)

    def __str__(self) -> str:
        pct = "n/a" if self.value is None else f"{self.value:.0%}"
        return f"{self.done}/{self.counted} ({pct})"


def element_ratio(result: ElementResult) -> Ratio:
    """1/1 done, 0/1 counted but not done, 0/0 excluded (not applicable, not yet due...)."""
    if result.counts is None:
        return _EXCLUDED
    return _DONE if result.counts == "done" else _NOT_DONE


# Shared (Ratio is frozen): a patient's dozens of element ratios need not be built each time.
_EXCLUDED, _DONE, _NOT_DONE = Ratio(), Ratio(1, 1), Ratio(0, 1)


def item_ratios(by_element: Mapping[str, Ratio], items: Mapping[str, int]) -> dict[int, Ratio]:
    """EIAS: one result per ERAS item, counted when any of its elements counts and done when
    every one that counts is done (PONV prophylaxis and PC6 bands, say, make one item)."""
    grouped: dict[int, list[Ratio]] = {}
    for element_id, ratio in by_element.items():
        item = items.get(element_id)
        if item is not None and ratio.counted:
            grouped.setdefault(item, []).append(ratio)
    return {item: Ratio(1 if all(r.done == r.counted for r in ratios) else 0, 1)
            for item, ratios in sorted(grouped.items())}


@dataclass(frozen=True)
class PatientCompliance:
    """One patient's compliance overall (all elements), by phase and element, and over the
    ERAS items (`eras`, None when the pathway maps no ERAS item)."""

    patient_id: str
    overall: Ratio
    by_phase: dict[str, Ratio]
    by_element: dict[str, Ratio]
    by_item: dict[int, Ratio] = field(default_factory=dict)
    eras: Ratio | None = None

    @property
    def headline(self) -> Ratio:
        """The figure the high-compliance line and outcome comparisons use: the ERAS items
        (comparable with EIAS), else every element."""
        return self.overall if self.eras is None else self.eras

    def is_high(self, threshold: float) -> bool:
        return bool(is_high(score_of(self), threshold))


def patient_compliance(evaluation: Evaluation,
                       items: Mapping[str, int] | None = None) -> PatientCompliance:
    """`items` (element id -> ERAS item) defaults to the evaluation's own map."""
    items = evaluation.eras_items if items is None else items
    phases: dict[str, list[int]] = {}  # done, counted: summed as numbers, made Ratios once
    by_element: dict[str, Ratio] = {}
    done = counted = 0
    for result in evaluation.elements:
        ratio = element_ratio(result)
        by_element[result.element_id] = ratio
        sums = phases.get(result.phase)
        if sums is None:
            sums = phases[result.phase] = [0, 0]
        sums[0] += ratio.done
        sums[1] += ratio.counted
        done += ratio.done
        counted += ratio.counted
    by_phase = {phase: Ratio(d, c) for phase, (d, c) in phases.items()}
    by_item = item_ratios(by_element, items)
    eras = sum(by_item.values(), Ratio()) if items else None
    return PatientCompliance(evaluation.patient_id, Ratio(done, counted), by_phase, by_element, by_item, eras)


@dataclass(frozen=True)
class ComplianceReport:
    """A cohort's compliance: per element, phase and ERAS item (patients), per patient,
    overall, the ERAS-item figure, and the share of patients at or above the high line."""

    patients: tuple[PatientCompliance, ...]
    by_element: dict[str, Ratio] = field(default_factory=dict)
    by_phase: dict[str, Ratio] = field(default_factory=dict)
    overall: Ratio = Ratio()
    high_threshold: float = 0.7
    high: Ratio = Ratio()
    by_item: dict[int, Ratio] = field(default_factory=dict)
    eras: Ratio | None = None


# One patient's compliance as plain numbers: elements done and counted, ERAS items done and
# counted (None, None when the pathway maps no item). The store's per-episode columns and
# `PatientCompliance` both reduce to it, so the cohort figures below are computed once.
Score = tuple[int, int, int | None, int | None]


def score_of(pc: PatientCompliance) -> Score:
    eras = pc.eras
    return (pc.overall.done, pc.overall.counted, None if eras is None else eras.done,
            None if eras is None else eras.counted)


@dataclass(frozen=True)
class CohortFigures:
    """Overall (all elements), the ERAS-item figure (None: no patient has one) and the share of
    patients whose headline (ERAS items, else all elements) is at or above the high line."""

    overall: Ratio
    eras: Ratio | None
    high: Ratio


def is_high(score: Score, threshold: float) -> bool | None:
    """`PatientCompliance.is_high` on a score; None when its headline counts nothing."""
    done, counted, eras_done, eras_counted = score
    if eras_counted is not None:
        done, counted = eras_done or 0, eras_counted
    return None if not counted else done / counted >= threshold


def cohort_figures(scores: Iterable[Score], *, high_threshold: float) -> CohortFigures:
    """The sums over a cohort and its high share, on plain numbers."""
    done = counted = eras_done = eras_counted = high = scored = 0
    has_eras = False
    for score in scores:
        done += score[0]
        counted += score[1]
        if score[3] is not None:
            has_eras = True
            eras_done += score[2] or 0
            eras_counted += score[3]
        flag = is_high(score, high_threshold)
        if flag is not None:
            scored += 1
            high += flag
    return CohortFigures(Ratio(done, counted), Ratio(eras_done, eras_counted) if has_eras else None,
                         Ratio(high, scored))


def cohort_compliance(patients: Iterable[PatientCompliance], *,
                      high_threshold: float) -> ComplianceReport:
    """Aggregate patients: element and phase ratios sum patients' element ratios."""
    items = tuple(patients)
    by_element: dict[str, Ratio] = {}
    by_phase: dict[str, Ratio] = {}
    by_item: dict[int, Ratio] = {}
    for pc in items:
        _add_into(by_element, pc.by_element)
        _add_into(by_phase, pc.by_phase)
        _add_into(by_item, pc.by_item)
    figures = cohort_figures(map(score_of, items), high_threshold=high_threshold)
    return ComplianceReport(items, by_element, by_phase, figures.overall, high_threshold, figures.high,
                            dict(sorted(by_item.items())), figures.eras)


def _add_into(total: dict[K, Ratio], part: Mapping[K, Ratio]) -> None:
    for key, ratio in part.items():
        total[key] = total.get(key, Ratio()) + ratio
