"""MME by ingredient, route and unit from the shipped table (pathways/terminology/default.yaml)."""

from __future__ import annotations

import pytest

from engine.loader import DEFAULT_TERMINOLOGY
from engine.mme import MmeDose, convert_dose
from engine.terminology import load_terminology

TABLE = load_terminology(DEFAULT_TERMINOLOGY).mme
MORPHINE, OXYCODONE, HYDROMORPHONE, FENTANYL = "7052", "7804", "3423", "4337"
NO_ROUTE = "route not recorded or not in the MME table"


@pytest.mark.parametrize(("ingredient", "route", "dose", "unit", "expected"), [
    (OXYCODONE, "oral", 10, "mg", MmeDose(15.0, "oral")),                  # 10 x 1.5 (CDC 2022)
    (MORPHINE, "parenteral", 4, "mg", MmeDose(12.0, "parenteral")),        # 4 x 3 (10 mg IV = 30 oral)
    (HYDROMORPHONE, "parenteral", 1, "mg", MmeDose(20.0, "parenteral")),   # 1.5 mg IV = 30 oral -> x 20
    (HYDROMORPHONE, "oral", 2, "mg", MmeDose(10.0, "oral")),               # 2 x 5 (CDC 2022)
    (FENTANYL, "parenteral", 50, "mcg", MmeDose(15.0, "parenteral")),      # 50 x 0.3, NOT 50 x 2.4 = 120
    (FENTANYL, "transdermal", 25, "mcg/h", MmeDose(60.0, "transdermal", per_day=True)),  # 25 x 2.4 a day
    (OXYCODONE, "oral", 10, "tablet", MmeDose(None, "oral", unconverted=(
        "no MME factor for oxycodone oral in unit tablet"))),
    (OXYCODONE, "oral", 10, None, MmeDose(None, "oral", unconverted=(
        "no MME factor for oxycodone oral in unit not recorded"))),
    (MORPHINE, "neuraxial", 0.1, "mg", MmeDose(None, "neuraxial", unconverted=(
        "no MME factor for morphine by route neuraxial"))),             # intrathecal reported apart
    (MORPHINE, None, 10, "mg", MmeDose(None, None, unconverted=NO_ROUTE)),
    (OXYCODONE, "parenteral", 5, "mg", MmeDose(None, "parenteral", unconverted=(
        "no MME factor for oxycodone by route parenteral"))),
    ("999", "oral", 5, "mg", MmeDose(None, "oral", unconverted="no MME factor for ingredient 999")),
])
def test_mme_convert_dose_by_route_and_unit(ingredient, route, dose, unit, expected) -> None:
    assert TABLE is not None
    assert convert_dose(TABLE, ingredient, route, dose, unit) == expected


def test_mme_route_codes_map_to_routes() -> None:
    assert TABLE is not None
    assert TABLE.route_of([("http://snomed.info/sct", "47625008")]) == "parenteral"   # intravenous
    assert TABLE.route_of([("http://snomed.info/sct", "26643006")]) == "oral"
    assert TABLE.route_of([("http://snomed.info/sct", "72607000")]) == "neuraxial"    # intrathecal
    assert TABLE.route_of([("http://example.org/route", "IV")]) is None
