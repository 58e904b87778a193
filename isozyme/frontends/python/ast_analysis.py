"""Analyses and normalizations of function ASTs shared by the converter's passes:
resolving global names, walking without entering nested scopes, the names a block
assigns, and the normalization of early returns in ``if`` statements."""

from __future__ import annotations

import ast
import copy
import types
from collections.abc import Callable, Iterable
from typing import Any

#: Names of generated variables the converter's builders need not carry.
PREFIX = "_iz_"

#: What :func:`resolver` gives for a name known only when the code runs.
UNRESOLVED = object()


def resolver(fn: Callable[..., Any]) -> Callable[[ast.expr], object]:
    """Resolve a ``name`` or ``module.attr...`` expression the way ``fn``'s body would
    (closure, globals, builtins), or give ``UNRESOLVED`` (locals, non-module attributes:
    known only when the code runs)."""
    code = fn.__code__  # type: ignore[attr-defined]
    scope: dict[str, Any] = {}
    builtins_ = fn.__globals__.get("__builtins__", {})  # type: ignore[attr-defined]
    scope.update(builtins_ if isinstance(builtins_, dict) else vars(builtins_))
    scope.update(fn.__globals__)  # type: ignore[attr-defined]
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):  # type: ignore[attr-defined]
        try:
            scope[name] = cell.cell_contents
        except ValueError:
            scope.pop(name, None)
    local_names = set(code.co_varnames) | set(code.co_cellvars)

    def resolve(node: ast.expr) -> object:
        if isinstance(node, ast.Name):
            if node.id in local_names:
                return UNRESOLVED
            return scope.get(node.id, UNRESOLVED)
        if isinstance(node, ast.Attribute):
            base = resolve(node.value)
            if isinstance(base, types.ModuleType):
                return getattr(base, node.attr, UNRESOLVED)
        return UNRESOLVED

    return resolve


def callee_name(node: ast.expr) -> str | None:
    """``f`` of ``f`` or ``a.b.f``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def walk(nodes: Iterable[ast.AST], stop: tuple[type, ...] = SCOPES) -> Iterable[ast.AST]:
    """Walk nodes depth-first without entering nested scopes (``stop`` types)."""
    stack = list(nodes)[::-1]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, stop):
            continue
        stack.extend(list(ast.iter_child_nodes(node))[::-1])


def contains(nodes: Iterable[ast.AST] | ast.AST, kinds: tuple[type, ...]) -> bool:
    """Whether ``nodes`` hold a node of one of ``kinds`` (nested scopes excluded)."""
    if isinstance(nodes, ast.AST):
        nodes = [nodes]
    for n in walk(nodes):
        if isinstance(n, kinds):
            return True
    return False


def has_loop_exit(stmts: list[ast.stmt],
                kinds: tuple[type, ...] = (ast.Break, ast.Continue)) -> bool:
    """Whether ``stmts`` contain a ``break``/``continue`` (``kinds``) of the enclosing
    loop."""
    stack: list[ast.AST] = list(stmts)
    while stack:
        node = stack.pop()
        if isinstance(node, kinds):
            return True
        if isinstance(node, SCOPES):
            continue
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            stack.extend(node.orelse)  # `else:` of an inner loop belongs to ours
            continue
        stack.extend(ast.iter_child_nodes(node))
    return False


def assigned_names(stmts: Iterable[ast.AST]) -> list[str]:
    """Names bound by ``stmts`` in the enclosing scope, in order of first appearance."""
    names: dict[str, None] = {}
    stack: list[ast.AST] = list(stmts)[::-1]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names[node.id] = None
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = None
            stack.extend(reversed(node.decorator_list))
            continue
        elif isinstance(node, ast.Lambda) or isinstance(node, COMPREHENSIONS):
            continue
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    names[(alias.asname or alias.name).split(".")[0]] = None
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names[node.name] = None
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names[node.name] = None
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names[node.rest] = None
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return [n for n in names if not n.startswith(PREFIX)]


def ends_in_return(stmts: list[ast.stmt]) -> bool:
    """Whether ``stmts`` end in a ``return`` or an ``if`` whose branches all do."""
    if not stmts:
        return False
    last = stmts[-1]
    if isinstance(last, ast.Return):
        return True
    return isinstance(last, ast.If) and ends_in_return(last.body) and ends_in_return(last.orelse)


def clean_tail(stmts: list[ast.stmt]) -> bool:
    """``stmts`` return only at the end: a ``return`` or an ``if`` whose branches do."""
    if not stmts or contains(stmts[:-1], (ast.Return,)):
        return False
    last = stmts[-1]
    if isinstance(last, ast.Return):
        return True
    return isinstance(last, ast.If) and clean_tail(last.body) and clean_tail(last.orelse)


def normalize_returns(stmts: list[ast.stmt]) -> list[ast.stmt]:
    """Rewrite early returns in ``if`` statements so that every returning ``if`` ends its
    block: ``if c: return a`` + rest  ->  ``if c: return a`` / ``else: rest``."""
    for i, stmt in enumerate(stmts):
        if isinstance(stmt, ast.If) and contains(stmt, (ast.Return,)):
            rest = stmts[i + 1 :]
            tail: list[ast.stmt] = rest if ends_in_return(rest) else [*rest, return_none(stmt)]

            def complete(block: list[ast.stmt]) -> list[ast.stmt]:
                if ends_in_return(block):
                    return normalize_returns(block)
                return normalize_returns([*block, *copy.deepcopy(tail)])

            new_if = ast.If(test=stmt.test, body=complete(stmt.body), orelse=complete(stmt.orelse))
            ast.copy_location(new_if, stmt)
            return [*stmts[:i], new_if]
    return stmts


def return_none(at: ast.AST) -> ast.Return:
    """``return None`` at the last line of ``at``."""
    node = ast.Return(value=ast.Constant(None))
    ast.copy_location(node, at)
    node.lineno = getattr(at, "end_lineno", None) or at.lineno  # type: ignore[attr-defined]
    return node
