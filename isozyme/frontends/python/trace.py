"""The frontend's entry point: trace a Python function of scalars and numpy arrays into
``traced`` IR."""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects import builtin
from xdsl.dialects.builtin import Float32Type, Float64Type, IntegerType, i64
from xdsl.ir import Attribute
from xdsl.utils.exceptions import VerifyException

from isozyme.errors import TraceError

from .arrays import is_array_type
from .buffer_ownership import returned_array
from .context import COMPILE_LOCK, TraceSession, sanitize_name
from .diagnostics import trace_error
from .functions import flatten, trace_function, unflatten
from .ruled_calls import ruled_entry
from .static_shapes import StaticShapeNeeded, static_type
from .tracer import Tracer, Undefined, as_tracer, is_array_value, is_number, scalar_type_of


@dataclass
class TracedFunction:
    """The result of :func:`trace`.

    ``module`` holds the public ``func.func @func_name`` (one argument per traced
    argument, in order) and a private ``func.func`` per traced helper.  ``returns_tuple``
    says whether the Python function returned a tuple (its results map back into a
    tuple); otherwise there is one result, or none when it returned ``None``.

    A returned array is a ``memref`` result owned by the caller: an array the function
    allocated (``np.zeros``, a whole-array expression...) is returned as it is
    (``memref<?xf64>``, identity layout); an argument, or a view of an argument or of a
    local array (``x``, ``x[1:]``), is first copied into a new array, so the result never
    aliases an argument.
    """

    module: builtin.ModuleOp
    func_name: str
    arg_types: list[Attribute] = field(default_factory=list)
    result_types: list[Attribute] = field(default_factory=list)
    returns_tuple: bool = False
    # sizes the trace assumed: (argument, dimension, argument, dimension) for two equal
    # sizes, (argument, dimension, None, n) for a size n; argument indices count traced
    # arguments; checked before every call (shape_checks.py)
    shape_constraints: list[tuple[int, int, int | None, int]] = field(default_factory=list)
    # the Python functions the converted code called (their globals and closures are
    # part of the cache key, see isozyme/reads.py), the traced function first
    functions: list[Callable[..., Any]] = field(default_factory=list)
    # large numpy arrays passed as hidden arguments, appended after the traced arguments
    # (``arg_types`` includes their types), in order
    hidden: list[Any] = field(default_factory=list)
    # the traced arguments traced with static sizes (their shapes from ``shapes``,
    # because Python code needed one of their sizes as an int: static_shapes.py)
    static_arguments: frozenset[int] = frozenset()


def _is_traced_type(a: object) -> bool:
    return isinstance(a, (Float64Type, Float32Type)) or (
        isinstance(a, IntegerType) and a.width.data in (1, 64)
    ) or is_array_type(a)


def trace(
    fn: Callable[..., Any],
    args: Sequence[object],
    *,
    name: str | None = None,
    hidden_type: Callable[[Any], Attribute | None] | None = None,
    layouts: Sequence[str | None] = (),
    shapes: Sequence[tuple[int, ...] | None] | None = None,
) -> TracedFunction:
    """Trace ``fn`` once on abstract arguments into a verified xDSL module.

    Each entry of ``args`` describes one positional argument of ``fn``: an IR type
    (``f64``, ``f32``, ``i64``, ``i1``, or a ``memref`` type for a numpy array, see
    :func:`array_memref_type`) makes it a traced argument of the function; any
    other object is passed as a constant baked in at trace time.  ``name`` (default
    ``fn.__name__``) names the public function.  Raises
    :class:`isozyme.errors.TraceError` for code that cannot be traced.

    ``hidden_type`` (used by the compile cache) maps a numpy array that reaches
    whole-array code to a memref type, making it a hidden argument appended to the
    function's arguments (listed in ``hidden``) instead of constants baked into the IR;
    returning None (or no ``hidden_type``) bakes it.

    ``layouts`` gives, per traced argument, the memory layout of an array argument
    (``"C"``, ``"flat"``, ``"none"``, see :class:`.context.TraceSession`), which decides
    whether numpy's ``reshape``/``ravel`` of it is a view or a copy; None: unknown
    (checked when the code runs).

    ``shapes`` gives, per traced argument, the shape of the array it will be called
    with (None for a scalar): when Python code needs a size of an array argument as an
    int (``tuple(range(A.shape[0]))``), ``fn`` is traced again with that argument's
    sizes static (listed in ``static_arguments``), and the caller must compile per
    shape; without ``shapes`` that code is a TraceError (see :mod:`.static_shapes`).
    """
    static: set[int] = set()
    static_hidden: dict[int, Any] = {}  # id -> array (held: its id stays unique)
    while True:
        with COMPILE_LOCK:
            try:
                traced = _trace(fn, _static_args(args, static, shapes), name,
                                _static_hidden(hidden_type, static_hidden), layouts)
            except StaticShapeNeeded as need:
                if not _specialise(need, static, static_hidden, args, shapes):
                    raise need.error from None
                continue
        traced.static_arguments = frozenset(static)
        return traced


def _array_leaves(args: Sequence[object]) -> list[bool]:
    """Per traced argument (IR type among the leaves of ``args``): whether it is an
    array."""
    leaves, _ = flatten((list(args), {}))
    return [is_array_type(a) for a in leaves if isinstance(a, Attribute)]


