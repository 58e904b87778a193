"""``convert-parallel-dispatch-to-llvm``: the dispatch wrappers that
``outline-parallel-loops-cpu`` made call the worker pool.

By now every function is an ``llvm.func``. For each chunk function
``@__iz_par_X(%lo: i64, %hi: i64, %chunk: i64, <live-ins>[, %status: !llvm.ptr])`` the
pass adds its trampoline, the one signature the pool calls::

    llvm.func internal @__iz_partramp_X(%ctx: !llvm.ptr, %lo: i64, %hi: i64,
                                        %status: !llvm.ptr, %chunk: i64) {
      %v_k = llvm.load (llvm.load (llvm.getelementptr %ctx[k] : !llvm.ptr))
      llvm.call @__iz_par_X(%lo, %hi, %chunk, %v_0, ..., [%status])
      llvm.return
    }

and replaces the body of the wrapper ``@__iz_pardispatch_X`` (same arguments) by::

    %ctx = llvm.alloca n x !llvm.ptr     // ctx[k]: the address of a slot holding live-in k
    %n = llvm.call @__iz_parallel_for(llvm.mlir.addressof @__iz_partramp_X, %ctx, %lo, %hi,
                                      %status or null, <status slots>) : i64
    llvm.return %n          // how many chunks ran (chunk k wrote its partials at k)

``__iz_parallel_for`` is defined by the runtime (``runtime/thread_pool.py``). The status
record has ``1 + max(values of a check)`` slots (``convert-isz-check-to-llvm``'s table);
the pool gives every chunk its own record and copies back the first failing one, and the
caller tests the record after the wrapper returns as after any call that takes it.

Runs after ``convert-isz-check-to-llvm`` (the status arguments exist then) and before
``add-c-entry-points``.
"""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects import builtin, llvm
from xdsl.dialects.builtin import IntegerAttr, i64
from xdsl.ir import Attribute, Block, Operation, Region
from xdsl.passes import ModulePass

from isozyme.compiler.lowering._common import declare_function
from isozyme.compiler.lowering.convert_check_to_llvm import check_table, takes_status
from isozyme.compiler.lowering.outline_parallel_loops_cpu import BODY_PREFIX, DISPATCH_PREFIX

#: The pool's entry point (``runtime/thread_pool.py`` binds it).
PARALLEL_FOR_SYMBOL = "__iz_parallel_for"
#: Prefix of the trampolines, ``@__iz_partramp_<f>_<k>``.
TRAMPOLINE_PREFIX = "__iz_partramp_"

_PTR = llvm.LLVMPointerType()


def _i64(value: int) -> llvm.ConstantOp:
    return llvm.ConstantOp(IntegerAttr(value, i64), i64)


def _trampoline(name: str, body: llvm.FuncOp, live_types: list[Attribute],
                status: bool) -> llvm.FuncOp:
    """``@name(ctx, lo, hi, status)``: unpack ``ctx`` and call ``body``."""
    block = Block(arg_types=[_PTR, i64, i64, _PTR, i64])
    ctx, lo, hi, st, chunk = block.args
    values = []
    for k, t in enumerate(live_types):
        slot_at = llvm.GEPOp(ctx, [k], _PTR)
        slot = llvm.LoadOp(slot_at, _PTR)
        load = llvm.LoadOp(slot, t)
        block.add_ops([slot_at, slot, load])
        values.append(load.dereferenced_value)
    args = [lo, hi, chunk, *values, *([st] if status else [])]
    block.add_ops([llvm.CallOp(body.sym_name.data, *args), llvm.ReturnOp()])
    return llvm.FuncOp(
        name,
        llvm.LLVMFunctionType([_PTR, i64, i64, _PTR, i64], llvm.LLVMVoidType()),
        linkage=llvm.LinkageAttr("internal"),
        body=Region(block),
    )


def _dispatch_body(wrapper: llvm.FuncOp, tramp: str, n_live: int, status: bool,
                   n_slots: int) -> Region:
    """The wrapper's new body: the live-ins in slots, their addresses in ``ctx``
    (``ptr[n]``), a call of the pool."""
    inputs = list(wrapper.function_type.inputs.data)
    block = Block(arg_types=inputs)
    lo, hi, _chunk, *rest = block.args
    live = rest[:n_live]
    one = _i64(1)
    count = _i64(max(n_live, 1))
    ctx = llvm.AllocaOp(count, _PTR, alignment=8)
    ops: list[Operation] = [one, count, ctx]
    for k, v in enumerate(live):
        slot = llvm.AllocaOp(one, v.type, alignment=8)
        gep = llvm.GEPOp(ctx, [k], _PTR)
        ops += [slot, llvm.StoreOp(v, slot), gep, llvm.StoreOp(slot, gep)]
    fn = llvm.AddressOfOp(tramp, _PTR)
    ops.append(fn)
    if status:
        st = rest[-1]
    else:
        zero = llvm.ZeroOp(result_types=[_PTR])
        ops.append(zero)
        st = zero.results[0]
    slots = _i64(n_slots)
    run = llvm.CallOp(PARALLEL_FOR_SYMBOL, fn, ctx, lo, hi, st, slots, return_type=i64)
    ops += [slots, run, llvm.ReturnOp(run.returned)]
    block.add_ops(ops)
    return Region(block)


class ConvertParallelDispatchToLLVMPass(ModulePass):
    """Trampolines for the chunk functions; the dispatch wrappers call the pool (see the
    module docstring)."""

    name = "convert-parallel-dispatch-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite the wrappers of ``op`` in place."""
        funcs = {f.sym_name.data: f for f in op.ops if isinstance(f, llvm.FuncOp)}
        wrappers = [f for n, f in funcs.items() if n.startswith(DISPATCH_PREFIX)]
        if not wrappers:
            return
        n_slots = 1 + max((n for _, _, n in check_table(op)), default=0)
        declare_function(op, PARALLEL_FOR_SYMBOL, [_PTR, _PTR, i64, i64, _PTR, i64], i64)
        for wrapper in wrappers:
            suffix = wrapper.sym_name.data[len(DISPATCH_PREFIX):]
            body = funcs[BODY_PREFIX + suffix]
            status = takes_status(body)
            inputs = list(body.function_type.inputs.data)
            live_types = inputs[3:len(inputs) - 1] if status else inputs[3:]
            tramp_name = TRAMPOLINE_PREFIX + suffix
            op.body.block.add_op(_trampoline(tramp_name, body, live_types, status))
            new_body = _dispatch_body(wrapper, tramp_name, len(live_types), status, n_slots)
            region = wrapper.body
            for old in list(region.blocks):  # the call and its status test
                region.detach_block(old)
            region.add_block(new_body.detach_block(new_body.block))
