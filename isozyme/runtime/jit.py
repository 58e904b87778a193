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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import llvmlite.binding as llb
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
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


def type_name(t: Attribute | str) -> str:
    """Normalise an IR type (or its name) to a key of the slot table."""
    if isinstance(t, str):
        name = t
    elif isinstance(t, Float64Type):
        name = "f64"
    elif isinstance(t, Float32Type):
        name = "f32"
    elif isinstance(t, IndexType):
        name = "index"
    elif isinstance(t, IntegerType):
        name = f"i{t.width.data}"
    else:
        name = str(t)
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

        It takes one Python scalar per argument (``float``/``int``/``bool`` or numpy
        scalars; ``f64``/``f32`` accept anything with ``__float__``, ``i64``/``i32``
        anything with ``__index__``, ``i1`` any object, by truth value) and returns a
        tuple with one value per result: ``float`` for ``f64``/``f32``, ``int`` for
        ``i64``/``i32``/``index``, ``bool`` for ``i1``. Each callable owns its buffers.
        """
        key = ENTRY_PREFIX + func_name
        if key not in self.entry_addresses:
            public = sorted(n[len(ENTRY_PREFIX) :] for n in self.entry_addresses)
            raise KeyError(
                f"isozyme runtime: no entry point for '{func_name}' "
                f"(public functions: {public})"
            )
        return make_entry_callable(
            self.entry_addresses[key],
            [type_name(t) for t in arg_types],
            [type_name(t) for t in result_types],
            keepalive=self,
        )


def make_entry_callable(
    address: int,
    arg_types: Sequence[str],
    result_types: Sequence[str],
    keepalive: object = None,
) -> Callable[..., tuple[Any, ...]]:
    """Build the fast Python wrapper of the entry point at ``address``.

    The wrapper's source is generated for the exact arity so a call is: one
    ``pack_into``, one ctypes call with two preconverted pointers, one ``unpack_from``.
    ``keepalive`` is referenced from the wrapper so the compiled code outlives it.
    """
    in_struct = struct.Struct("<" + "".join(_SLOT_CODES[t] for t in arg_types))
    out_struct = struct.Struct("<" + "".join(_SLOT_CODES[t] for t in result_types))
    # At least one byte each so the buffers have an address.
    in_buf = (ctypes.c_char * max(in_struct.size, 8))()
    out_buf = (ctypes.c_char * max(out_struct.size, 8))()
    fn = _ENTRY_FNTYPE(address)
    names = [f"a{i}" for i in range(len(arg_types))]
    params = ", ".join(names)
    lines = [f"def entry({params}):"]
    if arg_types:
        lines.append(f"    pack_into(in_buf, 0, {params})")
    lines.append("    fn(in_ptr, out_ptr)")
    lines.append("    return unpack_from(out_buf)" if result_types else "    return ()")
    namespace: dict[str, Any] = {
        "pack_into": in_struct.pack_into,
        "unpack_from": out_struct.unpack_from,
        "in_buf": in_buf,
        "out_buf": out_buf,
        "fn": fn,
        # ctypes converts a c_void_p argument fastest from a c_void_p object.
        "in_ptr": ctypes.c_void_p(ctypes.addressof(in_buf)),
        "out_ptr": ctypes.c_void_p(ctypes.addressof(out_buf)),
    }
    exec(compile("\n".join(lines), f"<isozyme entry {address:#x}>", "exec"), namespace)
    entry = namespace["entry"]
    entry._iz_keepalive = (keepalive, in_buf, out_buf, fn)  # type: ignore[attr-defined]
    entry.__doc__ = (
        f"isozyme entry ({', '.join(arg_types)}) -> ({', '.join(result_types)})"
    )
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
