"""Basic indexing of traced arrays: slices and partial indices are views
(``memref.subview``), as in numpy.

Forms
-----
A key is a tuple (or a single item) of

* **integers** (Python ints or traced integer scalars; negative ones wrap around like
  numpy, traced ones with a ``select`` unless they are known to be non-negative): the
  dimension is indexed and dropped;
* **slices** ``a:b:k``: ``a``/``b`` are ``None``, Python ints or traced integers, ``k``
  is ``None`` or a nonzero Python int (positive or negative).  Start and stop are
  clamped as Python's ``slice.indices`` does (for a negative ``k``: ``start`` defaults to
  ``n - 1``, ``stop`` to "before the first element"); with ``arith.minsi``/``maxsi``/
  ``select`` when the size or a bound is only known at run time.  The size is
  ``max(0, ceildiv(stop - start, k))`` (``ceildiv(start - stop, -k)`` for ``k < 0``; the
  ``max`` is left out when one of the bounds is a default, the difference then cannot
  be negative);
* ``...`` (as many ``:`` as needed) and ``None`` (a new axis of size 1).

An index of every dimension by integers is a ``memref.load``/``memref.store``.  Any other
key without ``None`` is one ``memref.subview`` of the array: offsets = the clamped starts
(the index for an integer), sizes = the slice lengths (a static ``1`` for an integer),
strides = the steps (``1`` for an integer); the integer-indexed dimensions are dropped
(rank-reducing: their static size 1 lets the lowering drop them).  The result type keeps
static sizes only where the size is a Python int (``memref<?x1xf64, ...>`` stays
broadcastable) and has a fully dynamic strided layout,
``memref<?xf64, strided<[?], offset: ?>>``, so the view is an :class:`.ArrayTracer`
like any argument.  ``x[:]`` and ``x[...]`` are ``x`` itself (the same memory).  A key with
``None`` first takes the view of the other items, then a view with the new size-1
dimensions (``memref.expand_shape``, :func:`.whole_array.getitem_view`).

Views alias their base: writes through them (``v = x[2:]; v[0] = 5.0``, ``v += 1``,
``x[1:-1] = expr``) reach the base array.

Assignment ``x[key] = value``: ``value`` (a scalar, or an array broadcast to the view's
shape) is written into the view by one copy ``linalg.generic`` (:func:`.whole_array.
inplace`).  When ``value`` is a view of the same base array (``x[1:] = x[:-1]``), it is
first copied into a new buffer, as numpy does for overlapping operands (whole-array
expressions such as ``u[1:-1] + 0.1 * (u[:-2] - ...)`` are new buffers already); the
same happens for ``x[a:] += x[:b]``.  ``x[key] += v`` (Python: ``t = x[key]; t += v;
x[key] = t``) updates the view in place and the final store of the view into itself is
skipped.  Two different array *arguments* are assumed not to overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import DYNAMIC_INDEX, MemRefType, NoneAttr, StridedLayoutAttr
from xdsl.ir import Block, SSAValue

from .arrays import ArrayTracer, to_index
from .context import current_builder
from .diagnostics import trace_error
from .fancy_indexing import fancy_getitem, fancy_setitem, is_fancy_key
from .tracer import (
    Tracer,
    check_defined,
    emit1,
    is_array_value,
    is_float_type,
    lower_bound,
    ssa,
)

Idx = Any  # a Python int or an ``index`` SSAValue

_NEW = object()  # a ``None`` (new axis) in an expanded key

_ARRAY_KEYS = ("index arrays and masks are supported in x[idx], x[idx] = v and "
               "np.add.at(x, idx, v); in a prange body write "
               "np.add.at(x, idx, v) for x[idx] += v")


# --------------------------------------------------------------------------- index arithmetic


def _v(a: Idx) -> SSAValue:
    return to_index(a) if isinstance(a, int) else a


def _add(a: Idx, b: Idx) -> Idx:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if isinstance(b, int) and b == 0:
        return a
    if isinstance(a, int) and a == 0:
        return b
    return ssa(emit1(arith.AddiOp(_v(a), _v(b))))


def _sub(a: Idx, b: Idx) -> Idx:
    if isinstance(a, int) and isinstance(b, int):
        return a - b
    if isinstance(b, int) and b == 0:
        return a
    return ssa(emit1(arith.SubiOp(_v(a), _v(b))))


def _min(a: Idx, b: Idx) -> Idx:
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    return ssa(emit1(arith.MinSIOp(_v(a), _v(b))))


def _max(a: Idx, b: Idx) -> Idx:
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    return ssa(emit1(arith.MaxSIOp(_v(a), _v(b))))


def _ceildiv(a: Idx, k: int) -> Idx:
    if k == 1:
        return a
    if isinstance(a, int):
        return -((-a) // k)
    return ssa(emit1(arith.CeilDivSIOp(a, to_index(k))))


# --------------------------------------------------------------------------- keys


def _is_int(k: object) -> bool:
    return isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))


def _check_scalar_index(k: object, what: str) -> None:
    check_defined(k)
    if isinstance(k, Tracer):
        if is_array_value(k):
            raise trace_error("indexing with an array here", _ARRAY_KEYS)
        if is_float_type(k.type):
            raise trace_error(f"{what} that is a float", "indices must be integers; use int(...)")
        return
    if not _is_int(k):
        raise trace_error(f"{what} of type {type(k).__name__}", "indices must be integers")


def _check_item(k: object) -> None:
    if k is None or k is Ellipsis:
        return
    if isinstance(k, slice):
        for part in (k.start, k.stop):
            if part is not None:
                _check_scalar_index(part, "a slice bound")
        if k.step is not None:
            check_defined(k.step)
            if isinstance(k.step, Tracer):
                raise trace_error("a slice step that is traced",
                                  "slice steps must be Python ints known when tracing")
            if not _is_int(k.step):
                raise trace_error(f"a slice step of type {type(k.step).__name__}",
                                  "slice steps must be integers")
            if int(k.step) == 0:
                raise ValueError("slice step cannot be zero")
        return
    if isinstance(k, (list, np.ndarray)) or is_array_value(k):
        raise trace_error("indexing with an array here", _ARRAY_KEYS)
    _check_scalar_index(k, "an array index")


def expand_key(x: ArrayTracer, key: object) -> list[object]:
    """The items of ``key`` with ``...`` expanded and missing trailing ``:`` added: one
    item per dimension of ``x`` (an int/tracer or a slice), plus ``None`` items."""
    check_defined(key)
    keys = list(key) if type(key) is tuple else [key]
    for k in keys:
        _check_item(k)
    if sum(1 for k in keys if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(1 for k in keys if k is not None and k is not Ellipsis)
    if used > x.ndim:
        raise IndexError(f"too many indices for array: array is {x.ndim}-dimensional, "
                         f"but {used} were indexed")
    fill = [slice(None)] * (x.ndim - used)
    if any(k is Ellipsis for k in keys):
        e = next(i for i, k in enumerate(keys) if k is Ellipsis)
        keys[e:e + 1] = fill
    else:
        keys += fill
    return keys


def is_element_key(keys: Sequence[object]) -> bool:
    """Whether an expanded key indexes every dimension with an integer (a load/store)."""
    return all(k is not None and not isinstance(k, slice) for k in keys)


def _fingerprint(keys: Sequence[object]) -> tuple[object, ...]:
    """A key's identity: Python ints by value, tracers by identity."""
    def one(k: object) -> object:
        if isinstance(k, slice):
            return ("s", one(k.start), one(k.stop), one(k.step))
        if isinstance(k, Tracer):
            return ("t", id(k.value))
        return ("v", None if k is None else int(k))  # type: ignore[call-overload]

    return tuple(one(k) for k in keys)


