"""The CPU JIT: LLVM IR -> native code with llvmlite's MCJIT.

One process-wide MCJIT execution engine holds every compiled module. Each module is
optimised with LLVM's new pass manager at O3 for the host CPU and its features.
Everything that touches LLVM (creating the engine, parsing, optimising, adding and
removing modules) holds :data:`_JIT_LOCK`: LLVM's context and the engine are not
thread-safe.  Calling compiled code takes no lock.

A module is freed when nothing uses its code any more: each :class:`CompiledModule`
(kept alive by every callable made from it) queues its LLVM module when it is garbage
collected, and :func:`release_freed_code` (run by ``isozyme.clear_cache()`` and before
each compilation) removes the queued modules from the engine and disposes of them.

The libm functions the lowering declares as ``__iz_libm_<name>`` get their libm names
back (a user function of that name is renamed: see :func:`_link_libm`).  Symbols of
different modules must not clash inside the shared engine, so before
optimisation every defined function except the C entry points becomes ``internal``
(this also lets O3 inline and delete them) and each entry ``_iz_entry_f`` is renamed
``_iz_entry_f.<n>`` with a per-module number ``n``.

With the disk cache on (:mod:`isozyme.runtime.disk_cache`, CPU target), a module goes
into the engine as object code instead: :func:`compile_llvm_module` emits the optimized
module's object (stored for later processes) and adds it with ``add_object_file``; a
cache hit adds the stored object (:func:`load_cached`).  Entries of such code are named
after the sha256 of the translated IR, ``_iz_entry_f.<hash>``, the same in every process;
an object is added to an engine once (:data:`_OBJECTS`), and MCJIT cannot remove an
object, so its memory returns when the engine is disposed of (no module left).

Calling an entry point from Python is :meth:`CompiledModule.entry`, built from
:mod:`isozyme.runtime.marshal` (argument types, memref descriptors),
:mod:`isozyme.runtime.entry_callable` (the generated callables) and
:mod:`isozyme.runtime.result_arrays` (memref results and their ownership); their
names used elsewhere are re-exported here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import itertools
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import llvmlite.binding as llb
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Attribute

from isozyme.abi import ENTRY_PREFIX, HELPER_PREFIX
from isozyme.compiler.lowering._common import LIBM_PREFIX
from isozyme.compiler.lowering.translate import translate_to_llvm_ir
from isozyme.runtime.entry_callable import make_entry_callable
from isozyme.runtime.heap import keep_freed_memory
from isozyme.runtime.marshal import (
    MemrefSpec,
    descriptor_struct,
    memref_spec,
    type_name,
    type_name_of,
)
from isozyme.runtime.result_arrays import _MallocBlock
from isozyme.timings import phase

__all__ = [
    "CompiledModule",
    "MemrefSpec",
    "_MallocBlock",
    "compile_llvm_ir",
    "compile_llvm_module",
    "descriptor_struct",
    "host_target_triple",
    "load_cached",
    "make_entry_callable",
    "memref_spec",
    "release_freed_code",
    "type_name",
    "type_name_of",
]


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
        import os  # noqa: PLC0415

        #: LLVM's level: "auto" (the rule of :meth:`optimize`) or "0".."3" forced
        #: (``ISOZYME_LLVM_OPT``: to measure what each level costs and gives)
        self.opt_level = os.environ.get("ISOZYME_LLVM_OPT", "auto").strip() or "auto"
        if self.opt_level not in ("auto", "0", "1", "2", "3"):
            self.opt_level = "auto"  # a mistyped value keeps the default
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
        #: modules added to the engine and not yet removed (see release_freed_code)
        self.live = 0

    def next_module_id(self) -> int:
        """A number unique to each compiled module (for symbol renaming)."""
        return next(self._counter)

    def optimize(self, mod: llb.ModuleRef) -> None:
        """Run LLVM's O3 pipeline (new pass manager) on ``mod`` in place, without the
        loop unroller.

        Measured (benchmarks/compile_time.py, results/compile-time-cpu.md): the
        unroller makes no gradient faster (rosenbrock, heat, GMM warm calls equal
        within noise) while it multiplies the code that the rest of O3 and the code
        generator then process (GMM: optimize + codegen about a third longer).  The
        vectorizers stay: they make the rosenbrock gradient 2-6x and heat 1.7x faster
        than O1 does.  ``ISOZYME_LLVM_OPT=0..3`` forces LLVM's plain level instead
        (3: O3 with unrolling; 0: no IR optimization), to measure."""
        if self.opt_level == "auto":
            level, unroll = 3, False
        else:
            level = int(self.opt_level)
            unroll = level >= 2
        if level == 0:
            return
        pto = llb.create_pipeline_tuning_options(speed_level=level)
        pto.loop_vectorization = level >= 2
        pto.slp_vectorization = level >= 2
        pto.loop_unrolling = unroll
        pb = llb.create_pass_builder(self.target_machine, pto)
        mpm = pb.getModulePassManager()
        mpm.run(mod, pb)


_JIT_INSTANCE: _JIT | None = None
#: Held around every use of LLVM (reentrant: compile_llvm_module calls _jit()).
_JIT_LOCK = threading.RLock()
#: LLVM modules whose CompiledModule was garbage collected, to remove from the engine.
#: Appended to by finalizers (any thread, any time: list.append is atomic), emptied
#: under _JIT_LOCK.
_FREED: list[llb.ModuleRef | None] = []
#: Object code added to the current engine, by IR hash: its entry symbols -> addresses.
#: An object stays in MCJIT until the engine is disposed of (release_freed_code), so
#: the same code is added once and its addresses reused.  Used under _JIT_LOCK.
_OBJECTS: dict[str, dict[str, int]] = {}


def _jit() -> _JIT:
    if _JIT_INSTANCE is None:
        _create_jit()
    return _JIT_INSTANCE  # type: ignore[return-value]


def _create_jit() -> None:
    global _JIT_INSTANCE
    with _JIT_LOCK:  # two threads' first compilations must not create two engines
        if _JIT_INSTANCE is None:
            _JIT_INSTANCE = _JIT()
            keep_freed_memory()  # a call's tape reuses the previous call's pages


def release_freed_code() -> int:
    """Remove the modules of garbage-collected :class:`CompiledModule` objects from the
    engine and dispose of them; return how many were freed.

    MCJIT keeps the machine code of a removed module in its memory manager until the
    engine itself is destroyed, so once no module is left the engine is disposed of too
    (the next compilation creates a new one): only then does the code's memory return."""
    global _JIT_INSTANCE
    if not _FREED or _JIT_INSTANCE is None:
        return 0
    n = 0
    with _JIT_LOCK:
        jit = _JIT_INSTANCE
        if jit is None:  # another thread released the engine after the check above
            return 0
        while _FREED:
            mod = _FREED.pop()
            if mod is not None:  # None: object code, which only the engine's end frees
                jit.engine.remove_module(mod)
                mod.close()
            n += 1
        jit.live -= n
        if jit.live == 0:
            jit.engine.close()
            _JIT_INSTANCE = None
            _OBJECTS.clear()
    _trim_malloc()
    return n


