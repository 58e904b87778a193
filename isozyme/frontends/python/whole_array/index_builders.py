"""Arrays whose elements depend on their indices: ``np.eye``/``np.identity``,
``np.linspace``, ``np.triu``/``np.tril`` and ``np.triu_indices``/``np.tril_indices``
(and the ``*_from`` forms).

Each is a new buffer written by ``scf.for`` loops of stores (index arithmetic that an
affine map of a ``linalg.generic`` cannot express with dynamic sizes); sizes may be
Python ints or traced integers (``x.shape[0]``), offsets ``k`` Python ints.  The loops
do not depend on the sizes' values: nothing is unrolled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.dialects.builtin import f64, i64

from ..arrays import ArrayTracer, to_index
from ..diagnostics import trace_error
from ..tracer import Tracer, as_tracer, cast, check_defined, is_array_value, is_float_type
from .array_builders import _as_array_operand
from .copies import copy_to_new
from .linalg_builder import fill, new_buffer
from .loops import (
    add,
    as_i64,
    clamp,
    for_each,
    for_range,
    imax,
    imin,
    load,
    size_of,
    store,
    sub,
)


def _size(n: object, what: str) -> Any:
    """A size argument: a Python int (kept static) or a traced integer (an index)."""
    check_defined(n)
    if isinstance(n, Tracer):
        if is_array_value(n) or is_float_type(n.type):
            raise trace_error(f"{what} with a size that is not an integer",
                              "sizes are ints or traced integers")
        return imax(to_index(n), 0)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{what}: a size must be an integer, not {type(n).__name__}")
    if n < 0:
        raise ValueError("negative dimensions are not allowed")
    return int(n)


def _offset(k: object, what: str) -> int:
    if isinstance(k, Tracer) or isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise trace_error(f"{what} with an offset k that is not a Python int",
                          "the diagonal offset must be known when tracing")
    return int(k)


def _elt(dtype: object, default: Any = f64) -> Any:
    if dtype is None:
        return default
    from ..arrays import element_type_of_dtype  # noqa: PLC0415

    return element_type_of_dtype(dtype)


def np_eye(N: object, M: object = None, k: object = 0, dtype: object = float,
           order: str = "C", **kwargs: object) -> ArrayTracer:
    """``np.eye(N, M, k, dtype)``: zeros with ones on diagonal ``k``."""
    n = _size(N, "np.eye")
    m = n if M is None else _size(M, "np.eye")
    kk = _offset(k, "np.eye")
    out = new_buffer([n, m], _elt(dtype))
    fill(out, 0)
    # rows i with 0 <= i + k < m
    lo, hi = max(0, -kk), imin(n, sub(m, kk))
    for_range(lo, hi, lambda i: store(1, out, [i, add(i, kk)]))
    return out


def np_identity(n: object, dtype: object = None, **kwargs: object) -> ArrayTracer:
    """``np.identity(n)``: ``np.eye(n)``."""
    return np_eye(n, dtype=float if dtype is None else dtype)


def np_linspace(start: object, stop: object, num: object = 50, endpoint: bool = True,
                retstep: bool = False, dtype: object = None, axis: int = 0) -> Any:
    """``np.linspace(start, stop, num)`` of scalars (traced or not): ``i * step +
    start`` as numpy computes it, the last element ``stop`` exactly when ``endpoint``."""
    check_defined(start, stop, endpoint)
    for v in (start, stop):
        if is_array_value(v) or isinstance(v, (np.ndarray, list, tuple)):
            raise trace_error("np.linspace with array start/stop",
                              "start and stop are scalars here")
    if axis != 0 or not isinstance(endpoint, bool):
        raise trace_error("np.linspace with axis= or a traced endpoint", "not supported")
    n = _size(num, "np.linspace")
    a, b = as_tracer(start, f64) if isinstance(start, Tracer) else float(start), \
        as_tracer(stop, f64) if isinstance(stop, Tracer) else float(stop)  # type: ignore[arg-type]
    div: Any = sub(n, 1) if endpoint else n
    delta = b - a
    if isinstance(div, int):
        step: Any = delta / div if div > 0 else float("nan")
        safe: Any = delta / max(div, 1)
    else:
        di = cast(as_tracer(as_i64(div)), f64)
        step = delta / di
        safe = delta / cast(as_tracer(as_i64(imax(div, 1))), f64)
    elt = _elt(dtype)
    out = new_buffer([n], elt)

    def body(i: Any) -> None:
        v = cast(as_tracer(as_i64(i)), f64) * safe + a
        store(v if is_float_type(elt) else cast(as_tracer(v), elt), out, [i])

    for_range(0, n, body)
    if endpoint:
        # the last element is stop (once, when num > 1)
        last = b if is_float_type(elt) else cast(as_tracer(b), elt)
        for_range(imax(sub(n, 1), 1), n, lambda i: store(last, out, [i]))
    return (out, step) if retstep else out


def _tri(a: object, k: object, upper: bool) -> ArrayTracer:
    """``np.triu``/``np.tril`` of an array of rank >= 2 (the last two dimensions)."""
    what = "np.triu" if upper else "np.tril"
    x = _as_array_operand(a, what)
    if not is_array_value(x) or x.ndim < 2:  # type: ignore[union-attr]
        raise trace_error(f"{what} of an array of rank < 2", "pass a matrix")
    assert isinstance(x, ArrayTracer)
    kk = _offset(k, what)
    out = copy_to_new(x)
    r = out.ndim
    sizes = [size_of(out, j) for j in range(r)]
    m = sizes[-1]

    def row(ivs: list[Any]) -> None:
        i = ivs[-1]
        if upper:  # zero the columns j < i + k
            lo, hi = 0, clamp(add(i, kk), 0, m)
        else:  # zero the columns j > i + k
            lo, hi = clamp(add(i, kk + 1), 0, m), m
        for_range(lo, hi, lambda j: store(0, out, [*ivs, j]))

    for_each([(0, s) for s in sizes[:-1]], row)
    return out


def np_triu(m: object, k: object = 0) -> ArrayTracer:
    """``np.triu(m, k)``: a copy with the elements below diagonal ``k`` zeroed."""
    return _tri(m, k, True)


def np_tril(m: object, k: object = 0) -> ArrayTracer:
    """``np.tril(m, k)``: a copy with the elements above diagonal ``k`` zeroed."""
    return _tri(m, k, False)


def tri_indices(upper: bool, n: object, k: object = 0, m: object = None
                ) -> tuple[ArrayTracer, ArrayTracer]:
    """``np.triu_indices(n, k, m)`` (``upper``) or ``np.tril_indices``: the row and
    column indices (``int64`` arrays) of the triangle, row by row.  One loop counts them
    (the size of the result), a second writes them."""
    what = "np.triu_indices" if upper else "np.tril_indices"
    rows = _size(n, what)
    cols = rows if m is None else _size(m, what)
    kk = _offset(k, what)

    def span(i: Any) -> tuple[Any, Any]:
        """The columns of row ``i`` in the triangle: ``[lo, hi)``."""
        if upper:
            return clamp(add(i, kk), 0, cols), cols
        return 0, clamp(add(i, kk + 1), 0, cols)

    counter = new_buffer([], i64)
    fill(counter, 0)

    def count(i: Any) -> None:
        lo, hi = span(i)
        c = load(counter, [])
        store(c + as_i64(imax(sub(hi, lo), 0)), counter, [])

    for_range(0, rows, count)
    total = to_index(load(counter, []))
    ri, ci = new_buffer([total], i64), new_buffer([total], i64)
    fill(counter, 0)

    def write(i: Any) -> None:
        lo, hi = span(i)

        def put(j: Any) -> None:
            p = load(counter, [])
            store(as_i64(i), ri, [p])
            store(as_i64(j), ci, [p])
            store(p + 1, counter, [])

        for_range(lo, hi, put)

    for_range(0, rows, write)
    return ri, ci


def tri_indices_from(upper: bool, arr: object, k: object = 0
                     ) -> tuple[ArrayTracer, ArrayTracer]:
    """``np.triu_indices_from(arr, k)``/``np.tril_indices_from``: of ``arr``'s shape."""
    what = "np.triu_indices_from" if upper else "np.tril_indices_from"
    x = _as_array_operand(arr, what)
    if not is_array_value(x) or x.ndim != 2:  # type: ignore[union-attr]
        raise ValueError("input array must be 2-d")
    assert isinstance(x, ArrayTracer)
    return tri_indices(upper, x.dim(0), k, x.dim(1))


__all__ = [
    "np_eye", "np_identity", "np_linspace", "np_tril", "np_triu", "tri_indices",
    "tri_indices_from",
]
