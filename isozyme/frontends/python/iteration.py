"""The AST pass for Python iteration in converted code: ``for`` over arrays and
``zip``/``enumerate``/``reversed``, and ``sum`` of a generator expression.

* ``for t in <iter>: body`` where ``<iter>`` is a name, attribute or subscript, or a call
  of ``zip``/``enumerate``/``reversed`` (checked when the code runs: the names may be
  rebound) becomes::

      __iz_x_N = _iz_x_.iterate(...)            # sequences.iterate
      if _iz_x_.is_traced(__iz_x_N):            # plain Python
          for __iz_i_N in range(_iz_x_.length(__iz_x_N)):
              t = _iz_x_.item(__iz_x_N, __iz_i_N)
              body
      else:
          for t in __iz_x_N:
              body

  so an array (or a traced range) is iterated by one traced loop and a Python
  iterable by Python, as before (``range`` loops are the converter's own);
* ``sum(<generator expression>[, start])`` in a simple statement (or the test of an
  ``if`` or ``assert``) becomes a call of a nested function defined just before the
  statement, whose loops accumulate ``__iz_acc = __iz_acc + elt``: a loop over a
  traced range or an array stays a loop.
"""

from __future__ import annotations

import ast
import builtins
import copy
from collections.abc import Callable

from .ast_ops import is_ops_call, locate_tree, name_node, xops_call
from .loop_exits import RAW

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_ITERATORS = ("zip", "enumerate", "reversed")
_SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Expr)


def _sequence(e: ast.expr) -> ast.expr | None:
    """``e`` as a call of ``_iz_x_.iterate``, or None when ``e`` is not an expression
    that may be an array (literals, other calls, comprehensions: Python iterables)."""
    if isinstance(e, (ast.Name, ast.Attribute, ast.Subscript)):
        return xops_call("iterate", ast.Constant(None), e)
    if is_ops_call(e, "array_iter"):
        # a global or closure numpy array (array_reads.py): a large one is a hidden
        # argument, iterated by a traced loop; a small one is baked, iterated by Python
        e.func.attr = "array_read"  # type: ignore[attr-defined]
        return xops_call("iterate", ast.Constant(None), e)
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) \
            and e.func.id in (*_ITERATORS, "range") \
            and not any(isinstance(a, ast.Starred) for a in e.args):
        args = [_sequence(a) or a if e.func.id != "range" else a for a in e.args]
        call = xops_call("iterate", e.func, *args)
        call.keywords = e.keywords
        return call
    return None


class _Iteration:
    def __init__(self, fresh: Callable[[str], str],
                 resolve: Callable[[ast.expr], object], unresolved: object) -> None:
        self.fresh = fresh
        self.resolve = resolve
        self.unresolved = unresolved

    def block(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for s in stmts:
            out.extend(self.stmt(s))
        return out

    def stmt(self, s: ast.stmt) -> list[ast.stmt]:
        if isinstance(s, _SCOPES):
            return [s]
        hoisted: list[ast.stmt] = []
        if isinstance(s, _SIMPLE):
            hoisted = self.sums(s, s)
        elif isinstance(s, (ast.If, ast.Assert)):  # the test, evaluated once, first
            hoisted = self.sums(s.test, s)
        for field in ("body", "orelse", "finalbody"):
            block = getattr(s, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                setattr(s, field, self.block(block))
        for h in getattr(s, "handlers", []) or []:
            h.body = self.block(h.body)
        for c in getattr(s, "cases", []) or []:
            c.body = self.block(c.body)
        if isinstance(s, ast.For):
            return [*hoisted, *self.for_(s)]
        return [*hoisted, s]

    def for_(self, node: ast.For) -> list[ast.stmt]:
        it = node.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) \
                and it.func.id in ("range", "prange"):
            return [node]  # the converter's own loops
        call = _sequence(it)
        if call is None:
            return [node]
        seq, i = self.fresh("seq"), self.fresh("i")
        first = ast.Assign(targets=[name_node(seq, True)], value=call)
        element = ast.Assign(targets=[node.target],
                             value=xops_call("item", name_node(seq), name_node(i)))
        traced = ast.For(
            target=name_node(i, True),
            iter=ast.Call(name_node("range"), [xops_call("length", name_node(seq))], []),
            body=[element, *node.body], orelse=node.orelse)
        python = ast.For(target=copy.deepcopy(node.target), iter=name_node(seq),
                         body=copy.deepcopy(node.body), orelse=copy.deepcopy(node.orelse))
        choose = ast.If(test=xops_call("is_traced", name_node(seq)), body=[traced],
                        orelse=[python])
        setattr(choose, RAW, True)
        return locate_tree([first, choose], node)

    def is_sum(self, e: ast.AST) -> bool:
        if not (isinstance(e, ast.Call) and isinstance(e.func, ast.Name)
                and 1 <= len(e.args) <= 2 and not e.keywords
                and isinstance(e.args[0], ast.GeneratorExp)):
            return False
        found = self.resolve(e.func)
        return found is builtins.sum or found is self.unresolved

    def sums(self, part: ast.AST, s: ast.stmt) -> list[ast.stmt]:
        """Hoist each ``sum(genexp)`` of ``part`` (of statement ``s``) into a nested
        function defined before ``s``."""
        defs: list[ast.stmt] = []
        iz = self

        class _Sums(ast.NodeTransformer):
            def visit_Lambda(self, n: ast.Lambda) -> ast.AST:
                return n  # evaluated later, in its own scope

            def visit_GeneratorExp(self, n: ast.GeneratorExp) -> ast.AST:
                return n  # reads its own loop variables: converted with its sum

            visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp

            def visit_Call(self, n: ast.Call) -> ast.AST:
                self.generic_visit(n)
                if not iz.is_sum(n):
                    return n
                name = iz.fresh("sum")
                defs.append(iz.accumulation(name, n, s))
                return ast.copy_location(ast.Call(name_node(name), [], []), n)

        new = _Sums().visit(part)
        if part is not s and new is not part:  # the test itself was the sum
            s.test = new  # type: ignore[attr-defined]
        return defs

    def accumulation(self, name: str, call: ast.Call, at: ast.stmt) -> ast.FunctionDef:
        gen = call.args[0]
        assert isinstance(gen, ast.GeneratorExp)
        acc = self.fresh("acc")
        start = call.args[1] if len(call.args) == 2 else ast.Constant(0)
        inner: list[ast.stmt] = [ast.Assign(
            targets=[name_node(acc, True)],
            value=ast.BinOp(name_node(acc), ast.Add(), gen.elt))]
        for comp in reversed(gen.generators):
            for cond in reversed(comp.ifs):
                inner = [ast.If(test=cond, body=inner, orelse=[])]
            inner = [ast.For(target=comp.target, iter=comp.iter, body=inner, orelse=[])]
        body = [ast.Assign(targets=[name_node(acc, True)], value=start), *inner,
                ast.Return(name_node(acc))]
        fn = ast.FunctionDef(name=name, args=ast.arguments(
            posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[],
            kwarg=None, defaults=[]), body=body, decorator_list=[], returns=None,
            type_comment=None)
        locate_tree([fn], at)
        return fn


def expand_iteration(stmts: list[ast.stmt], fresh: Callable[[str], str],
                     resolve: Callable[[ast.expr], object],
                     unresolved: object) -> list[ast.stmt]:
    """Rewrite the iteration of one function body (not of nested functions) as the
    module docstring says; ``fresh(kind)`` makes a new variable name, ``resolve`` finds
    what a global name is (``unresolved`` when unknown until the code runs)."""
    return _Iteration(fresh, resolve, unresolved).block(stmts)
