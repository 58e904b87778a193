"""Shared helpers of the lowering passes: type conversion, fast-math flags, declarations.

Conventions of the ``llvm`` stage (see ``docs/ir.md``): ``index`` is ``i64``, an
``!enzyme.Cache<T>`` is an ``!llvm.ptr`` to a ``{ptr data, i64 size, i64 capacity}``
struct, a ``memref`` of rank r is MLIR's descriptor struct
``{ptr allocated, ptr aligned, i64 offset, array<r x i64> sizes, array<r x i64> strides}``
(``{ptr, ptr, i64}`` for rank 0), a function with several results returns an LLVM
literal struct.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import llvm
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
    MemRefType,
    ModuleOp,
    i64,
)
from xdsl.ir import Attribute, Operation, Region, SSAValue
from xdsl.rewriter import Rewriter

# The ABI names live in isozyme.abi (the runtime imports them too); re-exported here
# for the lowering passes.
from isozyme.abi import ENTRY_PREFIX, HELPER_PREFIX  # noqa: F401
from isozyme.dialects.enzyme import CacheType
from isozyme.errors import CompileError


class LoweringError(CompileError):
    """Raised when a module cannot be lowered to the ``llvm`` dialect (an op without a
    conversion, or a construct the C entry points do not support)."""

#: Prefix of the libm functions the lowering declares (``__iz_libm_tan``): a function of
#: the user's module may be called ``tan`` (Enzyme-MLIR's tests name functions after the
#: op they test), so libm's symbols get names no user function has.  The runtime gives
#: them back their libm names when it links the module (``runtime/jit.py``).
LIBM_PREFIX = HELPER_PREFIX + "libm_"

#: The struct a cache points to: ``{ptr data, i64 size, i64 capacity}``.
CACHE_STRUCT = llvm.LLVMStructType.from_type_list([llvm.LLVMPointerType(), i64, i64])


def memref_descriptor_type(rank: int) -> llvm.LLVMStructType:
    """MLIR's memref descriptor of rank ``rank``:
    ``{ptr allocated, ptr aligned, i64 offset, array<r x i64> sizes,
    array<r x i64> strides}`` (no arrays for rank 0). Strides and offset are in
    elements (:data:`isozyme.abi.DESCRIPTOR_FIELDS`)."""
    ptr = llvm.LLVMPointerType()
    fields: list[Attribute] = [ptr, ptr, i64]
    if rank > 0:
        fields += [llvm.LLVMArrayType(rank, i64)] * 2
    return llvm.LLVMStructType.from_type_list(fields)


def descriptor_rank(t: Attribute) -> int | None:
    """The rank of a memref descriptor struct type, or ``None`` when ``t`` is not one."""
    if not isinstance(t, llvm.LLVMStructType):
        return None
    fields = list(t.types.data)
    ptr = llvm.LLVMPointerType()
    if len(fields) == 3 and fields == [ptr, ptr, i64]:
        return 0
    if (
        len(fields) == 5
        and fields[:3] == [ptr, ptr, i64]
        and isinstance(fields[3], llvm.LLVMArrayType)
        and fields[3] == fields[4]
        and fields[3].type == i64
    ):
        return fields[3].size.data
    return None


def convert_type(t: Attribute) -> Attribute:
    """Map a ``simplified``-stage type to its ``llvm``-stage type."""
    if isinstance(t, IndexType):
        return i64
    if isinstance(t, CacheType):
        return llvm.LLVMPointerType()
    if isinstance(t, MemRefType):
        return memref_descriptor_type(t.get_num_dims())
    return t


def result_type_of(types: Sequence[Attribute]) -> Attribute:
    """The LLVM return type of a function with these (converted) result types."""
    if not types:
        return llvm.LLVMVoidType()
    if len(types) == 1:
        return types[0]
    return llvm.LLVMStructType.from_type_list(list(types))


def type_suffix(t: Attribute) -> str:
    """LLVM's overload suffix of a scalar type (``f64``, ``f32``, ``i64``...)."""
    if isinstance(t, Float64Type):
        return "f64"
    if isinstance(t, Float32Type):
        return "f32"
    if isinstance(t, IntegerType):
        return f"i{t.width.data}"
    if isinstance(t, IndexType):
        return "i64"
    if isinstance(t, llvm.LLVMPointerType):
        return "ptr"
    raise LoweringError(f"isozyme lowering: no LLVM type suffix for {t}")


