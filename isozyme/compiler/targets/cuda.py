"""The ``cuda`` target: kernels as CUDA C, the code around them as a host program.

Stages after ``simplified``:

========  ==============================================================================
``gpu``   ``expand-memref-copy{parallel}`` and ``parallelize-host-loops`` (copies, fills
          and other independent element loops as ``scf.parallel``),
          ``wrap-serial-loops`` (the remaining sequential loops over memory as
          one-thread ``scf.parallel``), then
          ``gpu-outline-parallel-loops``: every outermost ``scf.parallel`` becomes a
          ``gpu.func`` kernel of ``gpu.module @isozyme_kernels``, launched by
          ``gpu.launch_func`` (:mod:`isozyme.compiler.gpu`)
``cuda``  the kernels as one CUDA C translation unit (``print_cuda``; text)
``host``  the module without its ``gpu.module``: scalars, sequential loops,
          allocations and launches
``llvm``  the host program lowered by the CPU target's passes plus
          ``convert-gpu-launch-to-llvm`` (launches through ``cuLaunchKernel``),
          ``convert-host-memory-access-to-copies`` (the host's element reads and writes
          as ``cuMemcpy``) and ``use-device-allocator`` (``memref.alloc``/``dealloc``
          on the device)
========  ==============================================================================

The artefact (:class:`~isozyme.compiler.targets.GpuArtefact`) holds the host program,
the kernel names and the CUDA C; ``runtime/cuda.py`` compiles the kernels with CuPy and
JIT-compiles the host program. Everything the host program touches is device memory:
its element reads and writes (a reduction's result, a scalar between kernels) copy one
element each. An atomic outside a kernel was already made a load, an op and a store by
``convert-parallel-to-for`` (the host is one thread, and each copy is synchronous), so
it becomes copies too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from xdsl.context import Context
from xdsl.dialects import func, gpu, llvm, memref
from xdsl.dialects.builtin import (
    IntegerAttr,
    IntegerType,
    MemRefType,
    ModuleOp,
    StringAttr,
    i1,
    i32,
    i64,
)
from xdsl.ir import Block, Operation
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from isozyme.abi import (
    CUDA_LAUNCH_SYMBOL,
    DEVICE_ALLOC_SYMBOL,
    DEVICE_COPY_SYMBOL,
    DEVICE_FREE_SYMBOL,
)
from isozyme.compiler.lowering import apply_lowering
from isozyme.compiler.lowering._common import byte_size, call, declare_function
from isozyme.compiler.lowering.convert_gpu_launch_to_llvm import keep_first_error
from isozyme.compiler.lowering.convert_memref_to_llvm import (
    MemrefLowerer,  # element addresses of memref accesses, as the CPU lowering computes them
    storage_type,
)
from isozyme.compiler.passes.registry import make_pass
from isozyme.compiler.targets import GpuArtefact, OnStage, Target, build_target_passes
from isozyme.compiler.targets.cpu import CpuTarget
from isozyme.dialects.check import CheckOp

_PTR = llvm.LLVMPointerType()


def kernel_module(module: ModuleOp) -> gpu.ModuleOp | None:
    """The ``gpu.module`` of a ``gpu``-stage module (None without kernels)."""
    return next((op for op in module.ops if isinstance(op, gpu.ModuleOp)), None)


def kernel_names(kernels: gpu.ModuleOp | None) -> tuple[str, ...]:
    """The names of the ``gpu.func`` kernels, in order (the kernel table's order)."""
    if kernels is None:
        return ()
    return tuple(
        op.sym_name.data for op in kernels.body.ops if isinstance(op, gpu.FuncOp)
    )


def _function_entry(op: Operation) -> Block:
    """The entry block of the function enclosing ``op``."""
    fn = op.parent_op()
    while fn is not None and not isinstance(fn, (func.FuncOp, llvm.FuncOp)):
        fn = fn.parent_op()
    assert fn is not None and fn.body.blocks
    return fn.body.blocks[0]


def _copy_through_stack(op: memref.LoadOp | memref.StoreOp) -> None:
    """One host ``memref.load``/``store`` of device memory as ``cuMemcpy`` through a
    stack slot (see :class:`ConvertHostMemoryAccessToCopiesPass`)."""
    mtype = op.memref.type
    assert isinstance(mtype, MemRefType)
    lo = MemrefLowerer(op, mtype)
    ptr = lo.element_pointer(op.memref, list(op.indices))
    st = storage_type(mtype.element_type)
    one = llvm.ConstantOp(IntegerAttr(1, i64), i64)
    slot = llvm.AllocaOp(one, st, alignment=8)
    entry = _function_entry(op)
    if entry.first_op is None:
        entry.add_ops([one, slot])
    else:
        entry.insert_ops_before([one, slot], entry.first_op)
    nbytes = lo.const(byte_size(st))
    if isinstance(op, memref.LoadOp):
        copy = lo.b.insert(call(DEVICE_COPY_SYMBOL, [slot.res, ptr, nbytes], i32))
    else:
        value = op.value
        if mtype.element_type == i1:
            value = lo.b.insert(llvm.ZExtOp(value, IntegerType(8))).results[0]
        lo.b.insert(llvm.StoreOp(value, slot.res))
        copy = lo.b.insert(call(DEVICE_COPY_SYMBOL, [ptr, slot.res, nbytes], i32))
    assert copy.returned is not None
    # A failed copy: keep the first error in the launch status, as launches do.
    for o in keep_first_error(copy.returned):
        lo.b.insert(o)
    if isinstance(op, memref.StoreOp):
        Rewriter.erase_op(op)
        return
    loaded = lo.b.insert(llvm.LoadOp(slot.res, st)).dereferenced_value
    if mtype.element_type == i1:
        loaded = lo.b.insert(llvm.TruncOp(loaded, i1)).results[0]
    Rewriter.replace_op(op, [], [loaded])


@dataclass(frozen=True)
class ConvertHostMemoryAccessToCopiesPass(ModulePass):
    """``convert-host-memory-access-to-copies``: in the ``cuda`` target's host
    program every array is device memory, so each ``memref.load`` becomes a
    ``cuMemcpy`` of the element into a stack slot and a load of the slot, each
    ``memref.store`` a store into a slot and a ``cuMemcpy`` to the element (a
    reduction's result, a scalar read between kernels). Runs after
    ``convert-scf-to-cf`` and ``expand-memref-copy`` (a ``memref.copy`` on the host
    is element copies: correct, slow), before ``convert-memref-to-llvm``."""

    name = "convert-host-memory-access-to-copies"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        del ctx
        accesses = [o for o in op.walk() if isinstance(o, (memref.LoadOp, memref.StoreOp))]
        # (no memref.atomic_rmw is left: convert-parallel-to-for lowered them)
        if not accesses:
            return
        declare_function(op, DEVICE_COPY_SYMBOL, [_PTR, _PTR, i64], i32)
        for access in accesses:
            _copy_through_stack(access)


@dataclass(frozen=True)
class UseDeviceAllocatorPass(ModulePass):
    """``use-device-allocator``: the host program's ``malloc``/``free`` calls, which at
    this point (right after ``convert-memref-to-llvm``) are exactly those of
    ``memref.alloc``/``memref.dealloc``, call ``iz_device_alloc``/``iz_device_free``
    instead (defined by the runtime: device memory). A device allocation can fail (out
    of device memory: the allocator returns NULL), so each one is followed by
    ``isz.check (ptr != null || bytes == 0), bytes``: the call stops there, before any
    later launch, and the runtime re-raises the allocator's error."""

    name = "use-device-allocator"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        """Rename the callees and their declarations in place; check each allocation."""
        del ctx
        renames = {"malloc": DEVICE_ALLOC_SYMBOL, "free": DEVICE_FREE_SYMBOL}
        allocs: list[llvm.CallOp] = []
        for o in op.walk():
            if isinstance(o, llvm.CallOp) and o.callee is not None:
                new = renames.get(o.callee.root_reference.data)
                if new is not None:
                    o.callee = type(o.callee)(new)
                    if new == DEVICE_ALLOC_SYMBOL:
                        allocs.append(o)
            elif isinstance(o, llvm.FuncOp) and o.sym_name.data in renames:
                o.sym_name = StringAttr(renames[o.sym_name.data])
        for o in allocs:
            _check_allocation(o)


#: The start of the message of a failed device allocation's check.
ALLOC_FAILURE = "isozyme cuda: a device allocation failed"


def _check_allocation(alloc: llvm.CallOp) -> None:
    """``isz.check (%ptr != null || %bytes == 0), %bytes`` after ``alloc`` (a call of
    ``iz_device_alloc``, which returns NULL for 0 bytes)."""
    ptr = alloc.returned
    assert ptr is not None
    nbytes = alloc.args[0]
    zero = llvm.ConstantOp(IntegerAttr(0, i64), i64)
    as_int = llvm.PtrToIntOp(ptr, i64)
    ne, eq = (IntegerAttr(llvm.ICmpPredicateFlag(p).to_int(), i64) for p in ("ne", "eq"))
    not_null = llvm.ICmpOp(as_int.results[0], zero.result, ne)
    empty = llvm.ICmpOp(nbytes, zero.result, eq)
    ok = llvm.OrOp(not_null.res, empty.res)
    check = CheckOp(ok.res, "unsupported", ALLOC_FAILURE + " ({0} bytes)", [nbytes])
    assert alloc.parent is not None
    alloc.parent.insert_ops_after([zero, as_int, not_null, empty, ok, check], alloc)


class CudaTarget(Target):
    """NVIDIA GPUs: kernels in CUDA C compiled by CuPy (NVRTC), a host program JIT-
    compiled by LLVM that launches them with the driver's ``cuLaunchKernel``."""

    name = "cuda"
    stages = ("gpu", "cuda", "host", "llvm")
    #: the function the host program launches kernels with
    launch_symbol: ClassVar[str] = CUDA_LAUNCH_SYMBOL
    #: whether the host program's allocations are device memory
    device_memory: ClassVar[bool] = True

    def lowering_passes(self, kernels: Sequence[str] = ()) -> Sequence[ModulePass]:
        """The CPU target's passes, plus ``convert-gpu-launch-to-llvm`` after
        ``convert-func-to-llvm`` and, with device memory, ``convert-host-memory-access-
        to-copies`` before and ``use-device-allocator`` after
        ``convert-memref-to-llvm`` (built from the pass registry)."""
        items: list[str | ModulePass] = []
        for name in CpuTarget().lowering_specs():
            if name == "convert-memref-to-llvm" and self.device_memory:
                items.append("convert-host-memory-access-to-copies")
            items.append(name)
            if name == "convert-memref-to-llvm" and self.device_memory:
                items.append("use-device-allocator")
            if name == "convert-func-to-llvm":
                # kernel names are data, not pipeline text: built with keywords
                items.append(make_pass("convert-gpu-launch-to-llvm", kernels=tuple(kernels),
                                       launch_symbol=self.launch_symbol))
        return build_target_passes(items)

    def kernel_passes(self) -> Sequence[ModulePass]:
        """The passes of stage ``gpu``: element loops that can run as kernels become
        ``scf.parallel`` (``expand-memref-copy{parallel}``: each ``memref.copy``;
        ``parallelize-host-loops``: fills and copies into fresh arrays;
        ``wrap-serial-loops``: the remaining sequential loops over memory, as
        one-iteration loops), then ``gpu-outline-parallel-loops``. Without the first
        three, the host program would read and write device memory one element (one
        ``cuMemcpy``) at a time."""
        return build_target_passes((
            "expand-memref-copy{parallel=true}",
            "parallelize-host-loops",
            "wrap-serial-loops",
            "gpu-outline-parallel-loops",
        ))

    def stage_passes(self, stage: str) -> Sequence[ModulePass]:
        """Stage ``gpu``: :meth:`kernel_passes`; ``llvm``: :meth:`lowering_passes`."""
        if stage == "gpu":
            return self.kernel_passes()
        return self.lowering_passes() if stage == "llvm" else ()

    def kernel_source(self, module: ModuleOp, kernels: gpu.ModuleOp | None, cuda: str) -> str:
        """The source the runtime compiles the kernels from: the CUDA C itself."""
        del module, kernels
        return cuda

    def compile(
        self,
        module: ModuleOp,
        ctx: Context,
        *,
        upto: str = "llvm",
        on_stage: OnStage | None = None,
    ) -> GpuArtefact | None:
        """Run the stages ``gpu``, ``cuda``, ``host``, ``llvm`` (see the module
        docstring) up to ``upto``; the artefact after ``llvm``."""
        for p in self.kernel_passes():
            p.apply(ctx, module)
        if on_stage is not None:
            on_stage("gpu", module)
        if upto == "gpu":
            return None
        kernels = kernel_module(module)
        cuda = _print_cuda(kernels)
        if on_stage is not None:
            on_stage("cuda", cuda)
        if upto == "cuda":
            return None
        names = kernel_names(kernels)
        source = self.kernel_source(module, kernels, cuda)
        if kernels is not None:
            kernels.detach()
            kernels.erase()
        if on_stage is not None:
            on_stage("host", module)
        if upto == "host":
            return None
        apply_lowering(module, self.lowering_passes(names), ctx)
        if on_stage is not None:
            on_stage("llvm", module)
        return GpuArtefact(self.name, module, names, source, self.launch_symbol)


def _print_cuda(kernels: gpu.ModuleOp | None) -> str:
    """The CUDA C of the kernels (a comment when there is none)."""
    if kernels is None:
        return "// isozyme: no kernels (the function has no parallel loop)\n"
    from isozyme.compiler.gpu.cuda_printer import print_cuda  # noqa: PLC0415

    return print_cuda(kernels)
