"""Memref results as numpy arrays, and who frees their memory.

The entry stores each returned descriptor's fields into 3 + 2r consecutive out slots
(allocated, aligned, offset, sizes[r], strides[r]). The callable returns a numpy array
viewing that memory which owns it: the allocated pointer is ``free``-d (libc) when the
array and every view of it are garbage-collected (:func:`make_result_wrapper`,
:class:`_MallocBlock`).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from isozyme.runtime.marshal import MemrefSpec

_libc = ctypes.CDLL(None)
_libc_free = _libc.free
_libc_free.argtypes = [ctypes.c_void_p]
_libc_free.restype = None


class _MallocBlock:
    """Owns one block that compiled code ``malloc``-ed and returned (a memref
    result's allocated pointer): ``free``-s it when the last array using it dies."""

    __slots__ = ("ptr", "__weakref__")

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def __del__(self, _free: Any = _libc_free) -> None:
        ptr, self.ptr = self.ptr, 0
        if ptr:
            _free(ptr)


class _ArrayView:
    """What a memref result's numpy array views: ``__array_interface__`` over the
    descriptor's memory, and a reference to its owner (a :class:`_MallocBlock`, or
    the argument array when the function returned a view of an argument), so the
    array's ``base`` keeps the memory alive."""

    __slots__ = ("__array_interface__", "owner")

    def __init__(self, interface: dict[str, Any], owner: object) -> None:
        self.__array_interface__ = interface
        self.owner = owner


def _result_array(
    spec: MemrefSpec, fields: Sequence[int], owner: object
) -> np.ndarray:
    """The numpy array of one memref result from its descriptor ``fields``
    ``(allocated, aligned, offset, sizes..., strides...)`` (strides in elements).

    The array views the memory in place (dtype from the element type, shape from the
    sizes, byte strides = strides * itemsize) and its ``base`` references ``owner``.
    A zero-size result is a fresh empty array (the pointer may be NULL)."""
    r = spec.rank
    aligned, offset = fields[1], fields[2]
    shape = tuple(fields[3 : 3 + r])
    if 0 in shape:
        return np.empty(shape, spec.dtype)
    if not aligned:
        raise MemoryError(f"isozyme runtime: a {spec.text} result has a NULL pointer")
    itemsize = spec.dtype.itemsize
    interface = {
        "version": 3,
        "shape": shape,
        "typestr": spec.dtype.str,
        "data": (aligned + offset * itemsize, False),
        "strides": tuple(s * itemsize for s in fields[3 + r : 3 + 2 * r]),
    }
    return np.asarray(_ArrayView(interface, owner))


def make_result_wrapper(
    result_types: Sequence[str | MemrefSpec],
    result_owner: Callable[[int], object] | None = None,
    result_array: Callable[[np.ndarray], Any] | None = None,
) -> Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]]:
    """Turn the unpacked out slots into the result tuple (memref results to arrays).

    Ownership of a memref result: the function transfers its ``malloc``-ed block to
    the caller, which ``free``-s the allocated pointer when the array is collected.
    Two results with the same allocated pointer share one owner (freed once), and a
    result whose allocated pointer is that of a memref argument of this call (the
    function returned an argument or a view of one) is not freed: its array keeps
    the argument array alive instead.

    ``result_owner(allocated)``: the owner of memory the function allocated when it is
    not ``malloc``-ed (device memory); ``result_array``: applied to each memref result
    array (its views of device memory become device arrays)."""
    new_owner = _MallocBlock if result_owner is None else result_owner
    layout: list[tuple[int, MemrefSpec | None]] = []
    pos = 0
    for t in result_types:
        if isinstance(t, MemrefSpec):
            layout.append((pos, t))
            pos += 3 + 2 * t.rank
        else:
            layout.append((pos, None))
            pos += 1

    def wrap(raw: tuple[Any, ...], args: tuple[Any, ...]) -> tuple[Any, ...]:
        owners: dict[int, object] = {
            args[i]: args[i + 1] for i in range(0, len(args), 2) if args[i]
        }
        out: list[Any] = []
        for start, spec in layout:
            if spec is None:
                out.append(raw[start])
                continue
            fields = raw[start : start + 3 + 2 * spec.rank]
            allocated = fields[0]
            owner = owners.get(allocated) if allocated else None
            if owner is None and allocated:
                owner = owners[allocated] = new_owner(allocated)
            array = _result_array(spec, fields, owner)
            out.append(array if result_array is None else result_array(array))
        return tuple(out)

    return wrap

