"""Date-time steps of the fast path, run by fhirpathpy's own code with each parse done once.

`toDateTime()`, `+ N <time unit>` and comparisons involving date-times call the very
fhirpathpy functions the slow path uses (so timezone, precision and partial-date rules are
fhirpathpy's); only the parsing is memoised, keyed on the text. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any

from fhirpathpy.engine import nodes, util
from fhirpathpy.engine.evaluators import quantity_literal
from fhirpathpy.engine.invocations import equality
from fhirpathpy.engine.invocations import math as fp_math

Coll = list[Any]

# The infix functions fhirpathpy registers for these operators.
COMPARE = {"=": equality.equal, "!=": equality.unequal, "<": equality.lt,
           "<=": equality.lte, ">": equality.gt, ">=": equality.gte}


def _once(fn: Callable[[], Any]) -> Callable[[], Any]:
    box: list[Any] = []

    def memo() -> Any:
        if not box:
            box.append(fn())  # an exception is not cached, so it recurs as in fhirpathpy
        return box[0]
    return memo


@lru_cache(maxsize=8192)
def _datetime(text: str) -> Any:
    """fhirpathpy's FP_DateTime for `text` (or None), its dateutil parse memoised."""
    value = nodes.FP_DateTime(text)
    if value is not None:
        # the instant depends only on the text, which the object never changes
        value._getDateTimeInt = _once(value._getDateTimeInt)  # type: ignore[method-assign]
    return value


def to_datetime(coll: Coll) -> Coll:
    """fhirpathpy's toDateTime(): [] for empty or non-text, error for several values."""
    if len(coll) > 1:
        raise TypeError("toDateTime() needs a single value")
    if not coll or not isinstance(coll[0], str):
        return []
    value = _datetime(coll[0])
    return [] if value is None else [value]


def is_fp(coll: Coll) -> bool:
    """Whether the collection holds a fhirpathpy date-time, time or quantity."""
    return any(isinstance(v, nodes.FP_Type) for v in coll)


def _cached_text(coll: Coll, other: Coll) -> Coll:
    # fhirpathpy turns text compared with a date-time into one (typecheck); use the memo.
    if (len(coll) == 1 and isinstance(coll[0], str) and len(other) == 1
            and isinstance(other[0], nodes.FP_TimeBase)):
        value = _datetime(coll[0])
        if value is not None:
            return [value]
    return coll


def compare(op: str, left: Coll, right: Coll) -> Coll:
    """fhirpathpy's `op` on collections where a date-time is involved."""
    if not left or not right:
        return []
    left, right = _cached_text(left, right), _cached_text(right, left)
    return util.arraify(COMPARE[op](None, left, right))


def quantity(node: dict) -> Any:
    """The FP_Quantity of a QuantityLiteral node, built as fhirpathpy builds it."""
    return quantity_literal(None, None, node)[0]


@lru_cache(maxsize=8192)
def _plus_text(text: str, value: Decimal, unit: str | None) -> Any:
    return fp_math.plus(None, [_datetime(text)], [nodes.FP_Quantity(value, unit)])


def plus(left: Coll, amount: Any) -> Coll:
    """fhirpathpy's `left + amount` for a quantity literal `amount`."""
    if not left:
        return []
    if len(left) == 1 and isinstance(left[0], nodes.FP_DateTime) and left[0].asStr:
        return util.arraify(_plus_text(left[0].asStr, amount.value, amount.unit))
    return util.arraify(fp_math.plus(None, left, [amount]))
