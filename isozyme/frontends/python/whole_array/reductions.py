"""Reductions: ``np.sum/prod/max/min/mean`` (functions and methods) over all axes or
some, with ``keepdims``: a fill generic with the neutral element, then one accumulating
generic with ``reduction`` iterators (see :mod:`isozyme.frontends.python.whole_array`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects import memref
from xdsl.dialects.builtin import f64, i64
from xdsl.ir import Attribute
from xdsl.ir.affine import AffineExpr

from isozyme.errors import ShapeError

from ..arrays import ArrayTracer
from ..builtins_table import _min_max2
from ..diagnostics import trace_error
from ..tracer import (
    Tracer,
    as_tracer,
    cast,
    check_defined,
    emit1,
    is_array_value,
    is_bool_type,
    is_float_type,
    ssa,
)
from .array_builders import _as_array_operand
from .elementwise import elementwise
from .linalg_builder import (
    _ZERO,
    Size,
    _d,
    _identity,
    _map,
    _size,
    _static,
    fill,
    generic,
    new_buffer,
)

_NEUTRAL = {"sum": 0, "prod": 1}


def _normalize_axes(axis: object, ndim: int) -> list[int]:
    check_defined(axis)
    if axis is None:
        return list(range(ndim))
    axes = list(axis) if isinstance(axis, (tuple, list)) else [axis]
    out = []
    for a in axes:
        if isinstance(a, Tracer) or not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise trace_error("a reduction axis that is not a Python int",
                              "axis must be known when tracing")
        a = int(a)
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(f"axis {a} is out of bounds for array of dimension {ndim}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError("duplicate value in 'axis'")
    return sorted(out)


def _extreme(kind: str, t: Attribute) -> object:
    if is_float_type(t):
        return -np.inf if kind == "max" else np.inf
    if is_bool_type(t):
        return kind != "max"
    return -(2**63) if kind == "max" else 2**63 - 1


def reduce(kind: str, x: object, axis: object = None, dtype: object = None, out: object = None,
           keepdims: bool = False, **kwargs: object) -> Any:
    """``np.sum/prod/max/min/mean(x, axis, keepdims)`` (see the module docstring)."""
    check_defined(x)
    if out is not None or kwargs.get("where") is not None or kwargs.get("initial") is not None:
        raise trace_error(f"np.{kind} with out=/where=/initial=",
                          "not supported on traced arrays")
    if not is_array_value(x):
        x = _as_array_operand(x, f"np.{kind}")
        if not is_array_value(x):
            return x if kind != "mean" else as_tracer(x) * 1.0
    assert isinstance(x, ArrayTracer)
    if isinstance(keepdims, Tracer):
        raise trace_error("a traced keepdims", "keepdims must be a Python bool")
    axes = _normalize_axes(axis, x.ndim)
    elt = x.element_type
    if dtype is not None:
        from ..arrays import element_type_of_dtype  # noqa: PLC0415

        elt = element_type_of_dtype(dtype)
    elif kind == "mean" and not is_float_type(elt):
        elt = f64
    elif kind in ("sum", "prod", "mean") and is_bool_type(elt):
        elt = i64
    n = x.ndim
    if kind in ("max", "min"):
        _require_nonempty(x, axes, "maximum" if kind == "max" else "minimum")
    out_shape: list[Size] = []
    out_exprs: list[AffineExpr] = []
    for k in range(n):
        if k in axes:
            if keepdims:
                out_shape.append(1)
                out_exprs.append(_d(k) if _static(x, k) == 1 else _ZERO)
        else:
            out_shape.append(_size(x, k))
            out_exprs.append(_d(k))
    result = new_buffer(out_shape, elt)
    init = _NEUTRAL.get(kind, 0) if kind in ("sum", "prod", "mean") else _extreme(kind, elt)
    fill(result, init)

    def body(a: Tracer, acc: Tracer) -> object:
        v = cast(a, elt)
        if kind in ("sum", "mean"):
            return acc + v
        if kind == "prod":
            return acc * v
        return _min_max2(acc, v, kind == "max")

    generic([ssa(x)], [_identity(n)], result, _map(n, out_exprs),
            ["reduction" if k in axes else "parallel" for k in range(n)], body,
            reads_output=True)
    count: Any = None
    if kind == "mean":
        count = 1
        for k in axes:
            d = x.dim(k)
            count = d if isinstance(count, int) and count == 1 else count * d
    if result.ndim == 0:
        value = emit1(memref.LoadOp.get(ssa(result), []))
        return value / count if kind == "mean" else value
    if kind == "mean":
        result = elementwise(lambda s, c: s / c, result, count, output_type=elt)
    return result


def _require_nonempty(x: ArrayTracer, axes: Sequence[int], name: str) -> None:
    """numpy's max/min have no identity: reducing over no element raises ValueError
    (``ShapeError`` here, when the code runs)."""
    from ..runtime_checks import require  # noqa: PLC0415

    count: Any = 1
    for k in axes:
        d = x.dim(k)
        count = d if isinstance(count, int) and count == 1 else count * d
    if isinstance(count, int):
        if count == 0:
            raise ShapeError(f"zero-size array to reduction operation {name} which has no "
                             "identity")
        return
    require(count > 0, "shape",
            f"zero-size array to reduction operation {name} which has no identity")


def _reducer(kind: str) -> Callable[..., Any]:
    def run(x: object, axis: object = None, *args: object, **kwargs: object) -> Any:
        if kind in ("max", "min") and args:  # np.max(a, axis, out, keepdims)
            names = ["out", "keepdims"]
        else:
            names = ["dtype", "out", "keepdims"]
        kwargs.update(zip(names, args))
        return reduce(kind, x, axis, **kwargs)

    return run


def _method_reducer(kind: str) -> Callable[..., Any]:
    run = _reducer(kind)

    def method(self: ArrayTracer, axis: object = None, *args: object, **kwargs: object) -> Any:
        return run(self, axis, *args, **kwargs)

    method.__name__ = kind
    return method
