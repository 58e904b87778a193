"""Transposes and new axes (views, built by :mod:`..view_ops`) and copies into new
buffers (:func:`copy_to_new`).  Slices and integer indices are views too (:mod:`..views`).
"""

from __future__ import annotations

from typing import Any

from isozyme.errors import UnsupportedError

from ..arrays import ArrayTracer
from ..tracer import is_array_value, ssa
from .array_builders import _as_array_operand
from .linalg_builder import _identity, _size, generic


def np_transpose(a: object, axes: object = None) -> Any:
    """``np.transpose(a, axes)``/``x.T``: a view (``memref.transpose``), as in numpy."""
    from ..view_ops import transpose  # noqa: PLC0415

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
    return transpose(a, perm)


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


def getitem_view(x: ArrayTracer, key: object) -> ArrayTracer:
    """``x[:, None]``, ``x[None]``: a view with a new axis of size 1 for each ``None``
    (``memref.expand_shape``).  The key holds ``None`` and full slices only (views.py
    takes the view of the other items first)."""
    from ..view_ops import new_axes  # noqa: PLC0415

    keys = _expand_key(x, key)
    if any(k is not None and not (isinstance(k, slice) and k == slice(None)) for k in keys):
        raise UnsupportedError("indexing with None mixed with integers here")
    return new_axes(x, [k is None for k in keys])


def copy_to_new(x: ArrayTracer) -> ArrayTracer:
    """A copy generic of ``x`` into a new buffer (identity layout)."""
    n = x.ndim
    return generic([ssa(x)], [_identity(n)], None, _identity(n), ["parallel"] * n,
                   lambda v: v, output_shape=[_size(x, j) for j in range(n)],
                   output_type=x.element_type)
