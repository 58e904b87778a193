"""AutoGraph-style AST conversion of Python functions for tracing.

Each function is parsed once (``inspect`` + ``ast``), rewritten, and compiled with its
original file name and line numbers, so tracebacks and isozyme's errors point at the
user's code.  The rewritten function runs in the function's real ``__globals__``; its
closure variables are passed in as the parameters of a small factory function.

Before the rewrite, two AST passes normalize each function body: :mod:`.iteration`
(``for`` over arrays and ``zip``/``enumerate``/``reversed`` of them becomes a run-time
choice between a traced loop over ``range(length)`` and the Python ``for``; ``sum`` of
a generator expression becomes an accumulating nested function) and
:mod:`.loop_exits` (``break``/``continue``/``return``/``else:`` of loops become flag
variables the loop carries), then :func:`.ast_analysis.normalize_returns`.

The rewrite (``_iz_`` below is :mod:`isozyme.frontends.python.ops`, ``_iz_x_``
:mod:`.converted_ops`):

* every call ``f(a, k=b)`` becomes ``_iz_.converted_call(f, a, k=b)``;
* ``a and b``, ``a or b``, ``not a``, ``x if c else y`` and chained comparisons become
  ``_iz_.and_/or_/not_/ifexp/compare_chain`` with lazily evaluated operands;
* ``if``/``elif``/``else`` becomes two branch functions taking and returning the names
  either branch assigns, and ``_iz_.if_stmt(...)``; an ``if`` whose branches all end in
  ``return`` becomes ``return _iz_.if_return(...)`` (``if c: return a`` followed by more
  statements is first rewritten so that the rest becomes the ``else`` branch);
* ``for i in range(...)`` (its exits removed by :mod:`.loop_exits`) becomes a body
  function and ``_iz_.for_range(...)``;
* ``for i in prange(...)`` (any name or ``module.attr`` that resolves, in the function's
  globals or closure, to :func:`isozyme.prange`) becomes a body function and
  ``_iz_.for_prange(...)``, with the reduction kind of each variable the body updates
  as ``s += e``/``s = max(s, e)``... and why a variable updated like one is not a
  reduction; with ``else``/``break``/``continue``/``return`` it becomes
  ``_iz_.prange_unsupported(...)``, which raises when run;
* ``x[k] += v`` and ``-=`` become ``_iz_.accumulate(x, k, "+", v)`` and ``y += v``
  becomes ``y = _iz_.augment(y, "+", v)`` everywhere: traced in a ``prange`` body (of
  this function or of a caller, through helper functions) they are accumulations, an
  atomic add where iterations may collide; anywhere else Python's in-place operator;
* ``while c:`` (its exits removed by :mod:`.loop_exits`) becomes a condition
  function, a body function and ``_iz_.while_(...)``; a loop whose exits sit in a
  ``try``/``with`` block stays Python and is refused on a traced condition;
* ``assert c, m`` becomes ``_iz_x_.assert_(c, lambda: m)``: a run-time check when
  ``c`` is traced;
* nested ``def`` and ``lambda`` are converted too and marked as such; one defined
  outside a converted loop or ``if`` that reads a variable the statement assigns, and
  may run inside it, is refused (:mod:`.closure_state`): it would see a stale value.

Constructs that cannot be converted stay plain Python; the reason is recorded by line
(:func:`.diagnostics.note_unconverted`) so that a traced value reaching them produces an
error that names the construct.
"""

from __future__ import annotations

import ast
import copy
import inspect
import linecache
import re
import textwrap
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .array_reads import wrap_array_reads
from .ast_analysis import (
    PREFIX,
    UNRESOLVED,
    assigned_names,
    callee_name,
    clean_tail,
    contains,
    has_loop_exit,
    normalize_returns,
    resolver,
)
from .ast_ops import (
    OPS,
    XOPS,
    arguments,
    fill_locations,
    function_def,
    located,
    names_tuple,
    ops_attr,
    ops_call,
    state_tuple,
    str_tuple,
    thunk,
    xops_call,
)
from .lambda_source import find_lambda
from .ast_exprs import ExprConverter
from .closure_state import ClosureScope
from .diagnostics import note_unconverted, trace_error
from .iteration import expand_iteration
from .late_values import Reads
from .loop_exits import RAW, canonicalize_loop_exits
from .prange_reductions import reductions_and_reasons

