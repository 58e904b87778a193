"""Arguments of an autodiff call as the compiler sees them: the IR type of each value
(memref types of arrays: rank, dtype, static sizes of 1, unit inner stride) and the part
of the compile-cache key each annotated argument contributes.

:func:`arg_key` runs on every call (the cache key is built before anything else); the
rest runs when a signature is compiled.
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects.builtin import f32, f64, i1, i64
from xdsl.ir import Attribute

from isozyme.annotations import (
    Annotation,
    BatchDuplicated,
    BatchDuplicatedNoNeed,
    Const,
    Duplicated,
    is_array,
    is_float_scalar,
    is_int_scalar,
    shadows_of,
)
from isozyme.errors import UnsupportedError
from isozyme.pytree import flatten as flatten_tree
from isozyme.pytree import is_node
from isozyme.reads import Ident, Unfreezable, freeze
from isozyme.reads import unit_inner as _unit_inner
from isozyme.runtime.marshal import device_of, device_view, on_device


_ARRAY_DTYPES = {np.dtype(np.float64): f64, np.dtype(np.float32): f32, np.dtype(np.int64): i64}


def view(x: object) -> np.ndarray:
    """``x`` as an ndarray: numpy's view of a host array, the metadata view
    (:func:`isozyme.runtime.marshal.device_view`) of a device array."""
    return device_view(x) if on_device(x) else np.asarray(x)


def device_argument(x: object) -> object:
    """An argument of a ``cuda`` call: a device array as its metadata view (device
    pointer); a host array, which only a hidden global array can be here (the user's
    were checked), copied to the device for the call; a scalar as it is."""
    if on_device(x):
        return device_view(x)
    if isinstance(x, np.ndarray):
        from isozyme.runtime.cuda import import_cupy  # noqa: PLC0415

        return device_view(import_cupy().asarray(x))
    return x


def ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The dimensions of size 1 (part of the signature: they broadcast, others do not)."""
    return tuple(k for k, s in enumerate(shape) if s == 1)


def layout(a: np.ndarray) -> str:
    """The memory layout of an array, as numpy's ``reshape``/``ravel`` see it: ``"C"``
    (C-contiguous: both are views), ``"flat"`` (its elements are equally spaced, sizes
    of 1 aside: ``reshape(-1)`` is a view, ``ravel`` a copy), ``"none"`` (both copy)."""
    if a.flags.c_contiguous:
        return "C"
    unit, inside, seen = 0, 1, False
    for size, stride in zip(reversed(a.shape), reversed(a.strides)):
        if size == 0:
            return "C"
        if size != 1:
            if not seen:
                unit, seen = stride, True
            elif stride != unit * inside:
                return "none"
        inside *= size
    return "flat"


def array_type(x: object, unit_inner: bool) -> Attribute:
    """The memref type of an array argument: any shape of its rank (dimensions of size 1
    static), any strides, or unit innermost stride when ``unit_inner`` (contiguous rows
    vectorize)."""
    from isozyme.frontends.python import array_memref_type

    a = view(x)
    elt = _ARRAY_DTYPES.get(a.dtype)
    if elt is None:
        raise UnsupportedError(
            f"arrays of dtype {a.dtype} are not supported (float64, float32, int64 are)"
        )
    if a.ndim == 0:
        raise UnsupportedError("0-dimensional arrays are not supported; pass a float")
    return array_memref_type(a.ndim, elt, unit_inner, ones(a.shape))


def ir_type(x: object, unit_inner: bool = False) -> Attribute | None:
    """The IR type of a runtime argument, or None for a value baked in."""
    if is_array(x):
        return array_type(x, unit_inner)
    if isinstance(x, (bool, np.bool_)):
        return i1
    if isinstance(x, np.float32):
        return f32
    if is_float_scalar(x):
        return f64
    if is_int_scalar(x):
        return i64
    return None


NUMERIC = frozenset({float, int, bool, np.float64, np.float32, np.int64, np.int32, np.bool_})


def arg_key(a: Annotation) -> object:
    """The part of the cache key one argument contributes."""
    v = a.val
    t = type(v)
    if t in NUMERIC:
        return (type(a), t) if type(a) not in BATCH else (type(a), t, len(a.dvals))  # type: ignore[attr-defined]
    if type(a) in BATCH:
        return batch_key(a)  # type: ignore[arg-type]
    if t is np.ndarray or is_array(v):
        # a device array's key names its type and device: host and device calls
        # compile apart, and a compiled cuda program's kernels belong to one device
        kind = np.ndarray if t is np.ndarray or not on_device(v) else (t, device_of(v))
        arr = v if t is np.ndarray else view(v)
        return (type(a), kind, arr.dtype, ones(arr.shape), arr.ndim,  # type: ignore[union-attr]
                arg_unit_inner(a), layout(arr))  # type: ignore[arg-type]
    if is_node(v):
        leaves, tree = flatten_tree(v)
        if isinstance(a, Duplicated):
            shadows = flatten_tree(a.dval)[0]  # type: ignore[attr-defined]
            return (type(a), tree, *(
                arg_key(Duplicated(x, d) if is_array(x) else Const(x))
                for x, d in zip(leaves, shadows)
            ))
        return (type(a), tree, *(arg_key(Const(x)) for x in leaves))
    return (type(a), baked_key(v))


BATCH = (BatchDuplicated, BatchDuplicatedNoNeed)


def batch_key(a: BatchDuplicated) -> object:
    """The key of a ``BatchDuplicated`` argument: its width and, per lane, the key its
    shadow would give as a ``Duplicated`` one (pytree structure, layouts).

    Lanes that are numpy arrays with the same strides give the same key (shape and
    dtype were checked against the primal): the first lane's key stands for all."""
    dvals = a.dvals
    first = dvals[0]
    if type(first) is np.ndarray:
        strides = first.strides
        if all(type(d) is np.ndarray and d.strides == strides for d in dvals):
            lane = Duplicated.__new__(Duplicated)
            lane.val, lane.dval = a.val, first
            return (type(a), len(dvals), arg_key(lane), "same")
    lanes = [Duplicated.__new__(Duplicated) for _ in dvals]
    for lane, d in zip(lanes, a.dvals):  # validated by BatchDuplicated already
        lane.val, lane.dval = a.val, d
    return (type(a), len(a.dvals), *map(arg_key, lanes))


def arg_unit_inner(a: Annotation) -> bool:
    """Unit innermost stride for an array argument: of the primal and of its shadow."""
    arr = view(a.val)
    if arr.ndim == 0 or not _unit_inner(arr):
        return False
    return all(_unit_inner(view(d)) for d in shadows_of(a) or ())


def baked_key(x: object) -> object:
    """A constant argument baked into the trace: by value when it can be compared by
    value (:func:`isozyme.reads.freeze`: numbers, containers, arrays, plain objects), else
    by identity holding a strong reference (a bare ``id()`` is reused once freed)."""
    try:
        return ("v", freeze(x))
    except Unfreezable:
        return ("id", Ident(x))
