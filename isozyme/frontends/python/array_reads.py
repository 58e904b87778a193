"""The AST pass that makes converted code read global and closure numpy arrays through
``_iz_.array_read`` (``whole_array/array_builders.array_read``), so that a large one
becomes a hidden argument with run-time sizes wherever the function reads it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

import numpy as np

from .ast_ops import is_ops_call, ops_call


def bound_names(node: ast.AST) -> set[str]:
    """Every name bound anywhere in ``node``, nested scopes included (assigned, deleted,
    parameters, definitions, imports, ``except ... as``, ``global``/``nonlocal``,
    match captures)."""
    out: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            out.add(n.id)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, ast.alias):
            out.add((n.asname or n.name).split(".")[0])
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            out.update(n.names)
        elif isinstance(n, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and n.name:
            out.add(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest:
            out.add(n.rest)
    return out


def wrap_array_reads(node: ast.AST, resolve: Callable[[ast.expr], object]) -> None:
    """Wrap each read of a global or closure variable that holds a numpy array now in
    ``_iz_.array_read(name)``, which turns a large one into the compiled function's
    hidden argument (``array_builders.array_read``): its sizes are then run-time values
    and loops over its rows stay loops.  Names bound anywhere in the function are left
    alone (a local array is the function's own), and so is a name that held something
    else when the function was first converted (its arrays are baked, as before).
    Iterating such a name (``for row in X``, a comprehension over it, ``enumerate(X)``,
    ``zip(X, ...)``, ``reversed(X)``) reads it with ``_iz_.array_iter``: its rows, loaded
    from the hidden argument, in a Python list (Python iteration unrolls, as before)."""
    bound = bound_names(node)

    def iterated(e: ast.expr) -> None:
        """Turn ``array_read`` into ``array_iter`` where ``e`` is iterated."""
        if is_ops_call(e, "array_read"):
            e.func.attr = "array_iter"  # type: ignore[attr-defined]
        elif isinstance(e, ast.Call) and isinstance(e.func, ast.Name) \
                and e.func.id in ("enumerate", "zip", "reversed"):
            for a in e.args:
                if is_ops_call(a, "array_read"):
                    a.func.attr = "array_iter"  # type: ignore[attr-defined]

    class _Wrap(ast.NodeTransformer):
        def visit_Name(self, n: ast.Name) -> ast.AST:
            if isinstance(n.ctx, ast.Load) and n.id not in bound \
                    and isinstance(resolve(n), np.ndarray):
                return ast.copy_location(ops_call("array_read", n), n)
            return n

        def visit_For(self, n: ast.For) -> ast.AST:
            self.generic_visit(n)
            iterated(n.iter)
            return n

        def visit_comprehension(self, n: ast.comprehension) -> ast.AST:
            self.generic_visit(n)
            iterated(n.iter)
            return n

    _Wrap().visit(node)
