"""Elementwise whole-array operations: numpy broadcasting, ufuncs, Python operators,
in-place updates (``x += y``, ``x[key] = y``), ``np.where``, ``np.clip`` and ``astype``.

Each is one ``linalg.generic`` whose loops are the result's dimensions; see
:mod:`isozyme.frontends.python.whole_array` for the broadcasting rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.builtin import AffineMapAttr, i1
from xdsl.ir import Attribute, SSAValue

from isozyme.errors import ShapeError

from ..shape_checks import broadcast_view, fit_size, unify_sizes
from ..arrays import ArrayTracer
from ..builtins_table import _min_max2
from ..diagnostics import trace_error
from ..tracer import (
    Tracer,
    as_tracer,
    binary,
    cast,
    compare,
    emit1,
    is_array_value,
    is_float_type,
    is_number,
    power,
    result_type,
    ssa,
    to_bool,
)
from .array_builders import _as_array_operand
from .linalg_builder import (
    _ZERO,
    Size,
    _d,
    _identity,
    _is_one,
    _map,
    _size,
    _static,
    generic,
)


def broadcast_shape(arrays: Sequence[ArrayTracer]) -> tuple[list[Size], list[list[int]]]:
    """numpy's broadcast of the arrays' shapes (aligned right), with the checks it needs
    (:func:`..shape_checks.unify_sizes`).  Returns the shape and, per array, the
    dimensions that must be broadcast at run time (their size may be 1)."""
    rank = max(a.ndim for a in arrays)
    shape: list[Size] = []
    late: list[list[int]] = [[] for _ in arrays]
    for k in range(rank):
        dims = [(a, k - (rank - a.ndim)) for a in arrays if k - (rank - a.ndim) >= 0]
        size, runtime = unify_sizes(dims)
        shape.append(size)
        for a, j in runtime:
            for i, b in enumerate(arrays):
                if b is a and j not in late[i]:
                    late[i].append(j)
    return shape, late


def broadcast_map(a: ArrayTracer, shape: Sequence[Size]) -> AffineMapAttr:
    """The map of ``a`` broadcast to ``shape`` (loops = the dimensions of ``shape``)."""
    rank = len(shape)
    exprs = []
    for j in range(a.ndim):
        k = j + rank - a.ndim
        if _static(a, j) == 1 and not _is_one(shape[k]):
            exprs.append(_ZERO)
        else:
            exprs.append(_d(k))
    return _map(rank, exprs)


def _broadcast_operand(a: ArrayTracer, shape: Sequence[Size], dims: Sequence[int]) -> ArrayTracer:
    return broadcast_view(a, shape, dims) if dims else a


def elementwise(fn: Callable[..., object], *operands: object,
                output_type: Attribute | None = None) -> Any:
    """``fn`` applied elementwise (with broadcasting) to arrays, traced scalars and
    Python numbers; ``fn`` gets Tracers for arrays and traced scalars and the Python
    numbers as they are.  Without an array operand, ``fn`` is applied directly."""
    ops = [_as_array_operand(o, "a whole-array operation") for o in operands]
    arrays = [o for o in ops if is_array_value(o)]
    if not arrays:
        return fn(*ops)
    shape, late = broadcast_shape(arrays)  # type: ignore[arg-type]
    rank = len(shape)
    inputs: list[SSAValue] = []
    maps: list[AffineMapAttr] = []
    slots: list[int | None] = []
    for o in ops:
        if is_array_value(o):
            i = next(i for i, a in enumerate(arrays) if a is o)  # not ==: elementwise
            o = _broadcast_operand(o, shape, late[i])  # type: ignore[arg-type]
            slots.append(len(inputs))
            inputs.append(ssa(o))  # type: ignore[arg-type]
            maps.append(broadcast_map(o, shape))  # type: ignore[arg-type]
        elif isinstance(o, Tracer):
            slots.append(len(inputs))
            inputs.append(ssa(o))
            maps.append(_map(rank, []))
        else:
            slots.append(None)

    def body(*args: Tracer) -> object:
        vals = [o if s is None else args[s] for o, s in zip(ops, slots)]
        return fn(*vals)

    return generic(inputs, maps, None, _identity(rank), ["parallel"] * rank, body,
                   output_shape=shape, output_type=output_type)


def inplace(op: str, target: ArrayTracer, value: object) -> ArrayTracer:
    """``target op= value`` (numpy: in place, ``value`` broadcast to ``target``)."""
    from ..views import separate_if_overlapping  # noqa: PLC0415

    value = _as_array_operand(value, f"`{op}=`")
    value = separate_if_overlapping(target, value)
    shape: list[Size] = [_size(target, j) for j in range(target.ndim)]
    rank = len(shape)
    inputs: list[SSAValue] = []
    maps: list[AffineMapAttr] = []
    if is_array_value(value):
        assert isinstance(value, ArrayTracer)
        if value.ndim > rank and op == "=":
            # numpy's assignment drops leading dimensions of size 1 of the value
            from ..shape_checks import require_size  # noqa: PLC0415
            from ..views import view  # noqa: PLC0415

            extra = value.ndim - rank
            for j in range(extra):
                require_size(value, j, 1)
            value = view(value, [0] * extra + [slice(None)] * rank)
        if value.ndim > rank:
            from ..diagnostics import format_location, user_location  # noqa: PLC0415

            raise ShapeError(f"{format_location(*user_location())}: non-broadcastable output "
                             f"operand: a rank-{value.ndim} value into a rank-{rank} array")
        late = [j for j in range(value.ndim)
                if fit_size(target, j + rank - value.ndim, value, j)]
        value = _broadcast_operand(value, shape, late)
        inputs.append(ssa(value))
        maps.append(broadcast_map(value, shape))
    elif isinstance(value, Tracer):
        inputs.append(ssa(value))
        maps.append(_map(rank, []))

    if op == "=":
        def body(*args: Tracer) -> object:
            return args[0] if inputs else value
        return generic(inputs, maps, target, _identity(rank), ["parallel"] * rank, body)

    def body_op(*args: Tracer) -> object:
        if inputs:
            v, out = args[0], args[1]
        else:
            v, out = value, args[0]
        return _BINARY_FNS[op](out, v)

    return generic(inputs, maps, target, _identity(rank), ["parallel"] * rank, body_op,
                   reads_output=True)


def _select(c: object, a: object, b: object) -> Any:
    t = result_type(a, b)
    cond = to_bool(as_tracer(c))
    return emit1(arith.SelectOp(ssa(cond), ssa(as_tracer(a, t)), ssa(as_tracer(b, t))))


_BINARY_FNS: dict[str, Callable[[object, object], object]] = {
    op: (lambda o: lambda a, b: binary(o, a, b))(op)
    for op in ("+", "-", "*", "/", "//", "%", "&", "|", "^", "<<", ">>")
}
_BINARY_FNS["**"] = power
for _op in ("<", "<=", ">", ">=", "==", "!="):
    _BINARY_FNS[_op] = (lambda o: lambda a, b: compare(o, a, b))(_op)


def _binop(op: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    fn = _BINARY_FNS[op]

    def forward(self: ArrayTracer, other: object) -> Any:
        if not _operand_like(other):
            return NotImplemented
        return elementwise(fn, self, other)

    def reflected(self: ArrayTracer, other: object) -> Any:
        if not _operand_like(other):
            return NotImplemented
        return elementwise(fn, other, self)

    return forward, reflected


def _operand_like(x: object) -> bool:
    return isinstance(x, (Tracer, np.ndarray, list)) or is_number(x)



def _ufunc(builder: Callable[..., Any], name: str, nin: int | None = None
           ) -> Callable[..., Any]:
    """The whole-array form of a numpy ufunc: elementwise ``builder``; with ``out=``
    (or an extra positional argument) the result is written into that traced array
    (broadcast to its shape, as numpy's) and the array is returned."""
    def run(*args: object, **kwargs: object) -> Any:
        out = kwargs.pop("out", None)
        if nin is not None and len(args) > nin:
            if out is not None:
                raise TypeError(f"{name}() got out= both as a positional and keyword argument")
            out = args[nin] if len(args) == nin + 1 else tuple(args[nin:])
            args = args[:nin]
        if isinstance(out, tuple):
            if len(out) != 1:
                raise ValueError(f"{name}: out= has {len(out)} arrays for 1 output")
            out = out[0]
        if kwargs:
            raise trace_error(f"numpy.{name} with keyword arguments ({', '.join(kwargs)})",
                              "where=/dtype=/casting= are not supported on traced arrays")
        result = elementwise(builder, *args)
        if out is None:
            return result
        if not is_array_value(out):
            raise trace_error(f"numpy.{name} with out= that is not a traced array",
                              "pass an array allocated in the traced code or an argument")
        r_t = result.element_type if is_array_value(result) else as_tracer(result).type
        if is_float_type(r_t) and not is_float_type(out.element_type):  # type: ignore[union-attr]
            from ..arrays import numpy_dtype  # noqa: PLC0415

            raise TypeError(f"Cannot cast ufunc '{name}' output from "
                            f"dtype('{numpy_dtype(r_t)}') to "
                            f"dtype('{out.dtype}') with casting rule 'same_kind'")  # type: ignore[union-attr]
        inplace("=", out, result)  # type: ignore[arg-type]
        return out

    return run


def np_where(condition: object, x: object = None, y: object = None) -> Any:
    """``np.where(condition, x, y)``: an elementwise select (the one-argument form
    has a data-dependent size and raises)."""
    if x is None or y is None:
        raise trace_error("np.where with one argument",
                          "the indices of the true elements have a data-dependent size")
    return elementwise(_select, condition, x, y)


def np_clip(a: object, a_min: object = None, a_max: object = None, out: object = None,
            **kwargs: object) -> Any:
    """``np.clip(a, a_min, a_max)`` (also ``min=``/``max=``): elementwise max then min
    with the bounds that are given."""
    a_min = kwargs.pop("min", a_min)
    a_max = kwargs.pop("max", a_max)
    if out is not None or kwargs:
        raise trace_error("np.clip with out=/extra keywords", "not supported on traced arrays")

    bounds = [(b, is_max) for b, is_max in ((a_min, True), (a_max, False)) if b is not None]

    def body(v: object, *bs: object) -> object:
        for b, (_, is_max) in zip(bs, bounds):
            v = _min_max2(v, b, is_max)
        return v

    return elementwise(body, a, *[b for b, _ in bounds])


def astype(x: ArrayTracer, dtype: object, **kwargs: object) -> Any:
    """``x.astype(dtype)``: an elementwise cast into a new buffer (``bool`` is the
    truth value, as in numpy)."""
    from ..arrays import element_type_of_dtype  # noqa: PLC0415

    if dtype in (bool, np.bool_):
        return elementwise(to_bool, x, output_type=i1)
    t = element_type_of_dtype(dtype)
    return elementwise(lambda a: cast(a, t), x, output_type=t)
