"""Which variables of an ``isozyme.prange`` body are reductions (``s += e``, ``s *= e``,
``s = max(s, e)``...), found on the body's AST before it is converted; the converter
turns them into ``scf.reduce`` results and explains why the others are not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable


_REDUCTION_OPS = {ast.Add: "add", ast.Sub: "add", ast.Mult: "mul"}


def _reduction_update(stmt: ast.AST, name: str) -> tuple[str, ast.expr] | None:
    """``(kind, e)`` when ``stmt`` is ``name += e``, ``name -= e``, ``name *= e``,
    ``name = name + e`` (or ``e + name``), ``name = name - e``, ``name = name * e`` (or
    ``e * name``), ``name = max(name, e)`` (or ``max(e, name)``), ``name = min(...)``."""

    def is_name(e: ast.expr) -> bool:
        return isinstance(e, ast.Name) and e.id == name

    if isinstance(stmt, ast.AugAssign) and is_name(stmt.target):
        kind = _REDUCTION_OPS.get(type(stmt.op))
        return (kind, stmt.value) if kind else None
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and is_name(stmt.targets[0])):
        return None
    v = stmt.value
    if isinstance(v, ast.BinOp) and type(v.op) in _REDUCTION_OPS:
        kind = _REDUCTION_OPS[type(v.op)]
        if is_name(v.left):
            return kind, v.right
        if is_name(v.right) and not isinstance(v.op, ast.Sub):
            return kind, v.left
        return None
    if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) \
            and v.func.id in ("max", "min") and len(v.args) == 2 and not v.keywords \
            and not any(isinstance(a, ast.Starred) for a in v.args):
        a, b = v.args
        if is_name(a):
            return v.func.id, b
        if is_name(b):
            return v.func.id, a
    return None


_KIND_WORDS = {"add": "a sum (`+=`, `-=`)", "mul": "a product (`*=`)",
               "max": "a maximum (`max`)", "min": "a minimum (`min`)"}


def prange_reductions(body: list[ast.stmt], names: Iterable[str]) -> dict[str, str]:
    """The variables of a ``prange`` body that are reductions, with their kind.

    ``s`` is a reduction when every statement of the body that assigns it is a
    reduction update of one kind (:func:`_reduction_update`; ``+`` and ``-`` are one
    kind), the updated expression does not read ``s``, and no other code of the body
    (nested functions included) reads or assigns it.
    """
    return reductions_and_reasons(body, names)[0]


def prange_non_reductions(body: list[ast.stmt], names: Iterable[str]) -> dict[str, str]:
    """The variables of a ``prange`` body updated at least once as a reduction
    (``s += e``...) that are not reductions, with the reason (for the error when the
    body reads them): the updates mix operators, an update's expression reads the
    variable, or other code of the body reads or assigns it (with the line)."""
    return reductions_and_reasons(body, names)[1]


def reductions_and_reasons(body: list[ast.stmt],
                       names: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(reductions, reasons)``: see :func:`prange_reductions` and
    :func:`prange_non_reductions`."""
    stmts = list(ast.walk(ast.Module(body=body, type_ignores=[])))
    out: dict[str, str] = {}
    why: dict[str, str] = {}
    for name in names:
        kinds: dict[str, int] = {}  # kind -> line of its first update
        update_nodes: set[int] = set()
        ok = True
        for node in stmts:
            found = _reduction_update(node, name)
            if found is not None:
                kind, e = found
                if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(e)):
                    why[name] = (f"its update at line {getattr(node, 'lineno', '?')} "
                                 f"combines it with an expression that reads '{name}' "
                                 "itself")
                    ok = False
                    break
                kinds.setdefault(kind, getattr(node, "lineno", 0))
                update_nodes.add(id(node))
        if not ok or not kinds:
            continue
        if len(kinds) != 1:
            (k1, l1), (k2, l2) = sorted(kinds.items(), key=lambda kv: kv[1])[:2]
            why[name] = (f"it is updated as {_KIND_WORDS[k1]} at line {l1} and as "
                         f"{_KIND_WORDS[k2]} at line {l2}; a reduction has one operator")
            continue
        allowed: set[int] = set()
        for node in stmts:
            if id(node) in update_nodes:
                allowed.update(id(n) for n in ast.walk(node)
                               if isinstance(n, ast.Name) and n.id == name)
        others = [n for n in stmts if (isinstance(n, ast.Name) and n.id == name
                                       and id(n) not in allowed)
                  or (isinstance(n, (ast.Global, ast.Nonlocal)) and name in n.names)
                  or (isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name)]
        if not others:
            out[name] = next(iter(kinds))
        else:
            first = min(others, key=lambda n: getattr(n, "lineno", 0))
            why[name] = (f"line {getattr(first, 'lineno', '?')} reads or assigns it "
                         "other than by a reduction update (`s += e`, `s *= e`, "
                         "`s = max(s, e)`, `s = min(s, e)`), which is all a reduction "
                         "may do in the body")
    return out, why
