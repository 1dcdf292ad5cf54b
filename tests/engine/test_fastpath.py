"""The FHIRPath fast path gives fhirpathpy's answers (or its errors) on generated expressions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.expressions import compile_expression, parse_strict
from engine.fastpath import compile_fast

NUM_ATOMS = ["%a.last().value", "%a.first().value", "%a.count()", "%n", "value", "4", "12.5",
             "%a.where(value > 3).count()", "-2",
             # criteria with parts that do not read the item (worked out once per call)
             "%a.where(value > %n).count()", "%a.where(value <= %a.last().value).count()",
             "%a.where(%a.where(value > %a.first().value).exists() and value != %n).count()",
             "%a.where(value > %a.value).count()", "%a.where(%flag).count()"]
STR_ATOMS = ["%b.last().value", "%sex", "'female'", "'current_smoker'", "%b.first().value"]
BOOL_ATOMS = ["%a.exists()", "%b.empty()", "true", "false", "%a.exists(value >= 5)",
              "%flag", "%a.last().value.exists()",
              "%a.exists(%b.first().value = 'female' and value > 2)",
              "%b.exists(value = %sex or (%a.count() > 2).not())"]


def _expr(depth: int) -> st.SearchStrategy[str]:
    num_cmp = st.builds(lambda a, op, b: f"{a} {op} {b}", st.sampled_from(NUM_ATOMS),
                        st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
                        st.sampled_from(NUM_ATOMS))
    str_cmp = st.builds(lambda a, op, b: f"{a} {op} {b}", st.sampled_from(STR_ATOMS),
                        st.sampled_from(["=", "!=", "<", ">="]), st.sampled_from(STR_ATOMS))
    mixed = st.builds(lambda a, b: f"{a} = {b}", st.sampled_from(NUM_ATOMS),
                      st.sampled_from(STR_ATOMS))
    leaf = st.one_of(num_cmp, str_cmp, st.sampled_from(BOOL_ATOMS), mixed)
    if depth == 0:
        return leaf
    sub = _expr(depth - 1)
    return st.one_of(leaf, st.builds(lambda a, op, b: f"({a}) {op} ({b})", sub,
                                     st.sampled_from(["and", "or"]), sub),
                     st.builds(lambda a: f"({a}).not()", sub))


facts_a = st.lists(st.fixed_dictionaries({"value": st.integers(-3, 15)},
                                         optional={"unit": st.just("g/dL")}), max_size=4)
facts_b = st.lists(st.fixed_dictionaries({"value": st.sampled_from(
    ["current_smoker", "never_smoker", "female"])}), max_size=3)
env_strategy = st.fixed_dictionaries({
    "a": facts_a, "b": facts_b, "sex": st.sampled_from(["female", "male", None]),
    "n": st.one_of(st.none(), st.integers(0, 4)), "flag": st.one_of(st.none(), st.booleans()),
})
resource_strategy = st.one_of(st.just({}), st.fixed_dictionaries({"value": st.integers(0, 10)}))


def _norm(result: list[Any]) -> list[Any]:
    return [float(v) if isinstance(v, Decimal | int) and not isinstance(v, bool) else v
            for v in result]


def _run(fn: Any, resource: Any, env: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", _norm(fn(resource, dict(env)))
    except Exception:
        return "error", None


@settings(max_examples=400, deadline=None)
@given(_expr(2), env_strategy, resource_strategy)
def test_fastpath_agrees_with_fhirpathpy(text: str, env: dict[str, Any], resource: Any) -> None:
    fast = compile_fast(parse_strict(text))
    assert fast is not None, text
    slow = compile_expression(text, fast=False)
    assert _run(fast, resource, env) == _run(slow.evaluate, resource, env), text


CRITERIA = [a for a in NUM_ATOMS + BOOL_ATOMS if "where(" in a or "exists(" in a]
COMPILED_ONCE = {text: (compile_fast(parse_strict(text)), compile_expression(text, fast=False))
                 for text in CRITERIA}


@settings(max_examples=100, deadline=None)
@given(st.lists(env_strategy, min_size=2, max_size=6))
def test_fastpath_criteria_agree_call_after_call(envs: list[dict[str, Any]]) -> None:
    """What criteria work out once per call is never reused by the next call."""
    for env in envs:
        for text, (fast, slow) in COMPILED_ONCE.items():
            assert _run(fast, {}, env) == _run(slow.evaluate, {}, env), text


@pytest.mark.parametrize("text", ["%a.select(value)", "%a.value in (1 | 2)", "%a.value.sum() > 1",
                                  "'a\\'b' = %sex", "%a implies %b", "today() > @2020-01-01"])
def test_fastpath_leaves_the_rest_to_fhirpathpy(text: str) -> None:
    assert compile_fast(parse_strict(text)) is None
    assert compile_expression(text).text == text
