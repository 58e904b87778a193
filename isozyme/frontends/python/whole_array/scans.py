"""Scans and shifts along an axis: ``np.cumsum``, ``np.cumprod``, ``np.diff``,
``np.roll``.

* ``cumsum``/``cumprod`` copy the input into a new buffer (cast to the result type),
  then one ``scf.for`` nest runs along the axis from 1: ``out[.., j, ..] = out[.., j-1,
  ..] (+|*) out[.., j, ..]``.  A loop, not an unrolled chain: the IR does not depend on
  the sizes, and the AD passes differentiate the loads and stores (the reverse sweep
  runs the recurrence backwards).  ``axis=None`` scans the C-order flattening.
* ``diff`` is ``x[.., 1:] - x[.., :-1]`` on views (one elementwise generic per order).
* ``roll`` copies two slices of the input into the two ends of a new buffer (the shift
  taken modulo the size, at run time when it or the size is traced).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.dialects.builtin import i64

from ..arrays import ArrayTracer
from ..diagnostics import trace_error
from ..tracer import Tracer, cast, check_defined, is_array_value, is_bool_type, is_int_type
from .array_builders import _as_array_operand, np_array, reshape
from .copies import copy_to_new
from .elementwise import elementwise
from .linalg_builder import new_buffer
from .loops import as_i64, for_each, imax, iv, load, size_of, store, sub
from .reductions import _normalize_axes


def _array(a: object, what: str) -> ArrayTracer:
    check_defined(a)
    a = _as_array_operand(a, what)
    if not is_array_value(a):
        a = np_array([a])  # numpy: a scalar is a 1-element array here
    return a  # type: ignore[return-value]


def _axis(axis: object, ndim: int, what: str) -> int:
    if isinstance(axis, (tuple, list)):
        raise trace_error(f"{what} with a tuple axis", "pass one axis (an int)")
    return _normalize_axes(axis, ndim)[0]


def _flat_copy(a: ArrayTracer) -> ArrayTracer:
    """The C-order flattening of ``a`` as a new 1-D buffer."""
    return reshape(copy_to_new(a), -1)  # type: ignore[no-any-return]


def scan(kind: str, a: object, axis: object = None, dtype: object = None, out: object = None
         ) -> ArrayTracer:
    """``np.cumsum``/``np.cumprod`` (``kind`` = ``"sum"``/``"prod"``), see the module
    docstring."""
    what = f"np.cum{kind}"
    if out is not None:
        raise trace_error(f"{what} with out=", "assign the result instead (y[...] = ...)")
    x = _array(a, what)
    if axis is None and x.ndim > 1:
        x = _flat_copy(x)
        axis = 0
    k = _axis(0 if axis is None else axis, x.ndim, what)
    elt = x.element_type
    if dtype is not None:
        from ..arrays import element_type_of_dtype  # noqa: PLC0415

        elt = element_type_of_dtype(dtype)
    elif is_bool_type(elt):
        elt = i64
    result: ArrayTracer = elementwise(lambda v: cast(v, elt), x, output_type=elt)
    sizes = [size_of(result, j) for j in range(result.ndim)]
    bounds = [(1 if j == k else 0, s) for j, s in enumerate(sizes)]

    def body(ivs: list[Any]) -> None:
        prev = list(ivs)
        prev[k] = sub(ivs[k], 1)
        a_prev, a_here = load(result, prev), load(result, ivs)
        store(a_prev + a_here if kind == "sum" else a_prev * a_here, result, ivs)

    for_each(bounds, body)
    return result


def np_diff(a: object, n: object = 1, axis: object = -1, prepend: object = np._NoValue,
            append: object = np._NoValue) -> Any:
    """``np.diff(a, n, axis)``: ``n`` times ``x[.., 1:] - x[.., :-1]`` along ``axis``."""
    if prepend is not np._NoValue or append is not np._NoValue:
        raise trace_error("np.diff with prepend=/append=",
                          "concatenate them first (np.concatenate) and diff the result")
    if isinstance(n, Tracer) or not isinstance(n, (int, np.integer)) or n < 0:
        raise trace_error("np.diff with an order n that is not a Python int >= 0",
                          "n must be known when tracing")
    x = _as_array_operand(a, "np.diff")
    if not is_array_value(x):
        raise ValueError("diff requires input that is at least one dimensional")
    assert isinstance(x, ArrayTracer)
    k = _axis(axis, x.ndim, "np.diff")
    for _ in range(int(n)):
        hi = [slice(None)] * x.ndim
        lo = [slice(None)] * x.ndim
        hi[k], lo[k] = slice(1, None), slice(None, -1)
        if is_bool_type(x.element_type):
            x = elementwise(lambda p, q: p != q, x[tuple(hi)], x[tuple(lo)])
        else:
            x = x[tuple(hi)] - x[tuple(lo)]
    return x


def np_roll(a: object, shift: object, axis: object = None) -> Any:
    """``np.roll(a, shift, axis)``: element ``i`` moves to ``(i + shift) % n``."""
    check_defined(shift, axis)
    x = _as_array_operand(a, "np.roll")
    if not is_array_value(x):
        return x
    assert isinstance(x, ArrayTracer)
    if axis is None:
        if x.ndim == 1:
            return _roll_axis(x, shift, 0)
        shape = list(x.shape)
        return reshape(_roll_axis(_flat_copy(x), shift, 0), shape)
    if isinstance(axis, (tuple, list)):
        shifts = list(shift) if isinstance(shift, (tuple, list)) else [shift] * len(axis)
        if len(shifts) != len(axis):
            raise ValueError("'shift' and 'axis' should be scalars or 1D sequences")
        out = x
        for s, ax in zip(shifts, axis):
            out = _roll_axis(out, s, _axis(ax, x.ndim, "np.roll"))
        return out
    if isinstance(shift, (tuple, list)):
        raise trace_error("np.roll with a tuple shift and one axis", "pass one shift")
    return _roll_axis(x, shift, _axis(axis, x.ndim, "np.roll"))


def _roll_axis(x: ArrayTracer, shift: object, k: int) -> ArrayTracer:
    if isinstance(shift, Tracer) and (is_array_value(shift) or not _is_int_tracer(shift)):
        raise trace_error("np.roll with a shift that is not an integer",
                          "shift is an int or a traced integer")
    n = x.dim(k)
    if isinstance(n, int) and not isinstance(shift, Tracer):
        s: Any = int(shift) % n if n else 0  # type: ignore[call-overload]
    else:
        # Python's % of a traced int; a size 0 (nothing to move) divides by 1.
        nn = as_i64(imax(iv(n), 1))
        s = shift % nn
    out = new_buffer([size_of(x, j) for j in range(x.ndim)], x.element_type)
    full = [slice(None)] * x.ndim

    def key(sl: slice) -> tuple[object, ...]:
        kk = list(full)
        kk[k] = sl
        return tuple(kk)

    out[key(slice(s, None))] = x[key(slice(None, n - s))]
    out[key(slice(None, s))] = x[key(slice(n - s, None))]
    return out


def _is_int_tracer(t: Tracer) -> bool:
    return is_int_type(t.type)
