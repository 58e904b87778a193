"""The AST pass that removes ``break``, ``continue``, ``return`` and ``else:`` from loops
(AutoGraph's canonicalization), so that a loop on a traced condition or range stays one
``scf.while``/``scf.for`` whose exits are flag variables the loop carries.

For a ``while`` loop or a ``for`` loop over ``range(...)`` (its ``Name`` target):

* ``break`` sets ``__iz_break_N = True``; the loop's condition becomes
  ``cond and not __iz_break_N``; a ``for`` over a range with a ``break`` becomes a
  ``while`` loop on a counter (``__iz_k_N``), the loop variable assigned from it first
  thing in the body;
* ``continue`` sets ``__iz_continue_N = True`` (reset at the top of each iteration);
* the statements after one that may exit run under ``if not <flags>:``;
* ``return v`` sets ``__iz_returned_N = True``, the carried return value
  ``__iz_retval_N = v`` (one per element of a returned tuple display) and the break
  flag; after the loop, ``if __iz_returned_N: return __iz_retval_N`` (which, inside an
  outer loop, is in turn a return of that loop).  The return value starts as ``False``,
  the narrowest number, so the loop's carried type widens to the returned values';
* ``else:`` runs after the loop under ``if not __iz_break_N:``.

When the condition or bounds are Python values the builders run the rewritten loop as
Python (the flags are Python bools).  A ``for`` over anything else (a list, ``zip`` of
lists...) stays a Python ``for``: its exits set the same flags, and a raw
``if _iz_x_.python_break(__iz_break_N, iterable): break`` at the end of its body ends
it early when the flag is a Python ``True`` (an infinite generator still stops); a
traced flag over an iterable without a length (which would unroll without end) raises
a TraceError.

Loops whose exits sit inside ``with``, ``try`` or ``match`` are left as they are (the
converter then refuses them when the condition is traced), and so are ``prange`` loops
(:mod:`.parallel` refuses their exits).
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable

from .ast_ops import locate_tree, name_node, xops_call

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
#: Attribute marking generated statements the converter must leave as plain Python.
RAW = "_iz_raw"


def _own(stmts: list[ast.stmt], kinds: tuple[type, ...]) -> list[ast.AST]:
    """The ``kinds`` nodes in ``stmts`` that belong to their loop (not to an inner loop
    for ``break``/``continue``, not to a nested scope)."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = list(stmts)
    loop_bound = any(k in (ast.Break, ast.Continue) for k in kinds)
    while stack:
        node = stack.pop()
        if isinstance(node, kinds):
            found.append(node)
        if isinstance(node, _SCOPES):
            continue
        if loop_bound and isinstance(node, _LOOPS):
            stack.extend(node.orelse)  # an inner loop's `else:` is ours
            if isinstance(node, ast.While):
                stack.append(node.test)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def _exits_in_blocks(stmts: list[ast.stmt], kinds: tuple[type, ...]) -> bool:
    """Whether an exit of the loop sits inside a ``with``/``try``/``match`` (or an inner
    loop left as it is, for ``return``)."""
    for node in stmts:
        if isinstance(node, ast.If):
            if _exits_in_blocks(node.body, kinds) or _exits_in_blocks(node.orelse, kinds):
                return True
        elif isinstance(node, (ast.With, ast.AsyncWith, ast.Try, ast.Match,
                               getattr(ast, "TryStar", ast.Try))):
            if _own([node], kinds):
                return True
        elif isinstance(node, _LOOPS):
            if ast.Return in kinds and _own([node], (ast.Return,)):
                return True  # a return left in an inner loop (prange, async for)
    return False


def _assign(n: str, value: ast.expr) -> ast.Assign:
    return ast.Assign(targets=[name_node(n, True)], value=value)


def _not_any(flags: list[str]) -> ast.expr:
    """``not (f1 or f2 ...)``."""
    if len(flags) == 1:
        return ast.UnaryOp(ast.Not(), name_node(flags[0]))
    return ast.UnaryOp(ast.Not(), ast.BoolOp(ast.Or(), [name_node(f) for f in flags]))


def _int_literal(e: ast.expr) -> int | None:
    if isinstance(e, ast.Constant) and type(e.value) is int:
        return e.value
    if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub):
        v = _int_literal(e.operand)
        return None if v is None else -v
    return None


