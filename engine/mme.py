"""Oral morphine milligram equivalents (MME) of one opioid dose, by ingredient, route and unit.

The factors are data (the `mme` section of a terminology file, with their sources). A dose
whose ingredient, route or unit has no factor is *unconverted*, with the reason: the audit
reports it apart and never guesses, because an IV microgram dose read as a patch rate or an
oral milligram dose is off by orders of magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from engine.model import Identifier


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OpioidFactors(_Frozen):
    """One ingredient: route -> unit -> oral MME per unit of dose."""

    display: str
    per_route: dict[Identifier, dict[str, float]] = Field(min_length=1)
    per_day: tuple[Identifier, ...] = Field(
        (), description="routes whose dose is a rate (a patch in ug/h): the MME is per day worn")


class MmeTable(_Frozen):
    """The conversion table: which route codes mean which route, unit spellings, the factors."""

    source: str
    system: str = Field(description="code system of the ingredient codes (RxNorm)")
    routes: dict[Identifier, tuple[str, ...]] = Field(
        description="route name -> route codes as 'system|code' (MedicationAdministration.dosage.route)")
    units: dict[str, str] = Field(default_factory=dict, description="unit spelling -> UCUM unit")
    ingredients: dict[str, OpioidFactors] = Field(description="ingredient code -> its factors")

    def route_of(self, codes: list[tuple[str, str]]) -> str | None:
        """The route name of the first route coding the table knows."""
        for system, code in codes:
            for name, known in self.routes.items():
                if f"{system}|{code}" in known:
                    return name
        return None


@dataclass(frozen=True)
class MmeDose:
    """One dose in MME, or why it could not be converted (`mme` is None then)."""

    mme: float | None
    route: str | None
    per_day: bool = False
    unconverted: str | None = None


def convert_dose(table: MmeTable, ingredient: str, route: str | None, dose: float | None,
                 unit: str | None) -> MmeDose:
    """MME of `dose` `unit` of `ingredient` given by `route`; unconverted (with the reason)
    when the dose, the route or the unit is missing or has no factor in the table."""
    factors = table.ingredients.get(ingredient)
    if factors is None:
        return MmeDose(None, route, unconverted=f"no MME factor for ingredient {ingredient}")
    if dose is None:
        return MmeDose(None, route, unconverted="dose not recorded")
    if route is None:
        return MmeDose(None, None, unconverted="route not recorded or not in the MME table")
    by_unit = factors.per_route.get(route)
    if by_unit is None:
        return MmeDose(None, route, unconverted=f"no MME factor for {factors.display} by route {route}")
    ucum = table.units.get(unit or "", unit)
    factor = by_unit.get(ucum or "")
    if factor is None:
        return MmeDose(None, route, unconverted=f"no MME factor for {factors.display} {route} "
                                                f"in unit {unit or 'not recorded'}")
    return MmeDose(round(dose * factor, 6), route, per_day=route in factors.per_day)
