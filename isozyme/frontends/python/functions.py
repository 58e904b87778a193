"""Calls inside traced code: the function table, helper functions and plain Python.

Every call in a converted function goes through :func:`converted_call`:

-. ``print`` is done by the compiled code on every call (:mod:`.debug_print`); calls
   whose value would be fixed at trace time (``hash``/``id`` of a tracer, ``random``,
   ``np.random``, clocks, ``open``, ``input``) raise a TraceError, and ``isinstance``
   answers for the value a tracer stands for (:mod:`.side_effects`);
0. array constructors (``np.zeros``... :data:`.arrays.ARRAY_TABLE`) always build a
   traced buffer; with a traced array argument, ``len``/``np.shape``... and the array's
   own methods (``x.copy()``) run, ``np.vectorize(g)`` of a ``g`` in the table applies
   ``g`` elementwise, and other numpy or table functions raise a whole-array error;
1. a callable in :mod:`.builtins_table` with a traced argument emits its IR;
2. a function already converted (a nested ``def``/``lambda`` of converted code) runs
   inline;
3. a call with no traced argument anywhere runs as plain Python, at trace time;
4. a Python function with traced arguments is traced (AST-converted) into a private
   ``func.func`` called with ``func.call``; one function per (function, signature),
   where the signature is the traced arguments' types and the other arguments' values;
5. a built-in or C function with traced arguments raises a TraceError naming it.
"""

from __future__ import annotations

import builtins
import collections
import functools
import types
from collections.abc import Callable
from typing import Any

from xdsl.dialects import func
from xdsl.ir import Attribute, Block, Region

import numpy as np

from isozyme import pytree

from .arrays import ARRAY_AWARE, ARRAY_TABLE, wrap
from .ast_transform import convert, is_converted
from .buffer_ownership import adopt, free_allocs, helper_returns, owned_results
from .builtins_table import lookup, passes_through
from .carried_writes import check_writes
from .context import FunctionBuilder, HelperEntry, building, current_builder, tracing
from .debug_print import traced_print
from .diagnostics import trace_error
from .accumulation import in_parallel_body, note_atomic_call
from .parallel import prange
from .ruled_calls import NOT_RULED, route_ruled_callables, ruled_call
from .side_effects import intercept
from .whole_array.elementwise import elementwise
from .tracer import (
    EscapedValueError,
    Tracer,
    Undefined,
    check_defined,
    is_array_value,
    ssa,
    whole_array_error,
)

# --------------------------------------------------------------------------- pytrees

Leaf = Any
TreeDef = pytree.TreeDef


def flatten(obj: object) -> tuple[list[Leaf], TreeDef]:
    """Flatten pytrees (tuples, lists, dicts, NamedTuples, dataclasses) into leaves and
    a structure (see :mod:`isozyme.pytree`)."""
    return pytree.flatten(obj)


def unflatten(treedef: TreeDef, leaves: list[Leaf]) -> Any:
    """Inverse of :func:`flatten`."""
    return pytree.unflatten(treedef, leaves)


def contains_array(obj: object) -> bool:
    """Whether a traced array is in ``obj`` or in the tuples, lists and dicts it holds."""
    if is_array_value(obj):
        return True
    if isinstance(obj, (tuple, list)):
        return any(contains_array(x) for x in obj)
    if isinstance(obj, dict):
        return any(contains_array(x) for x in obj.values())
    return False


def _table_get(table: dict[Any, Any], f: object) -> Any:
    try:
        return table.get(f)
    except TypeError:  # unhashable callable
        return None


def _is_numpy_callable(f: object) -> bool:
    if isinstance(f, np.ufunc):
        return True
    module = getattr(f, "__module__", None) or ""
    return module.split(".")[0] == "numpy"


def _is_scalar_vectorize(f: object) -> bool:
    """Whether ``f`` is ``np.vectorize(g)`` (no ``signature``/``excluded``) of a ``g``
    with a scalar rule in :mod:`.builtins_table`."""
    return (isinstance(f, np.vectorize) and f.signature is None and not f.excluded
            and lookup(f) is not None)


