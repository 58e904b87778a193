"""Reductions built from the others: ``np.var``/``np.std``, ``np.linalg.norm``,
``np.any``/``np.all``, and ``np.argmax``/``np.argmin`` (index results, a loop).

* ``var(x, axis, ddof, keepdims)`` = ``sum((x - mean(x, axis, keepdims=True))**2, axis)
  / max(n - ddof, 0)`` (numpy's two-pass formula), ``std`` its square root.
* ``norm``: vector norms (``ord`` None/2, 1, inf, -inf, 0, other p) over all elements of
  a 1-D array or along an int ``axis``; matrix norms (None/``'fro'``, 1, -1, inf, -inf)
  of a 2-D array or over a pair of axes.  Spectral and nuclear norms (``2``, ``-2``,
  ``'nuc'``) need an SVD and raise.
* ``any``/``all`` count the true (false) elements with an integer sum: empty reductions
  give numpy's ``False``/``True``.
* ``argmax``/``argmin``: one ``scf.for`` nest over the elements keeping the best index
  in an ``i64`` buffer and comparing with the element at that index (so no float is
  stored: the result is an integer without derivative); ties keep the first index,
  a NaN wins as in numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import f64, i1, i64

from ..arrays import ArrayTracer
from ..builtins_table import _min_max2, _sqrt
from ..diagnostics import trace_error
from ..tracer import (
    Tracer,
    absolute,
    as_tracer,
    cast,
    check_defined,
    compare,
    emit1,
    index,
    is_array_value,
    is_float_type,
    ssa,
    to_bool,
)
from .array_builders import _as_array_operand, np_array, reshape
from .elementwise import elementwise
from .linalg_builder import fill, new_buffer
from .loops import add, as_i64, for_each, iv, load, mul, size_of, store
from .reductions import _normalize_axes, _require_nonempty, reduce


def _operand(x: object, what: str) -> ArrayTracer:
    check_defined(x)
    x = _as_array_operand(x, what)
    if not is_array_value(x):
        x = np_array([x])
    return x  # type: ignore[return-value]


def _count(x: ArrayTracer, axes: list[int]) -> Any:
    count: Any = 1
    for k in axes:
        d = x.dim(k)
        count = d if isinstance(count, int) and count == 1 else count * d
    return count


def _refuse(what: str, **given: object) -> None:
    bad = [k for k, v in given.items() if v is not None]
    if bad:
        raise trace_error(f"{what} with {', '.join(k + '=' for k in bad)}",
                          "not supported on traced arrays")


def np_var(a: object, axis: object = None, dtype: object = None, out: object = None,
           ddof: object = 0, keepdims: bool = False, *, where: object = None,
           mean: object = None, correction: object = None, _sqrt: bool = False) -> Any:
    """``np.var(a, axis, ddof=, keepdims=)`` (and ``np.std`` with ``_sqrt``)."""
    what = "np.std" if _sqrt else "np.var"
    _refuse(what, dtype=dtype, out=out, where=where, mean=mean)
    if correction is not None:
        ddof = correction
    x = _operand(a, what)
    axes = _normalize_axes(axis, x.ndim)
    if not is_float_type(x.element_type):
        x = elementwise(lambda v: cast(v, f64), x, output_type=f64)
    m = reduce("mean", x, tuple(axes), keepdims=True)
    sq = elementwise(lambda v, c: (v - c) * (v - c), x, m)
    total = reduce("sum", sq, tuple(axes), keepdims=keepdims)
    n = _count(x, axes)
    if isinstance(n, int) and not isinstance(ddof, Tracer):
        denom: Any = float(max(n - ddof, 0))  # type: ignore[operator]
    else:
        denom = cast(as_tracer(_min_max2(n - ddof, 0, True)), x.element_type)  # type: ignore[operator]
    if is_array_value(total):
        return elementwise((lambda s, d: _sqrt_of(s / d)) if _sqrt else (lambda s, d: s / d),
                           total, denom)
    v = total / denom
    return _sqrt_of(v) if _sqrt else v


def np_std(a: object, axis: object = None, dtype: object = None, out: object = None,
           ddof: object = 0, keepdims: bool = False, **kwargs: Any) -> Any:
    """``np.std``: the square root of :func:`np_var`."""
    return np_var(a, axis, dtype, out, ddof, keepdims, _sqrt=True, **kwargs)


def _sqrt_of(v: object) -> Any:
    return _sqrt(v)


# --------------------------------------------------------------------------- norm


def _abs(v: Tracer) -> Any:
    return absolute(v)


def np_norm(x: object, ord: object = None, axis: object = None, keepdims: bool = False
            ) -> Any:
    """``np.linalg.norm(x, ord, axis, keepdims)`` (see the module docstring)."""
    a = _operand(x, "np.linalg.norm")
    if not is_float_type(a.element_type):
        a = elementwise(lambda v: cast(v, f64), a, output_type=f64)
    if isinstance(ord, Tracer):
        raise trace_error("np.linalg.norm with a traced ord", "ord must be known when tracing")
    if axis is None:
        if ord is None:  # the 2-norm of the flattened array, any rank
            return _vector(a, 2, list(range(a.ndim)), keepdims)
        if a.ndim == 1:
            return _vector(a, ord, [0], keepdims)
        if a.ndim == 2:
            return _matrix(a, ord, [0, 1], keepdims)
        raise ValueError("Improper number of dimensions to norm.")
    axes = list(axis) if isinstance(axis, (tuple, list)) else [axis]
    norm_axes = [_normalize_axes(ax, a.ndim)[0] for ax in axes]
    if len(norm_axes) == 1:
        return _vector(a, 2 if ord is None else ord, norm_axes, keepdims)
    if len(norm_axes) == 2:
        if norm_axes[0] == norm_axes[1]:
            raise ValueError("Duplicate axes given.")
        return _matrix(a, ord, norm_axes, keepdims)
    raise ValueError("Improper number of dimensions to norm.")


def _vector(a: ArrayTracer, ord: object, axes: list[int], keepdims: bool) -> Any:
    t = tuple(axes)
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order '{ord}' for vectors")
    p = float(ord)  # type: ignore[arg-type]
    if p == 2:
        s = reduce("sum", elementwise(lambda v: v * v, a), t, keepdims=keepdims)
        return elementwise(_sqrt_of, s) if is_array_value(s) else _sqrt_of(s)
    if p == np.inf:
        return reduce("max", elementwise(_abs, a), t, keepdims=keepdims)
    if p == -np.inf:
        return reduce("min", elementwise(_abs, a), t, keepdims=keepdims)
    if p == 1:
        return reduce("sum", elementwise(_abs, a), t, keepdims=keepdims)
    if p == 0:
        nz = elementwise(lambda v: cast(compare("!=", v, 0.0), a.element_type), a)
        return reduce("sum", nz, t, keepdims=keepdims)
    s = reduce("sum", elementwise(lambda v: _abs(v) ** p, a), t, keepdims=keepdims)
    return elementwise(lambda v: v ** (1.0 / p), s) if is_array_value(s) else s ** (1.0 / p)


def _matrix(a: ArrayTracer, ord: object, axes: list[int], keepdims: bool) -> Any:
    row, col = axes
    if ord is None or ord == "fro":
        return _vector(a, 2, sorted(axes), keepdims)
    if ord in (1, -1, np.inf, -np.inf):
        # 1: max over columns of the column sums of |a|; inf: max over rows of row sums
        summed, then = (row, col) if ord in (1, -1) else (col, row)
        kind = "max" if ord in (1, np.inf) else "min"
        s = reduce("sum", elementwise(_abs, a), (summed,), keepdims=True)
        r = reduce(kind, s, (then,), keepdims=True)
        if keepdims:
            return r
        kept = [a.dim(j) for j in range(a.ndim) if j not in axes]
        if not kept:
            return emit1(memref.LoadOp.get(ssa(r), [ssa(as_tracer(0, index))] * r.ndim))
        return reshape(r, kept)
    if ord in (2, -2, "nuc"):
        raise trace_error(f"np.linalg.norm with ord={ord!r} on a matrix",
                          "spectral and nuclear norms need an SVD, which isozyme does "
                          "not trace; use ord='fro', 1 or inf, or compute it by hand")
    raise ValueError("Invalid norm order for matrices.")


# --------------------------------------------------------------------------- any / all


def np_any_all(kind: str, a: object, axis: object = None, out: object = None,
               keepdims: bool = False, *, where: object = None) -> Any:
    """``np.any``/``np.all`` (``kind``): an integer count of the true (false) elements
    compared with 0."""
    what = f"np.{kind}"
    _refuse(what, out=out, where=where)
    x = _operand(a, what)
    want = kind == "all"

    def count_one(v: Tracer) -> Any:
        b = to_bool(v) if v.type != i1 else v
        if want:
            b = emit1(arith.XOrIOp(ssa(b), ssa(as_tracer(True, i1))))
        return cast(b, i64)

    axes = _normalize_axes(axis, x.ndim)
    s = reduce("sum", elementwise(count_one, x, output_type=i64), tuple(axes),
               keepdims=keepdims)
    op = "==" if want else "!="
    if is_array_value(s):
        return elementwise(lambda c: compare(op, c, 0), s, output_type=i1)
    return compare(op, s, 0)


# --------------------------------------------------------------------------- argmax


def np_arg_extreme(kind: str, a: object, axis: object = None, out: object = None,
                   *, keepdims: bool = False) -> Any:
    """``np.argmax``/``np.argmin`` (``kind`` = ``"max"``/``"min"``): see the module
    docstring.  With ``axis=None`` the index is into the C-order flattening."""
    what = f"np.arg{kind}"
    _refuse(what, out=out)
    x = _operand(a, what)
    if isinstance(keepdims, Tracer):
        raise trace_error("a traced keepdims", "keepdims must be a Python bool")
    n = x.ndim
    axes = _normalize_axes(axis, n)
    _require_nonempty(x, axes, f"arg{kind}")
    sizes = [size_of(x, j) for j in range(n)]
    if axis is None:
        out_shape: list[Any] = [1] * n if keepdims else []
        keep = [False] * n
    else:
        (k,) = axes
        out_shape = [1 if j == k else sizes[j] for j in range(n)] if keepdims else \
            [sizes[j] for j in range(n) if j != k]
        keep = [j != k for j in range(n)]
    best = new_buffer(out_shape, i64)
    fill(best, 0)
    greater = ">" if kind == "max" else "<"

    def out_index(ivs: list[Any]) -> list[Any]:
        if keepdims:
            return [ivs[j] if keep[j] else 0 for j in range(n)]
        return [ivs[j] for j in range(n) if keep[j]]

    def position(ivs: list[Any]) -> Any:
        """The candidate's index: along the axis, or into the flattening."""
        if axis is not None:
            return ivs[axes[0]]
        flat: Any = 0
        for j in range(n):
            flat = add(mul(flat, sizes[j]), ivs[j])
        return flat

    def unravel(b: Tracer, ivs: list[Any]) -> list[Any]:
        """The indices of the current best element (``b`` along the axis, or flat)."""
        bi = iv(b)
        if axis is not None:
            idx = list(ivs)
            idx[axes[0]] = bi
            return idx
        idx = []
        rest: Any = bi
        for j in range(n - 1, -1, -1):
            s = iv(sizes[j])
            idx.append(ssa(emit1(arith.RemSIOp(rest, s))))
            rest = ssa(emit1(arith.DivSIOp(rest, s)))
        return idx[::-1]

    def body(ivs: list[Any]) -> None:
        o = out_index(ivs)
        b = load(best, o)
        v, cur = load(x, ivs), load(x, unravel(b, ivs))
        take = compare(greater, v, cur)
        if is_float_type(v.type):
            v_nan = compare("!=", v, v)
            cur_nan = compare("!=", cur, cur)
            not_cur_nan = emit1(arith.XOrIOp(ssa(cur_nan), ssa(as_tracer(True, i1))))
            nan_wins = emit1(arith.AndIOp(ssa(v_nan), ssa(not_cur_nan)))
            take = emit1(arith.OrIOp(ssa(take), ssa(nan_wins)))
        new = emit1(arith.SelectOp(ssa(take), ssa(as_i64(position(ivs))), ssa(b)))
        store(new, best, o)

    for_each([(0, s) for s in sizes], body)
    if best.ndim == 0:
        return emit1(memref.LoadOp.get(ssa(best), []))
    return best
