"""Shadows and seeds: ``make_zero`` and ``onehot`` (Enzyme.jl's helpers).

``make_zero(x)`` builds the zero shadow a ``Duplicated`` argument needs, for arrays and
pytrees alike; ``onehot(x)`` the unit seeds that the columns of a Jacobian take in forward
mode (one per element).  :func:`isozyme.jacobian` takes the same seeds from
:func:`unit_seed_chunks`: ``chunk`` at a time, as rows of one block, kept between calls.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
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
    {'b': 0.0, 'n': 3, 'w': array([0., 0.])}
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


#: Read-only unit seeds of host arrays, by (shape, dtype, chunk width): every chunk's
#: lanes of one array, reused by jacobian's forward sweeps across calls (an OrderedDict
#: used as a small LRU).
_CHUNKS: OrderedDict[tuple, tuple] = OrderedDict()
_CHUNKS_MAX_ENTRIES = 8
#: Seeds whose block is larger than this are built chunk by chunk, per call.
_CHUNKS_MAX_BYTES = 4 << 20


def forget_seeds() -> None:
    """Drop the cached unit seeds (:func:`isozyme.clear_cache` calls it)."""
    _CHUNKS.clear()


def _unit_block(xp: Any, meta: np.ndarray, start: int, lanes: int) -> Any:
    """A ``(lanes, size)`` block whose row ``j`` is the unit seed of element
    ``start + j`` (zero when that is past the end)."""
    n = meta.size
    block = xp.zeros((lanes, n), dtype=meta.dtype)
    k = max(0, min(lanes, n - start))
    block[xp.arange(k), xp.arange(start, start + k)] = 1
    return block


def _chunks_of(block: Any, shape: tuple[int, ...], width: int) -> Iterator[tuple]:
    rows = block.reshape((block.shape[0],) + shape)
    for c in range(0, block.shape[0], width):
        yield tuple(rows[j] for j in range(c, c + width))


def unit_seed_chunks(x: Any, width: int, cache: bool = True) -> Iterable[tuple]:
    """The unit seeds of array ``x`` in chunks of ``width`` lanes: chunk ``c``, lane
    ``j`` is shaped like ``x`` and holds 1 at element ``c * width + j`` (flat, C order),
    or is zero past the end of ``x`` (the padding of the last chunk).  The lanes of a
    chunk are rows of one block (one allocation).

    With ``cache`` (host arrays whose seeds fit in 4 MiB) the seeds are read-only and
    shared between calls: only for forward-mode seeds of an argument the function does
    not write (the runner refuses read-only shadows of a written argument with
    :class:`~isozyme.errors.ReadOnlyError`; pass ``cache=False`` then).  Otherwise the
    chunks are built one at a time as they are iterated.
    """
    meta = device_view(x) if on_device(x) else np.asarray(x)
    n, shape = meta.size, tuple(meta.shape)
    xp = array_module(x)
    total = -(-n // width) * width  # every chunk's lanes, padded
    if not (cache and xp is np and total * n * meta.dtype.itemsize <= _CHUNKS_MAX_BYTES):
        return (next(_chunks_of(_unit_block(xp, meta, c, width), shape, width))
                for c in range(0, n, width))
    key = (shape, meta.dtype.str, width)
    chunks = _CHUNKS.get(key)
    if chunks is None:
        block = _unit_block(np, meta, 0, total)
        block.flags.writeable = False
        chunks = _CHUNKS[key] = tuple(_chunks_of(block, shape, width))
        if len(_CHUNKS) > _CHUNKS_MAX_ENTRIES:
            _CHUNKS.popitem(last=False)
    else:
        try:
            _CHUNKS.move_to_end(key)
        except KeyError:  # another thread evicted it meanwhile: harmless
            pass
    return chunks
