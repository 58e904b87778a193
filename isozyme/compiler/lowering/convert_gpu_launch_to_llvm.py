"""``convert-gpu-launch-to-llvm``: each ``gpu.launch_func`` of a host program becomes a
call with ``cuLaunchKernel``'s signature.

The host program is a GPU target's module without its ``gpu.module`` (the ``host``
stage). For ::

    gpu.launch_func @isozyme_kernels::@f_k0 blocks in (%gx, %gy, %gz)
        threads in (%bx, %by, %bz) args(%a0 : T0, %a1 : T1, ...)

the pass emits, in the enclosing ``llvm.func``:

* in its entry block, once per launch: an ``alloca`` per argument (a memref's whole
  descriptor struct, a scalar, an ``i1`` as one byte as CUDA's ``bool``) and an
  ``alloca`` of ``ptr[n]`` holding their addresses (the ``kernelParams`` array), so a
  launch inside a loop does not grow the stack;
* at the launch: stores of the arguments and of their addresses, the kernel handle
  loaded from the external global ``@__iz_kernel_table`` (``ptr[K]``: kernel ``i`` is
  the ``i``-th name of ``kernels``; the runtime defines it, see
  :data:`isozyme.abi.KERNEL_TABLE`), and
  ``%rc = llvm.call @<launch_symbol>(%f, gx, gy, gz, bx, by, bz : i32, %shmem : i32,
  %stream, %params, null extra) : i32``;
* ``%stream``: for ``cuLaunchKernel`` (the ``cuda`` target), the result of
  ``@iz_launch_stream()`` (:data:`LAUNCH_STREAM_SYMBOL`, defined by the runtime: the
  CuPy stream current for the call), called once in the function's entry block;
  ``null`` for other launch functions (``cuda-emu``);
* a non-zero ``%rc`` stops the call: ``isz.check %rc == 0, %rc`` (kind
  ``unsupported``, a message starting with :data:`DRIVER_FAILURE`), lowered with the
  other checks by ``convert-isz-check-to-llvm`` into an early return through the
  caller's status record (per call, so concurrent calls share nothing); the runtime
  raises :class:`isozyme.runtime.cuda_errors.CudaError` naming the ``CUresult``.

It runs after ``convert-func-to-llvm`` (argument values are ``llvm`` types by then)
and before ``add-c-entry-points``; the ``gpu.container_module`` attribute is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import gpu, llvm
from xdsl.dialects.builtin import IntegerAttr, IntegerType, ModuleOp, i32, i64
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.abi import CUDA_LAUNCH_SYMBOL, KERNEL_TABLE
from isozyme.compiler.lowering._common import (
    LoweringError,
    call,
    convert_type,
    declare_function,
)
from isozyme.dialects.check import CheckOp

_PTR = llvm.LLVMPointerType()
_I8 = IntegerType(8)

#: ``void *iz_launch_stream(void)``: the stream the ``cuda`` host program launches on
#: (the runtime's, per call). (Belongs in :mod:`isozyme.abi` with the other symbols.)
LAUNCH_STREAM_SYMBOL = "iz_launch_stream"
#: The start of the message of every check on a CUDA driver call's result; the runtime
#: raises :class:`~isozyme.runtime.cuda_errors.CudaError` for these checks.
DRIVER_FAILURE = "CUDA driver call failed"


def _declare_global(module: ModuleOp, name: str, t: Attribute) -> None:
    """Declare the external global ``@name`` of type ``t`` unless it is declared."""
    for op in module.ops:
        if isinstance(op, llvm.GlobalOp) and op.sym_name.data == name:
            return
    decl = llvm.GlobalOp(t, name, "external")
    block = module.body.block
    if block.first_op is None:
        block.add_op(decl)
    else:
        block.insert_op_before(decl, block.first_op)


def _const(value: int, t: IntegerType) -> llvm.ConstantOp:
    """``llvm.mlir.constant(value : t)``."""
    return llvm.ConstantOp(IntegerAttr(value, t), t)


def _kernel_name(op: gpu.LaunchFuncOp) -> str:
    """The kernel's own name (the leaf of ``@module::@kernel``)."""
    nested = op.kernel.nested_references.data
    return nested[-1].data if nested else op.kernel.root_reference.data


def _as_i32(value: SSAValue, before: Operation) -> SSAValue:
    """``value`` (an ``i64``/``i32`` launch size) as ``i32``."""
    t = value.type
    if isinstance(t, IntegerType) and t.width.data == 32:
        return value
    trunc = llvm.TruncOp(value, i32)
    Rewriter.insert_op(trunc, InsertPoint.before(before))
    return trunc.res


def _entry_block(op: Operation) -> Block:
    """The entry block of the ``llvm.func`` enclosing ``op``."""
    fn = op.parent_op()
    while fn is not None and not isinstance(fn, llvm.FuncOp):
        fn = fn.parent_op()
    if fn is None or not fn.body.blocks:
        raise LoweringError("isozyme lowering: gpu.launch_func outside an llvm.func")
    return fn.body.blocks[0]


def _stream_of(entry: Block, streams: dict[Block, SSAValue]) -> SSAValue:
    """The launch stream of the function whose entry block is ``entry``: one call of
    ``@iz_launch_stream`` at its start."""
    if entry not in streams:
        get = call(LAUNCH_STREAM_SYMBOL, [], _PTR)
        if entry.first_op is None:
            entry.add_op(get)
        else:
            entry.insert_op_before(get, entry.first_op)
        assert get.returned is not None
        streams[entry] = get.returned
    return streams[entry]