def contains_tracer(obj: object) -> bool:
    """Whether a tracer is in ``obj`` or in the tuples, lists and dicts it holds."""
    if isinstance(obj, Tracer):
        return True
    if isinstance(obj, (tuple, list)):
        return any(contains_tracer(x) for x in obj)
    if isinstance(obj, dict):
        return any(contains_tracer(x) for x in obj.values())
    return False


def _key_of(value: object) -> object:
    """A cache key for a leaf argument: the type of a tracer, else the value itself."""
    if isinstance(value, Tracer):
        return ("traced", value.type)
    try:
        hash(value)
    except TypeError:
        return ("object", id(value))
    return ("const", type(value), value)


def _callable_name(f: object) -> str:
    name = getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f)
    module = getattr(f, "__module__", None)
    if module and module not in ("builtins", "__main__"):
        return f"{module}.{name}"
    return str(name)


# --------------------------------------------------------------------------- calls


_NOTED_TYPES = (types.FunctionType, types.MethodType, functools.partial)


def _global_arrays_only(args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """``args``/``kwargs`` with every traced value replaced by the global or closure
    array it reads (a hidden argument made by ``array_read``), or None when some traced
    value is not such a read."""
    if not tracing():
        return None
    sources = {id(t): x for x, t in current_builder().session.hidden.values()}

    def concrete(v: Any) -> Any:
        if isinstance(v, Tracer):
            if id(v) not in sources:
                raise LookupError
            return sources[id(v)]
        return v

    try:
        return (tuple(concrete(a) for a in args),
                {k: concrete(v) for k, v in kwargs.items()})
    except LookupError:
        return None


def converted_call(f: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call ``f(*args, **kwargs)`` from converted code (see the module docstring)."""
    check_defined(f, *args, *kwargs.values())
    if isinstance(f, _NOTED_TYPES) and not is_converted(f) and tracing():
        # Its globals and closure are part of the compiled code's cache key.
        current_builder().session.note_function(f)
    ruled = ruled_call(f, args, kwargs)  # a user rule wins over every other dispatch
    if ruled is not NOT_RULED:
        return ruled
    if f is builtins.print:  # printed by the compiled code on every call
        return traced_print(*args, **kwargs)
    if f is prange:  # a range, or an error naming `for i in prange(...)` for traced bounds
        return prange(*args, **kwargs)
    special = intercept(f)  # hash/id/open/random...: refused; isinstance: for tracers
    if special is not None:
        return special(*args, **kwargs)
    array_builder = _table_get(ARRAY_TABLE, f)
    if array_builder is not None:  # np.zeros(...) etc.: always a traced buffer
        return array_builder(*args, **kwargs)
    has_array = contains_array(args) or contains_array(kwargs)
    if has_array:
        aware = _table_get(ARRAY_AWARE, f)
        if aware is not None:
            return aware(*args, **kwargs)
        if isinstance(f, types.MethodType) and is_array_value(f.__self__):
            return f(*args, **kwargs)  # x.copy(), x.fill(v)
        if lookup(f) is not None or _is_numpy_callable(f):
            concrete = _global_arrays_only(args, kwargs)
            if concrete is not None:
                # numpy on global/closure arrays alone (np.linalg.norm(X)): computed at
                # trace time, as before such arrays were hidden arguments; the result is
                # a constant of the trace (docs/getting-started.md: what the cache does
                # not see)
                return f(*concrete[0], **concrete[1])
            if _is_scalar_vectorize(f) and not kwargs:
                # np.vectorize(math.lgamma) made outside traced code: elementwise
                return elementwise(lookup(f), *args)
            raise whole_array_error(f"a call to {_callable_name(f)} on an array")
    elif isinstance(f, types.MethodType) and is_array_value(f.__self__):
        return f(*args, **kwargs)  # x.copy(), x.fill(v)
    builder = lookup(f)
    if builder is not None:
        if contains_tracer(args) or contains_tracer(kwargs):
            return builder(*args, **kwargs)
        return f(*args, **kwargs)
    if is_converted(f):
        return _call_inline(f, args, kwargs)
    if isinstance(f, functools.partial):  # its bound arguments may be traced
        return converted_call(f.func, *f.args, *args, **{**f.keywords, **kwargs})
    if not (contains_tracer(args) or contains_tracer(kwargs)):
        reads = _reads_tracers(f)
        if reads is not None:  # a helper reading traced closures or attributes: inline
            return _call_inline(convert(reads[0]), (*reads[1], *args), kwargs)
        return f(*args, **kwargs)
    if isinstance(f, types.MethodType) and isinstance(f.__func__, types.FunctionType):
        return converted_call(f.__func__, f.__self__, *args, **kwargs)
    if isinstance(f, types.FunctionType):
        if getattr(f, "runs_on_traced_values", False):
            return f(*args, **kwargs)  # isozyme.autodiff/gradient: nested AD (nested.py)
        module = getattr(f, "__module__", "") or ""
        if module.split(".")[0] in ("numpy", "math", "isozyme"):
            raise trace_error(
                f"a call to {_callable_name(f)}",
                "isozyme has no rule for this library function on traced values",
            )
        return call_helper(f, args, kwargs)
    if isinstance(f, type) and f.__module__ != "builtins":
        return f(*args, **kwargs)  # a user class: build the object at trace time
    if passes_through(f) or _is_container_method(f):
        # map(sq, xs), sorted(xs, key=sq): a function with rules they call is called
        # through converted_call, as a call in converted code (its rules apply)
        return f(*route_ruled_callables(args), **dict(zip(
            kwargs, route_ruled_callables(tuple(kwargs.values())))))
    call = getattr(type(f), "__call__", None)
    if isinstance(call, types.FunctionType):  # a callable object defined in Python
        return converted_call(call, f, *args, **kwargs)
    raise trace_error(
        f"a call to {_callable_name(f)}",
        "it is a built-in or C function that isozyme has no rule for "
        "(register one in isozyme.rules, or compute it from supported operations)",
    )


def _reads_tracers(f: object) -> tuple[types.FunctionType, tuple[Any, ...]] | None:
    """``(function, leading arguments)`` to convert for a Python function, or a method
    of a Python object, that reads a traced value through its closure or its object's
    attributes; None for anything else (it runs as plain Python)."""
    self: tuple[Any, ...] = ()
    if isinstance(f, types.MethodType) and isinstance(f.__func__, types.FunctionType):
        attrs = getattr(f.__self__, "__dict__", None)
        if isinstance(attrs, dict) and contains_tracer(list(attrs.values())):
            return f.__func__, (f.__self__,)
        f, self = f.__func__, (f.__self__,)
    if not isinstance(f, types.FunctionType) or is_converted(f):
        return None
    module = getattr(f, "__module__", "") or ""
    if module.split(".")[0] in ("numpy", "math", "isozyme"):
        return None
    return (f, self) if _closure_has_tracer(f) else None


def _closure_has_tracer(f: types.FunctionType) -> bool:
    cells = []
    for cell in f.__closure__ or ():
        try:
            cells.append(cell.cell_contents)
        except ValueError:  # an empty cell
            pass
    return contains_tracer(cells)


_INLINE_DEPTH: dict[int, int] = {}
_MAX_INLINE_DEPTH = 64


def _call_inline(f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call a converted nested function in place, refusing unbounded recursion."""
    key = id(getattr(f, "__code__", f))
    depth = _INLINE_DEPTH.get(key, 0)
    if depth >= _MAX_INLINE_DEPTH and (contains_tracer(args) or contains_tracer(kwargs)):
        raise trace_error(
            f"a recursive call of {getattr(f, '__name__', f)}()",
            f"more than {_MAX_INLINE_DEPTH} nested calls with traced arguments; recursion "
            "on traced values has no bound known at trace time",
        )
    _INLINE_DEPTH[key] = depth + 1
    try:
        return f(*args, **kwargs)
    finally:
        _INLINE_DEPTH[key] = depth
        if depth == 0:
            del _INLINE_DEPTH[key]


def _is_container_method(f: object) -> bool:
    """``lst.append``, ``d.update``...: C methods of Python objects store traced values
    without looking at them.  (Module-level C functions are not included.)"""
    owner = getattr(f, "__self__", None)
    return (
        isinstance(f, types.BuiltinMethodType)
        and owner is not None
        and not isinstance(owner, types.ModuleType)
        and isinstance(owner, (list, dict, set, collections.deque))
    )


def call_helper(f: types.FunctionType, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Emit ``func.call`` of the private ``func.func`` traced from ``f`` for these
    arguments (tracing it on first use), and return its results as Python values."""
    fb = current_builder()
    session = fb.session
    leaves, treedef = flatten((args, kwargs))
    # Traced from a prange body, the helper's accumulations are atomic: not the same
    # function as one traced outside parallel loops.
    parallel = in_parallel_body()
    key = (f, tuple(_key_of(x) for x in leaves), treedef_key(treedef), parallel)
    entry = session.helpers.get(key)
    if entry is None:
        if key in session.in_progress:
            raise trace_error(
                f"a recursive call of {f.__name__}()",
                "recursion with traced arguments has no bound known at trace time",
            )
        entry = _trace_helper(f, leaves, treedef, key)
    if entry.inline:
        return convert(f)(*args, **kwargs)
    if parallel and entry.atomic:
        note_atomic_call()  # the caller's nest keeps its accumulations atomic too
    traced = [x for x in leaves if isinstance(x, Tracer)]
    call = fb.insert(func.CallOp(entry.name, [ssa(t) for t in traced], entry.result_types))
    for r, owned in zip(call.results, entry.owned or []):
        if owned:
            adopt(r)  # an array the helper allocated: freed by the caller
    return entry.rebuild([wrap(r) for r in call.results], traced)


def treedef_key(treedef: TreeDef) -> object:
    """A hashable key for a structure (structures are hashable already)."""
    return treedef


def _trace_helper(
    f: types.FunctionType, leaves: list[Leaf], treedef: TreeDef, key: object
) -> HelperEntry:
    session = current_builder().session
    session.in_progress.add(key)
    name = session.unique_name(f.__name__)
    try:
        traced_types = [x.type for x in leaves if isinstance(x, Tracer)]
        out: dict[str, Any] = {}

        def collect(result: object) -> list[Tracer]:
            out_leaves, out_def = flatten(result)
            for leaf in out_leaves:
                if isinstance(leaf, Undefined):
                    raise leaf.error()
            if any(isinstance(x, types.FunctionType) and _closure_has_tracer(x)
                   for x in out_leaves):
                # a closure over the helper's values, called by the caller: inline
                raise EscapedValueError(f"{f.__name__}() returns a closure")
            if any(_annotation_of_tracers(x) for x in out_leaves):
                # Duplicated(y, dy) built by a helper of a rule body: inline
                raise EscapedValueError(f"{f.__name__}() returns an annotation")
            # each buffer returned once, arguments not at all (arrays.HelperReturns)
            returns = helper_returns([x for x in out_leaves if isinstance(x, Tracer)])
            out["leaves"], out["def"], out["returns"] = out_leaves, out_def, returns
            return returns.values

        owned: list[bool] = []
        try:
            func_op, _ = trace_function(
                session, f, leaves, treedef, name, traced_types, collect, private=True,
                owned=owned,
            )
        except EscapedValueError:
            # The helper uses a traced value of its caller (through a closure or an
            # object argument): it cannot be a separate function, so inline it.
            session.used_names.discard(name)
            entry = HelperEntry(name, [], None, inline=True)
            session.helpers[key] = entry
            return entry
        session.add_function(func_op)
        out_leaves, out_def = out["leaves"], out["def"]

        def rebuild(results: list[Any], args: list[Tracer]) -> Any:
            it = iter(out["returns"].resolve(results, args))
            rebuilt = [next(it) if isinstance(x, Tracer) else x for x in out_leaves]
            return unflatten(out_def, rebuilt)

        entry = HelperEntry(name, list(func_op.function_type.outputs.data), rebuild)
        entry.owned = owned
        entry.atomic = _has_atomic(func_op, session)
        session.helpers[key] = entry
        return entry
    finally:
        session.in_progress.discard(key)


def _annotation_of_tracers(x: object) -> bool:
    """Whether ``x`` is an activity annotation (``Duplicated(y, dy)``...) holding
    traced values, which a helper cannot return as results."""
    from isozyme.annotations import Annotation  # noqa: PLC0415

    if not isinstance(x, Annotation):
        return False
    parts = []
    for name in ("val", "dval", "dvals"):
        try:
            parts.append(getattr(x, name))
        except Exception:  # noqa: BLE001 (no such slot; augmented_primal's dval raises)
            pass
    return contains_tracer(parts)


def _has_atomic(func_op: func.FuncOp, session: Any) -> bool:
    """Whether ``func_op`` has a ``memref.atomic_rmw`` or calls a helper that has one."""
    atomic_helpers = {e.name for e in session.helpers.values() if e.atomic}
    for op in func_op.walk():
        if op.name == "memref.atomic_rmw":
            return True
        if isinstance(op, func.CallOp) and op.callee.string_value() in atomic_helpers:
            return True
    return False


def trace_function(
    session: Any,
    f: Callable[..., Any],
    leaves: list[Leaf],
    treedef: TreeDef,
    name: str,
    traced_types: list[Attribute],
    collect: Callable[[Any], list[Tracer]],
    *,
    private: bool,
    owned: list[bool] | None = None,
    on_entry: Callable[[Block, FunctionBuilder], None] | None = None,
) -> tuple[func.FuncOp, Any]:
    """Trace ``f`` into a new ``func.func @name`` (not yet added to the module).

    ``leaves``/``treedef`` describe the call's ``(args, kwargs)`` (see :func:`flatten`);
    each leaf that is a tracer or an IR type becomes the next block argument (of the
    matching type in ``traced_types``), the other leaves are passed as they are.
    ``collect`` maps the Python return value to the tracers to return.  Returns the op
    and the Python return value.  Arrays allocated in the function are freed before
    its ``func.return``, except returned ones; ``owned`` (if given) receives, per result,
    whether it is such an array (the caller then frees it).  ``on_entry`` (if given) is
    called with the entry block and its builder before ``f`` runs (a nested autodiff's
    target takes the hidden arrays it reads as arguments of its own, see nested.py).
    """
    converted = convert(f)
    block = Block(arg_types=traced_types)
    fb = FunctionBuilder(session, block)
    if not private:
        session.public_entry = block
        session.public_builder = fb  # hidden array arguments are added to it
        session.public_arg_types = traced_types
    if on_entry is not None:
        on_entry(block, fb)
    with building(fb):
        arg_iter = iter(block.args)
        new_leaves = [
            wrap(next(arg_iter), fb) if isinstance(x, (Tracer, Attribute)) else x
            for x in leaves
        ]
        args, kwargs = unflatten(treedef, new_leaves)
        try:
            result = converted(*args, **kwargs)
            result_values = collect(result)
            check_writes(block)  # writes into arrays carried by copy (carried_arrays.py)
            if owned is not None:
                owned[:] = owned_results(block, result_values)
            free_allocs(block, keep=result_values)
            fb.insert(func.ReturnOp(*[ssa(v) for v in result_values]))
        except BaseException:
            block.erase(safe_erase=False)
            raise
    func_op = func.FuncOp(
        name,
        (traced_types, [v.type for v in result_values]),
        Region(block),
        visibility="private" if private else None,
    )
    return func_op, result