def root_of(x: ArrayTracer) -> SSAValue:
    """The array whose memory ``x`` views (``x`` itself unless it is a view)."""
    return x._cache.get("root", x.value)  # type: ignore[return-value]


# --------------------------------------------------------------------------- bounds


def _bound(b: object, n: Idx, step: int) -> Idx:
    """A slice start/stop ``b`` (not ``None``) clamped like ``slice.indices``: into
    ``[0, n]`` for a positive step, ``[-1, n - 1]`` for a negative one."""
    lo, hi = (0, n) if step > 0 else (-1, _sub(n, 1))
    if isinstance(b, Tracer):
        idx = to_index(b)
        lb = lower_bound(b)
        if lb is not None and lb >= 0:
            return _min(idx, hi)
        zero = to_index(0)
        neg = emit1(arith.CmpiOp(idx, zero, "slt"))
        wrapped = _max(_add(idx, n), lo)
        clamped = _min(idx, hi)
        return ssa(emit1(arith.SelectOp(ssa(neg), _v(wrapped), _v(clamped))))
    i = int(b)  # type: ignore[call-overload]
    if i >= 0:
        return _min(i, hi)
    return _max(_add(n, i), lo)


def _slice_parts(s: slice, n: Idx) -> tuple[Idx, Idx, int]:
    """(offset, size, step) of slice ``s`` of a dimension of size ``n``."""
    step = 1 if s.step is None else int(s.step)
    if isinstance(n, int) and not isinstance(s.start, Tracer) and not isinstance(s.stop, Tracer):
        start, stop, step = s.indices(n)
        return start, len(range(start, stop, step)), step
    if s.start is None and s.stop is None:
        if step == 1:
            return 0, n, 1
        if step > 0:
            return 0, _ceildiv(n, step), step
        return _sub(n, 1), _ceildiv(n, -step), step
    if step > 0:
        start = 0 if s.start is None else _bound(s.start, n, step)
        stop = n if s.stop is None else _bound(s.stop, n, step)
        canonical = _canonical_size(s, n) if step == 1 else None
        if canonical is not None:
            return start, canonical, step
        size = _ceildiv(_sub(stop, start), step)
    else:
        start = _sub(n, 1) if s.start is None else _bound(s.start, n, step)
        stop = -1 if s.stop is None else _bound(s.stop, n, step)
        size = _ceildiv(_sub(start, stop), -step)
    if s.start is not None and s.stop is not None:
        size = _max(size, 0)
    return start, size, step


