"""Copies where numpy gives a view: ``x.T``/``np.transpose`` and indexing with
``None`` (``x[:, None]``) are copy generics into new buffers, marked so that writes into
them raise instead of being silently lost (:func:`mark_copy`, :func:`check_writable`).
Slices and integer indices are real views (:mod:`..views`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.dialects.builtin import DYNAMIC_INDEX
from xdsl.ir.affine import AffineExpr

from ..arrays import ArrayTracer
from ..diagnostics import trace_error
from ..tracer import is_array_value, ssa
from .array_builders import _as_array_operand
from .linalg_builder import _ZERO, Size, _d, _identity, _map, _size, _static, generic


def np_transpose(a: object, axes: object = None) -> Any:
    """``np.transpose(a, axes)``/``x.T``: a copy generic with a permuted input map
    (marked so that writes into it raise)."""
    a = _as_array_operand(a, "np.transpose")
    if not is_array_value(a):
        return a
    assert isinstance(a, ArrayTracer)
    n = a.ndim
    if axes is None:
        perm = list(range(n))[::-1]
    else:
        perm = [int(p) % n for p in (axes if isinstance(axes, (tuple, list)) else [axes])]
        if sorted(perm) != list(range(n)):
            raise ValueError("axes don't match array")
    # out[k] = in[perm[k]]: input dimension perm[k] is loop k.
    in_exprs: list[AffineExpr] = [_ZERO] * n
    for k, p in enumerate(perm):
        in_exprs[p] = _d(k)
    shape = [_size(a, p) for p in perm]
    out = generic([ssa(a)], [_map(n, in_exprs)], None, _identity(n), ["parallel"] * n,
                  lambda v: v, output_shape=shape, output_type=a.element_type)
    return mark_copy(out, "a transpose (x.T, np.transpose)")


def _is_py_int(k: object) -> bool:
    return isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))


def _expand_key(x: ArrayTracer, key: object) -> list[object]:
    keys = list(key) if type(key) is tuple else [key]
    if keys.count(Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(1 for k in keys if k is not None and k is not Ellipsis)
    if used > x.ndim:
        raise IndexError(f"too many indices for array: array is {x.ndim}-dimensional, "
                         f"but {used} were indexed")
    if Ellipsis in keys:
        e = keys.index(Ellipsis)
        keys[e:e + 1] = [slice(None)] * (x.ndim - used)
    else:
        keys += [slice(None)] * (x.ndim - used)
    return keys


def mark_copy(x: ArrayTracer, what: str) -> ArrayTracer:
    """Record that ``x`` is a copy where numpy would give a view: writes raise."""
    x._cache["copy_of_view"] = what  # type: ignore[assignment]
    return x


def check_writable(x: ArrayTracer) -> None:
    """Raise if ``x`` is a copy where numpy would give a view (:func:`mark_copy`)."""
    what = x._cache.get("copy_of_view")
    if what is not None:
        raise trace_error(
            f"a write into the result of {what}",
            "numpy gives a view there, isozyme a copy, so the write would be lost; "
            "write into the original array with explicit indices instead")


def getitem_view(x: ArrayTracer, key: object) -> ArrayTracer:
    """``x[:, None]``, ``x[None]``: a copy into a new buffer with a static 1 dimension for
    each ``None`` (Python int indices are constants in the input's map).  Slices and
    integer indices are views (:mod:`.views`), which calls this for the ``None`` items
    only."""
    keys = _expand_key(x, key)
    shape: list[Size] = []
    in_exprs: list[AffineExpr] = []
    j = 0
    for k in keys:
        if k is None:
            shape.append(1)
            continue
        if _is_py_int(k):
            i, static = int(k), _static(x, j)
            if static != DYNAMIC_INDEX:
                if not -static <= i < static:
                    raise IndexError(f"index {i} is out of bounds for axis {j} with size "
                                     f"{static}")
                i %= static
            elif i < 0:
                raise trace_error("a negative index next to `:` on a dimension of "
                                  "unknown size", "use x.shape[k] - 1 in a loop instead")
            in_exprs.append(AffineExpr.constant(i))
        else:
            in_exprs.append(_d(len(shape)))
            shape.append(_size(x, j))
        j += 1
    n = len(shape)
    out = generic([ssa(x)], [_map(n, in_exprs)], None, _identity(n), ["parallel"] * n,
                  lambda v: v, output_shape=shape, output_type=x.element_type)
    return mark_copy(out, "indexing with `None` (a new axis)")


def copy_to_new(x: ArrayTracer) -> ArrayTracer:
    """A copy generic of ``x`` into a new buffer (identity layout)."""
    n = x.ndim
    return generic([ssa(x)], [_identity(n)], None, _identity(n), ["parallel"] * n,
                   lambda v: v, output_shape=[_size(x, j) for j in range(n)],
                   output_type=x.element_type)