_PREFIX = PREFIX  # generated names (not carried: see ast_analysis.assigned_names)
_CONVERTED_ATTR = "__iz_converted__"
_INNER_NAME = "_iz_converted"


# --------------------------------------------------------------------------- public


def is_converted(f: object) -> bool:
    """Whether ``f`` is a function produced by this module's conversion."""
    return bool(getattr(f, _CONVERTED_ATTR, False))


def mark_converted(f: Any) -> Any:
    """Mark ``f`` as converted (used as a decorator on nested ``def``/``lambda``)."""
    try:
        setattr(f, _CONVERTED_ATTR, True)
    except (AttributeError, TypeError):
        pass
    return f


def _refuse_skipped_rules(fn: Callable[..., Any]) -> None:
    """Refuse running ``fn`` unconverted (its source was not found) when it names a
    function with rules: those rules would silently not apply."""
    from isozyme.rules.registry import ruled_callable_named_by  # noqa: PLC0415

    name = ruled_callable_named_by(fn)
    if name is not None:
        code = fn.__code__  # type: ignore[attr-defined]
        raise trace_error(
            f"function {code.co_name}()",
            f"isozyme cannot find its source to convert it, and it calls {name}(), "
            "which has rules that would not apply: define it with def on lines of "
            "its own", (code.co_filename, code.co_firstlineno))


@dataclass
class _Compiled:
    code: types.CodeType | None  # None: run the function unconverted
    factory_name: str = "_iz_factory"
    source_found: bool = True  # False: its AST was not found (not a generator)


_CACHE: dict[types.CodeType, _Compiled] = {}


