"""The CPU JIT: LLVM IR -> native code with llvmlite's MCJIT, and fast ctypes entries.

One process-wide MCJIT execution engine holds every compiled module (compiled code is
never freed, so callables stay valid as long as the process lives). Each module is
optimised with LLVM's new pass manager at O3 for the host CPU and its features.

Symbols of different modules must not clash inside the shared engine, so before
optimisation every defined function except the C entry points becomes ``internal``
(this also lets O3 inline and delete them) and each entry ``_iz_entry_f`` is renamed
``_iz_entry_f.<n>`` with a per-module number ``n``.

Entry callables follow the ABI of ``docs/ir.md`` (``llvm`` stage): one 8-byte slot per
argument and per result. They are generated Python functions specialised to the
signature, packing arguments with one precompiled ``struct.Struct.pack_into`` into a
preallocated buffer and reading results with one ``unpack_from``, which returns the
result tuple directly. Measured on a 2-argument f64 function: about 0.34 us per call;
indexing ``ctypes`` double arrays is within 0.03 us of it but needs one view per
type and one index per result, passing the ctypes arrays themselves costs 0.45 us.

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

Memref results: the entry stores each returned descriptor's fields into 3 + 2r
consecutive out slots (allocated, aligned, offset, sizes[r], strides[r]). The callable
returns a numpy array viewing that memory which owns it: the allocated pointer is
``free``-d (libc) when the array and every view of it are garbage-collected
(:func:`_make_result_wrapper`, :class:`_MallocBlock`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import itertools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import llvmlite.binding as llb
import numpy as np
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
    MemRefType,
    ModuleOp,
)
from xdsl.ir import Attribute

from isozyme.compiler.lowering._common import ENTRY_PREFIX
from isozyme.compiler.lowering.translate import translate_to_llvm_ir

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

#: ctypes signature of every entry point: ``void (*)(void *in, void *out)``.
#: ``CFUNCTYPE`` releases the GIL during the call (long loops do not block other
#: threads); ``PYFUNCTYPE`` would save about 0.03 us per call but hold the GIL.
_ENTRY_FNTYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


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


class _JIT:
    """The process-wide target machine, MCJIT engine and optimisation settings."""

    def __init__(self) -> None:
        # llvmlite >= 0.45 initialises LLVM itself; `llvm.initialize()` now raises.
        llb.initialize_native_target()
        llb.initialize_native_asmprinter()
        # MCJIT resolves external symbols from the loaded libraries: libm (tan, erf...,
        # and through it libc's realloc/free) and libgcc_s, which holds the libcalls
        # LLVM emits for some intrinsics (`llvm.powi` -> `__powidf2`).
        for lib in ("m", "gcc_s"):
            path = ctypes.util.find_library(lib)
            if path is not None:
                llb.load_library_permanently(path)
        target = llb.Target.from_triple(llb.get_process_triple())
        self.target_machine = target.create_target_machine(
            cpu=llb.get_host_cpu_name(),
            features=llb.get_host_cpu_features().flatten(),
            opt=3,
            codemodel="jitdefault",
            jit=True,
        )
        self.triple = self.target_machine.triple
        self.data_layout = str(self.target_machine.target_data)
        self.engine = llb.create_mcjit_compiler(
            llb.parse_assembly(""), self.target_machine
        )
        self._counter = itertools.count()

    def next_module_id(self) -> int:
        """A number unique to each compiled module (for symbol renaming)."""
        return next(self._counter)

    def optimize(self, mod: llb.ModuleRef) -> None:
        """Run LLVM's default O3 pipeline (new pass manager) on ``mod`` in place."""
        pto = llb.create_pipeline_tuning_options(speed_level=3)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pto.loop_unrolling = True
        pb = llb.create_pass_builder(self.target_machine, pto)
        mpm = pb.getModulePassManager()
        mpm.run(mod, pb)


_JIT_INSTANCE: _JIT | None = None


def _jit() -> _JIT:
    global _JIT_INSTANCE
    if _JIT_INSTANCE is None:
        _JIT_INSTANCE = _JIT()
    return _JIT_INSTANCE


def host_target_triple() -> str:
    """The triple code is generated for (the host's)."""
    return _jit().triple


