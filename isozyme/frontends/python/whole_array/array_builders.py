"""Arrays built element by element: ``np.array`` of (nested) lists, ``np.diag``,
``np.concatenate``/``np.stack`` of 1-D arrays and ``reshape`` between 1-D and 2-D.

These need index arithmetic on sizes, which a ``linalg.generic`` with dynamic sizes
cannot express, so they are ``scf.for`` loops of ``memref.load``/``store`` like the
other local-array builders of :mod:`..arrays`.  This module also turns numpy arrays and
lists passed to whole-array operations into traced constants (:func:`_as_array_operand`),
since that is ``np.array`` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import i64
from xdsl.ir import Attribute, SSAValue

from ..arrays import ArrayTracer, _for_each_index, to_index
from ..context import current_builder, tracing
from ..diagnostics import trace_error
from ..tracer import (
    Tracer,
    as_tracer,
    check_defined,
    emit,
    emit1,
    is_array_value,
    is_bool_type,
    is_number,
    join_types,
    ssa,
    whole_array_error,
)
from .linalg_builder import fill, new_buffer


def _check_array_operand(x: object, what: str) -> None:
    check_defined(x)
    if not (isinstance(x, Tracer) or is_number(x)):
        raise trace_error(f"{what} with a {type(x).__name__}",
                          "operands are traced arrays, traced scalars or numbers")


def _as_array_operand(x: object, what: str) -> object:
    """Numpy arrays and lists of numbers become traced constants (np.array)."""
    if isinstance(x, (list, tuple)) and x and not any(isinstance(v, str) for v in x):
        return np_array(x)
    if isinstance(x, np.ndarray):
        if x.ndim == 0:
            return x.item()
        hidden = _hidden_argument(x)
        if hidden is not None:
            return hidden
        return np_array(x.tolist(), dtype=x.dtype)
    _check_array_operand(x, what)
    return x


def array_read(value: Any) -> Any:
    """A global's or closure variable's value as converted code reads it (the AST
    rewrite wraps each read of a name that held a numpy array, see
    ``array_reads.wrap_array_reads``): a large numpy array becomes the public
    function's hidden argument, so ``x.shape[0]`` is a run-time size, ``range`` of it an
    ``scf.for`` and ``x[i]`` a bounds-checked load, as for an array argument (the IR
    does not grow with the array); anything else, or outside the compile cache, is
    returned as it is (small arrays are baked)."""
    if type(value) is np.ndarray and tracing():
        hidden = _hidden_argument(value)
        if hidden is not None:
            return hidden
    return value


def array_iter(value: Any) -> Any:
    """A global's or closure variable's value iterated by converted code (``for row in
    X``): for a large numpy array, its rows loaded from the hidden argument, so they are
    read on every call, not baked (Python iteration unrolls: the row count is the
    array's at trace time, which the cache guard compares); else ``value``."""
    if type(value) is np.ndarray and tracing():
        hidden = _hidden_argument(value)
        if hidden is not None:
            return [hidden[i] for i in range(value.shape[0])]
    return value


def _hidden_argument(x: np.ndarray) -> ArrayTracer | None:
    """A large numpy array (a global's, a closure's) as a hidden argument of the public
    function instead of a constant of the IR: the compile cache passes the array on every
    call (isozyme/reads.py), so in-place changes are seen and the IR does not grow with
    it.  ``None``: bake it (small arrays; tracing outside the compile cache)."""
    session = current_builder().session
    if session.hidden_type is None or session.public_builder is None:
        return None
    known = session.hidden.get(id(x))
    if known is not None:
        return known[1]
    t = session.hidden_type(x)  # None for small arrays
    if t is None:
        return None
    block = session.public_builder.entry  # a nested autodiff's target's (nested.py)
    arg = block.insert_arg(t, len(block.args))
    session.public_arg_types.append(t)
    # The tracer belongs to the public function: a helper traced as its own function
    # that uses it raises EscapedValueError and is inlined instead (functions.py).
    tracer = ArrayTracer(arg, session.public_builder)
    session.hidden[id(x)] = (x, tracer)  # holds x: its id stays unique during the trace
    return tracer


def _store(value: object, buf: ArrayTracer, idx: Sequence[SSAValue]) -> None:
    emit(memref.StoreOp.get(ssa(as_tracer(value, buf.element_type)), ssa(buf), list(idx)))


def _nested_shape(obj: object) -> tuple[list[int], list[object]]:
    if isinstance(obj, (list, tuple)):
        if not obj:
            raise trace_error("np.array of an empty list", "arrays have at least one element")
        subs = [_nested_shape(o) for o in obj]
        first = subs[0][0]
        if any(s[0] != first for s in subs):
            raise ValueError("np.array of a ragged nested sequence")
        return [len(obj), *first], [v for s in subs for v in s[1]]
    return [], [obj]


def np_array(obj: object, dtype: object = None, copy: object = True, **kwargs: object) -> Any:
    """``np.array(x)`` of a traced array (a copy), or of (nested) lists of numbers,
    traced scalars and 1-D traced arrays (np.stack)."""
    from ..arrays import copy_array, element_type_of_dtype  # noqa: PLC0415

    check_defined(obj)
    if is_array_value(obj):
        if dtype is not None and element_type_of_dtype(dtype) != obj.element_type:  # type: ignore[union-attr]
            # Imported here: .elementwise imports this module (operand coercion).
            from .elementwise import astype  # noqa: PLC0415

            return astype(obj, dtype)  # type: ignore[arg-type]
        return copy_array(obj)
    if isinstance(obj, (list, tuple)) and any(is_array_value(o) for o in obj):
        return np_stack(list(obj))
    shape, leaves = _nested_shape(obj)
    if not shape:
        return as_tracer(obj) if isinstance(obj, Tracer) else np.array(obj, dtype=dtype)
    for v in leaves:
        check_defined(v)
        if not (isinstance(v, Tracer) or is_number(v)):
            raise trace_error(f"np.array of a {type(v).__name__}",
                              "elements are numbers or traced scalars")
    if dtype is not None:
        elt = element_type_of_dtype(dtype)
    else:
        from ..tracer import type_and_strength  # noqa: PLC0415

        elt = join_types(*[type_and_strength(v) for v in leaves])
        if is_bool_type(elt):
            elt = i64
    buf = new_buffer([to_index(s) for s in shape], elt)
    for flat, v in enumerate(leaves):
        idx, rest = [], flat
        for s in reversed(shape):
            idx.append(rest % s)
            rest //= s
        _store(v, buf, [to_index(i) for i in reversed(idx)])
    return buf


def _require_1d(xs: Sequence[object], what: str) -> list[ArrayTracer]:
    out = []
    for x in xs:
        x = _as_array_operand(x, what)
        if not is_array_value(x) or x.ndim != 1:  # type: ignore[union-attr]
            raise whole_array_error(f"{what} of operands that are not all 1-D arrays")
        out.append(x)
    return out  # type: ignore[return-value]


def _join_elt(xs: Sequence[ArrayTracer]) -> Attribute:
    t = join_types(*[(x.element_type, True) for x in xs])
    return i64 if is_bool_type(t) else t


def np_concatenate(arrays: object, axis: object = 0, **kwargs: object) -> Any:
    """``np.concatenate`` of 1-D arrays (along axis 0): one copy loop per array."""
    if axis not in (0, -1) or kwargs.get("out") is not None:
        raise whole_array_error("np.concatenate other than of 1-D arrays along axis 0")
    xs = _require_1d(list(arrays), "np.concatenate")  # type: ignore[call-overload]
    total: Any = 0
    for x in xs:
        total = x.dim(0) if isinstance(total, int) and total == 0 else total + x.dim(0)
    buf = new_buffer([to_index(total)], _join_elt(xs))
    offset: Any = 0
    for x in xs:
        off = to_index(offset)

        def body(ivs: list[SSAValue], x: ArrayTracer = x, off: SSAValue = off) -> None:
            v = emit1(memref.LoadOp.get(ssa(x), ivs))
            j = emit1(arith.AddiOp(ivs[0], off))
            _store(v, buf, [ssa(j)])

        _for_each_index([x.dim_index(0)], body)
        offset = x.dim(0) if isinstance(offset, int) and offset == 0 else offset + x.dim(0)
    return buf


def np_stack(arrays: object, axis: object = 0, **kwargs: object) -> Any:
    """``np.stack`` of 1-D arrays of one length, as rows (axis 0) or columns."""
    if axis not in (0, 1, -1) or kwargs.get("out") is not None:
        raise whole_array_error("np.stack other than of 1-D arrays")
    from ..shape_checks import unify_sizes  # noqa: PLC0415

    xs = _require_1d(list(arrays), "np.stack")  # type: ignore[call-overload]
    n, _ = unify_sizes([(x, 0) for x in xs], broadcast=False)  # numpy: one shape
    k = len(xs) if len(xs) == 1 else to_index(len(xs))
    shape = [k, n] if axis == 0 else [n, k]
    buf = new_buffer(shape, _join_elt(xs))
    for r, x in enumerate(xs):
        rr = to_index(r)

        def body(ivs: list[SSAValue], x: ArrayTracer = x, rr: SSAValue = rr) -> None:
            v = emit1(memref.LoadOp.get(ssa(x), ivs))
            _store(v, buf, [rr, ivs[0]] if axis == 0 else [ivs[0], rr])

        _for_each_index([n], body)
    return buf


def np_diag(v: object, k: int = 0) -> Any:
    """``np.diag(v)`` with ``k=0``: the diagonal matrix of a 1-D array, or the
    diagonal of a 2-D array."""
    v = _as_array_operand(v, "np.diag")
    if k != 0 or not is_array_value(v) or v.ndim not in (1, 2):  # type: ignore[union-attr]
        raise whole_array_error("np.diag other than of a 1-D or 2-D array with k=0")
    assert isinstance(v, ArrayTracer)
    if v.ndim == 1:
        n = v.dim_index(0)
        buf = new_buffer([n, n], v.element_type)
        fill(buf, 0)

        def body1(ivs: list[SSAValue]) -> None:
            x = emit1(memref.LoadOp.get(ssa(v), ivs))
            _store(x, buf, [ivs[0], ivs[0]])

        _for_each_index([n], body1)
        return buf
    m = ssa(emit1(arith.MinSIOp(v.dim_index(0), v.dim_index(1))))
    out = new_buffer([m], v.element_type)

    def body2(ivs: list[SSAValue]) -> None:
        x = emit1(memref.LoadOp.get(ssa(v), [ivs[0], ivs[0]]))
        _store(x, out, ivs)

    _for_each_index([m], body2)
    return out


def reshape(x: object, *shape: object, order: str = "C", what: str = "reshape") -> Any:
    """``x.reshape(...)``/``np.reshape`` (C order, one ``-1`` allowed), and ``ravel``
    with ``what="ravel"``: a view of ``x`` (:func:`..view_ops.reshape`)."""
    from ..view_ops import reshape as reshape_view  # noqa: PLC0415

    if order != "C":
        raise whole_array_error("reshape with order other than 'C'")
    x = _as_array_operand(x, "reshape")
    if not is_array_value(x):
        raise whole_array_error("reshape of a scalar")
    assert isinstance(x, ArrayTracer)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return reshape_view(x, list(shape), what)


def flatten(x: object, order: str = "C") -> Any:
    """``x.flatten()``: a 1-D copy, as in numpy (never a view)."""
    from .copies import copy_to_new  # noqa: PLC0415

    if order != "C":
        raise whole_array_error("flatten with order other than 'C'")
    assert isinstance(x, ArrayTracer)
    return reshape(copy_to_new(x), -1)


def np_asarray(obj: object, dtype: object = None, **kwargs: object) -> Any:
    """``np.asarray(x)``: ``x`` itself for a traced array of that dtype (numpy returns
    the same array, so writes through the result reach ``x``); otherwise ``np.array``."""
    from ..arrays import element_type_of_dtype  # noqa: PLC0415

    if is_array_value(obj) and not kwargs and (
            dtype is None or element_type_of_dtype(dtype) == obj.element_type):  # type: ignore[union-attr]
        return obj
    return np_array(obj, dtype=dtype, **kwargs)
