"""Advanced (fancy) and boolean-mask indexing of traced arrays, as numpy defines them.

Forms
-----
* **Integer index arrays** ``x[idx]``, ``x[idx, :]``, ``x[:, idx]``, ``x[rows, cols]``,
  ``Qs[:, rows, cols]``: an index array is an ``int64`` traced array (an argument, a
  computed array), or a Python list/tuple or numpy integer array (a constant of the trace:
  baked when small, a hidden argument when large, see ``array_builders``).  The index
  arrays (and the integer scalars among them, numpy's 0-d index arrays) broadcast
  together to a shape ``B``; the result is ``B`` in place of the indexed dimensions when
  they are adjacent, else ``B`` first, then the sliced dimensions (numpy's rule).
  Negative indices wrap; an index outside ``[-n, n)`` raises ``OutOfBoundsError`` at run
  time (unless ``isozyme.config(boundscheck=False)``).
* **Boolean masks** ``x[mask]``, ``x[mask] = v`` (``mask`` a traced comparison such as
  ``x > 0``, or a numpy/Python bool constant, indexing the leading ``mask.ndim``
  dimensions; only ``:`` may follow it): the result has ``count(mask)`` rows, known when
  the code runs: one loop counts, a buffer of that size is allocated, a second loop
  compacts (the row counter is a loop-carried ``index``).
* **Scatters** ``x[key] = v`` (``v`` a scalar, or an array broadcast to the shape of
  ``x[key]``): for repeated indices the last write wins, as numpy does in practice (its
  documentation leaves the winner unspecified).  ``x[idx] += v`` is, as in numpy,
  ``x[idx] = x[idx] + v``: repeated indices do *not* accumulate; ``np.add.at(x, idx, v)``
  does (``np.subtract.at`` too).

IR
--
Everything is ``scf.for`` loops of ``memref.load``/``memref.store`` whose indices are
loaded from the index arrays (sizes stay dynamic: the IR does not grow with the data),
with ``scf.if`` around mask-selected stores.  Slices are applied first as a view
(``memref.subview``, :func:`.views.view`), so the loops only index.  The AD passes
differentiate the loads and stores as any other: the adjoint of a gather is a
scatter-add into the shadow (repeated indices accumulate), that of a scatter a gather.
Scatters check every index before the first store, so a failed check leaves the array
untouched.  Index arrays and values that share memory with the target are copied first
(numpy reads them before writing).  Not supported (``UnsupportedError``): ``None`` mixed
with index arrays, masks mixed with other indices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import DYNAMIC_INDEX, IntegerType, i64
from xdsl.ir import Block, Region, SSAValue

from isozyme.config import boundscheck
from isozyme.errors import OutOfBoundsError, ShapeError, UnsupportedError

from .arrays import ArrayTracer, to_index
from .context import current_builder
from .diagnostics import format_location, trace_error, user_location
from .runtime_checks import require
from .tracer import Tracer, as_tracer, check_defined, emit, emit1, index, is_array_value, ssa

Size = Any  # a Python int or an ``index`` SSAValue


# --------------------------------------------------------------------------- keys


def _is_index_array(k: object) -> bool:
    if isinstance(k, np.ndarray):
        return k.ndim > 0
    return isinstance(k, (list, tuple)) or is_array_value(k)


def is_fancy_key(key: object) -> bool:
    """Whether ``key`` holds an index array or a mask (numpy's advanced indexing): a
    list, a numpy array or a traced array, alone or as an item of a tuple key."""
    items = list(key) if type(key) is tuple else [key]
    return any(_is_index_array(k) for k in items)


def _where() -> str:
    return format_location(*user_location())


def _as_index_array(k: object) -> tuple[str, ArrayTracer]:
    """``("arr", int64 array)`` or ``("mask", bool or 0/1 int64 array)`` for an index
    array item (constants become traced arrays: ``np.array`` of the trace)."""
    from .whole_array.array_builders import _as_array_operand  # noqa: PLC0415

    if isinstance(k, (list, tuple)):
        if any(isinstance(v, Tracer) for v in k):
            from .whole_array import np_array  # noqa: PLC0415

            k = np_array(list(k))
        else:
            # numpy: an empty list indexes as an integer array (np.asarray gives float)
            k = np.asarray(k) if np.size(k) else np.zeros(np.shape(k), np.int64)
    if isinstance(k, np.ndarray):
        if k.size == 0 and (k.dtype == np.bool_ or np.issubdtype(k.dtype, np.integer)):
            from .whole_array import new_buffer  # noqa: PLC0415

            kind = "mask" if k.dtype == np.bool_ else "arr"
            return kind, new_buffer(list(k.shape), i64)  # nothing to read: no fill
        if k.dtype == np.bool_:
            return "mask", _as_array_operand(k.astype(np.int64), "a mask")  # type: ignore[return-value]
        if not np.issubdtype(k.dtype, np.integer):
            raise _dtype_error(str(k.dtype))
        if k.dtype != np.int64:
            k = k.astype(np.int64)
        return "arr", _as_array_operand(k, "an index array")  # type: ignore[return-value]
    assert isinstance(k, ArrayTracer)
    t = k.element_type
    if isinstance(t, IntegerType) and t.width.data == 1:
        return "mask", k
    if isinstance(t, IntegerType):
        return "arr", k
    raise _dtype_error(str(k.dtype))


def _dtype_error(dtype: str) -> Exception:
    return trace_error(f"an index array of dtype {dtype}",
                       "arrays used as indices must be of integer (or boolean) type")


@dataclass
class _Plan:
    """How ``x[key]`` maps result positions to positions of ``base`` (``x`` viewed by
    the key's slices, rank ``x.ndim``)."""

    base: ArrayTracer
    scalars: dict[int, object] = field(default_factory=dict)  # position -> int index
    arrays: dict[int, ArrayTracer] = field(default_factory=dict)  # position -> index array
    bshape: list[Size] = field(default_factory=list)  # broadcast shape of the arrays
    dims: list[tuple[str, int]] = field(default_factory=list)  # ("b", j) or ("s", pos)
    shape: list[Size] = field(default_factory=list)  # the result's shape


def _expand(x: ArrayTracer, key: object) -> list[object]:
    """The key's items, converted index arrays as ``(kind, array)``, ``...`` expanded."""
    check_defined(key)
    items: list[object] = []
    for k in (list(key) if type(key) is tuple else [key]):
        check_defined(k)
        items.append(_as_index_array(k) if _is_index_array(k) else k)
    if sum(1 for k in items if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if any(k is None for k in items):
        raise UnsupportedError(f"{_where()}: indexing with None (np.newaxis) together with "
                               "index arrays or masks; add the axis after indexing")
    width = sum(k[1].ndim if isinstance(k, tuple) and k[0] == "mask" else 1
                for k in items if k is not Ellipsis)
    if width > x.ndim:
        raise IndexError(f"too many indices for array: array is {x.ndim}-dimensional, "
                         f"but {width} were indexed")
    fill: list[object] = [slice(None)] * (x.ndim - width)
    if any(k is Ellipsis for k in items):
        e = next(i for i, k in enumerate(items) if k is Ellipsis)
        items[e:e + 1] = fill
    else:
        items += fill
    return items


def _plan(x: ArrayTracer, items: Sequence[object], writing: bool = False) -> _Plan:
    """The plan of an integer-array key (no mask) for ``x``; ``writing``: for a store
    into ``x`` (an index array sharing ``x``'s memory is copied first: numpy reads the
    indices before writing)."""
    from .views import root_of, view  # noqa: PLC0415
    from .whole_array import broadcast_shape, copy_to_new  # noqa: PLC0415

    base = view(x, [k if isinstance(k, slice) else slice(None) for k in items])
    plan = _Plan(base)
    for p, k in enumerate(items):
        if isinstance(k, tuple):
            a = k[1]
            plan.arrays[p] = copy_to_new(a) if writing and root_of(a) is root_of(x) else a  # type: ignore[arg-type]
        elif not isinstance(k, slice):
            plan.scalars[p] = k
    arrays = list(plan.arrays.values())
    shape, late = broadcast_shape(arrays)
    plan.bshape = shape
    for (p, a), dims in zip(list(plan.arrays.items()), late):
        if dims:
            from .shape_checks import broadcast_view  # noqa: PLC0415

            plan.arrays[p] = broadcast_view(a, shape, dims)
    adv = sorted([*plan.arrays, *plan.scalars])
    sliced = [("s", p) for p in range(x.ndim) if p not in adv]
    bdims = [("b", j) for j in range(len(shape))]
    if adv == list(range(adv[0], adv[-1] + 1)):  # adjacent: B replaces them in place
        before = [d for d in sliced if d[1] < adv[0]]
        plan.dims = before + bdims + sliced[len(before):]
    else:
        plan.dims = bdims + sliced
    plan.shape = [shape[j] if kind == "b" else _size(base, j) for kind, j in plan.dims]
    return plan


def _size(x: ArrayTracer, k: int) -> Size:
    s = x.type.get_shape()[k]
    return s if s != DYNAMIC_INDEX else x.dim_index(k)


def _idx(s: Size) -> SSAValue:
    return to_index(s) if isinstance(s, int) else s


# --------------------------------------------------------------------------- loops


def _loops(sizes: Sequence[Size], body: Callable[[list[SSAValue], list[SSAValue]], list[SSAValue]],
           carried: Sequence[SSAValue] = ()) -> list[SSAValue]:
    """Nested ``scf.for`` loops over ``0 <= i_k < sizes[k]`` carrying ``carried``
    (``index`` values) through every level; ``body(ivs, carried)`` returns the values
    for the next iteration.  Returns the final carried values."""
    fb = current_builder()
    zero, one = to_index(0), to_index(1)

    def level(k: int, ivs: list[SSAValue], values: list[SSAValue]) -> list[SSAValue]:
        if k == len(sizes):
            return body(ivs, values)
        block = Block(arg_types=[index] + [v.type for v in values])
        with fb.at(block):
            out = level(k + 1, [*ivs, block.args[0]], list(block.args[1:]))
            fb.insert(scf.YieldOp(*out))
        op = emit(scf.ForOp(zero, _idx(sizes[k]), one, values, Region(block)))
        return list(op.results)

    return level(0, [], list(carried))


def _if(cond: SSAValue, then: Callable[[], None]) -> None:
    """``scf.if cond`` (no results) around what ``then`` emits."""
    fb = current_builder()
    block = Block()
    with fb.at(block):
        then()
        fb.insert(scf.YieldOp())
    emit(scf.IfOp(cond, [], Region(block)))


def _load(a: ArrayTracer, idx: Sequence[SSAValue]) -> Tracer:
    return emit1(memref.LoadOp.get(ssa(a), list(idx)))


def _store(v: Tracer, a: ArrayTracer, idx: Sequence[SSAValue]) -> None:
    emit(memref.StoreOp.get(ssa(as_tracer(v, a.element_type)), ssa(a), list(idx)))


def _bcast_index(a: ArrayTracer, ivs: Sequence[SSAValue], shape: Sequence[Size]) -> list[SSAValue]:
    """The indices of ``a`` (broadcast right-aligned to ``shape``) at loop indices
    ``ivs`` of ``shape``: a static size 1 reads element 0."""
    off = len(shape) - a.ndim
    out = []
    for j in range(a.ndim):
        one = a.type.get_shape()[j] == 1 and not (isinstance(shape[j + off], int)
                                                  and shape[j + off] == 1)
        out.append(to_index(0) if one else ivs[j + off])
    return out


def _source(plan: _Plan, ivs: Sequence[SSAValue], fixed: dict[int, SSAValue],
            checked: bool) -> list[SSAValue]:
    """The indices into ``plan.base`` of the result element at ``ivs``."""
    bivs = [iv for iv, (kind, _) in zip(ivs, plan.dims) if kind == "b"]
    out: list[SSAValue] = []
    for p in range(plan.base.ndim):
        if p in fixed:
            out.append(fixed[p])
        elif p in plan.arrays:
            a = plan.arrays[p]
            i = _load(a, _bcast_index(a, bivs, plan.bshape))
            out.append(plan.base._one_index(p, i, checked))
        else:
            out.append(ivs[plan.dims.index(("s", p))])
    return out


def _fixed(plan: _Plan) -> dict[int, SSAValue]:
    """The (wrapped, checked) offsets of the integer scalars of the key."""
    return {p: plan.base._one_index(p, i) for p, i in plan.scalars.items()}


def _check_arrays(plan: _Plan) -> None:
    """Bounds-check every index of the index arrays before a scatter's first store."""
    if not boundscheck():
        return
    for p, a in plan.arrays.items():
        sizes = [_size(a, j) for j in range(a.ndim)]

        def body(ivs: list[SSAValue], _: list[SSAValue], p: int = p, a: ArrayTracer = a
                 ) -> list[SSAValue]:
            plan.base._one_index(p, _load(a, ivs), True)
            return []

        _loops(sizes, body)


# --------------------------------------------------------------------------- values


def _value_reader(x: ArrayTracer, value: object, shape: Sequence[Size]
                  ) -> Callable[[Sequence[SSAValue]], Tracer]:
    """A function of the result's loop indices reading ``value`` broadcast to
    ``shape`` (a scalar is read as it is); checks the sizes (``ShapeError``)."""
    from .shape_checks import broadcast_view, may_be_one  # noqa: PLC0415
    from .views import root_of  # noqa: PLC0415
    from .whole_array import copy_to_new  # noqa: PLC0415
    from .whole_array.array_builders import _as_array_operand  # noqa: PLC0415

    check_defined(value)
    value = _as_array_operand(value, "an indexed assignment")
    if not is_array_value(value):
        v = as_tracer(value, x.element_type)
        return lambda ivs: v
    assert isinstance(value, ArrayTracer)
    if root_of(value) is root_of(x):
        value = copy_to_new(value)
    rank = len(shape)
    if value.ndim > rank:
        raise ShapeError(f"{_where()}: shape mismatch: a rank-{value.ndim} value cannot be "
                         f"broadcast to an indexing result of rank {rank}")
    late = []
    for j in range(value.ndim):
        s, t = value.type.get_shape()[j], shape[j + rank - value.ndim]
        if s == 1:
            continue
        if s != DYNAMIC_INDEX and isinstance(t, int):
            if s != t:
                raise ShapeError(f"{_where()}: shape mismatch: value array of size {s} "
                                 f"cannot be broadcast to an indexing result of size {t} "
                                 f"(dimension {j})")
            continue
        vs = value.dim_index(j)
        if vs is t:
            continue
        ok = emit1(arith.CmpiOp(vs, _idx(t), "eq"))
        if may_be_one(value, j):
            late.append(j)
            ok = emit1(arith.OrIOp(ssa(ok), ssa(emit1(arith.CmpiOp(vs, to_index(1), "eq")))))
        require(ok, "shape", "shape mismatch: value array of size {0} cannot be broadcast "
                f"to an indexing result of size {{1}} (dimension {j})", Tracer(vs), Tracer(_idx(t)))
    if late:
        value = broadcast_view(value, shape, late)
    arr = value
    return lambda ivs: _load(arr, _bcast_index(arr, ivs, shape))


# --------------------------------------------------------------------------- gathers/scatters


def fancy_getitem(x: ArrayTracer, key: object) -> ArrayTracer:
    """``x[key]`` for a key with index arrays or a mask: a new array (numpy's copy)."""
    from .whole_array import new_buffer  # noqa: PLC0415

    items = _expand(x, key)
    mask = _mask_of(items)
    if mask is not None:
        return _mask_getitem(x, mask)
    plan = _plan(x, items)
    fixed = _fixed(plan)
    out = new_buffer(plan.shape, x.element_type)

    def body(ivs: list[SSAValue], _: list[SSAValue]) -> list[SSAValue]:
        _store(_load(plan.base, _source(plan, ivs, fixed, True)), out, ivs)
        return []

    _loops(plan.shape, body)
    return out


def fancy_setitem(x: ArrayTracer, key: object, value: object, combine: str | None = None
                  ) -> None:
    """``x[key] = value`` for a key with index arrays or a mask; with ``combine``
    (``"+"``/``"-"``) every element is updated in turn (``np.add.at``: repeated indices
    accumulate)."""
    items = _expand(x, key)
    mask = _mask_of(items)
    if mask is not None:
        if combine is not None:
            raise UnsupportedError(f"{_where()}: np.add.at with a boolean mask")
        _mask_setitem(x, mask, value)
        return
    from .accumulation import accumulate, in_parallel_body  # noqa: PLC0415

    plan = _plan(x, items, writing=True)
    fixed = _fixed(plan)
    read = _value_reader(x, value, plan.shape)
    _check_arrays(plan)
    # np.add.at in a prange body: other iterations may update the same elements, so each
    # update is an accumulation of the parallel loop (atomic unless provably disjoint).
    parallel = combine is not None and in_parallel_body()

    def body(ivs: list[SSAValue], _: list[SSAValue]) -> list[SSAValue]:
        at = _source(plan, ivs, fixed, False)
        v = read(ivs)
        if parallel:
            accumulate(plan.base, tuple(Tracer(i) for i in at), combine, v)
            return []
        if combine is not None:
            old = _load(plan.base, at)
            v = old + v if combine == "+" else old - v
        _store(v, plan.base, at)
        return []

    _loops(plan.shape, body)


def ufunc_at(combine: str) -> Callable[..., None]:
    """``np.add.at(a, indices, b)`` (``combine="+"``) / ``np.subtract.at``: unbuffered
    in place, so repeated indices accumulate."""
    def at(a: object, indices: object, b: object = None) -> None:
        if not isinstance(a, ArrayTracer):
            raise trace_error(f"np.{'add' if combine == '+' else 'subtract'}.at on a "
                              f"{type(a).__name__}", "its first argument must be a traced array")
        if b is None:
            raise TypeError("at() requires a second operand for binary ufuncs")
        if is_fancy_key(indices):
            fancy_setitem(a, indices, b, combine)
        else:  # no repeated elements: the plain in-place update
            t = a[indices]
            a[indices] = t + b if combine == "+" else t - b
    return at


def np_take(a: object, indices: object, axis: int | None = None, out: object = None,
            mode: str = "raise") -> Any:
    """``np.take(a, indices, axis)``: ``a[..., indices]`` along ``axis`` (the flattened
    array when ``axis`` is None); ``mode="raise"`` only (bounds-checked)."""
    if not isinstance(a, ArrayTracer):
        raise trace_error(f"np.take of a {type(a).__name__}", "its first argument must be "
                          "a traced array")
    if out is not None or mode != "raise":
        raise UnsupportedError(f"{_where()}: np.take with out= or mode={mode!r}")
    if axis is None:
        return a.ravel()[indices] if a.ndim > 1 else a[indices]  # type: ignore[attr-defined]
    k = int(axis) % a.ndim if -a.ndim <= int(axis) < a.ndim else None
    if k is None:
        raise np.exceptions.AxisError(int(axis), a.ndim)
    return a[(slice(None),) * k + (indices,)]


# --------------------------------------------------------------------------- masks


def _mask_of(items: Sequence[object]) -> ArrayTracer | None:
    """The mask of a mask key (a mask followed by ``:`` only), or None for a key
    without masks; other mixes are refused."""
    masks = [k for k in items if isinstance(k, tuple) and k[0] == "mask"]
    if not masks:
        return None
    first = items[0]
    if len(masks) > 1 or first is not masks[0] or not all(
            isinstance(k, slice) and k.start is None and k.stop is None and k.step is None
            for k in items[1:]):
        raise UnsupportedError(f"{_where()}: a boolean mask combined with other indices; "
                               "write x[mask] with the mask indexing the leading dimensions")
    return first[1]  # type: ignore[index,return-value]


def _check_mask_shape(x: ArrayTracer, mask: ArrayTracer) -> None:
    for j in range(mask.ndim):
        s, t = _size(x, j), _size(mask, j)
        msg = (f"boolean index did not match indexed array along axis {j}; size of axis "
               "is {0} but size of corresponding boolean axis is {1}")
        if isinstance(s, int) and isinstance(t, int):
            if s != t:
                raise OutOfBoundsError(f"{_where()}: " + msg.format(s, t))
        elif s is not t:
            ok = emit1(arith.CmpiOp(_idx(s), _idx(t), "eq"))
            require(ok, "index", msg, Tracer(_idx(s)), Tracer(_idx(t)))


def _truth(mask: ArrayTracer, ivs: Sequence[SSAValue]) -> SSAValue:
    m = _load(mask, ivs)
    if isinstance(m.type, IntegerType) and m.type.width.data == 1:
        return ssa(m)
    return ssa(emit1(arith.CmpiOp(ssa(m), ssa(as_tracer(0, m.type)), "ne")))


def _bump(c: SSAValue, m: SSAValue) -> SSAValue:
    """``c + m`` (``m`` an ``i1``) as an ``index``."""
    return ssa(emit1(arith.SelectOp(m, ssa(emit1(arith.AddiOp(c, to_index(1)))), c)))


def _count(mask: ArrayTracer) -> SSAValue:
    """The number of true elements of ``mask`` (an ``index``): one counting loop."""
    sizes = [_size(mask, j) for j in range(mask.ndim)]
    return _loops(sizes, lambda ivs, c: [_bump(c[0], _truth(mask, ivs))], [to_index(0)])[0]


def _mask_loop(x: ArrayTracer, mask: ArrayTracer,
               row: Callable[[list[SSAValue], SSAValue, list[SSAValue]], None]) -> None:
    """For each true element of ``mask`` (at ``ivs``, the ``c``-th one), for each
    index ``rest`` of the remaining dimensions of ``x``: ``row(ivs, c, rest)``."""
    k = mask.ndim
    rest = [_size(x, j) for j in range(k, x.ndim)]

    def body(ivs: list[SSAValue], c: list[SSAValue]) -> list[SSAValue]:
        m = _truth(mask, ivs)
        _if(m, lambda: _loops(rest, lambda jvs, _: (row(ivs, c[0], jvs), [])[1]))
        return [_bump(c[0], m)]

    _loops([_size(mask, j) for j in range(k)], body, [to_index(0)])


def _mask_getitem(x: ArrayTracer, mask: ArrayTracer) -> ArrayTracer:
    """``x[mask]``: count, allocate ``(count, *x.shape[mask.ndim:])``, compact."""
    from .whole_array import new_buffer  # noqa: PLC0415

    _check_mask_shape(x, mask)
    n = _count(mask)
    out = new_buffer([n, *[_size(x, j) for j in range(mask.ndim, x.ndim)]], x.element_type)
    _mask_loop(x, mask, lambda ivs, c, rest: _store(_load(x, [*ivs, *rest]), out, [c, *rest]))
    return out


def _mask_setitem(x: ArrayTracer, mask: ArrayTracer, value: object) -> None:
    """``x[mask] = value``: a scalar, or an array broadcast to ``x[mask]``'s shape."""
    _check_mask_shape(x, mask)
    if is_array_value(value) or isinstance(value, (list, tuple, np.ndarray)):
        shape = [_count(mask), *[_size(x, j) for j in range(mask.ndim, x.ndim)]]
        read = _value_reader(x, value, shape)
    else:
        check_defined(value)
        v = as_tracer(value, x.element_type)
        read = lambda ivs: v  # noqa: E731
    _mask_loop(x, mask, lambda ivs, c, rest: _store(read([c, *rest]), x, [*ivs, *rest]))


__all__ = ["fancy_getitem", "fancy_setitem", "is_fancy_key", "np_take", "ufunc_at"]