@dataclass
class CompiledModule:
    """A module compiled into the process-wide engine.

    ``llvm_ir`` is the LLVM IR as translated from the ``llvm`` dialect (before any LLVM
    pass); ``llvm_ir_optimized`` is the module after internalisation, entry renaming
    and the O3 pipeline, as it was handed to MCJIT.
    """

    llvm_ir: str
    llvm_ir_optimized: str
    #: entry-point name in the source (``_iz_entry_f``) -> native address.
    entry_addresses: dict[str, int]
    _module: llb.ModuleRef = field(repr=False)

    def entry(
        self,
        func_name: str,
        arg_types: Sequence[Attribute | str],
        result_types: Sequence[Attribute | str],
    ) -> Callable[..., tuple[Any, ...]]:
        """A Python callable running the C entry point of public function ``func_name``.

        It takes one Python scalar per scalar argument (``float``/``int``/``bool`` or
        numpy scalars; ``f64``/``f32`` accept anything with ``__float__``,
        ``i64``/``i32`` anything with ``__index__``, ``i1`` any object, by truth value)
        and one numpy array per memref argument (or any object with
        ``__array_interface__``/``__array_struct__``; it is viewed, never copied, so
        the function's stores land in the caller's array). It returns a tuple with one
        value per result: ``float`` for ``f64``/``f32``, ``int`` for
        ``i64``/``i32``/``index``, ``bool`` for ``i1``, and a numpy array for a memref
        result (see :func:`_result_array`: it owns the memory the function allocated
        and frees it when garbage-collected). Each callable owns its buffers.

        Types are xDSL types or their names: ``"f64"``, ``"i64"``..., and memref types as
        ``MemRefType`` or text (``"memref<?xf64>"``,
        ``"memref<?x?xf32, strided<[?, ?], offset: ?>>"``). An array's dtype and rank
        must match its memref type exactly (``TypeError``/``ValueError`` otherwise), as
        must static sizes and static strides of the type (the identity layout
        ``memref<?x?xf64>`` requires a C-contiguous array, a strided layout with ``?``
        strides takes any view).
        """
        key = ENTRY_PREFIX + func_name
        if key not in self.entry_addresses:
            public = sorted(n[len(ENTRY_PREFIX) :] for n in self.entry_addresses)
            raise KeyError(
                f"isozyme runtime: no entry point for '{func_name}' "
                f"(public functions: {public})"
            )
        args: list[str | MemrefSpec] = []
        for t in arg_types:
            spec = memref_spec(t)
            args.append(spec if spec is not None else type_name(t))
        results: list[str | MemrefSpec] = []
        for t in result_types:
            spec = memref_spec(t)
            results.append(spec if spec is not None else type_name(t))
        return make_entry_callable(
            self.entry_addresses[key], args, results, keepalive=self
        )


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


def _make_result_wrapper(
    result_types: Sequence[str | MemrefSpec],
) -> Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]]:
    """Turn the unpacked out slots into the result tuple (memref results to arrays).

    Ownership of a memref result: the function transfers its ``malloc``-ed block to
    the caller, which ``free``-s the allocated pointer when the array is collected.
    Two results with the same allocated pointer share one owner (freed once), and a
    result whose allocated pointer is that of a memref argument of this call (the
    function returned an argument or a view of one) is not freed: its array keeps
    the argument array alive instead."""
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
                owner = owners[allocated] = _MallocBlock(allocated)
            out.append(_result_array(spec, fields, owner))
        return tuple(out)

    return wrap


def _out_code(t: str | MemrefSpec) -> str:
    if isinstance(t, MemrefSpec):
        return "QQq" + "q" * (2 * t.rank)
    return _SLOT_CODES[t]


