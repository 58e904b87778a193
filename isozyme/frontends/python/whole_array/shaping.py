"""Shape functions: ``np.squeeze``/``np.expand_dims`` (views), ``np.concatenate`` and
``np.stack`` of arrays of any rank, ``np.hstack``/``np.vstack``, ``np.pad`` (constant
mode).

* ``squeeze`` drops dimensions that are statically 1 by a rank-reducing view
  (``x[:, 0, :]``, a ``memref.subview``); a traced size of an argument is never 1 (the
  signature records size-1 dimensions, :mod:`..shape_checks`), so ``axis=`` naming such
  a dimension raises numpy's error; a view's size that may be 1 (``x[:, :1]``) is
  checked when the code runs (``ShapeError``), and only with ``axis=``.
* ``expand_dims`` is ``x[:, None]`` (``memref.expand_shape``).
* ``concatenate`` of n-D arrays allocates the result and copies each operand into its
  slice along the axis (one copy ``linalg.generic`` per operand into a
  ``memref.subview``); 1-D operands along axis 0 keep the copy loops of
  :func:`.array_builders.np_concatenate`.
* ``pad(x, pad_width, constant_values=c)`` fills a new buffer with ``c`` (a number or a
  traced scalar) and copies ``x`` into the middle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdsl.dialects.builtin import i64

from ..arrays import ArrayTracer
from ..diagnostics import trace_error
from ..tracer import Tracer, check_defined, is_array_value, is_bool_type, join_types, ssa
from .array_builders import _as_array_operand, np_concatenate, np_stack
from .linalg_builder import _identity, _map, generic, new_buffer
from .reductions import _normalize_axes


def _arrays(xs: object, what: str) -> list[ArrayTracer]:
    check_defined(xs)
    if is_array_value(xs):
        assert isinstance(xs, ArrayTracer)
        raise trace_error(f"{what} of one traced array",
                          "pass a list or tuple of arrays (iterating a traced array "
                          "needs its length)")
    out = []
    for x in list(xs):  # type: ignore[call-overload]
        x = _as_array_operand(x, what)
        if not is_array_value(x):
            raise trace_error(f"{what} of a scalar", "operands are arrays")
        out.append(x)
    if not out:
        raise ValueError("need at least one array to concatenate")
    return out


def np_squeeze(a: object, axis: object = None) -> Any:
    """``np.squeeze(a, axis)``: a view without the (statically) size-1 dimensions."""
    from ..views import view  # noqa: PLC0415

    x = _as_array_operand(a, "np.squeeze")
    if not is_array_value(x):
        return x
    assert isinstance(x, ArrayTracer)
    shape = x.type.get_shape()
    if axis is None:
        drop = [j for j, s in enumerate(shape) if s == 1]
    else:
        from ..runtime_checks import require  # noqa: PLC0415
        from ..shape_checks import may_be_one  # noqa: PLC0415

        drop = _normalize_axes(axis, x.ndim)
        for j in drop:
            if shape[j] == 1:
                continue
            message = "cannot select an axis to squeeze out which has size not equal to one"
            if not may_be_one(x, j):
                raise ValueError(message)
            # a view whose size is only known to be 1 when the code runs (x[:, :1])
            require(x.dim(j) == 1, "shape", message)
    if not drop:
        return x
    if len(drop) == x.ndim:  # every dimension is 1: a 0-d array is its element here
        from .loops import load  # noqa: PLC0415

        return load(x, [0] * x.ndim)
    return view(x, [0 if j in drop else slice(None) for j in range(x.ndim)])


def np_expand_dims(a: object, axis: object) -> Any:
    """``np.expand_dims(a, axis)`` (an int or a tuple): new axes of size 1, a view."""
    from ..view_ops import new_axes  # noqa: PLC0415

    x = _as_array_operand(a, "np.expand_dims")
    if not is_array_value(x):
        raise trace_error("np.expand_dims of a scalar", "pass an array")
    assert isinstance(x, ArrayTracer)
    axes = list(axis) if isinstance(axis, (tuple, list)) else [axis]
    rank = x.ndim + len(axes)
    new = _normalize_axes(tuple(axes), rank)
    return new_axes(x, [j in new for j in range(rank)])


def _join_elt(xs: Sequence[ArrayTracer]) -> Any:
    t = join_types(*[(x.element_type, True) for x in xs])
    return i64 if is_bool_type(t) else t


def _copy_into(target: ArrayTracer, value: ArrayTracer) -> None:
    """A copy generic ``target[...] = value`` (same shapes, checked by the caller)."""
    n = target.ndim
    generic([ssa(value)], [_identity(n)], target, _identity(n), ["parallel"] * n,
            lambda v: v)


def np_concatenate_nd(arrays: object, axis: object = 0, out: object = None,
                      dtype: object = None, **kwargs: object) -> Any:
    """``np.concatenate(arrays, axis)`` of arrays of one rank (see the module
    docstring); ``axis=None`` concatenates their flattenings."""
    from ..shape_checks import unify_sizes  # noqa: PLC0415
    from .array_builders import reshape  # noqa: PLC0415
    from .copies import copy_to_new  # noqa: PLC0415

    if out is not None or dtype is not None:
        raise trace_error("np.concatenate with out=/dtype=", "not supported on traced arrays")
    xs = _arrays(arrays, "np.concatenate")
    if axis is None:
        xs = [reshape(copy_to_new(x), -1) for x in xs]
        axis = 0
    if all(x.ndim == 1 for x in xs) and axis in (0, -1):
        return np_concatenate(xs, 0)
    rank = xs[0].ndim
    if any(x.ndim != rank for x in xs):
        raise ValueError("all the input array dimensions except for the concatenation "
                         "axis must match exactly, but the arrays have different ranks")
    (k,) = _normalize_axes(axis, rank)
    shape: list[Any] = []
    for j in range(rank):
        if j == k:
            total: Any = 0
            for x in xs:
                d = x.dim(j)
                total = d if isinstance(total, int) and total == 0 else total + d
            from ..arrays import to_index  # noqa: PLC0415

            shape.append(total if isinstance(total, int) else to_index(total))
        else:
            size, _ = unify_sizes([(x, j) for x in xs], broadcast=False)
            shape.append(size)
    result = new_buffer(shape, _join_elt(xs))
    offset: Any = 0
    for x in xs:
        d = x.dim(k)
        key = [slice(None)] * rank
        key[k] = slice(offset, offset + d)
        _copy_into(result[tuple(key)], x)  # type: ignore[arg-type]
        offset = d if isinstance(offset, int) and offset == 0 else offset + d
    return result


def np_stack_nd(arrays: object, axis: object = 0, out: object = None, **kwargs: object
                ) -> Any:
    """``np.stack(arrays, axis)``: each operand with a new axis, concatenated."""
    if out is not None:
        raise trace_error("np.stack with out=", "not supported on traced arrays")
    xs = _arrays(arrays, "np.stack")
    if all(x.ndim == 1 for x in xs) and axis in (0, 1, -1):
        return np_stack(xs, axis)
    if any(x.ndim != xs[0].ndim for x in xs):
        raise ValueError("all input arrays must have the same shape")
    (k,) = _normalize_axes(axis, xs[0].ndim + 1)
    return np_concatenate_nd([np_expand_dims(x, k) for x in xs], k)


def np_hstack(tup: object, **kwargs: object) -> Any:
    """``np.hstack``: along axis 0 for 1-D arrays, else axis 1."""
    xs = _arrays(tup, "np.hstack")
    return np_concatenate_nd(xs, 0 if xs[0].ndim == 1 else 1)


def np_vstack(tup: object, **kwargs: object) -> Any:
    """``np.vstack``: 1-D arrays become rows, then along axis 0."""
    xs = _arrays(tup, "np.vstack")
    return np_concatenate_nd([np_expand_dims(x, 0) if x.ndim == 1 else x for x in xs], 0)


def _pad_pairs(pad_width: object, rank: int) -> list[tuple[object, object]]:
    """numpy's ``pad_width`` forms: ``p``, ``(p,)``, ``(before, after)``, or one pair
    per axis."""
    def is_scalar(v: object) -> bool:
        return isinstance(v, (int, Tracer)) and not is_array_value(v)

    if is_scalar(pad_width):
        return [(pad_width, pad_width)] * rank
    items = list(pad_width)  # type: ignore[call-overload]
    if all(is_scalar(v) for v in items):
        if len(items) == 1:
            return [(items[0], items[0])] * rank
        if len(items) == 2:
            return [(items[0], items[1])] * rank
    pairs = [tuple(p) if not is_scalar(p) else (p, p) for p in items]
    if len(pairs) == 1:
        pairs = pairs * rank
    if len(pairs) != rank or any(len(p) not in (1, 2) for p in pairs):
        raise ValueError(f"operands could not be broadcast together with remapped "
                         f"shapes [original->remapped]: pad_width for a rank-{rank} array")
    return [(p[0], p[-1]) for p in pairs]  # type: ignore[misc]


def np_pad(array: object, pad_width: object, mode: object = "constant",
           **kwargs: object) -> Any:
    """``np.pad(x, pad_width, mode='constant', constant_values=c)``."""
    from ..arrays import to_index  # noqa: PLC0415

    if mode != "constant":
        raise trace_error(f"np.pad with mode={mode!r}", "only mode='constant' is supported")
    value = kwargs.pop("constant_values", 0)
    if kwargs:
        raise trace_error(f"np.pad with {', '.join(kwargs)}=", "not supported")
    if isinstance(value, (tuple, list)):
        flat = [v for p in value for v in (p if isinstance(p, (tuple, list)) else [p])]
        if any(v is not flat[0] and v != flat[0] for v in flat):
            raise trace_error("np.pad with different constant_values per side",
                              "one value for every side is supported")
        value = flat[0]
    x = _as_array_operand(array, "np.pad")
    if not is_array_value(x):
        raise trace_error("np.pad of a scalar", "pass an array")
    assert isinstance(x, ArrayTracer)
    pairs = _pad_pairs(pad_width, x.ndim)
    for b, a in pairs:
        for p in (b, a):
            if isinstance(p, Tracer) and not is_array_value(p):
                continue
            if isinstance(p, bool) or not isinstance(p, int) or p < 0:
                raise ValueError("index can't contain negative values")
    shape: list[Any] = []
    for j, (b, a) in enumerate(pairs):
        n = x.dim(j) + b + a  # type: ignore[operator]
        shape.append(n if isinstance(n, int) else to_index(n))
    out = new_buffer(shape, x.element_type)
    rank = out.ndim
    if isinstance(value, Tracer):
        generic([ssa(value)], [_map(rank, [])], out, _identity(rank), ["parallel"] * rank,
                lambda v: v)
    else:
        generic([], [], out, _identity(rank), ["parallel"] * rank, lambda: value)
    key = tuple(slice(b, b + x.dim(j)) for j, (b, _) in enumerate(pairs))
    _copy_into(out[key], x)  # type: ignore[arg-type]
    return out


__all__ = ["np_concatenate_nd", "np_expand_dims", "np_hstack", "np_pad",
           "np_squeeze", "np_stack_nd", "np_vstack"]
