"""Date-time steps of the fast path: `toDateTime()`, comparisons and `+ N <time unit>`.

The common cases run on `engine.datetimes` values, each text parsed once; anything else
(a time of day, an unusual text, several values, an answer fhirpathpy gives as an error) is
handed to the very fhirpathpy functions the slow path uses, so the answers are fhirpathpy's.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from fhirpathpy.engine import nodes, util
from fhirpathpy.engine.evaluators import quantity_literal
from fhirpathpy.engine.invocations import equality
from fhirpathpy.engine.invocations import math as fp_math

from engine import datetimes
from engine.datetimes import FHIRPATHPY, DateTimeValue

Coll = list[Any]

# The infix functions fhirpathpy registers for these operators.
COMPARE = {"=": equality.equal, "!=": equality.unequal, "<": equality.lt,
           "<=": equality.lte, ">": equality.gt, ">=": equality.gte}

# Texts read, shared by every evaluation (a pure function of the text, given the process's
# zone); emptied when full, as re-reading a text costs microseconds. Sums: see adder().
_PARSED: dict[str, DateTimeValue | None] = {}
_MEMO_LIMIT = 20_000  # a few MiB: patients rarely share times, the memo serves one evaluation


def _parsed(text: str) -> DateTimeValue | None:
    try:
        return _PARSED[text]
    except KeyError:
        if len(_PARSED) >= _MEMO_LIMIT:
            _PARSED.clear()
        value = _PARSED[text] = datetimes.parse(text)
        return value


def _once(fn: Callable[[], Any]) -> Callable[[], Any]:
    box: list[Any] = []

    def memo() -> Any:
        if not box:
            box.append(fn())  # an exception is not cached, so it recurs as in fhirpathpy
        return box[0]
    return memo


@lru_cache(maxsize=1024)
def _fp_datetime(text: str) -> Any:
    """fhirpathpy's FP_DateTime for `text` (or None), its dateutil parse memoised."""
    value = nodes.FP_DateTime(text)
    if value is not None:
        # the instant depends only on the text, which the object never changes
        value._getDateTimeInt = _once(value._getDateTimeInt)  # type: ignore[method-assign]
    return value


def _fhirpathpy(coll: Coll) -> Coll:
    """The collection as fhirpathpy holds it: native date-times as its FP_DateTime objects."""
    return [_fp_datetime(v.text) if isinstance(v, DateTimeValue) else v for v in coll]


def to_datetime(coll: Coll) -> Coll:
    """fhirpathpy's toDateTime(): [] for empty or non-text, error for several values."""
    if len(coll) > 1:
        raise TypeError("toDateTime() needs a single value")
    if not coll or not isinstance(coll[0], str):
        return []
    value = _parsed(coll[0]) or _fp_datetime(coll[0])
    return [] if value is None else [value]


_SPECIAL = (DateTimeValue, nodes.FP_Type)


def is_fp(coll: Coll) -> bool:
    """Whether the collection holds a date-time (native or fhirpathpy's), time or quantity."""
    for v in coll:  # noqa: SIM110 - no generator per call: the hot path of every comparison
        if isinstance(v, _SPECIAL):
            return True
    return False


def _native(value: Any) -> DateTimeValue | None:
    # fhirpathpy turns text compared with a date-time into one (typecheck, datetime_equality)
    if isinstance(value, DateTimeValue):
        return value
    return _parsed(value) if isinstance(value, str) else None


def _native_compare(op: str, a: DateTimeValue, b: DateTimeValue) -> Any:
    if op == "=" or op == "!=":
        same = datetimes.equals(a, b)
        return [] if same is None else [same if op == "=" else not same]
    return datetimes.less(op, a, b)


def compare(op: str, left: Coll, right: Coll) -> Coll:
    """fhirpathpy's `op` on collections where a date-time is involved."""
    if not left or not right:
        return []
    if len(left) == 1 and len(right) == 1:
        a, b = _native(left[0]), _native(right[0])
        if a is not None and b is not None:
            out = _native_compare(op, a, b)
            if out is not FHIRPATHPY:
                return out
    left, right = _fhirpathpy(left), _fhirpathpy(right)
    return util.arraify(COMPARE[op](None, _cached_text(left, right), _cached_text(right, left)))


def _cached_text(coll: Coll, other: Coll) -> Coll:
    # fhirpathpy turns text compared with a date-time into one (typecheck); use the memo.
    if (len(coll) == 1 and isinstance(coll[0], str) and len(other) == 1
            and isinstance(other[0], nodes.FP_TimeBase)):
        value = _fp_datetime(coll[0])
        if value is not None:
            return [value]
    return coll


def quantity(node: dict) -> Any:
    """The FP_Quantity of a QuantityLiteral node, built as fhirpathpy builds it."""
    return quantity_literal(None, None, node)[0]


def adder(amount: Any) -> Callable[[Coll], Coll]:
    """fhirpathpy's `left + amount` for one quantity literal `amount`, its sums memoised."""
    sums: dict[str, object] = {}  # text -> its sum's text, or FHIRPATHPY

    def add(left: Coll) -> Coll:
        if not left:
            return []
        value = _native(left[0]) if len(left) == 1 else None
        if value is not None:
            text = sums.get(value.text)
            if text is None:
                if len(sums) >= _MEMO_LIMIT:
                    sums.clear()
                text = sums[value.text] = datetimes.plus(value, amount.value, amount.unit)
            if isinstance(text, str):
                return [text]
        return util.arraify(fp_math.plus(None, _fhirpathpy(left), [amount]))
    return add
