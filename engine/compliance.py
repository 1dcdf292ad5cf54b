"""Compliance arithmetic, one implementation for the engine and the audit: done ÷ counted."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.results import ElementResult, Evaluation


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
        return Ratio()
    return Ratio(1 if result.counts == "done" else 0, 1)


@dataclass(frozen=True)
class PatientCompliance:
    """One patient's compliance overall and by phase, with each element's contribution."""

    patient_id: str
    overall: Ratio
    by_phase: dict[str, Ratio]
    by_element: dict[str, Ratio]

    def is_high(self, threshold: float) -> bool:
        return self.overall.value is not None and self.overall.value >= threshold


def patient_compliance(evaluation: Evaluation) -> PatientCompliance:
    by_phase: dict[str, Ratio] = {}
    by_element: dict[str, Ratio] = {}
    overall = Ratio()
    for result in evaluation.elements:
        ratio = element_ratio(result)
        by_element[result.element_id] = ratio
        by_phase[result.phase] = by_phase.get(result.phase, Ratio()) + ratio
        overall = overall + ratio
    return PatientCompliance(evaluation.patient_id, overall, by_phase, by_element)


@dataclass(frozen=True)
class ComplianceReport:
    """A cohort's compliance: per element and phase (patients), per patient, overall, high share."""

    patients: tuple[PatientCompliance, ...]
    by_element: dict[str, Ratio] = field(default_factory=dict)
    by_phase: dict[str, Ratio] = field(default_factory=dict)
    overall: Ratio = Ratio()
    high_threshold: float = 0.7
    high: Ratio = Ratio()


def cohort_compliance(patients: Iterable[PatientCompliance], *,
                      high_threshold: float) -> ComplianceReport:
    """Aggregate patients: element and phase ratios sum patients' element ratios."""
    items = tuple(patients)
    by_element: dict[str, Ratio] = {}
    by_phase: dict[str, Ratio] = {}
    overall = Ratio()
    high = Ratio()
    for pc in items:
        for element_id, ratio in pc.by_element.items():
            by_element[element_id] = by_element.get(element_id, Ratio()) + ratio
        for phase, ratio in pc.by_phase.items():
            by_phase[phase] = by_phase.get(phase, Ratio()) + ratio
        overall = overall + pc.overall
        if pc.overall.counted:
            high = high + Ratio(1 if pc.is_high(high_threshold) else 0, 1)
    return ComplianceReport(items, by_element, by_phase, overall, high_threshold, high)