def _lower_launch(
    op: gpu.LaunchFuncOp,
    index: int,
    launch_symbol: str,
    streams: dict[Block, SSAValue] | None,
) -> None:
    """Replace one launch (see the module docstring)."""
    if op.asyncToken is not None or op.asyncDependencies:
        raise LoweringError("isozyme lowering: asynchronous gpu.launch_func is not supported")
    if op.clusterSizeX is not None:
        raise LoweringError("isozyme lowering: gpu.launch_func with clusters is not supported")
    args = list(op.kernelOperands)
    # Storage of the arguments and of the params array: in the entry block.
    entry = _entry_block(op)
    one = _const(1, i64)
    n = _const(max(len(args), 1), i64)
    head: list[Operation] = [one, n]
    slots: list[tuple[SSAValue, SSAValue]] = []  # (stored value, its slot)
    body: list[Operation] = []
    for a in args:
        t = convert_type(a.type)
        value: SSAValue = a
        if isinstance(t, IntegerType) and t.width.data == 1:
            ext = llvm.ZExtOp(a, _I8)  # CUDA's bool is one byte
            body.append(ext)
            value, t = ext.res, _I8
        slot = llvm.AllocaOp(one, t, alignment=8)
        head.append(slot)
        slots.append((value, slot.res))
    params = llvm.AllocaOp(n, _PTR, alignment=8)
    head.append(params)
    first = entry.first_op
    for h in head:
        if first is None:
            entry.add_op(h)
        else:
            entry.insert_op_before(h, first)
    for k, (value, slot) in enumerate(slots):
        body.append(llvm.StoreOp(value, slot))
        gep = llvm.GEPOp(params.res, [k], _PTR)
        body.append(gep)
        body.append(llvm.StoreOp(slot, gep.result))
    table = llvm.AddressOfOp(KERNEL_TABLE, _PTR)
    handle_at = llvm.GEPOp(table.result, [index], _PTR)
    handle = llvm.LoadOp(handle_at.result, _PTR)
    null = llvm.ZeroOp(result_types=[_PTR])
    shmem_const = _const(0, i32)
    body += [table, handle_at, handle, null, shmem_const]
    for b in body:
        Rewriter.insert_op(b, InsertPoint.before(op))
    sizes = [
        _as_i32(v, op)
        for v in (op.gridSizeX, op.gridSizeY, op.gridSizeZ,
                  op.blockSizeX, op.blockSizeY, op.blockSizeZ)
    ]
    shmem = (
        shmem_const.result
        if op.dynamicSharedMemorySize is None
        else _as_i32(op.dynamicSharedMemorySize, op)
    )
    stream = null.res if streams is None else _stream_of(entry, streams)
    launch = call(
        launch_symbol,
        [handle.dereferenced_value, *sizes, shmem, stream, params.res, null.res],
        i32,
    )
    rc = launch.returned
    assert rc is not None
    what = f"{launch_symbol} of @{_kernel_name(op)}"
    Rewriter.replace_op(op, [launch, *keep_first_error(rc, what)], [])


def keep_first_error(rc: SSAValue, what: str = "cuMemcpy") -> list[Operation]:
    """The ops stopping the call when the ``CUresult`` ``rc`` of the driver call
    ``what`` is not zero: ``isz.check %rc == 0, %rc`` (kind ``unsupported``, message
    ``"CUDA driver call failed: <what> returned {0}"``), which
    ``convert-isz-check-to-llvm`` lowers to an early return with the caller's
    per-call status record."""
    zero = _const(0, i32)
    is_ok = llvm.ICmpOp(
        rc, zero.result, IntegerAttr(llvm.ICmpPredicateFlag("eq").to_int(), i64),
    )
    check = CheckOp(
        is_ok.res, "unsupported", f"{DRIVER_FAILURE}: {what} returned {{0}}", [rc]
    )
    return [zero, is_ok, check]


@dataclass(frozen=True)
class ConvertGpuLaunchToLLVMPass(ModulePass):
    """Lower every ``gpu.launch_func`` of a host program to a call of
    ``launch_symbol`` (``cuLaunchKernel``'s signature) on the handle of the kernel in
    ``@__iz_kernel_table``; ``kernels`` names the table's entries in order."""

    name = "convert-gpu-launch-to-llvm"

    kernels: tuple[str, ...] = field(default=(), metadata={
        "help": "the kernel names, in the order of the kernel table"})
    launch_symbol: str = field(default=CUDA_LAUNCH_SYMBOL, metadata={
        "help": "the launch function called (cuLaunchKernel's signature)"})

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        del ctx
        launches = [o for o in op.walk() if isinstance(o, gpu.LaunchFuncOp)]
        op.attributes.pop("gpu.container_module", None)
        if not launches:
            return
        positions = {name: i for i, name in enumerate(self.kernels)}
        _declare_global(op, KERNEL_TABLE, llvm.LLVMArrayType(max(len(self.kernels), 1), _PTR))
        declare_function(
            op, self.launch_symbol, [_PTR, *[i32] * 7, _PTR, _PTR, _PTR], i32
        )
        # the driver's launches go to the call's stream, emulated ones need none
        streams: dict[Block, SSAValue] | None = None
        if self.launch_symbol == CUDA_LAUNCH_SYMBOL:
            declare_function(op, LAUNCH_STREAM_SYMBOL, [], _PTR)
            streams = {}
        for launch in launches:
            name = _kernel_name(launch)
            if name not in positions:
                raise LoweringError(
                    f"isozyme lowering: gpu.launch_func of @{name}, which is not a kernel "
                    f"of the gpu.module (kernels: {', '.join(self.kernels) or 'none'})"
                )
            _lower_launch(launch, positions[name], self.launch_symbol, streams)
