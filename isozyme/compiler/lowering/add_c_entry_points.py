"""``add-c-entry-points``: give every public function a C-ABI entry point.

For each public ``llvm.func @f`` with a body (a public ``func.func`` before
``convert-func-to-llvm``) this adds ``llvm.func @_iz_entry_f(!llvm.ptr %in, !llvm.ptr %out)``
that implements the ABI of ``docs/ir.md``: ``%in``/``%out`` point at one 8-byte slot per
argument/result; ``f64``/``i64`` fill the slot, ``f32`` (and ``i32``) use its first 4
bytes, ``i1`` is stored as an ``i64`` 0 or 1. A memref argument (a descriptor struct
after ``convert-memref-to-llvm``) is passed by reference: its slot holds a pointer to the
descriptor ``{ptr allocated, ptr aligned, i64 offset, i64 sizes[r], i64 strides[r]}`` in
memory, which the entry loads and passes by value. A memref result fills 3 + 2r
consecutive slots with its descriptor's fields: allocated pointer, aligned pointer,
offset, sizes[r], strides[r] (the slots of later results follow). The caller owns
the returned memory (``free`` of the allocated pointer); the runtime wraps it in a
numpy array. The runtime calls these through ctypes.

When the module has run-time checks (``convert-isz-check-to-llvm``), the status record
follows the result slots in ``%out``: the entry zeroes its first slot before the call and
passes its address to a function that takes the hidden status pointer.

With the option ``only=f`` the pass gives an entry point to ``@f`` alone, even when it
is private (``internal``): ``isozyme run`` calls any function of a module that way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import builtin, llvm
from xdsl.dialects.builtin import DenseArrayBase, IntegerType, i1, i64
from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint

from isozyme.compiler.lowering._common import (
    ENTRY_PREFIX,
    LoweringError,
    descriptor_rank,
)
from isozyme.compiler.lowering.convert_check_to_llvm import CHECKS_ATTR, takes_status

_PTR = llvm.LLVMPointerType()


def _slot(b: Builder, base: SSAValue, k: int) -> SSAValue:
    """Pointer to 8-byte slot ``k`` of ``base``."""
    if k == 0:
        return base
    return b.insert(llvm.GEPOp(base, [k], i64)).result


def _load_arg(b: Builder, base: SSAValue, k: int, t: Attribute) -> SSAValue:
    ptr = _slot(b, base, k)
    if t == i1:
        # i1 travels as an i64 0/1.
        wide = b.insert(llvm.LoadOp(ptr, i64)).dereferenced_value
        return b.insert(llvm.TruncOp(wide, i1)).results[0]
    if descriptor_rank(t) is not None:
        # A memref: the slot holds a pointer to its descriptor.
        desc_ptr = b.insert(llvm.LoadOp(ptr, _PTR)).dereferenced_value
        return b.insert(llvm.LoadOp(desc_ptr, t)).dereferenced_value
    return b.insert(llvm.LoadOp(ptr, t)).dereferenced_value


def _store_result(b: Builder, base: SSAValue, k: int, value: SSAValue) -> int:
    """Store result ``value`` from slot ``k`` on; return the next free slot."""
    t = value.type
    rank = descriptor_rank(t)
    if rank is not None:
        # A memref: allocated, aligned, offset, sizes[r], strides[r] in 3 + 2r slots.
        fields: list[tuple[tuple[int, ...], Attribute]] = [
            ((0,), _PTR), ((1,), _PTR), ((2,), i64)
        ]
        fields += [((3, d), i64) for d in range(rank)]
        fields += [((4, d), i64) for d in range(rank)]
        for j, (position, ft) in enumerate(fields):
            field = b.insert(
                llvm.ExtractValueOp(DenseArrayBase.from_list(i64, list(position)), value, ft)
            ).res
            b.insert(llvm.StoreOp(field, _slot(b, base, k + j)))
        return k + len(fields)
    ptr = _slot(b, base, k)
    if isinstance(t, IntegerType) and t.width.data < 64:
        # Narrow integers fill the slot: i1 as 0/1, i32 sign-extended.
        ext = llvm.ZExtOp(value, i64) if t == i1 else llvm.SExtOp(value, i64)
        value = b.insert(ext).results[0]
    b.insert(llvm.StoreOp(value, ptr))
    return k + 1


def result_slots(t: Attribute) -> int:
    """The number of 8-byte out slots of one result of type ``t``."""
    rank = descriptor_rank(t)
    return 1 if rank is None else 3 + 2 * rank


def build_entry(f: llvm.FuncOp, with_status: bool = False) -> llvm.FuncOp:
    """Build ``@_iz_entry_<f>`` for ``f`` (an ``llvm.func`` with a body).

    ``with_status``: the module has checks, so ``%out`` holds a status record after the
    result slots, zeroed here (and passed to ``f`` when it takes the status pointer).
    """
    ftype = f.function_type
    out_t = ftype.output
    if isinstance(out_t, llvm.LLVMVoidType):
        result_types: list[Attribute] = []
    elif isinstance(out_t, llvm.LLVMStructType) and descriptor_rank(out_t) is None:
        result_types = list(out_t.types.data)
    else:
        result_types = [out_t]
    for t in result_types:
        if isinstance(t, llvm.LLVMStructType) and descriptor_rank(t) is None:
            raise LoweringError(
                f"isozyme lowering: public function @{f.sym_name.data} returns "
                f"{t}, which cannot cross the C entry point"
            )

    block = Block(arg_types=[_PTR, _PTR])
    in_ptr, out_ptr = block.args
    b = Builder(InsertPoint.at_end(block))
    inputs = list(ftype.inputs.data)
    status_arg = takes_status(f)
    if status_arg:
        inputs.pop()
    args = [_load_arg(b, in_ptr, k, t) for k, t in enumerate(inputs)]
    if with_status or status_arg:
        status = _slot(b, out_ptr, sum(result_slots(t) for t in result_types))
        zero = b.insert(llvm.ConstantOp(builtin.IntegerAttr(0, i64), i64)).result
        b.insert(llvm.StoreOp(zero, status))
        if status_arg:
            args.append(status)
    called = b.insert(
        llvm.CallOp(
            f.sym_name.data,
            *args,
            return_type=None if not result_types else out_t,
        )
    )
    if len(result_types) == 1:
        assert called.returned is not None
        _store_result(b, out_ptr, 0, called.returned)
    elif result_types:
        assert called.returned is not None
        slot = 0
        for k, t in enumerate(result_types):
            value = b.insert(
                llvm.ExtractValueOp(
                    DenseArrayBase.from_list(i64, [k]), called.returned, t
                )
            ).res
            slot = _store_result(b, out_ptr, slot, value)
    b.insert(llvm.ReturnOp())
    return llvm.FuncOp(
        ENTRY_PREFIX + f.sym_name.data,
        llvm.LLVMFunctionType([_PTR, _PTR], llvm.LLVMVoidType()),
        linkage=llvm.LinkageAttr("external"),
        body=Region([block]),
    )


def is_public_definition(op: llvm.FuncOp) -> bool:
    """Whether ``op`` is a public function with a body that is not itself an entry."""
    return (
        bool(op.body.blocks)
        and op.linkage.linkage.data != "internal"
        and not op.sym_name.data.startswith(ENTRY_PREFIX)
    )


def _is_named_definition(op: llvm.FuncOp, name: str) -> bool:
    """Whether ``op`` is function ``name`` (public or ``internal``) with a body."""
    return bool(op.body.blocks) and op.sym_name.data == name


@dataclass(frozen=True)
class AddCEntryPointsPass(ModulePass):
    """Add ``@_iz_entry_<f>(ptr in, ptr out)`` for every public ``llvm.func @f``.

    Runs after ``convert-func-to-llvm`` (private functions are ``internal`` then).
    """

    name = "add-c-entry-points"

    #: When set, only this function gets an entry point, even if it is private
    #: (``isozyme run``'s entry); by default every public function gets one.
    only: str | None = dataclasses.field(default=None, metadata={
        "help": "give only this function (private or not) an entry point"})

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Append the entry points to ``op``."""
        existing = {
            f.sym_name.data for f in op.ops if isinstance(f, llvm.FuncOp)
        }
        targets = [
            f
            for f in op.ops
            if isinstance(f, llvm.FuncOp)
            and (
                is_public_definition(f) if self.only is None
                else _is_named_definition(f, self.only)
            )
            and ENTRY_PREFIX + f.sym_name.data not in existing
        ]
        with_status = CHECKS_ATTR in op.attributes
        for f in targets:
            op.body.block.add_op(build_entry(f, with_status))