def convert(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Return the converted version of Python function ``fn`` (cached per code object).

    Raises TraceError when ``fn``'s source is unavailable (built by ``exec``, in a REPL).
    """
    if is_converted(fn):
        return fn
    code = getattr(fn, "__code__", None)
    if code is None:
        raise trace_error(
            f"{fn!r}", "isozyme traces Python functions (def or lambda) only"
        )
    compiled = _CACHE.get(code)
    if compiled is None:
        compiled = _CACHE[code] = _compile(fn)
    if compiled.code is None:
        if not compiled.source_found:
            _refuse_skipped_rules(fn)
        return fn
    from . import converted_ops, ops  # the namespaces converted code calls into

    namespace: dict[str, Any] = {}
    exec(compiled.code, fn.__globals__, namespace)
    factory = namespace[compiled.factory_name]
    cells = []
    from .tracer import Undefined

    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            cells.append(cell.cell_contents)
        except ValueError:  # empty cell
            cells.append(Undefined(name, "free variable referenced before assignment"))
    new_fn = factory(ops, converted_ops, *cells)
    if new_fn.__code__.co_name == _INNER_NAME:
        new_fn.__code__ = new_fn.__code__.replace(co_name=code.co_name, co_qualname=code.co_qualname)
    new_fn.__name__, new_fn.__qualname__ = fn.__name__, fn.__qualname__
    new_fn.__defaults__ = fn.__defaults__
    new_fn.__kwdefaults__ = fn.__kwdefaults__
    return mark_converted(new_fn)


# --------------------------------------------------------------------------- parsing


#: inspect.findsource's pattern of the line a code object's source starts on.
_DEF_LINE = re.compile(r"^(\s*def\s)|(\s*async\s+def\s)|(.*(?<!\w)lambda(:|\s))|^(\s*@)")


def _source_lines(fn: Callable[..., Any]) -> tuple[list[str], int]:
    """``inspect.getsourcelines(fn.__code__)``, without its ``inspect.getmodule``,
    whose first call in a process scans every module of ``sys.modules`` (10-20 ms of
    a first call whose code comes from the disk cache): a function's globals are its
    module's namespace, all ``linecache`` needs for source a loader provides."""
    code: types.CodeType = fn.__code__  # type: ignore[attr-defined]
    filename = code.co_filename
    linecache.checkcache(filename)
    lines = linecache.getlines(filename, getattr(fn, "__globals__", None))
    if not lines:
        return inspect.getsourcelines(code)  # inspect's own errors and special cases
    lnum = code.co_firstlineno - 1
    while lnum > 0:
        if lnum >= len(lines):
            raise OSError("lineno is out of bounds")
        if _DEF_LINE.match(lines[lnum]):
            break
        lnum -= 1
    return inspect.getblock(lines[lnum:]), lnum + 1


def _compile(fn: Callable[..., Any]) -> _Compiled:
    code: types.CodeType = fn.__code__  # type: ignore[attr-defined]
    filename = code.co_filename
    try:
        lines, first_line = _source_lines(fn)
    except (OSError, TypeError) as exc:
        raise trace_error(
            f"function {code.co_name}()",
            "its source code is not available (it was created by exec/eval, in an "
            f"interactive session, or the file changed): {exc}",
            (filename, code.co_firstlineno),
        ) from None
    source = textwrap.dedent("".join(lines))
    if code.co_name == "<lambda>":
        node, line_offset = find_lambda(source, code, lines[0])
        if node is None:
            return _Compiled(None, source_found=False)
    else:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return _Compiled(None, source_found=False)
        node = tree.body[0] if tree.body else None
        line_offset = 0
        if isinstance(node, ast.AsyncFunctionDef):
            raise trace_error(f"async function {code.co_name}()", "not supported",
                              (filename, code.co_firstlineno))
        if not isinstance(node, ast.FunctionDef) or node.name != code.co_name:
            return _Compiled(None, source_found=False)
        if contains(node.body, (ast.Yield, ast.YieldFrom, ast.Await)):
            ast.increment_lineno(node, first_line - 1)
            _note_generator(filename, node)
            return _Compiled(None)  # generators run as plain Python
    ast.increment_lineno(node, first_line - 1 - line_offset)
    wrap_array_reads(node, resolver(fn))
    converter = _Converter(filename, resolver(fn))
    if isinstance(node, ast.FunctionDef):
        node.decorator_list = []
        # Renamed so that the function's own name inside its body still resolves to the
        # global (or closure) binding, not to the factory's local; convert() restores it.
        node.name = _INNER_NAME
        inner: ast.stmt = converter.function(node)
        result: ast.expr = ast.Name(node.name, ast.Load())
        body: list[ast.stmt] = [inner, ast.Return(result)]
    else:
        body = [ast.Return(converter.expr(node))]
    factory = ast.FunctionDef(
        name="_iz_factory",
        args=arguments([OPS, XOPS, *code.co_freevars]),
        body=body,
        decorator_list=[],
        returns=None,
        type_comment=None,
    )
    ast.copy_location(factory, node)
    module = ast.Module(body=[factory], type_ignores=[])
    fill_locations(module)
    return _Compiled(compile(module, filename, "exec", dont_inherit=True))


def _note_generator(filename: str, node: ast.FunctionDef) -> None:
    """Record the lines of a generator function (left plain Python) as unconverted, so
    that a traced value reaching one names the generator."""
    for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
        note_unconverted(filename, line, "a generator function (`yield`), which runs as "
                         "plain Python")


# --------------------------------------------------------------------------- converter


class _Converter:
    """Converts the statements of one function (see the module docstring)."""

    def __init__(self, filename: str,
                 resolve: Callable[[ast.expr], object] = lambda e: UNRESOLVED) -> None:
        self.filename = filename
        self.counter = 0
        self.resolve = resolve
        # The nested functions of each function being converted, innermost last.
        self.scopes: list[ClosureScope] = []
        # The reads of each function being converted (late_values.Reads), and the
        # variables its traced loops may leave unassigned (their reads are checked).
        self.reads: list[Reads] = []
        self.late_names: list[set[str]] = []

    def fresh(self, kind: str) -> str:
        self.counter += 1
        return f"{_PREFIX}{kind}_{self.counter}"

    def expr(self, node: ast.expr) -> ast.expr:
        late = frozenset().union(*self.late_names) if self.late_names else frozenset()
        return ExprConverter(late).visit(node)

    def leave(self, node: ast.stmt, why: str) -> None:
        note_unconverted(self.filename, node.lineno, why)

    # -- functions and blocks

    def function(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.args = self.expr(node.args)  # type: ignore[arg-type]
        node.decorator_list = [self.expr(d) for d in node.decorator_list]
        node.returns = None
        for arg in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                    node.args.vararg, node.args.kwarg):
            if arg is not None:
                arg.annotation = None
        fresh = lambda kind: "_" + self.fresh(kind)  # noqa: E731 (kept by assigned_names)
        body = expand_iteration(node.body, fresh, self.resolve, UNRESOLVED)
        body = canonicalize_loop_exits(body, fresh, self.is_prange)
        body = normalize_returns(body)
        self.scopes.append(ClosureScope.of(body))
        self.reads.append(Reads(body))
        self.late_names.append(set())
        try:
            node.body = self.block(body, tail=True, in_loop=False)
        finally:
            self.scopes.pop()
            self.reads.pop()
            self.late_names.pop()
        return node

    def check_state(self, node: ast.stmt, names: Iterable[str], what: str,
                    runs_with_state: Iterable[ast.AST], *, in_loop: bool) -> None:
        """Refuse a nested function defined outside ``node`` (a loop or ``if`` being
        converted into functions of the ``names`` it assigns) that reads one of them and
        may run in ``runs_with_state`` (the parts of ``node`` converted into those
        functions): it would see the value from before ``node``.  ``in_loop``: ``node``
        is inside a loop, which may run it again after a later definition."""
        if not self.scopes:
            return
        found = self.scopes[-1].stale_reader(node, names, runs_with_state, in_loop)
        if found is None:
            return
        closure, var, line = found
        raise trace_error(
            f"{closure} (line {line}) reading '{var}'",
            f"the {what} at line {node.lineno} assigns '{var}' and {closure} is defined "
            f"outside it, so called inside it {closure} would see the value of '{var}' "
            f"from before the {what}; pass {var} as an argument, or define {closure} "
            f"inside the {what}",
            (self.filename, node.lineno))

    def block(self, stmts: list[ast.stmt], *, tail: bool, in_loop: bool) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for i, stmt in enumerate(stmts):
            out.extend(self.stmt(stmt, tail=tail and i == len(stmts) - 1, in_loop=in_loop))
        return out

    def stmt(self, node: ast.stmt, *, tail: bool, in_loop: bool) -> list[ast.stmt]:
        if isinstance(node, ast.If):
            return self.if_(node, tail=tail, in_loop=in_loop)
        if isinstance(node, ast.For):
            return self.for_(node, in_loop=in_loop)
        if isinstance(node, ast.While):
            return self.while_(node, in_loop=in_loop)
        if isinstance(node, ast.FunctionDef):
            if contains(node.body, (ast.Yield, ast.YieldFrom, ast.Await)):
                _note_generator(self.filename, node)
                return [node]
            new = self.function(node)
            new.decorator_list.append(ops_attr("converted_fn"))
            return [new]
        if isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Add, ast.Sub)) \
                and isinstance(node.target, (ast.Subscript, ast.Name)):
            # x[k] += v, y += v: an accumulation when traced in a parallel loop, this
            # function's or a caller's (atomic where needed); Python's in-place
            # operator anywhere else (decided when traced: a helper may be called
            # from a prange body)
            op = ast.Constant("+" if isinstance(node.op, ast.Add) else "-")
            if isinstance(node.target, ast.Name):
                call = ops_call("augment", ast.Name(node.target.id, ast.Load()), op,
                             self.expr(node.value))
                assign = ast.Assign(targets=[ast.Name(node.target.id, ast.Store())],
                                    value=call)
                return located([assign], node)
            call = ops_call("accumulate", self.expr(node.target.value),
                         self.expr(node.target.slice), op, self.expr(node.value))
            return located([ast.Expr(call)], node)
        if isinstance(node, ast.Assert):
            # a run-time check when the condition is traced (runtime_checks.assert_)
            message = thunk(self.expr(node.msg)) if node.msg is not None else ast.Constant(None)
            call = xops_call("assert_", self.expr(node.test), message)
            return located([ast.Expr(call)], node)
        if isinstance(node, ast.Return) and node.value is not None:
            # _iz_.ret checks for undefined variables at the `return` line.
            node.value = ast.copy_location(ops_call("ret", self.expr(node.value)), node.value)
            return [node]
        if isinstance(node, (ast.AsyncFunctionDef, ast.ClassDef, ast.AsyncFor, ast.AsyncWith)):
            return [node]
        if isinstance(node, ast.With):
            node.items = [self.expr(i) for i in node.items]  # type: ignore[misc]
            node.body = self.block(node.body, tail=False, in_loop=in_loop)
            return [node]
        if isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            node.body = self.block(node.body, tail=False, in_loop=in_loop)
            for h in node.handlers:
                h.body = self.block(h.body, tail=False, in_loop=in_loop)
            node.orelse = self.block(node.orelse, tail=False, in_loop=in_loop)
            node.finalbody = self.block(node.finalbody, tail=False, in_loop=in_loop)
            return [node]
        return [self.expr(node)]  # type: ignore[arg-type]

    # -- if

    def if_(self, node: ast.If, *, tail: bool, in_loop: bool) -> list[ast.stmt]:
        if getattr(node, RAW, False):  # generated plain Python (loop_exits, iteration)
            node.body = self.block(node.body, tail=tail, in_loop=in_loop)
            node.orelse = self.block(node.orelse, tail=tail, in_loop=in_loop)
            return [node]
        test = self.expr(node.test)
        has_return = contains(node, (ast.Return,))
        why = None
        if has_loop_exit(node.body) or has_loop_exit(node.orelse):
            why = "an `if` containing `break` or `continue`"
        elif contains(node, (ast.Yield, ast.YieldFrom, ast.Await)):
            why = "an `if` containing `yield` or `await`"
        elif has_return and (
            in_loop or not tail or not (clean_tail(node.body) and clean_tail(node.orelse))
        ):
            why = "an `if` with a `return` inside a loop, `with` or `try` block"
        if why is not None:
            self.leave(node, why)
            node.test = test
            node.body = self.block(node.body, tail=False, in_loop=in_loop)
            node.orelse = self.block(node.orelse, tail=False, in_loop=in_loop)
            return [node]

        names = assigned_names([*node.body, *node.orelse])
        self.check_state(node, names, "`if` statement", [*node.body, *node.orelse],
                         in_loop=in_loop)
        then_name, else_name = self.fresh("then"), self.fresh("else")
        if has_return:
            then_body = self.block(node.body, tail=True, in_loop=False)
            else_body = self.block(node.orelse, tail=True, in_loop=False)
        else:
            result = ast.Return(names_tuple(names, ast.Load()))
            then_body = [*self.block(node.body, tail=False, in_loop=in_loop), result]
            else_body = [*self.block(node.orelse, tail=False, in_loop=in_loop),
                         copy.deepcopy(result)]
        defs: list[ast.stmt] = [function_def(then_name, names, then_body), function_def(else_name, names, else_body)]
        args = (test, ast.Name(then_name, ast.Load()), ast.Name(else_name, ast.Load()),
                state_tuple(names), str_tuple(names))
        out: ast.stmt
        if has_return:
            out = ast.Return(ops_call("if_return", *args))
        elif names:
            out = ast.Assign(targets=[names_tuple(names, ast.Store())], value=ops_call("if_stmt", *args))
        else:
            out = ast.Expr(ops_call("if_stmt", *args))
        return located([*defs, out], node)

    # -- for

    def is_prange(self, it: ast.expr) -> bool:
        """Whether ``it`` is a call of :func:`isozyme.prange` (resolved through the
        function's scope; an unresolvable callee named ``prange`` counts too, and
        ``_iz_.for_prange`` checks the object when the loop runs)."""
        if not (isinstance(it, ast.Call) and 1 <= len(it.args) <= 3 and not it.keywords
                and not any(isinstance(a, ast.Starred) for a in it.args)):
            return False
        from .parallel import prange  # noqa: PLC0415 (parallel imports this package)

        found = self.resolve(it.func)
        if found is UNRESOLVED:
            return callee_name(it.func) == "prange"
        return found is prange

    def prange(self, node: ast.For, *, in_loop: bool) -> list[ast.stmt]:
        """``for i in prange(...)``: ``_iz_.for_prange``, or ``_iz_.prange_unsupported``
        before the loop left as Python when it has an early exit or ``else:``."""
        it = node.iter
        assert isinstance(it, ast.Call)
        why = None
        if node.orelse:
            why = "an `else:` clause"
        elif has_loop_exit(node.body):
            why = "`break`" if has_loop_exit(node.body, kinds=(ast.Break,)) else "`continue`"
        elif contains(node.body, (ast.Return,)):
            why = "`return`"
        elif contains(node.body, (ast.Yield, ast.YieldFrom, ast.Await)):
            why = "`yield` or `await`"
        elif not isinstance(node.target, ast.Name):
            why = "a loop target that is not a single name"
        if why is not None:
            check = ast.If(
                test=ops_call("prange_unsupported", copy.deepcopy(it.func), ast.Constant(why)),
                body=self.plain_for(node, in_loop=in_loop), orelse=[])
            return located([check], node)
        assert isinstance(node.target, ast.Name)
        target = node.target.id
        names = [n for n in assigned_names(node.body) if n != target]
        all_names = [target, *names]
        self.check_state(node, all_names, "`prange` loop", node.body, in_loop=in_loop)
        reductions, reasons = reductions_and_reasons(node.body, names)
        body_name = self.fresh("prange_body")
        converted = self.block(node.body, tail=False, in_loop=True)
        body = [*converted, ast.Return(names_tuple(all_names, ast.Load()))]
        args = ast.Tuple([self.expr(a) for a in it.args], ast.Load())
        kinds = ast.Tuple([ast.Constant(reductions.get(n)) for n in names], ast.Load())
        whys = ast.Tuple([ast.Constant(reasons.get(n)) for n in names], ast.Load())
        call = ops_call("for_prange", it.func, args, ast.Name(body_name, ast.Load()),
                     state_tuple(all_names), str_tuple(all_names), kinds, whys)
        assign = ast.Assign(targets=[names_tuple(all_names, ast.Store())], value=call)
        return located([function_def(body_name, all_names, body), assign], node)

    def plain_for(self, node: ast.For, *, in_loop: bool) -> list[ast.stmt]:
        """``node`` left a Python ``for`` loop, its parts converted."""
        node.iter = self.expr(node.iter)
        node.body = self.block(node.body, tail=False, in_loop=True)
        node.orelse = self.block(node.orelse, tail=False, in_loop=in_loop)
        return [node]

    def for_(self, node: ast.For, *, in_loop: bool) -> list[ast.stmt]:
        if self.is_prange(node.iter):
            return self.prange(node, in_loop=in_loop)
        it = node.iter
        is_range = (
            isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
            and 1 <= len(it.args) <= 3 and not it.keywords
            and not any(isinstance(a, ast.Starred) for a in it.args)
        )
        why = None
        if not is_range or not isinstance(node.target, ast.Name):
            why = ""  # not a range loop: iterate in Python, silently
        elif node.orelse:
            why = "a `for` loop with an `else:` clause"
        elif has_loop_exit(node.body):
            why = "a `for` loop with `break` or `continue`"
        elif contains(node.body, (ast.Return,)):
            why = "a `for` loop with a `return` inside"
        elif contains(node.body, (ast.Yield, ast.YieldFrom, ast.Await)):
            why = "a `for` loop with `yield` or `await`"
        if why is not None:
            if why:
                self.leave(node, why)
            node.iter = self.expr(node.iter)
            node.body = self.block(node.body, tail=False, in_loop=True)
            node.orelse = self.block(node.orelse, tail=False, in_loop=in_loop)
            return [node]

        assert isinstance(it, ast.Call) and isinstance(node.target, ast.Name)
        target = node.target.id
        names = [n for n in assigned_names(node.body) if n != target]
        all_names = [target, *names]
        self.check_state(node, all_names, "`for` loop", node.body, in_loop=in_loop)
        live = self.reads[-1].after(node, names) if self.reads else []
        if self.late_names:
            self.late_names[-1].update(live)
        body_name = self.fresh("for_body")
        body = [*self.block(node.body, tail=False, in_loop=True),
                ast.Return(names_tuple(all_names, ast.Load()))]
        range_args = ast.Tuple([self.expr(a) for a in it.args], ast.Load())
        call = ops_call("for_range", ast.Name("range", ast.Load()), range_args,
                     ast.Name(body_name, ast.Load()), state_tuple(all_names), str_tuple(all_names),
                     str_tuple(live))
        assign = ast.Assign(targets=[names_tuple(all_names, ast.Store())], value=call)
        return located([function_def(body_name, all_names, body), assign], node)

    # -- while

    def while_(self, node: ast.While, *, in_loop: bool) -> list[ast.stmt]:
        why = None
        if node.orelse:
            why = "a `while` loop with an `else:` clause"
        elif has_loop_exit(node.body):
            why = "a `while` loop with `break` or `continue`"
        elif contains(node.body, (ast.Return,)):
            why = "a `while` loop with a `return` inside"
        elif contains(node, (ast.Yield, ast.YieldFrom, ast.Await, ast.NamedExpr)):
            why = "a `while` loop with `yield`, `await` or `:=`"
        if why is not None:
            self.leave(node, why)
            node.test = self.expr(node.test)
            node.body = self.block(node.body, tail=False, in_loop=True)
            node.orelse = self.block(node.orelse, tail=False, in_loop=in_loop)
            return [node]
        names = assigned_names(node.body)
        self.check_state(node, names, "`while` loop", [node], in_loop=in_loop)
        live = self.reads[-1].after(node, names) if self.reads else []
        if self.late_names:
            self.late_names[-1].update(live)
        cond_name, body_name = self.fresh("while_cond"), self.fresh("while_body")
        cond_def = function_def(cond_name, names, [ast.Return(self.expr(node.test))])
        body_def = function_def(body_name, names, [*self.block(node.body, tail=False, in_loop=True),
                                           ast.Return(names_tuple(names, ast.Load()))])
        call = ops_call("while_", ast.Name(cond_name, ast.Load()), ast.Name(body_name, ast.Load()),
                     state_tuple(names), str_tuple(names), str_tuple(live))
        out: ast.stmt
        if names:
            out = ast.Assign(targets=[names_tuple(names, ast.Store())], value=call)
        else:
            out = ast.Expr(call)
        return located([cond_def, body_def, out], node)