def _specialise(need: StaticShapeNeeded, static: set[int], static_hidden: dict[int, Any],
                args: Sequence[object], shapes: Sequence[object] | None) -> bool:
    """Add the arguments ``need`` names to ``static`` (and its hidden arrays to
    ``static_hidden``); False when that adds nothing (the size stays dynamic)."""
    arrays = _array_leaves(args)
    wanted = range(len(arrays)) if need.arguments is None else need.arguments
    new = {i for i in wanted if i < len(arrays) and arrays[i] and i not in static
           and shapes is not None and i < len(shapes) and shapes[i] is not None}
    new_hidden = {id(a): a for a in need.hidden if id(a) not in static_hidden}
    if shapes is None:
        new_hidden = {}  # tracing outside the compile cache: nothing is specialised
    static |= new
    static_hidden.update(new_hidden)
    return bool(new or new_hidden)


def _static_args(args: Sequence[object], static: set[int],
                 shapes: Sequence[tuple[int, ...] | None] | None) -> Sequence[object]:
    """``args`` with the memref types of the traced arguments in ``static`` given the
    static sizes of ``shapes``."""
    if not static or shapes is None:
        return args
    leaves, treedef = flatten((list(args), {}))
    k = 0
    out = []
    for a in leaves:
        if isinstance(a, Attribute):
            if k in static:
                a = static_type(a, shapes[k])  # type: ignore[arg-type]
            k += 1
        out.append(a)
    return unflatten(treedef, out)[0]


def _static_hidden(
    hidden_type: Callable[[Any], Attribute | None] | None, arrays: dict[int, Any]
) -> Callable[[Any], Attribute | None] | None:
    """``hidden_type`` giving the hidden arrays in ``arrays`` their static shapes (the
    compile cache's guard re-checks a hidden array's exact shape, isozyme/reads.py)."""
    if hidden_type is None or not arrays:
        return hidden_type

    def typed(a: Any) -> Attribute | None:
        t = hidden_type(a)
        if t is not None and id(a) in arrays:
            return static_type(t, tuple(a.shape))  # type: ignore[arg-type]
        return t

    return typed


def _trace(
    fn: Callable[..., Any],
    args: Sequence[object],
    name: str | None,
    hidden_type: Callable[[Any], Attribute | None] | None,
    layouts: Sequence[str | None],
) -> TracedFunction:
    fn = ruled_entry(fn)  # a function with a rule: a ruled call of it (ruled_calls.py)
    if isinstance(fn, types.MethodType):
        bound_self, fn = fn.__self__, fn.__func__
        args = [bound_self, *args]
    if not isinstance(fn, types.FunctionType):
        raise trace_error(f"{fn!r}", "isozyme traces Python functions (def or lambda)")
    for a in args:
        if isinstance(a, Attribute) and not _is_traced_type(a):
            raise trace_error(f"an argument of type {a}", "traced arguments are f64, f32, i64 "
                              "or i1, or arrays: memref types of f64, f32 or i64 elements "
                              "(see array_memref_type)",
                              (fn.__code__.co_filename, fn.__code__.co_firstlineno))
    session = TraceSession(hidden_type=hidden_type, arg_layouts=list(layouts))
    session.note_function(fn)
    func_name = session.unique_name(sanitize_name(name or fn.__name__))
    leaves, treedef = flatten((list(args), {}))
    arg_types = [a for a in leaves if isinstance(a, Attribute)]
    shape: dict[str, bool] = {}

    def collect(result: object) -> list[Tracer]:
        shape["tuple"] = type(result) is tuple
        if result is None:
            return []
        values = list(result) if type(result) is tuple else [result]
        return [_result(v) for v in values]

    func_op, _ = trace_function(
        session, fn, leaves, treedef, func_name, arg_types, collect, private=False
    )
    session.add_function(func_op)
    module = session.module
    try:
        module.verify()
    except VerifyException as exc:
        raise TraceError(
            f"{fn.__code__.co_filename}:{fn.__code__.co_firstlineno}: cannot trace "
            f"function {fn.__name__}(): the traced IR does not verify, most likely because "
            "a traced value escaped the traced loop or branch that computed it through a "
            f"Python object (a list, a dict, an attribute): {exc}"
        ) from exc
    return TracedFunction(
        module=module,
        func_name=func_name,
        arg_types=arg_types,
        result_types=list(func_op.function_type.outputs.data),
        returns_tuple=shape["tuple"],
        shape_constraints=list(dict.fromkeys(session.shape_constraints)),
        functions=list(session.functions.values()),
        hidden=[a for a, _ in session.hidden.values()],
    )


def _result(value: object) -> Tracer:
    if isinstance(value, Undefined):
        raise value.error()
    if is_array_value(value):
        # A memref result: an array the function allocated is returned as it is (the
        # caller owns it); an argument, or a view of one or of a local array, is copied
        # into a new array first, so that every returned array is owned by the caller.
        return returned_array(value, public=True)  # type: ignore[arg-type]
    if isinstance(value, Tracer):
        return value
    if is_number(value):
        return as_tracer(value, i64 if scalar_type_of(value) == i64 else None)
    raise trace_error(
        f"returning a value of type {type(value).__name__}",
        "a traced function returns numbers, traced values, arrays, None, or a flat tuple "
        "of them",
    )