def make_entry_callable(
    address: int,
    arg_types: Sequence[str | MemrefSpec],
    result_types: Sequence[str | MemrefSpec],
    keepalive: object = None,
) -> Callable[..., tuple[Any, ...]]:
    """Build the fast Python wrapper of the entry point at ``address``.

    The wrapper's source is generated for the exact arity so a call is: one
    ``pack_into``, one ctypes call with two preconverted pointers, one ``unpack_from``
    (plus, per memref argument, a few attribute reads and checks).
    ``keepalive`` is referenced from the wrapper so the compiled code outlives it.

    The descriptors of memref arguments are ctypes structures
    (:func:`descriptor_struct`) placed in the input buffer after the slots, so the
    one ``pack_into`` fills the slots (descriptor addresses) and the descriptors.
    """
    slots_codes = "".join(
        "Q" if isinstance(t, MemrefSpec) else _SLOT_CODES[t] for t in arg_types
    )
    slots_size = struct.calcsize("<" + slots_codes)
    desc_codes = "".join(
        "QQq" + "q" * (2 * t.rank) for t in arg_types if isinstance(t, MemrefSpec)
    )
    in_struct = struct.Struct("<" + slots_codes + desc_codes)
    out_struct = struct.Struct("<" + "".join(_out_code(t) for t in result_types))
    # At least one byte each so the buffers have an address; 8-byte aligned.
    in_buf = (ctypes.c_int64 * max((in_struct.size + 7) // 8, 1))()
    out_buf = (ctypes.c_int64 * max((out_struct.size + 7) // 8, 1))()
    fn = _ENTRY_FNTYPE(address)
    names = [f"a{i}" for i in range(len(arg_types))]
    params = ", ".join(names)
    namespace: dict[str, Any] = {
        "pack_into": in_struct.pack_into,
        "unpack_from": out_struct.unpack_from,
        "in_buf": in_buf,
        "out_buf": out_buf,
        "fn": fn,
        # ctypes converts a c_void_p argument fastest from a c_void_p object.
        "in_ptr": ctypes.c_void_p(ctypes.addressof(in_buf)),
        "out_ptr": ctypes.c_void_p(ctypes.addressof(out_buf)),
        "ndarray": np.ndarray,
        "as_array": _as_array,
        "bad_layout": _bad_layout,
        "from_address": ctypes.c_void_p.from_address,
    }
    lines = [f"def entry({params}):"]
    slot_values: list[str] = []
    desc_values: list[str] = []
    descriptors: list[ctypes.Structure] = []
    desc_offset = slots_size
    for k, t in enumerate(arg_types):
        if isinstance(t, MemrefSpec):
            desc = descriptor_struct(t.rank).from_buffer(in_buf, desc_offset)
            descriptors.append(desc)
            desc_offset += ctypes.sizeof(desc)
            namespace[f"D{k}"] = ctypes.addressof(desc)
            arg_lines, fields = _memref_lines(k, t, namespace)
            lines += arg_lines
            desc_values += fields
            slot_values.append(f"D{k}")
        else:
            slot_values.append(names[k])
    if arg_types:
        values = ", ".join(slot_values + desc_values)
        lines.append(f"    pack_into(in_buf, 0, {values})")
    lines.append("    fn(in_ptr, out_ptr)")
    if any(isinstance(t, MemrefSpec) for t in result_types):
        namespace["wrap"] = _make_result_wrapper(result_types)
        arg_owners = "".join(
            f"p{k}, x{k}, " for k, t in enumerate(arg_types) if isinstance(t, MemrefSpec)
        )
        lines.append(f"    return wrap(unpack_from(out_buf), ({arg_owners}))")
    elif result_types:
        lines.append("    return unpack_from(out_buf)")
    else:
        lines.append("    return ()")
    source = "\n".join(lines)
    exec(compile(source, f"<isozyme entry {address:#x}>", "exec"), namespace)
    entry = namespace["entry"]
    entry._iz_keepalive = (  # type: ignore[attr-defined]
        keepalive, in_buf, out_buf, fn, descriptors
    )
    entry._iz_source = source  # type: ignore[attr-defined]
    shown = [t.text if isinstance(t, MemrefSpec) else t for t in arg_types]
    shown_r = [t.text if isinstance(t, MemrefSpec) else t for t in result_types]
    entry.__doc__ = f"isozyme entry ({', '.join(shown)}) -> ({', '.join(shown_r)})"
    return entry


#: Libcalls the x86 backend emits for intrinsics, by intrinsic prefix.
_BACKEND_LIBCALLS: dict[str, tuple[str, ...]] = {
    "llvm.powi.": ("__powidf2", "__powisf2"),
}


def _check_symbols(mod: llb.ModuleRef) -> None:
    """Fail clearly, before MCJIT would jump to address 0, when an external function
    of ``mod`` (or a libcall its intrinsics need) is not in the process."""
    missing: list[str] = []
    for fn in mod.functions:
        if not fn.is_declaration:
            continue
        names: tuple[str, ...] = (fn.name,)
        if fn.name.startswith("llvm."):
            names = next(
                (v for k, v in _BACKEND_LIBCALLS.items() if fn.name.startswith(k)), ()
            )
        missing += [n for n in names if llb.address_of_symbol(n) is None]
    if missing:
        raise RuntimeError(
            "isozyme runtime: the compiled code needs symbols this process does not "
            "provide: " + ", ".join(sorted(set(missing)))
        )


def compile_llvm_ir(llvm_ir: str) -> CompiledModule:
    """Parse, verify, optimise (O3, host CPU) and JIT LLVM IR text."""
    jit = _jit()
    mod = llb.parse_assembly(llvm_ir)
    mod.triple = jit.triple
    mod.data_layout = jit.data_layout
    mod.verify()
    uid = jit.next_module_id()
    renamed: dict[str, str] = {}
    for fn in mod.functions:
        if fn.is_declaration:
            continue
        if fn.name.startswith(ENTRY_PREFIX):
            new_name = f"{fn.name}.{uid}"
            renamed[fn.name] = new_name
            fn.name = new_name
        else:
            fn.linkage = llb.Linkage.internal
    jit.optimize(mod)
    mod.verify()
    optimized = str(mod)
    _check_symbols(mod)
    jit.engine.add_module(mod)
    jit.engine.finalize_object()
    addresses = {
        old: jit.engine.get_function_address(new) for old, new in renamed.items()
    }
    return CompiledModule(llvm_ir, optimized, addresses, mod)


def compile_llvm_module(module: ModuleOp) -> CompiledModule:
    """JIT an ``llvm``-stage module (the output of ``lower_to_llvm``)."""
    return compile_llvm_ir(translate_to_llvm_ir(module, host_target_triple()))
