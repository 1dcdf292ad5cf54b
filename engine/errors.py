"""Typed errors of the pathway core: definition-time problems vs run-time evaluation failures."""

from __future__ import annotations

from dataclasses import dataclass


class PathwayError(Exception):
    """Root of every error the pathway core raises."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a pathway file: where it is and what was expected."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(top level)'}: {self.message}"


class InvalidPathway(PathwayError):
    """A pathway, library or terminology file that cannot be loaded; nothing of it is used."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"{len(self.problems)} {noun} in pathway definition:\n{lines}")


class EvaluationError(PathwayError):
    """A pathway could not be evaluated for one patient (a bug or an impossible fact)."""

    def __init__(self, message: str, *, element_id: str | None = None) -> None:
        self.element_id = element_id
        super().__init__(message if element_id is None else f"element {element_id}: {message}")