def byte_size(t: Attribute) -> int:
    """Storage size in bytes of a scalar element type (used by the cache helpers)."""
    if isinstance(t, (Float64Type, IndexType, llvm.LLVMPointerType)):
        return 8
    if isinstance(t, Float32Type):
        return 4
    if isinstance(t, IntegerType):
        return max(1, (t.width.data + 7) // 8)
    raise LoweringError(f"isozyme lowering: no byte size for {t}")


def llvm_fastmath(op: Operation) -> llvm.FastMathAttr:
    """The ``#llvm.fastmath`` flags equivalent to an arith/math op's ``fastmath``."""
    attr = op.properties.get("fastmath")
    if attr is None:
        return llvm.FastMathAttr(None)
    data = attr.data  # type: ignore[attr-defined]
    # xDSL keeps the flags as given: FastMathFlag enums when parsed, but plain
    # strings when built as ``FastMathFlagsAttr(["reassoc", ...])``.
    flags = [llvm.FastMathFlag(f if isinstance(f, str) else f.value) for f in data]
    return llvm.FastMathAttr(flags if flags else None)


def with_result_type(op: Operation, t: Attribute) -> Operation:
    """Force the type of ``op``'s single result.

    Many xDSL llvm op constructors copy the type of their first operand, which may
    still be ``index`` while the lowering is in flight; the lowered value is ``i64``.
    """
    if op.results[0].type != t:
        Rewriter.replace_value_with_new_type(op.results[0], t)
    return op


def declare_function(
    module: ModuleOp,
    name: str,
    arg_types: Sequence[Attribute],
    ret_type: Attribute,
) -> None:
    """Declare an external ``llvm.func`` (a libm/libc function or an LLVM intrinsic)
    at the top of ``module`` unless it is declared already.

    Raises :class:`LoweringError` when the module defines a function of that name
    itself (a user function ``@malloc`` would otherwise be called for
    ``memref.alloc``); libm's functions are declared under :data:`LIBM_PREFIX`, so a
    function may be called ``tan``.
    """
    for op in module.ops:
        sym = op.properties.get("sym_name")
        if sym is not None and sym.data == name:  # type: ignore[attr-defined]
            if op.regions and op.regions[0].blocks:
                raise LoweringError(
                    f"isozyme lowering: the module defines @{name}, which clashes with "
                    f"the external function @{name} that the lowering needs"
                )
            return
    decl = llvm.FuncOp(
        name,
        llvm.LLVMFunctionType(list(arg_types), ret_type),
        linkage=llvm.LinkageAttr("external"),
        body=Region(),
    )
    block = module.body.block
    if block.first_op is None:
        block.add_op(decl)
    else:
        block.insert_op_before(decl, block.first_op)


def module_of(op: Operation) -> ModuleOp:
    """The ``builtin.module`` enclosing ``op``."""
    cur: Operation | None = op
    while cur is not None and not isinstance(cur, ModuleOp):
        cur = cur.parent_op()
    if cur is None:
        raise ValueError("isozyme lowering: op is not inside a builtin.module")
    return cur


def call(
    name: str,
    args: Sequence[SSAValue],
    ret_type: Attribute | None,
    fastmath: llvm.FastMathAttr | None = None,
) -> llvm.CallOp:
    """Build ``llvm.call @name(args)`` (the callee must be declared separately)."""
    return llvm.CallOp(
        name,
        *args,
        return_type=ret_type,
        fastmath=fastmath if fastmath is not None else llvm.FastMathAttr(None),
    )