def _canonical_size(s: slice, n: SSAValue) -> Idx | None:
    """The length of ``x[a:b]`` (Python-int or ``None`` bounds, step 1) of a dimension of
    dynamic size ``n``, as ``max(0, min(n + c, m))``, one SSA value per ``(n, c, m)``.

    Slices of equal length for every ``n`` (``u[:-2]``, ``u[1:-1]``, ``u[2:]``) so get
    the *same* size value, and whole-array code on them needs no run-time broadcasting
    (:mod:`.shape_checks`).  None when the bounds are traced or of mixed sign with a
    negative start (``x[-3:5]``)."""
    a, b = s.start, s.stop
    if isinstance(a, Tracer) or isinstance(b, Tracer):
        return None
    a = 0 if a is None else int(a)  # type: ignore[call-overload]
    if a >= 0:
        if b is None:
            c, m = -a, None
        elif int(b) >= 0:  # type: ignore[call-overload]
            c, m = -a, int(b) - a  # type: ignore[call-overload]
        else:
            c, m = int(b) - a, None  # type: ignore[call-overload]
    elif b is None:
        c, m = 0, -a
    elif int(b) < 0:  # type: ignore[call-overload]
        c, m = int(b), int(b) - a  # type: ignore[call-overload]
    else:
        return None
    if m is not None and m <= 0:
        return 0
    fb = current_builder()
    memo = fb.__dict__.setdefault("_iz_slice_sizes", {})
    key = (id(n), c, m)
    hit = memo.get(key)
    if hit is not None and hit[0] is n and fb.visible(_block_of(hit[1])):
        return hit[1]
    size: Idx = _add(n, c)
    if m is not None:
        size = _min(size, m)
    if c < 0:
        size = _max(size, 0)
    memo[key] = (n, size)
    return size


def _block_of(v: Idx) -> Any:
    if isinstance(v, int):
        return None
    owner = v.owner
    return owner if isinstance(owner, Block) else owner.parent_block()


