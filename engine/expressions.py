"""FHIRPath conditions: strict parsing at load time, variable discovery, compiled evaluation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from engine.fastpath import FHIRPATH_BUILTINS, compile_fast


class FhirPathSyntaxError(ValueError):
    """An expression that is not FHIRPath."""


class _Raise(ErrorListener):
    def syntaxError(self, recognizer, offending, line, column, msg, e):  # noqa: N802, ANN001
        short = msg.split(" expecting ")[0]
        raise FhirPathSyntaxError(f"not valid FHIRPath at character {column + 1}: {short}")


def parse_strict(text: str) -> dict:
    """Parse FHIRPath, raising on any syntax error or unread trailing text (fhirpathpy is lenient)."""
    lexer = FHIRPathLexer(InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    listener = ASTPathListener()
    tree = parser.expression()
    if parser.getCurrentToken().type != Token.EOF:
        rest = parser.getCurrentToken().text
        raise FhirPathSyntaxError(f"not valid FHIRPath: unexpected '{rest}' after the expression")
    ParseTreeWalker().walk(listener, tree)
    ast: dict = listener.parentStack[0]
    return ast


def root_members(ast: dict) -> set[str]:
    """Fields of the input resource an expression reads directly (e.g. {'value'})."""
    found: set[str] = set()
    stack = [ast]
    while stack:
        node = stack.pop()
        if node.get("type") == "InvocationTerm":
            for child in node.get("children", []):
                if child.get("type") == "MemberInvocation":
                    found.add(child["children"][0]["text"])
        stack.extend(node.get("children", []))
    return found


def variables_of(ast: dict) -> set[str]:
    """Names used as %name in a parsed expression."""
    found: set[str] = set()
    stack = [ast]
    while stack:
        node = stack.pop()
        if node.get("type") == "ExternalConstant":
            for child in node.get("children", []):
                name = str(child.get("text", "")).strip("`'\"")
                if name:
                    found.add(name)
        stack.extend(node.get("children", []))
    return found


@dataclass(frozen=True)
class CompiledExpression:
    """A checked FHIRPath expression and the variables it reads."""

    text: str
    variables: frozenset[str]
    _run: Callable[..., list]
    members: frozenset[str] = frozenset()

    @property
    def env_names(self) -> tuple[str, ...]:
        """The %names the engine supplies (FHIRPath's own %context etc. excluded), sorted."""
        names: tuple[str, ...] | None = self.__dict__.get("_env_names")
        if names is None:
            names = tuple(sorted(self.variables - FHIRPATH_BUILTINS))
            object.__setattr__(self, "_env_names", names)
        return names

    def evaluate(self, resource: Any, env: Mapping[str, Any]) -> list:
        return self._run(resource, dict(env))

    def truthy(self, resource: Any, env: Mapping[str, Any]) -> bool:
        """FHIRPath truth: a single true, or a non-empty collection that is not [false]."""
        result = self._run(resource, dict(env))
        if not result:
            return False
        if len(result) == 1 and isinstance(result[0], bool):
            return result[0]
        return True


def _lazy_fhirpathpy(text: str) -> Callable[..., list]:
    """fhirpathpy's compiled expression, built on first use (the fast path rarely needs it)."""
    compiled: list[Callable[..., list]] = []

    def run(resource: Any, env: dict[str, Any]) -> list:
        if not compiled:
            compiled.append(fhirpathpy.compile(text, None))
        return compiled[0](resource, env)
    return run


def compile_expression(text: str, *, fast: bool = True) -> CompiledExpression:
    """Check and compile; the common subset runs as Python closures, the rest via fhirpathpy."""
    ast = parse_strict(text)
    slow = _lazy_fhirpathpy(text)
    run = (compile_fast(ast, slow) if fast else None) or slow
    return CompiledExpression(text=text, variables=frozenset(variables_of(ast)), _run=run,
                              members=frozenset(root_members(ast)))
