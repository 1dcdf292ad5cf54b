"""Compile the common FHIRPath subset into Python closures; anything else stays with fhirpathpy.

Same collection semantics as FHIRPath (every value is a list; empty propagates through
comparisons; three-valued and/or). Tests check it against fhirpathpy on generated expressions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Coll = list[Any]
Fn = Callable[[Coll, dict[str, Any]], Coll]


# Variables FHIRPath itself defines; the fast path leaves expressions using them to fhirpathpy.
FHIRPATH_BUILTINS = frozenset({"ucum", "sct", "loinc", "context", "resource", "rootResource"})


class Unsupported(Exception):
    """The expression uses FHIRPath this compiler does not handle; use fhirpathpy."""


def _as_coll(value: Any) -> Coll:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "num"
    return type(v).__name__


def _equal(left: Coll, right: Coll) -> Coll:
    if not left or not right:
        return []
    if len(left) != len(right):
        return [False]
    for a, b in zip(left, right, strict=True):
        if _kind(a) != _kind(b) or a != b:
            return [False]
    return [True]


_ORDER = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
          ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _compare(op: str, left: Coll, right: Coll) -> Coll:
    if not left or not right:
        return []
    if len(left) > 1 or len(right) > 1:
        raise TypeError("FHIRPath comparison needs single values")
    a, b = left[0], right[0]
    if _kind(a) != _kind(b) or _kind(a) not in {"num", "str"}:
        raise TypeError("FHIRPath cannot order values of these types")
    return [_ORDER[op](a, b)]


def _logic(coll: Coll) -> bool | None:
    if not coll:
        return None
    if len(coll) > 1:
        raise TypeError("FHIRPath logic needs single values")
    return coll[0] if isinstance(coll[0], bool) else True


def _and(a: bool | None, b: bool | None) -> Coll:
    if a is False or b is False:
        return [False]
    return [True] if a and b else []


def _or(a: bool | None, b: bool | None) -> Coll:
    if a or b:
        return [True]
    return [False] if a is False and b is False else []


def _member(name: str) -> Callable[[Coll], Coll]:
    def get(coll: Coll) -> Coll:
        out: Coll = []
        for item in coll:
            if isinstance(item, dict) and name in item:
                out.extend(_as_coll(item[name]))
        return out
    return get


def _literal(node: dict) -> Any:
    kind = node["type"]
    text = node["text"]
    if kind == "StringLiteral":
        if "\\" in text:
            raise Unsupported("escapes in strings")
        return text[1:-1]
    if kind == "NumberLiteral":
        return float(text) if "." in text else int(text)
    if kind == "BooleanLiteral":
        return text == "true"
    raise Unsupported(kind)


def _function(node: dict) -> Callable[[Coll, dict[str, Any]], Coll]:
    functn = node["children"][0]
    name = functn["children"][0]["text"]
    params = functn["children"][1:]
    if name in {"exists", "where"} and params:
        criteria = _compile(params[0]["children"][0])

        def where(coll: Coll, env: dict[str, Any]) -> Coll:
            kept = [item for item in coll if _logic(criteria([item], env)) is True]
            return [bool(kept)] if name == "exists" else kept
        return where
    if params:
        raise Unsupported(f"{name}() with arguments")
    simple: dict[str, Callable[[Coll], Coll]] = {
        "exists": lambda c: [bool(c)], "empty": lambda c: [not c], "last": lambda c: c[-1:],
        "first": lambda c: c[:1], "count": lambda c: [len(c)],
        "not": lambda c: [] if not c else [not _logic(c)],
    }
    if name not in simple:
        raise Unsupported(name)
    fn = simple[name]
    return lambda coll, env: fn(coll)


def _invocation(node: dict) -> Callable[[Coll, dict[str, Any]], Coll]:
    if node["type"] == "MemberInvocation":
        get = _member(node["children"][0]["text"])
        return lambda coll, env: get(coll)
    if node["type"] == "FunctionInvocation":
        return _function(node)
    raise Unsupported(node["type"])


def _compile(node: dict) -> Fn:  # noqa: C901 - one branch per FHIRPath node type
    kind = node.get("type")
    kids = node.get("children", [])
    if kind in (None, "TermExpression", "ParenthesizedTerm"):
        return _compile(kids[0])
    if kind == "ExternalConstantTerm":
        name = kids[0]["children"][0]["text"].strip("`")
        if name in FHIRPATH_BUILTINS:
            raise Unsupported(f"%{name}")
        return lambda focus, env: _as_coll(env[name])
    if kind == "LiteralTerm":
        value = _literal(kids[0])
        return lambda focus, env: [value]
    if kind == "InvocationTerm":
        inv = _invocation(kids[0])
        return inv
    if kind == "InvocationExpression":
        base, inv = _compile(kids[0]), _invocation(kids[1])
        return lambda focus, env: inv(base(focus, env), env)
    if kind == "PolarityExpression" and node["terminalNodeText"] == ["-"]:
        inner = _compile(kids[0])
        return lambda focus, env: [-v for v in inner(focus, env)]
    if kind in ("EqualityExpression", "InequalityExpression", "AndExpression", "OrExpression"):
        return _binary(node["terminalNodeText"][0], _compile(kids[0]), _compile(kids[1]))
    raise Unsupported(str(kind))


def _binary(op: str, left: Fn, right: Fn) -> Fn:
    if op == "=":
        return lambda f, e: _equal(left(f, e), right(f, e))
    if op == "!=":
        return lambda f, e: [not r[0]] if (r := _equal(left(f, e), right(f, e))) else []
    if op in _ORDER:
        return lambda f, e: _compare(op, left(f, e), right(f, e))
    if op == "and":
        return lambda f, e: _and(_logic(left(f, e)), _logic(right(f, e)))
    if op == "or":
        return lambda f, e: _or(_logic(left(f, e)), _logic(right(f, e)))
    raise Unsupported(op)


def compile_fast(ast: dict) -> Callable[[Any, dict[str, Any]], Coll] | None:
    """A closure (resource, env) -> collection, or None when the expression needs fhirpathpy."""
    try:
        fn = _compile(ast)
    except Unsupported:
        return None
    return lambda resource, env: fn(_as_coll(resource), env)