def _int_offset(x: ArrayTracer, k: int, i: object, checked: bool = True) -> Idx:
    """The offset of integer index ``i`` in dimension ``k`` (wrapped if negative),
    bounds-checked at the insertion point unless ``checked`` is False (see
    :meth:`ArrayTracer._one_index`)."""
    from .runtime_checks import check_index, static_index_error  # noqa: PLC0415

    static = x.type.get_shape()[k]
    if isinstance(i, Tracer):
        return x._one_index(k, i, checked)
    i = int(i)  # type: ignore[call-overload]
    if static != DYNAMIC_INDEX:
        if not -static <= i < static:
            raise static_index_error(i, k, static)
        return i % static
    off = i if i >= 0 else _add(x.dim_index(k), i)
    if checked:
        check_index(i, _v(off), x.dim_index(k), k)
    return off


def _check_int_keys(x: ArrayTracer, keys: Sequence[object]) -> None:
    """Bounds-check the integer keys of a view of ``x`` at the insertion point (a view
    made in the entry block for a loop or branch is checked where it is used)."""
    for k, item in enumerate(keys):
        if not isinstance(item, slice):
            _int_offset(x, k, item)


# --------------------------------------------------------------------------- views


def _view_type(x: ArrayTracer, sizes: Sequence[Idx]) -> MemRefType:
    shape = [s if isinstance(s, int) else DYNAMIC_INDEX for s in sizes]
    layout = StridedLayoutAttr([NoneAttr()] * len(shape), NoneAttr())
    return MemRefType(x.element_type, shape, layout)


def _is_full(k: object) -> bool:
    return (isinstance(k, slice) and k.start is None and k.stop is None
            and (k.step is None or (not isinstance(k.step, Tracer) and int(k.step) == 1)))


def view(x: ArrayTracer, keys: Sequence[object]) -> ArrayTracer:
    """The ``memref.subview`` of ``x`` for an expanded key without ``None`` (one item per
    dimension, at least one slice, or fewer integers than dimensions)."""
    assert len(keys) == x.ndim and all(k is not None for k in keys)
    if all(_is_full(k) for k in keys):
        return x
    fingerprint = _fingerprint(keys)
    _check_int_keys(x, keys)
    fb = current_builder()
    if fb.block is not fb.entry and x.builder is fb and _hoistable(fb, x, keys):
        # Inside a loop or branch, a view of an array of the function's entry block with
        # bounds from there is made in the entry block (views are pure): the AD passes
        # differentiate views at function top level.
        cached = x._cache.get(("view", fingerprint))
        if cached is not None and fb.defined_in_entry(cached.value):
            return cached  # type: ignore[return-value]
        with fb.at_entry():
            v = _make_view(x, keys, fingerprint)
        x._cache[("view", fingerprint)] = v
        return v
    return x._cached(("view", fingerprint),  # type: ignore[return-value]
                     lambda: _make_view(x, keys, fingerprint))


def _hoistable(fb: Any, x: ArrayTracer, keys: Sequence[object]) -> bool:
    parts: list[object] = []
    for k in keys:
        parts.extend((k.start, k.stop, k.step) if isinstance(k, slice) else (k,))
    return fb.defined_in_entry(x.value) and all(
        not isinstance(p, Tracer) or (p.builder is fb and fb.defined_in_entry(p.value))
        for p in parts)


def _make_view(x: ArrayTracer, keys: Sequence[object], fingerprint: tuple) -> ArrayTracer:
    offsets: list[Idx] = []
    sizes: list[Idx] = []
    steps: list[Idx] = []
    kept: list[Idx] = []
    for k, item in enumerate(keys):
        static = x.type.get_shape()[k]
        if isinstance(item, slice):
            n = static if static != DYNAMIC_INDEX else x.dim_index(k)
            off, size, step = _slice_parts(item, n)
            offsets.append(off)
            sizes.append(size)
            steps.append(step)
            kept.append(size)
        else:
            offsets.append(_int_offset(x, k, item, checked=False))  # view() checks
            sizes.append(1)
            steps.append(1)
    result_type = _view_type(x, kept)
    op = memref.SubviewOp.get(ssa(x), offsets, sizes, steps, result_type)
    v = ArrayTracer(emit1(op).value)
    for j, s in enumerate(kept):
        if not isinstance(s, int):
            v._cache[("idx", j)] = Tracer(s)
    v._cache["root"] = root_of(x)  # type: ignore[assignment]
    v._cache["view_key"] = (x.value, fingerprint)  # type: ignore[assignment]
    _reversal_layout(x, keys, v)
    return v