def _is_true(test: ast.expr) -> bool:
    """``True`` (or ``True and not flag``, once rewritten) as the loop's condition."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        test = test.values[0]
    return isinstance(test, ast.Constant) and test.value is True or \
        isinstance(test, ast.Constant) and isinstance(test.value, int) and test.value == 1


def _is_range_loop(node: ast.stmt) -> bool:
    it = getattr(node, "iter", None)
    return (
        isinstance(node, ast.For) and isinstance(node.target, ast.Name)
        and isinstance(it, ast.Call) and isinstance(it.func, ast.Name)
        and it.func.id == "range" and 1 <= len(it.args) <= 3 and not it.keywords
        and not any(isinstance(a, ast.Starred) for a in it.args)
    )


class _Return:
    """How the returns of one loop are carried out of it."""

    def __init__(self, returns: list[ast.Return], fresh: Callable[[str], str]) -> None:
        self.flag = fresh("returned")
        sizes = {len(r.value.elts) if isinstance(r.value, ast.Tuple) else None
                 for r in returns}
        self.bare = all(r.value is None for r in returns)
        size = sizes.pop() if len(sizes) == 1 else None
        count = size if size else 1
        self.values = [] if self.bare else [fresh("retval") for _ in range(count)]
        self.tuple = bool(size)

    def store(self, node: ast.Return, brk: str) -> list[ast.stmt]:
        out: list[ast.stmt] = [_assign(self.flag, ast.Constant(True))]
        if self.bare:
            return out
        value = node.value if node.value is not None else ast.Constant(None)
        # _iz_x_.loop_return refuses, naming the return, what a traced loop cannot carry
        if self.tuple:
            assert isinstance(value, ast.Tuple)
            out += [_assign(n, xops_call("loop_return", e, name_node(brk)))
                    for n, e in zip(self.values, value.elts)]
        else:
            out.append(_assign(self.values[0], xops_call("loop_return", value, name_node(brk))))
        return out

    def before(self) -> list[ast.stmt]:
        # False: the narrowest number, so a traced loop widens it to what is returned
        return [_assign(self.flag, ast.Constant(False)),
                *[_assign(n, ast.Constant(False)) for n in self.values]]

    def after(self) -> ast.If:
        if self.bare:
            value: ast.expr = ast.Constant(None)
        elif self.tuple:
            value = ast.Tuple([name_node(n) for n in self.values], ast.Load())
        else:
            value = name_node(self.values[0])
        return ast.If(test=name_node(self.flag), body=[ast.Return(value)], orelse=[])


class _Rewriter:
    def __init__(self, fresh: Callable[[str], str], is_prange: Callable[[ast.expr], bool]):
        self.fresh = fresh
        self.is_prange = is_prange

    def block(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for s in stmts:
            out.extend(self.stmt(s))
        return out

    def stmt(self, s: ast.stmt) -> list[ast.stmt]:
        if isinstance(s, _SCOPES):
            return [s]  # converted as functions of their own
        if isinstance(s, (ast.For, ast.While)):
            s.body = self.block(s.body)
            s.orelse = self.block(s.orelse)
            return self.loop(s)
        for field in ("body", "orelse", "finalbody"):
            block = getattr(s, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                setattr(s, field, self.block(block))
        for h in getattr(s, "handlers", []) or []:
            h.body = self.block(h.body)
        for c in getattr(s, "cases", []) or []:
            c.body = self.block(c.body)
        return [s]

    def loop(self, node: ast.For | ast.While) -> list[ast.stmt]:
        if isinstance(node, ast.For) and self.is_prange(node.iter):
            return [node]
        breaks = _own(node.body, (ast.Break,))
        continues = _own(node.body, (ast.Continue,))
        returns = [r for r in _own(node.body, (ast.Return,)) if isinstance(r, ast.Return)]
        if not (breaks or continues or returns or node.orelse):
            return [node]
        if _exits_in_blocks(node.body, (ast.Break, ast.Continue, ast.Return)):
            return [node]
        brk = self.fresh("break") if breaks or returns else None
        cont = self.fresh("continue") if continues else None
        ret = _Return(returns, self.fresh) if returns else None
        body = self.exits(node.body, brk, cont, ret)
        if cont is not None:
            body.insert(0, _assign(cont, ast.Constant(False)))
        before: list[ast.stmt] = []
        if brk is not None:
            before.append(_assign(brk, ast.Constant(False)))
        if ret is not None:
            before.extend(ret.before())
        orelse, node.orelse = node.orelse, []
        if brk is None:
            node.body = body
            loops: list[ast.stmt] = [node]
        elif isinstance(node, ast.While):
            node.test = ast.BoolOp(ast.And(), [node.test, _not_any([brk])])
            node.body = body
            loops = [node]
        elif _is_range_loop(node):
            loops = self.counted(node, body, brk, before)
        else:  # a Python `for`: really end it once the flag is a Python True
            it = self.fresh("iterable")
            before.append(_assign(it, node.iter))
            node.iter = name_node(it)
            test = xops_call("python_break", name_node(brk), name_node(it))
            stop = ast.If(test=test, body=[ast.Break()], orelse=[])
            setattr(stop, RAW, True)
            node.body = [*body, stop]
            loops = [node]
        after: list[ast.stmt] = []
        if orelse and brk is not None:
            after.append(ast.If(test=_not_any([brk]), body=orelse, orelse=[]))
        else:
            after.extend(orelse)
        if ret is not None:
            forever = isinstance(node, ast.While) and not breaks and _is_true(node.test)
            # `while True:` left only through `return`: return after it, unconditionally
            after.append(ret.after().body[0] if forever else ret.after())
        return locate_tree([*before, *loops, *after], node)

    def counted(self, node: ast.For, body: list[ast.stmt], brk: str,
                before: list[ast.stmt]) -> list[ast.stmt]:
        """``for i in range(...)`` with a break: a ``while`` on a counter."""
        assert isinstance(node.iter, ast.Call) and isinstance(node.target, ast.Name)
        args = node.iter.args
        start: ast.expr = ast.Constant(0) if len(args) == 1 else args[0]
        stop = args[0] if len(args) == 1 else args[1]
        step: ast.expr = args[2] if len(args) == 3 else ast.Constant(1)
        k = self.fresh("k")
        before.append(_assign(k, start))
        bounds: dict[str, ast.expr] = {}
        for what, e in (("stop", stop), ("step", step)):
            if _int_literal(e) is None:  # evaluated once, as range() does
                n = self.fresh(what)
                before.append(_assign(n, e))
                bounds[what] = name_node(n)
            else:
                bounds[what] = e
        lit = _int_literal(step)
        up = ast.Compare(name_node(k), [ast.Lt()], [copy.deepcopy(bounds["stop"])])
        down = ast.Compare(name_node(k), [ast.Gt()], [copy.deepcopy(bounds["stop"])])
        if lit is not None and lit > 0:
            in_range: ast.expr = up
        elif lit is not None and lit < 0:
            in_range = down
        else:
            in_range = ast.IfExp(ast.Compare(copy.deepcopy(bounds["step"]), [ast.Gt()],
                                             [ast.Constant(0)]), up, down)
        head: list[ast.stmt] = [
            _assign(node.target.id, name_node(k)),
            _assign(k, ast.BinOp(name_node(k), ast.Add(), copy.deepcopy(bounds["step"]))),
        ]
        loop = ast.While(test=ast.BoolOp(ast.And(), [in_range, _not_any([brk])]),
                         body=[*head, *body], orelse=[])
        ast.copy_location(loop, node)
        return [loop]

    def exits(self, stmts: list[ast.stmt], brk: str | None, cont: str | None,
              ret: _Return | None) -> list[ast.stmt]:
        out, _ = self._exits(stmts, brk, cont, ret)
        return out

    def _exits(self, stmts: list[ast.stmt], brk: str | None, cont: str | None,
               ret: _Return | None) -> tuple[list[ast.stmt], set[str]]:
        """``stmts`` with the loop's exits replaced by flag assignments, and the flags
        they may set."""
        out: list[ast.stmt] = []
        for i, s in enumerate(stmts):
            if isinstance(s, ast.Break):
                assert brk is not None
                return out + locate_tree([_assign(brk, ast.Constant(True))], s), {brk}
            if isinstance(s, ast.Continue):
                assert cont is not None
                return out + locate_tree([_assign(cont, ast.Constant(True))], s), {cont}
            if isinstance(s, ast.Return):
                assert ret is not None and brk is not None
                stores = [*ret.store(s, brk), _assign(brk, ast.Constant(True))]
                return out + locate_tree(stores, s), {brk}
            if isinstance(s, ast.If):
                s.body, set_body = self._exits(s.body, brk, cont, ret)
                s.orelse, set_else = self._exits(s.orelse, brk, cont, ret)
                if not s.body:
                    s.body = locate_tree([ast.Pass()], s)
                out.append(s)
                flags = set_body | set_else
                if flags:
                    rest, set_rest = self._exits(stmts[i + 1:], brk, cont, ret)
                    if rest:
                        order = [f for f in (brk, cont) if f in flags]
                        guard = ast.If(test=_not_any(order), body=rest, orelse=[])
                        out.extend(locate_tree([guard], rest[0]))
                    return out, flags | set_rest
                continue
            out.append(s)
        return out, set()


def canonicalize_loop_exits(stmts: list[ast.stmt], fresh: Callable[[str], str],
                            is_prange: Callable[[ast.expr], bool]) -> list[ast.stmt]:
    """Rewrite the loops of one function body (not of nested functions) as the module
    docstring says; ``fresh(kind)`` makes a new variable name, ``is_prange(iter)`` tells
    a ``prange`` loop (left as it is)."""
    return _Rewriter(fresh, is_prange).block(stmts)