def _trim_malloc() -> None:
    """Give freed heap memory back to the operating system (glibc keeps it otherwise)."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


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
    #: None for code added as an object file (disk cache), which has no module.
    _module: llb.ModuleRef | None = field(repr=False)
    #: The run-time checks' ``(kind, message, n_values)`` by id - 1 (``isz.check``).
    checks: tuple[tuple[str, str, int], ...] = ()
    #: Wraps each entry callable (a GPU executor's per-call set-up: device, stream,
    #: allocation failures); None: the callable is returned as it is.
    wrap_entry: Callable[[Callable[..., tuple]], Callable[..., tuple]] | None = None
    #: What the executor keeps alive as long as the code (kernel libraries, tables).
    extras: tuple[Any, ...] = ()
    #: Result arrays of memref results: ``(allocated pointer) -> owner`` (None: the
    #: memory is ``malloc``-ed and freed with ``free``, :class:`_MallocBlock`).
    result_owner: Callable[[int], object] | None = None
    #: Turns each result array before it is returned (e.g. into a device array).
    result_array: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        # Free the code once nothing can call it: every entry callable keeps this
        # object alive (keepalive), so it dies only after the last one.
        weakref.finalize(self, _FREED.append, self._module)

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
        result (see :mod:`.result_arrays`: it owns the memory the function
        allocated and frees it when garbage-collected). Each callable owns its buffers.

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
        entry = make_entry_callable(
            self.entry_addresses[key], args, results, keepalive=self, checks=self.checks,
            result_owner=self.result_owner, result_array=self.result_array,
        )
        if self.wrap_entry is None:
            return entry
        wrapped = self.wrap_entry(entry)
        wrapped.__doc__ = entry.__doc__
        return wrapped


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


def _link_libm(mod: llb.ModuleRef, uid: int | str) -> None:
    """Give the libm functions the lowering declared as ``__iz_libm_<name>``
    (:data:`LIBM_PREFIX`) their libm names, so that LLVM knows them (attributes,
    constant folding) and MCJIT resolves them from libm.  A function of the module
    that has the libm name itself (a user function ``@tan``) is renamed first: every
    function but the entry points is internal, its name is free."""
    functions = {fn.name: fn for fn in mod.functions}
    for name, decl in functions.items():
        if not (decl.is_declaration and name.startswith(LIBM_PREFIX)):
            continue
        libm_name = name[len(LIBM_PREFIX):]
        other = functions.get(libm_name)
        if other is not None and other.is_declaration:
            # declared under both names: bind the prefixed one to libm's address
            address = llb.address_of_symbol(libm_name)
            if address is not None:
                llb.add_symbol(name, address)
            continue
        if other is not None:
            other.name = f"{libm_name}.{HELPER_PREFIX}user.{uid}"
        decl.name = libm_name


def compile_llvm_ir(
    llvm_ir: str, globals_: Mapping[str, int] | None = None
) -> CompiledModule:
    """Parse, verify, optimise (O3, host CPU) and JIT LLVM IR text.

    ``globals_``: external globals and functions of the module that the caller
    defines, name -> address (a GPU host program's kernel table and launch
    function); each is renamed ``<name>.<n>`` in this module and bound to its
    address, so that modules do not share them. Names the module does not declare are
    ignored."""
    release_freed_code()
    with _JIT_LOCK:  # taken before _jit(): releasing code may replace the engine
        return _compile_locked(_jit(), llvm_ir, globals_ or {})


def _compile_locked(
    jit: _JIT, llvm_ir: str, globals_: Mapping[str, int], ir_hash: str | None = None,
    on_object: Callable[[bytes, dict[str, str]], None] | None = None,
) -> CompiledModule:
    """Parse, optimise and add ``llvm_ir`` to ``jit``'s engine.  With ``ir_hash`` (the
    disk cache), entries are named ``<entry>.<ir_hash>`` and the module goes in as
    object code, handed to ``on_object(object, {entry: symbol})`` first."""
    with phase("llvm/parse", "llvm-translate"):
        mod = llb.parse_assembly(llvm_ir)
        mod.triple = jit.triple
        mod.data_layout = jit.data_layout
        mod.verify()
    uid: int | str = jit.next_module_id() if ir_hash is None else ir_hash
    _link_libm(mod, uid)
    for value in (*mod.global_variables, *mod.functions):
        if value.name in globals_ and value.is_declaration:
            address = globals_[value.name]
            value.name = f"{value.name}.{uid}"
            llb.add_symbol(value.name, address)
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
    with phase("llvm/optimize", "llvm-optimize"):
        jit.optimize(mod)
    mod.verify()
    optimized = str(mod)
    _check_symbols(mod)
    if ir_hash is not None:
        with phase("llvm/codegen", "codegen"):
            obj = jit.target_machine.emit_object(mod)
        mod.close()
        if on_object is not None:
            on_object(obj, renamed)
        addresses = _add_object_locked(jit, ir_hash, obj, renamed)
        return CompiledModule(llvm_ir, optimized, addresses, None)
    with phase("llvm/codegen", "codegen"):
        jit.engine.add_module(mod)
        jit.live += 1
        jit.engine.finalize_object()
    addresses = {
        old: jit.engine.get_function_address(new) for old, new in renamed.items()
    }
    return CompiledModule(llvm_ir, optimized, addresses, mod)


def _add_object_locked(
    jit: _JIT, ir_hash: str, obj: bytes, entries: Mapping[str, str]
) -> dict[str, int]:
    """Add object code to ``jit``'s engine once per IR hash; return the addresses of
    its entries by source name."""
    symbols = _OBJECTS.get(ir_hash)
    if symbols is None:
        with phase("llvm/load-object", "codegen"):
            jit.engine.add_object_file(llb.ObjectFileRef.from_data(obj))
            jit.engine.finalize_object()
            symbols = {s: jit.engine.get_function_address(s) for s in entries.values()}
        if not all(symbols.values()):
            missing = sorted(s for s, a in symbols.items() if not a)
            raise RuntimeError(f"isozyme runtime: object code lacks entries {missing}")
        _OBJECTS[ir_hash] = symbols
    jit.live += 1  # (released as a None in _FREED)
    return {old: symbols[new] for old, new in entries.items()}


def compile_llvm_module(
    module: ModuleOp, globals_: Mapping[str, int] | None = None,
    cache_key: str | None = None,
) -> CompiledModule:
    """JIT an ``llvm``-stage module (the output of ``lower_to_llvm``); ``globals_`` as
    for :func:`compile_llvm_ir`.  With ``cache_key`` (a disk cache front key, see
    :mod:`isozyme.runtime.disk_cache`) the object code is stored under that key."""
    from isozyme.compiler.lowering.convert_check_to_llvm import check_table  # noqa: PLC0415

    with phase("llvm/setup", "codegen"):  # the engine, on the first compilation
        triple = host_target_triple()
    with phase("llvm/translate", "llvm-translate"):
        llvm_ir = translate_to_llvm_ir(module, triple)
    checks = check_table(module)
    if cache_key is None or globals_:
        compiled = compile_llvm_ir(llvm_ir, globals_)
        compiled.checks = checks
        return compiled
    from isozyme.runtime import disk_cache  # noqa: PLC0415

    ir_hash = hashlib.sha256(llvm_ir.encode()).hexdigest()[:32]

    def store(obj: bytes, entries: dict[str, str]) -> None:
        with phase("disk-cache/store", "runtime"):
            disk_cache.store(
                cache_key, disk_cache.CachedCode(ir_hash, obj, dict(entries), checks)
            )

    release_freed_code()
    with _JIT_LOCK:
        compiled = _compile_locked(_jit(), llvm_ir, {}, ir_hash, store)
    compiled.checks = checks
    return compiled


def load_cached(code: Any) -> CompiledModule:
    """Load a disk cache entry's object code (a
    :class:`isozyme.runtime.disk_cache.CachedCode`) without compiling; its
    ``llvm_ir`` texts are empty (the cache is not used when stages are printed)."""
    release_freed_code()
    with _JIT_LOCK:
        with phase("llvm/setup", "codegen"):  # the engine, on the first load
            jit = _jit()
        addresses = _add_object_locked(jit, code.ir_hash, code.obj, code.entries)
    return CompiledModule("", "", addresses, None, checks=code.checks)


def llvm_ir_stages(module: ModuleOp) -> tuple[str, str]:
    """The ``llvm-ir`` and ``llvm-ir-optimized`` texts of an ``llvm``-stage module,
    without adding it to the engine (for printing: its external symbols, such as a
    GPU host program's launch function, need not exist in this process)."""
    llvm_ir = translate_to_llvm_ir(module, host_target_triple())
    with _JIT_LOCK:
        jit = _jit()
        mod = llb.parse_assembly(llvm_ir)
        mod.triple = jit.triple
        mod.data_layout = jit.data_layout
        mod.verify()
        _link_libm(mod, 0)
        for fn in mod.functions:
            if not fn.is_declaration and not fn.name.startswith(ENTRY_PREFIX):
                fn.linkage = llb.Linkage.internal
        jit.optimize(mod)
        optimized = str(mod)
        mod.close()
    return llvm_ir, optimized
