"""Shadows and seeds: ``make_zero`` and ``onehot`` (Enzyme.jl's helpers).

``make_zero(x)`` builds the zero shadow a ``Duplicated`` argument needs, for arrays and
pytrees alike; ``onehot(x)`` the unit seeds that the columns of a Jacobian take in forward
mode (one per element), which :func:`isozyme.jacobian` feeds to batch (vector) forward
mode ``chunk`` at a time.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from typing import Any

import numpy as np

from isozyme.annotations import describe, is_array, is_float_scalar
from isozyme.errors import AnnotationError
from isozyme.pytree import flatten, is_node, unflatten
from isozyme.runtime.marshal import device_view, on_device


def array_module(x: object) -> Any:
    """The array library of ``x``: numpy for host arrays, the package a device array's
    type comes from otherwise (``cupy``)."""
    if not on_device(x):
        return np
    return importlib.import_module(type(x).__module__.split(".")[0])


def _zero_leaf(x: object) -> object:
    if is_array(x):
        if on_device(x):
            return array_module(x).zeros_like(x)
        a = np.asarray(x)
        return np.zeros_like(a) if a.dtype.kind in "fc" else a.copy()
    if is_float_scalar(x):
        return type(x)(0.0)
    return x  # ints, strings, ...: not differentiated, kept as they are


def make_zero(x: Any) -> Any:
    """A zero shadow of ``x``: float arrays become zero arrays of the same shape, dtype
    and array library (numpy or CuPy), floats become ``0.0`` of their type, pytrees
    (tuple, list, dict, dataclass, NamedTuple) are rebuilt leaf by leaf; other leaves
    (ints, strings) are kept.

    >>> make_zero({"w": np.ones(2), "b": 1.5, "n": 3})
    {'w': array([0., 0.]), 'b': 0.0, 'n': 3}
    """
    if is_node(x):
        leaves, tree = flatten(x)
        return unflatten(tree, [_zero_leaf(leaf) for leaf in leaves])
    return _zero_leaf(x)


def onehot(x: Any, start: int = 0, stop: int | None = None) -> tuple:
    """The unit seeds of ``x``: a tuple with one array per element ``start <= k <
    stop`` of ``x`` (flat, C order), shaped like ``x``, holding 1 at ``k`` and 0
    elsewhere; for a float, ``(1.0,)``.  Pass them to ``BatchDuplicated(x, seeds)`` to
    get the derivatives along each element in one forward sweep.

    >>> onehot(np.zeros(2))
    (array([1., 0.]), array([0., 1.]))
    """
    if is_float_scalar(x):
        if start != 0 or stop not in (None, 1):
            raise AnnotationError("onehot of a float has one seed: start=0, stop=1")
        return (type(x)(1.0),)
    if not is_array(x):
        raise AnnotationError(f"onehot needs a float array or a float, got {describe(x)}")
    meta = device_view(x) if on_device(x) else np.asarray(x)
    n = meta.size
    stop = n if stop is None else stop
    if not 0 <= start <= stop <= n:
        raise AnnotationError(f"onehot: need 0 <= start <= stop <= {n}, got {start}, {stop}")
    xp = array_module(x)
    seeds = []
    for k in range(start, stop):
        s = xp.zeros(meta.shape, dtype=meta.dtype)
        s.reshape(-1)[k] = 1
        seeds.append(s)
    return tuple(seeds)


#: Read-only unit-seed lanes of host arrays, by (shape, dtype, chunk width): every
#: chunk's lanes of one array, reused by jacobian's forward sweeps across calls (an
#: OrderedDict used as a small LRU).
_LANES: OrderedDict[tuple, tuple] = OrderedDict()
_LANES_MAX_ENTRIES = 8
#: Lanes whose block is larger than this are built per chunk and call instead.
_LANES_MAX_BYTES = 4 << 20


def _unit_block(xp: Any, meta: np.ndarray, start: int, lanes: int) -> Any:
    """A ``(lanes, size)`` block whose row ``j`` is the unit seed of element
    ``start + j`` (zero when that is past the end)."""
    n = meta.size
    block = xp.zeros((lanes, n), dtype=meta.dtype)
    k = max(0, min(lanes, n - start))
    block[xp.arange(k), xp.arange(start, start + k)] = 1
    return block


def _rows(block: Any, shape: tuple[int, ...]) -> tuple:
    rows = block.reshape((block.shape[0],) + shape)
    return tuple(rows[i] for i in range(block.shape[0]))


def unit_seed_lanes(x: Any, start: int, lanes: int, cache: bool = True) -> tuple:
    """``lanes`` seeds shaped like array ``x``: lane ``j`` is the unit seed of element
    ``start + j`` (flat, C order), or zero past the end of ``x`` (the padding of a
    last, partial chunk).  The lanes are rows of one block (one allocation).

    With ``cache`` (host arrays whose lanes for every chunk fit in 4 MiB) the lanes are
    read-only and shared between calls: only for forward-mode seeds of an argument
    the function does not write (the runner refuses read-only shadows of a written
    argument with :class:`~isozyme.errors.ReadOnlyError`; pass ``cache=False`` then).
    """
    meta = device_view(x) if on_device(x) else np.asarray(x)
    n, shape = meta.size, tuple(meta.shape)
    xp = array_module(x)
    total = -(-n // lanes) * lanes  # every chunk's lanes, padded
    if not (cache and xp is np and total * n * meta.dtype.itemsize <= _LANES_MAX_BYTES
            and start % lanes == 0):
        return _rows(_unit_block(xp, meta, start, lanes), shape)
    key = (shape, meta.dtype.str, lanes)
    every = _LANES.get(key)
    if every is None:
        block = _unit_block(np, meta, 0, total)
        block.flags.writeable = False
        every = _LANES[key] = _rows(block, shape)
        if len(_LANES) > _LANES_MAX_ENTRIES:
            _LANES.popitem(last=False)
    else:
        try:
            _LANES.move_to_end(key)
        except KeyError:  # another thread evicted it meanwhile: harmless
            pass
    return every[start : start + lanes]
