"""Compile the common FHIRPath subset into Python closures; anything else stays with fhirpathpy.

Same collection semantics as FHIRPath (every value is a list; empty propagates through
comparisons; three-valued and/or). Tests check it against fhirpathpy on generated expressions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from engine import fastdates

Coll = list[Any]
Env = dict[Any, Any]  # %name -> value, and the memos of criteria being run (see _Loop)
Fn = Callable[[Coll, Env], Coll]
Run = Callable[[Any, dict[str, Any]], Coll]


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


class _Loop:
    """One `where`/`exists` criteria: the parts of it that do not read the item (such as
    `%surgery.first().end.toDateTime() + 77 days`) are worked out once per call, on first use
    (so an error still surfaces where it did), in a memo the call puts in its env under this
    object."""

    def __init__(self) -> None:
        self.slots = 0

    def once(self, fn: Fn) -> Fn:
        slot = self.slots
        self.slots += 1

        def memo(focus: Coll, env: Env) -> Coll:
            values = env.get(self)
            if values is None:
                return fn(focus, env)
            if slot not in values:
                values[slot] = fn(focus, env)
            return values[slot]
        return memo


def _reads_item(node: dict) -> bool:
    """Whether an expression reads its input: only a term invoked on it does (`$this` and
    `%context` are fhirpathpy's); criteria inside it read their own items."""
    kind = node.get("type")
    if kind in ("ExternalConstantTerm", "LiteralTerm"):
        return False
    if kind == "InvocationExpression":
        return _reads_item(node["children"][0])
    return kind == "InvocationTerm" or any(_reads_item(k) for k in node.get("children", []))


def _function(node: dict) -> Fn:
    functn = node["children"][0]
    name = functn["children"][0]["text"]
    params = functn["children"][1:]
    if name in {"exists", "where"} and params:
        loop = _Loop()
        criteria = _compile(params[0]["children"][0], loop)

        def where(coll: Coll, env: Env) -> Coll:
            if loop.slots and len(coll) > 1:
                env = {**env, loop: {}}
            kept = [item for item in coll if _logic(criteria([item], env)) is True]
            return [bool(kept)] if name == "exists" else kept
        return where
    if params:
        raise Unsupported(f"{name}() with arguments")
    simple: dict[str, Callable[[Coll], Coll]] = {
        "exists": lambda c: [bool(c)], "empty": lambda c: [not c], "last": lambda c: c[-1:],
        "first": lambda c: c[:1], "count": lambda c: [len(c)],
        "not": lambda c: [] if not c else [not _logic(c)],
        "toDateTime": fastdates.to_datetime,
    }
    if name not in simple:
        raise Unsupported(name)
    fn = simple[name]
    return lambda coll, env: fn(coll)


def _invocation(node: dict) -> Fn:
    if node["type"] == "MemberInvocation":
        get = _member(node["children"][0]["text"])
        return lambda coll, env: get(coll)
    if node["type"] == "FunctionInvocation":
        return _function(node)
    raise Unsupported(node["type"])


def _compile(node: dict, loop: _Loop | None = None) -> Fn:  # noqa: C901 - a branch per node type
    """The node as a closure; inside criteria (`loop`), its largest parts that do not read
    the item are evaluated once per call."""
    kind = node.get("type")
    kids = node.get("children", [])
    if loop is not None and kind not in ("ExternalConstantTerm", "LiteralTerm") \
            and not _reads_item(node):
        return loop.once(_compile(node))
    if kind in (None, "TermExpression", "ParenthesizedTerm"):
        return _compile(kids[0], loop)
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
        base, inv = _compile(kids[0], loop), _invocation(kids[1])
        return lambda focus, env: inv(base(focus, env), env)
    if kind == "PolarityExpression" and node["terminalNodeText"] == ["-"]:
        inner = _compile(kids[0], loop)
        return lambda focus, env: [-v for v in inner(focus, env)]
    if kind == "AdditiveExpression" and node["terminalNodeText"] == ["+"]:
        return _plus_quantity(_compile(kids[0], loop), kids[1])
    if kind in ("EqualityExpression", "InequalityExpression", "AndExpression", "OrExpression"):
        return _binary(node["terminalNodeText"][0], _compile(kids[0], loop),
                       _compile(kids[1], loop))
    raise Unsupported(str(kind))


def _plus_quantity(left: Fn, right: dict) -> Fn:
    """`x + 77 days`: only a quantity literal is added on the fast path (date arithmetic)."""
    term = right["children"][0] if right.get("type") == "TermExpression" else {}
    literal = term["children"][0] if term.get("type") == "LiteralTerm" else {}
    if literal.get("type") != "QuantityLiteral":
        raise Unsupported("+ other than a quantity literal")
    add = fastdates.adder(fastdates.quantity(literal))
    return lambda f, e: add(left(f, e))


def _unequal(left: Coll, right: Coll) -> Coll:
    return [not r[0]] if (r := _equal(left, right)) else []


_PLAIN: dict[str, Callable[[Coll, Coll], Coll]] = {
    "=": _equal, "!=": _unequal, **{op: partial(_compare, op) for op in _ORDER}}


def _binary(op: str, left: Fn, right: Fn) -> Fn:
    if op in _PLAIN:
        plain = _PLAIN[op]

        def compare(f: Coll, e: dict[str, Any]) -> Coll:
            a, b = left(f, e), right(f, e)
            if fastdates.is_fp(a) or fastdates.is_fp(b):
                return fastdates.compare(op, a, b)  # date-times: FHIRPath's rules as fhirpathpy's
            return plain(a, b)
        return compare
    if op == "and":
        return lambda f, e: _and(_logic(left(f, e)), _logic(right(f, e)))
    if op == "or":
        return lambda f, e: _or(_logic(left(f, e)), _logic(right(f, e)))
    raise Unsupported(op)


def compile_fast(ast: dict, fallback: Run | None = None) -> Run | None:
    """A closure (resource, env) -> collection, or None when the expression needs fhirpathpy.

    A result holding fhirpathpy date-time or quantity objects is handed to `fallback` (the
    fhirpathpy-compiled expression), which renders such values its own way."""
    try:
        fn = _compile(ast)
    except Unsupported:
        return None

    def run(resource: Any, env: dict[str, Any]) -> Coll:
        out = fn(_as_coll(resource), env)
        if fallback is not None and fastdates.is_fp(out):
            return fallback(resource, env)
        return out
    return run