def _reversal_layout(x: ArrayTracer, keys: Sequence[object], v: ArrayTracer) -> None:
    """``x[::-1]`` of a 1-D array whose layout and size are known (never 1): equally
    spaced but not contiguous, so numpy's ``ravel`` of it copies (:mod:`.view_ops`)."""
    from .shape_checks import may_be_one  # noqa: PLC0415
    from .view_ops import layout_of  # noqa: PLC0415

    k = keys[0] if len(keys) == 1 else None
    if not (isinstance(k, slice) and k.start is None and k.stop is None
            and not isinstance(k.step, Tracer) and k.step is not None and int(k.step) == -1):
        return
    if x.type.get_shape()[0] != 1 and not may_be_one(x, 0) and \
            layout_of(x) in ("C", "flat"):
        v._cache["layout"] = "flat"  # type: ignore[assignment]


def getitem(x: ArrayTracer, key: object) -> Tracer:
    """``x[key]`` (see the module docstring); index arrays and masks: :mod:`.fancy_indexing`."""
    if is_fancy_key(key):
        return fancy_getitem(x, key)
    keys = expand_key(x, key)
    if is_element_key(keys):
        idx = [_v(_int_offset(x, k, i)) for k, i in enumerate(keys)]
        return emit1(memref.LoadOp.get(ssa(x), idx))
    plain = [k for k in keys if k is not None]
    v = view(x, plain)
    if len(plain) == len(keys):
        return v
    from .whole_array import getitem_view  # noqa: PLC0415

    # A new axis: a view of the view with static 1 dimensions.
    nv = getitem_view(v, tuple(None if k is None else slice(None)
                               for k in keys if k is None or isinstance(k, slice)))
    nv._cache["view_key"] = (x.value, _fingerprint(keys))  # type: ignore[assignment]
    return nv


def separate_if_overlapping(target: ArrayTracer, value: object) -> object:
    """``value``, or a copy of it when it is another view of ``target``'s memory (numpy
    reads overlapping operands as if copied first)."""
    if not isinstance(value, ArrayTracer) or value.value is target.value:
        return value
    if root_of(value) is not root_of(target):
        return value
    if _same_view(target, value):
        return value
    from .whole_array import copy_to_new  # noqa: PLC0415

    return copy_to_new(value)


def _same_view(a: ArrayTracer, b: ArrayTracer) -> bool:
    ka, kb = a._cache.get("view_key"), b._cache.get("view_key")
    return (ka is not None and kb is not None and ka[0] is kb[0]  # type: ignore[index]
            and ka[1] == kb[1])  # type: ignore[index]


def setitem(x: ArrayTracer, key: object, value: object) -> bool:
    """``x[key] = value`` for a key that is not a plain element index; returns ``False``
    (nothing emitted) for an element index."""
    if is_fancy_key(key):
        fancy_setitem(x, key, value)
        return True
    keys = expand_key(x, key)
    if is_element_key(keys):
        return False
    from .whole_array import inplace  # noqa: PLC0415

    check_defined(value)
    plain = [k for k in keys if k is not None]
    # x[key] op= v: Python stores the updated view back into itself: nothing to copy.
    if isinstance(value, ArrayTracer) and value._cache.get("view_key") is not None:
        vk = value._cache["view_key"]
        if vk[0] is x.value and vk[1] in (_fingerprint(plain), _fingerprint(keys)):  # type: ignore[index]
            return True
    # With new axes the target is the view with them (x[:, None] = v takes v of shape
    # (n, 1)), as numpy's assignment does.
    target = view(x, plain) if len(plain) == len(keys) else getitem(x, key)
    assert isinstance(target, ArrayTracer)
    if value is target:  # x[key] = x[key]
        return True
    inplace("=", target, value)
    return True
