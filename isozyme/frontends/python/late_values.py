"""Variables first assigned inside a traced loop (``for x in ...: last = f(x)``), read
after it or, in a later iteration, before their assignment.

Python raises ``UnboundLocalError`` when such a read runs before any assignment did (a
loop that ran no iteration).  The loop carries the variable (from a placeholder) and an
``i1`` "assigned" flag; the variable's value is a *late* tracer whose every use emits a
run-time check of the flag first (``isz.check`` of kind ``unbound``), where the use is:
a read in a branch that does not run raises nothing, as in Python.
"""

from __future__ import annotations

import ast
from collections import Counter
from typing import Any

from xdsl.dialects.builtin import MemRefType
from xdsl.ir import SSAValue

from .arrays import ArrayTracer
from .tracer import Tracer


class _LateCheck:
    """The check a late tracer's uses emit: ``flag`` must be true."""

    __slots__ = ("flag", "name", "why")

    def __init__(self, flag: SSAValue, name: str, why: str) -> None:
        self.flag = flag
        self.name = name
        self.why = why

    def __call__(self) -> None:
        from .runtime_checks import require  # noqa: PLC0415 (import cycle)

        require(Tracer(self.flag), "unbound",
                f"local variable '{self.name}' referenced before assignment: {self.why}")


class LateTracer(Tracer):
    """A scalar variable that may be unassigned (see the module docstring)."""

    __slots__ = ("unbound_check",)


class LateArrayTracer(ArrayTracer):
    """An array variable that may be unassigned (see the module docstring)."""

    __slots__ = ("unbound_check",)


def late_value(value: SSAValue, flag: SSAValue, name: str, why: str) -> Any:
    """``value`` as the variable ``name`` that holds it only where ``flag`` is true."""
    t: Any = LateArrayTracer(value) if isinstance(value.type, MemRefType) else LateTracer(value)
    t.unbound_check = _LateCheck(flag, name, why)
    return t


def read_counts(nodes: ast.AST | list[ast.stmt]) -> Counter[str]:
    """How often each name is read (``ast.Load``) in ``nodes``, nested functions
    included (a conservative count: the converter uses it to find the variables a loop
    assigns that code after the loop may read, see :class:`Reads`)."""
    roots = nodes if isinstance(nodes, list) else [nodes]
    return Counter(n.id for root in roots for n in ast.walk(root)
                   if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load))


class Reads:
    """The reads of one function being converted (its statements after the converter's
    own rewrites), to find which variables first assigned in a loop must be carried out
    of it (:meth:`after`)."""

    def __init__(self, body: list[ast.stmt]) -> None:
        self.total = read_counts(body)
        self.parents: dict[int, ast.AST] = {}
        for root in body:
            for node in ast.walk(root):
                for child in ast.iter_child_nodes(node):
                    self.parents[id(child)] = node

    def _exclusive(self, loop: ast.AST) -> Counter[str]:
        """The reads in the other branches of the ``if`` statements around ``loop``:
        they cannot run after the loop in the same pass (e.g. the Python alternative
        of a loop over an array, see iteration.py)."""
        out: Counter[str] = Counter()
        node: ast.AST = loop
        while id(node) in self.parents:
            parent = self.parents[id(node)]
            if isinstance(parent, ast.If):
                other = parent.orelse if any(s is node for s in parent.body) else parent.body
                out.update(read_counts(list(other)))
            node = parent
        return out

    def after(self, loop: ast.AST, names: list[str]) -> list[str]:
        """The ``names`` ``loop`` assigns that may be read before an assignment of the
        same iteration: read outside the loop (after it, or before it in an enclosing
        loop's next iteration; not in an exclusive branch), or read in the loop's body
        before (in source order) the body's first assignment to them, i.e. the previous
        iteration's value.  These are carried when first assigned in a traced loop."""
        inside = read_counts(loop)
        exclusive = self._exclusive(loop)
        body = list(getattr(loop, "body", []))
        early = _reads_before_assignment(body, set())
        return [n for n in names
                if self.total[n] > inside[n] + exclusive[n] or n in early]


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _stores(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _reads_before_assignment(stmts: list[ast.stmt], assigned: set[str]) -> set[str]:
    """The names ``stmts`` may read before assigning them on some path (a definite
    assignment analysis: both branches of an ``if`` must assign a name; a loop's body
    may not run), given the names ``assigned`` on entry; ``assigned`` is updated."""
    early: set[str] = set()
    for stmt in stmts:
        if isinstance(stmt, ast.If):
            early |= _loads(stmt.test) - assigned
            then_assigned, else_assigned = set(assigned), set(assigned)
            early |= _reads_before_assignment(stmt.body, then_assigned)
            early |= _reads_before_assignment(stmt.orelse, else_assigned)
            assigned |= then_assigned & else_assigned
        elif isinstance(stmt, (ast.For, ast.While)):
            head = stmt.iter if isinstance(stmt, ast.For) else stmt.test
            early |= _loads(head) - assigned
            inner = set(assigned) | (_stores(stmt.target) if isinstance(stmt, ast.For) else set())
            early |= _reads_before_assignment(stmt.body, inner)
            early |= _reads_before_assignment(stmt.orelse, set(assigned))
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            early |= _loads(stmt) - assigned  # conservative: its body may run here
            assigned.add(stmt.name)
        elif isinstance(stmt, (ast.Try, ast.With)):
            early |= _loads(stmt) - assigned  # conservative
        else:
            early |= _loads(stmt) - assigned
            assigned |= _stores(stmt)
    return early


def late_parts(value: object, name: str) -> tuple[SSAValue, SSAValue, str] | None:
    """``(value, flag, why)`` of the late tracer of variable ``name`` when ``value`` is
    one (passing it on, e.g. yielding it from a loop body or a branch that did not assign
    it, is not a read: no check), else None."""
    if not isinstance(value, (LateTracer, LateArrayTracer)):
        return None
    check = value.unbound_check
    if not isinstance(check, _LateCheck) or check.name != name:
        return None
    return value.value, check.flag, check.why


def read_var(value: Any) -> Any:
    """A read, in the user's code, of a variable a traced loop may have left unassigned
    (the converter wraps such reads): a late tracer checks its flag here, so that
    binding it to another name or putting it in a list raises as Python does."""
    if isinstance(value, (LateTracer, LateArrayTracer)):
        value.unbound_check()
    return value
