"""Marshalling of entry-point arguments: IR types as ``struct`` slot codes and memref
specs, memref descriptors, and the generated code that checks and packs an array.

Entry points follow the ABI of ``docs/ir.md`` (``llvm`` stage): one 8-byte slot per
argument and per result (:data:`_SLOT_CODES`); the callables that use it are built by
:mod:`isozyme.runtime.entry_callable`.

Memref (array) arguments: the slot holds the address of a descriptor
``{ptr allocated, ptr aligned, i64 offset, i64 sizes[r], i64 strides[r]}`` (strides in
elements) that the callable owns, one preallocated ctypes structure per memref argument
(:func:`descriptor_struct`, one class per rank). Each call fills it from the numpy array
(or any object with ``__array_interface__``/``__array_struct__``, viewed without a copy
by ``numpy.asarray``): ``allocated = aligned =`` the address of element 0 of the view,
offset 0, ``sizes = shape``, ``strides = byte strides / itemsize`` (negative strides of
reversed views included). The data pointer of an ``ndarray`` is read from the object
itself (numpy's C ABI: ``PyArrayObject.data`` follows the object header; checked once
against ``__array_interface__`` at start-up, which is the fallback), because
``__array_interface__`` costs about 1 us per array.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
    MemRefType,
)
from xdsl.ir import Attribute

#: ``struct`` codes of one 8-byte slot per type name (little-endian, no alignment).
#: ``f32`` uses the first 4 bytes; ``i1`` is an ``i64`` 0/1: its first byte, as ``?``,
#: packs any truthy object as 1 and reads back a Python ``bool``.
_SLOT_CODES: dict[str, str] = {
    "f64": "d",
    "f32": "f4x",
    "i64": "q",
    "index": "q",
    "i32": "i4x",
    "i1": "?7x",
}


@dataclass(frozen=True)
class MemrefSpec:
    """What the runtime needs of a ``memref`` argument type.

    ``shape``/``strides`` hold ``None`` for dynamic entries (strides in elements);
    ``offset`` is the static offset of the layout or ``None`` when dynamic.
    """

    text: str
    dtype: np.dtype
    shape: tuple[int | None, ...]
    strides: tuple[int | None, ...]
    offset: int | None

    @property
    def rank(self) -> int:
        """The number of dimensions."""
        return len(self.shape)


_MEMREF_ELEMENT_DTYPES = {
    "f64": np.dtype(np.float64),
    "f32": np.dtype(np.float32),
    "i64": np.dtype(np.int64),
    "index": np.dtype(np.int64),
    "i32": np.dtype(np.int32),
    "i16": np.dtype(np.int16),
    "i8": np.dtype(np.int8),
    "i1": np.dtype(np.bool_),
}


def _parse_type(text: str) -> Attribute:
    """Parse the text of a builtin type (only memref texts reach here)."""
    from xdsl.context import Context
    from xdsl.dialects.builtin import Builtin
    from xdsl.parser import Parser

    ctx = Context()
    ctx.load_dialect(Builtin)
    return Parser(ctx, text).parse_attribute()


def memref_spec(t: Attribute | str) -> MemrefSpec | None:
    """The :class:`MemrefSpec` of a memref type (an xDSL ``MemRefType`` or its text,
    e.g. ``"memref<?x?xf64, strided<[?, ?], offset: ?>>"``); ``None`` for other types."""
    if isinstance(t, str):
        if not t.lstrip().startswith("memref<"):
            return None
        t = _parse_type(t)
    if not isinstance(t, MemRefType):
        return None
    element = type_name_of(t.element_type)
    dtype = _MEMREF_ELEMENT_DTYPES.get(element)
    if dtype is None:
        raise TypeError(
            f"isozyme runtime: memref element type {element} cannot cross the C entry "
            f"point (supported: {', '.join(_MEMREF_ELEMENT_DTYPES)})"
        )
    strides = t.get_strides()
    if strides is None:
        raise TypeError(f"isozyme runtime: memref layout of {t} is not strided")
    offset = t.get_offset()

    def dyn(v: int | None) -> int | None:
        return None if v is None or v == DYNAMIC_INDEX else v

    return MemrefSpec(
        str(t),
        dtype,
        tuple(dyn(d) for d in t.get_shape()),
        tuple(dyn(s) for s in strides),
        dyn(offset),
    )


def type_name_of(t: Attribute) -> str:
    """The slot-table name of a scalar IR type (without validation)."""
    if isinstance(t, Float64Type):
        return "f64"
    if isinstance(t, Float32Type):
        return "f32"
    if isinstance(t, IndexType):
        return "index"
    if isinstance(t, IntegerType):
        return f"i{t.width.data}"
    return str(t)


def type_name(t: Attribute | str) -> str:
    """Normalise an IR type (or its name) to a key of the slot table."""
    name = t if isinstance(t, str) else type_name_of(t)
    if name not in _SLOT_CODES:
        raise TypeError(
            f"isozyme runtime: type {name} cannot cross the C entry point "
            f"(supported: {', '.join(_SLOT_CODES)})"
        )
    return name


@functools.cache
def descriptor_struct(rank: int) -> type[ctypes.Structure]:
    """The ctypes structure of a rank-``rank`` memref descriptor (one class per rank):
    ``{void *allocated, void *aligned, int64 offset, int64 sizes[r], int64 strides[r]}``.
    """
    fields: list[tuple[str, Any]] = [
        ("allocated", ctypes.c_void_p),
        ("aligned", ctypes.c_void_p),
        ("offset", ctypes.c_int64),
    ]
    if rank:
        fields += [("sizes", ctypes.c_int64 * rank), ("strides", ctypes.c_int64 * rank)]
    return type(f"MemrefDescriptor{rank}", (ctypes.Structure,), {"_fields_": fields})


def _probe_data_offset() -> int | None:
    """Offset of ``PyArrayObject.data`` in an ndarray object (right after the object
    header in numpy's C ABI), if reading it there agrees with ``__array_interface__``
    for a few probe arrays; ``None`` otherwise (the slower fallback is used)."""
    offset = object.__basicsize__
    probes = [np.arange(5.0), np.arange(12, dtype=np.float32).reshape(3, 4).T[::-1]]
    probes.append(probes[0][::-2])
    for a in probes:
        got = ctypes.c_void_p.from_address(id(a) + offset).value
        if got != a.__array_interface__["data"][0]:
            return None
    return offset


_DATA_OFFSET = _probe_data_offset()


def _as_array(x: Any, k: int, spec: MemrefSpec) -> np.ndarray:
    """Slow path of a memref argument: view ``x`` as an ndarray and check dtype/rank."""
    if not isinstance(x, np.ndarray):
        if not (hasattr(x, "__array_interface__") or hasattr(x, "__array_struct__")):
            raise TypeError(
                f"isozyme runtime: argument {k} ({spec.text}) must be a numpy array "
                f"or support __array_interface__, got {type(x).__name__}"
            )
        x = np.asarray(x)
    if x.dtype != spec.dtype:
        raise TypeError(
            f"isozyme runtime: argument {k} ({spec.text}) must have dtype "
            f"{spec.dtype}, got {x.dtype}"
        )
    if x.ndim != spec.rank:
        raise ValueError(
            f"isozyme runtime: argument {k} ({spec.text}) must have {spec.rank} "
            f"dimension(s), got an array of shape {x.shape}"
        )
    return x


def _bad_layout(x: np.ndarray, k: int, spec: MemrefSpec) -> None:
    """Raise the error for an array whose strides or static sizes do not fit ``spec``."""
    itemsize = spec.dtype.itemsize
    if any(s % itemsize for s in x.strides):
        raise ValueError(
            f"isozyme runtime: argument {k} ({spec.text}): byte strides {x.strides} "
            f"are not multiples of the item size {itemsize}"
        )
    for d, (want, got) in enumerate(zip(spec.shape, x.shape)):
        if want is not None and want != got:
            raise ValueError(
                f"isozyme runtime: argument {k} ({spec.text}): size {got} of dimension "
                f"{d} differs from the static size {want} (array shape {x.shape})"
            )
    elems = tuple(s // itemsize for s in x.strides)
    raise ValueError(
        f"isozyme runtime: argument {k} ({spec.text}): strides {elems} (in elements) "
        f"do not match the layout's static strides "
        f"{tuple('?' if s is None else s for s in spec.strides)}; pass a contiguous "
        "array (numpy.ascontiguousarray) or declare a strided layout"
    )


def _memref_lines(
    k: int, spec: MemrefSpec, ns: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """Source lines checking memref argument ``a{k}``, and the expressions of its
    descriptor's fields (packed by the caller)."""
    r = spec.rank
    itemsize = spec.dtype.itemsize
    shift = itemsize.bit_length() - 1
    assert 1 << shift == itemsize
    ns.update({f"DT{k}": spec.dtype, f"SPEC{k}": spec})
    x = f"x{k}"
    n = [f"n{k}_{d}" for d in range(r)]
    st = [f"s{k}_{d}" for d in range(r)]
    lines = [
        f"    {x} = a{k}",
        f"    if {x}.__class__ is not ndarray or {x}.dtype is not DT{k} "
        f"or {x}.ndim != {r}:",
        f"        {x} = as_array({x}, {k}, SPEC{k})",
    ]
    if r:
        lines.append(f"    {', '.join(n)}, = {x}.shape")
        lines.append(f"    {', '.join(st)}, = {x}.strides")
    # Layout checks: strides multiple of the item size, static sizes and strides.
    conds: list[str] = []
    if r and itemsize > 1:
        conds.append(f"({' | '.join(st)}) & {itemsize - 1}")
    for d in range(r):
        if spec.shape[d] is not None:
            conds.append(f"{n[d]} != {spec.shape[d]}")
        if spec.strides[d] is not None:
            # A dimension of extent <= 1 never uses its stride (numpy may set any).
            conds.append(
                f"({n[d]} > 1 and {st[d]} != {spec.strides[d] * itemsize})"
            )
    if conds:
        lines.append(f"    if {' or '.join(conds)}:")
        lines.append(f"        bad_layout({x}, {k}, SPEC{k})")
    if _DATA_OFFSET is not None:
        data = f"from_address(id({x}) + {_DATA_OFFSET}).value"
    else:
        data = f"{x}.__array_interface__['data'][0]"
    lines.append(f"    p{k} = {data}")
    offset = spec.offset or 0
    aligned = f"p{k} - {offset * itemsize}" if offset else f"p{k}"
    fields = [f"p{k}", aligned, str(offset)]
    fields += n
    fields += [f"{s} >> {shift}" if shift else s for s in st]
    return lines, fields



class _DeviceInterface:
    """``__array_interface__`` of a device array's metadata (see :func:`device_view`)."""

    __slots__ = ("__array_interface__", "owner")

    def __init__(self, interface: dict[str, Any], owner: object) -> None:
        self.__array_interface__ = interface
        self.owner = owner


def on_device(x: object) -> bool:
    """Whether ``x`` is a device array (it exposes ``__cuda_array_interface__``)."""
    return not isinstance(x, np.ndarray) and hasattr(x, "__cuda_array_interface__")


def device_of(x: object) -> int | None:
    """The device id of device array ``x`` (CuPy's ``x.device.id``), None when it
    does not say (any other ``__cuda_array_interface__`` array)."""
    device = getattr(x, "device", None)
    ident = getattr(device, "id", None)
    return ident if isinstance(ident, int) else None


def device_view(x: Any) -> np.ndarray:
    """An ndarray with the shape, dtype and strides of device array ``x`` whose data
    pointer is the device pointer: metadata for signatures, checks and the entry
    points' descriptors, never read or written on the host. Its ``base`` keeps ``x``
    alive."""
    cai = x.__cuda_array_interface__
    ptr, readonly = cai["data"]
    interface = {
        "version": 3,
        "shape": tuple(cai["shape"]),
        "typestr": cai["typestr"],
        "data": (ptr, bool(readonly)),
        "strides": cai.get("strides"),
    }
    return np.asarray(_DeviceInterface(interface, x))
