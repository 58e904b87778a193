"""``convert-memref-to-llvm``: lower ``memref`` values and ops to MLIR's descriptor.

A ``memref`` of rank r becomes the LLVM struct MLIR uses (``docs/ir.md``)::

    !llvm.struct<(ptr, ptr, i64, array<r x i64>, array<r x i64>)>
    //            allocated, aligned, offset, sizes, strides (in elements)

(``!llvm.struct<(ptr, ptr, i64)>`` for rank 0), whatever the layout: identity
(``memref<?xf64>``) or strided (``memref<?x?xf64, strided<[?, ?], offset: ?>>``).
Sizes, strides and the offset that the memref type fixes statically are used as
constants; the others are read from the descriptor.

* ``memref.load``/``memref.store``: address ``aligned + offset + sum(i_k * stride_k)``
  elements (``f64``, ``f32``, integers; ``i1`` is stored as an ``i8`` 0/1);
* ``memref.dim``: ``sizes[k]`` (a constant for a static size; a ``select`` chain over
  the sizes when the dimension index is not a constant);
* ``memref.alloc``: ``malloc`` of ``product(sizes) * sizeof(T)`` bytes (plus the
  ``alignment`` when it exceeds malloc's 16 bytes, the aligned pointer rounded up),
  offset 0, row-major strides; only the identity layout;
* ``memref.alloca``: the same descriptor over an ``llvm.alloca`` of the elements (stack
  memory until the function returns: ``memref.alloca_scope`` is inlined, see
  ``convert_scf_to_cf.py``);
* ``memref.dealloc``: ``free`` of the allocated pointer;
* ``memref.cast`` (same rank, any layouts): the descriptor passes through unchanged;
* ``memref.subview`` (static or dynamic offsets, sizes and steps; rank-reducing when
  every dropped dimension has the static size 1): a new descriptor with the source's
  allocated and aligned pointers, ``offset = src.offset + sum(off_k * src.stride_k)``,
  the given sizes and ``stride_k = src.stride_k * step_k`` (the dropped dimensions
  only contribute to the offset). Sizes are taken as given (no clamping, as in MLIR).

``memref.copy`` is expanded into ``scf.for`` loops before ``convert-scf-to-cf``
(``expand_memref_copy.py``).

The pass runs after ``convert-scf-to-cf`` and before ``convert-func-to-llvm``. It first
records the memref type of every op it lowers, rewrites the ops (the results of
``memref.alloc``/``memref.cast`` become descriptor structs), then retypes every
remaining memref-typed value, that is block arguments (function arguments and the
blocks ``convert-scf-to-cf`` made) and ``func.call`` results, to the descriptor struct.
``convert-func-to-llvm`` maps memref types in signatures the same way
(``_common.convert_type``).
"""

from __future__ import annotations

import itertools

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith, builtin, llvm, memref
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    DenseArrayBase,
    IntegerAttr,
    IntegerType,
    MemRefType,
    NoneAttr,
    i1,
    i64,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.lowering.convert_arith_to_llvm import icmp
from isozyme.dialects.memref_ext import TransposeOp
from isozyme.compiler.lowering._common import (
    LoweringError,
    byte_size,
    call,
    convert_type,
    declare_function,
    memref_descriptor_type,
    module_of,
    with_result_type,
)

_PTR = llvm.LLVMPointerType()
_I8 = IntegerType(8)

#: Alignment (bytes) that ``malloc`` guarantees on the supported 64-bit hosts.
_MALLOC_ALIGNMENT = 16

# Positions of the descriptor's fields.
_ALLOCATED, _ALIGNED, _OFFSET, _SIZES, _STRIDES = range(5)


def _pos(*indices: int) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(indices))


class MemrefLowerer:
    """Emits llvm ops before one memref op, for a memref of the recorded type (also
    used by the cuda target to address host accesses of device memory as this lowering
    does)."""

    def __init__(self, op: Operation, mtype: MemRefType) -> None:
        self.b = Builder(InsertPoint.before(op))
        self.mtype = mtype
        self.rank = mtype.get_num_dims()
        self.desc_t = memref_descriptor_type(self.rank)

    # -- scalars ----------------------------------------------------------------
    def const(self, value: int) -> SSAValue:
        return self.b.insert(llvm.ConstantOp(IntegerAttr(value, i64), i64)).result

    def extract(self, desc: SSAValue, t: Attribute, *position: int) -> SSAValue:
        return self.b.insert(llvm.ExtractValueOp(_pos(*position), desc, t)).res

    def insert(self, desc: SSAValue, value: SSAValue, *position: int) -> SSAValue:
        return self.b.insert(llvm.InsertValueOp(_pos(*position), desc, value)).res

    def mul(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.b.insert(with_result_type(llvm.MulOp(a, b), i64)).results[0]

    def add(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self.b.insert(with_result_type(llvm.AddOp(a, b), i64)).results[0]

    # -- descriptor fields --------------------------------------------------------
    def static_size(self, k: int) -> int | None:
        size = self.mtype.get_shape()[k]
        return None if size == DYNAMIC_INDEX else size

    def static_strides(self) -> list[int | None]:
        strides = self.mtype.get_strides()
        if strides is None:
            raise LoweringError(
                f"isozyme lowering: memref layout of {self.mtype} is not strided"
            )
        return [None if s is None or s == DYNAMIC_INDEX else s for s in strides]

    def static_offset(self) -> int | None:
        offset = self.mtype.get_offset()
        return None if offset is None or offset == DYNAMIC_INDEX else offset

    def size(self, desc: SSAValue, k: int) -> SSAValue:
        static = self.static_size(k)
        if static is not None:
            return self.const(static)
        return self.extract(desc, i64, _SIZES, k)

    def element_pointer(self, desc: SSAValue, indices: list[SSAValue]) -> SSAValue:
        """``aligned + offset + sum(i_k * stride_k)`` (in elements of the storage type)."""
        strides = self.static_strides()
        offset = self.static_offset()
        linear: SSAValue | None = None
        const_part = 0
        if offset is None:
            linear = self.extract(desc, i64, _OFFSET)
        else:
            const_part = offset
        for k, idx in enumerate(indices):
            stride = strides[k]
            if stride == 0:
                continue
            if stride is None:
                term = self.mul(idx, self.extract(desc, i64, _STRIDES, k))
            elif stride == 1:
                term = idx
            else:
                term = self.mul(idx, self.const(stride))
            linear = term if linear is None else self.add(linear, term)
        if const_part:
            c = self.const(const_part)
            linear = c if linear is None else self.add(linear, c)
        aligned = self.extract(desc, _PTR, _ALIGNED)
        if linear is None:
            return aligned
        return self.b.insert(
            llvm.GEPOp(
                aligned,
                [llvm.GEP_USE_SSA_VAL],
                storage_type(self.mtype.element_type),
                ssa_indices=[linear],
            )
        ).result


def storage_type(element: Attribute) -> Attribute:
    """The LLVM type an element is stored as (``i1`` as ``i8``, ``index`` as ``i64``)."""
    if element == i1:
        return _I8
    return convert_type(element)


def _memref_type(value: SSAValue, what: str) -> MemRefType:
    t = value.type
    if not isinstance(t, MemRefType):
        raise LoweringError(f"isozyme lowering: {what} of a non-ranked memref {t}")
    return t


def _lower_load(op: memref.LoadOp, mtype: MemRefType) -> None:
    lo = MemrefLowerer(op, mtype)
    ptr = lo.element_pointer(op.memref, list(op.indices))
    st = storage_type(mtype.element_type)
    value = lo.b.insert(llvm.LoadOp(ptr, st)).dereferenced_value
    if mtype.element_type == i1:
        value = lo.b.insert(llvm.TruncOp(value, i1)).results[0]
    Rewriter.replace_op(op, [], [value])


def _lower_store(op: memref.StoreOp, mtype: MemRefType) -> None:
    lo = MemrefLowerer(op, mtype)
    ptr = lo.element_pointer(op.memref, list(op.indices))
    value = op.value
    if mtype.element_type == i1:
        value = lo.b.insert(llvm.ZExtOp(value, _I8)).results[0]
    lo.b.insert(llvm.StoreOp(value, ptr))
    Rewriter.erase_op(op)


def _constant_index(value: SSAValue) -> int | None:
    owner = value.owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr):
        return owner.value.value.data
    if isinstance(owner, llvm.ConstantOp) and isinstance(owner.value, IntegerAttr):
        return owner.value.value.data
    return None


def _lower_dim(op: memref.DimOp, mtype: MemRefType) -> None:
    lo = MemrefLowerer(op, mtype)
    k = _constant_index(op.index)
    if lo.rank == 0:
        raise LoweringError("isozyme lowering: memref.dim of a rank-0 memref")
    if k is not None:
        if not 0 <= k < lo.rank:
            raise LoweringError(
                f"isozyme lowering: memref.dim index {k} out of range for {mtype}"
            )
        result = lo.size(op.source, k)
    else:
        # A chain of selects over the sizes (out of range reads the last size: UB).
        result = lo.size(op.source, lo.rank - 1)
        for j in range(lo.rank - 2, -1, -1):
            cmp = lo.b.insert(
                llvm.ICmpOp(
                    op.index,
                    lo.const(j),
                    IntegerAttr(llvm.ICmpPredicateFlag("eq").to_int(), i64),
                )
            ).res
            sel = llvm.SelectOp(cmp, lo.size(op.source, j), result)
            result = lo.b.insert(with_result_type(sel, i64)).results[0]
    Rewriter.replace_op(op, [], [result])


def _lower_alloc(op: memref.AllocOp | memref.AllocaOp, mtype: MemRefType) -> None:
    """``memref.alloc`` (``malloc``) and ``memref.alloca`` (``llvm.alloca`` of the
    element count, on the stack until the function returns)."""
    on_stack = isinstance(op, memref.AllocaOp)
    if not isinstance(mtype.layout, NoneAttr):
        raise LoweringError(
            f"isozyme lowering: {op.name} supports the identity layout only, "
            f"got {mtype}"
        )
    if op.symbol_operands:
        raise LoweringError(f"isozyme lowering: {op.name} with symbol operands")
    lo = MemrefLowerer(op, mtype)
    dynamic = iter(op.dynamic_sizes)
    sizes: list[SSAValue] = []
    for k in range(lo.rank):
        static = lo.static_size(k)
        sizes.append(lo.const(static) if static is not None else next(dynamic))
    # Row-major strides: stride[r-1] = 1, stride[k] = stride[k+1] * size[k+1].
    strides: list[SSAValue] = [lo.const(1)] * lo.rank
    for k in range(lo.rank - 2, -1, -1):
        strides[k] = lo.mul(strides[k + 1], sizes[k + 1])
    count = lo.mul(strides[0], sizes[0]) if lo.rank else lo.const(1)
    storage = storage_type(mtype.element_type)
    elem_bytes = byte_size(storage)
    alignment = op.alignment.value.data if op.alignment is not None else 0
    if on_stack:
        allocated = lo.b.insert(
            llvm.AllocaOp(count, storage, alignment=max(alignment, elem_bytes))
        ).res
        aligned = allocated
    else:
        declare_function(module_of(op), "malloc", [i64], _PTR)
        nbytes = lo.mul(count, lo.const(elem_bytes))
        over_aligned = alignment > _MALLOC_ALIGNMENT
        if over_aligned:
            nbytes = lo.add(nbytes, lo.const(alignment - 1))
        malloced = lo.b.insert(call("malloc", [nbytes], _PTR)).returned
        assert malloced is not None
        allocated = aligned = malloced
        if over_aligned:
            as_int = lo.b.insert(llvm.PtrToIntOp(allocated, i64)).results[0]
            bumped = lo.add(as_int, lo.const(alignment - 1))
            rounded = lo.b.insert(llvm.AndOp(bumped, lo.const(-alignment))).res
            aligned = lo.b.insert(llvm.IntToPtrOp(rounded)).results[0]
    desc = lo.b.insert(llvm.UndefOp(lo.desc_t)).res
    desc = lo.insert(desc, allocated, _ALLOCATED)
    desc = lo.insert(desc, aligned, _ALIGNED)
    desc = lo.insert(desc, lo.const(0), _OFFSET)
    for k in range(lo.rank):
        desc = lo.insert(desc, sizes[k], _SIZES, k)
        desc = lo.insert(desc, strides[k], _STRIDES, k)
    Rewriter.replace_op(op, [], [desc])


def _lower_dealloc(op: memref.DeallocOp, mtype: MemRefType) -> None:
    lo = MemrefLowerer(op, mtype)
    declare_function(module_of(op), "free", [_PTR], llvm.LLVMVoidType())
    allocated = lo.extract(op.memref, _PTR, _ALLOCATED)
    lo.b.insert(call("free", [allocated], None))
    Rewriter.erase_op(op)


def _lower_cast(op: memref.CastOp, mtype: MemRefType) -> None:
    dest = op.dest.type
    if not isinstance(dest, MemRefType) or dest.get_num_dims() != mtype.get_num_dims():
        raise LoweringError(
            f"isozyme lowering: memref.cast from {mtype} to {dest} is not supported "
            "(only between ranked memrefs of the same rank)"
        )
    Rewriter.replace_op(op, [], [op.source])


_Value = int | SSAValue  # a folded constant or an i64/index SSA value


def _fold_mul(lo: MemrefLowerer, a: _Value, b: _Value) -> _Value:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    for x, y in ((a, b), (b, a)):
        if isinstance(x, int) and x == 1:
            return y
        if isinstance(x, int) and x == 0:
            return 0
    return lo.mul(lo.const(a) if isinstance(a, int) else a,
                  lo.const(b) if isinstance(b, int) else b)


def _fold_add(lo: MemrefLowerer, a: _Value, b: _Value) -> _Value:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if isinstance(a, int) and a == 0:
        return b
    if isinstance(b, int) and b == 0:
        return a
    return lo.add(lo.const(a) if isinstance(a, int) else a,
                  lo.const(b) if isinstance(b, int) else b)


def _materialize(lo: MemrefLowerer, v: _Value) -> SSAValue:
    return lo.const(v) if isinstance(v, int) else v


def kept_dims(
    src: MemRefType, result: MemRefType, sizes: list[int | None],
    strides: list[int | None],
) -> list[int]:
    """The source dimensions a (possibly rank-reducing) subview keeps, in order.

    ``sizes``/``strides`` are the subview's static sizes and result strides (``None``
    when dynamic). Dropped dimensions must have the static size 1; among the
    candidate sets, the first whose kept sizes fit the result shape and whose static
    strides agree with the result layout's is chosen (ambiguities only concern
    size-1 dimensions, whose strides never contribute to an address).
    """
    rank, rrank = len(sizes), result.get_num_dims()
    if rrank == rank:
        return list(range(rank))
    ones = [k for k in range(rank) if sizes[k] == 1]
    if rrank > rank or rank - rrank > len(ones):
        raise LoweringError(
            f"isozyme lowering: memref.subview from {src} to {result}: a rank-reducing "
            "subview may only drop dimensions of static size 1"
        )
    rshape = result.get_shape()
    rstrides = result.get_strides() or [DYNAMIC_INDEX] * rrank
    fallback: list[int] | None = None
    for dropped in itertools.combinations(ones, rank - rrank):
        kept = [k for k in range(rank) if k not in dropped]
        if not all(
            rshape[j] == DYNAMIC_INDEX or sizes[k] is None or rshape[j] == sizes[k]
            for j, k in enumerate(kept)
        ):
            continue
        if all(
            rstrides[j] is None or rstrides[j] == DYNAMIC_INDEX or strides[k] is None
            or rstrides[j] == strides[k] or rshape[j] == 1
            for j, k in enumerate(kept)
        ):
            return kept
        if fallback is None:
            fallback = kept
    if fallback is None:
        raise LoweringError(
            f"isozyme lowering: memref.subview from {src} to {result}: cannot match "
            "the result shape by dropping dimensions of static size 1"
        )
    return fallback


def _lower_subview(op: memref.SubviewOp, mtype: MemRefType) -> None:
    result_t = op.result.type
    if not isinstance(result_t, MemRefType):
        raise LoweringError(f"isozyme lowering: memref.subview to {result_t}")
    lo = MemrefLowerer(op, mtype)
    rank = lo.rank
    src = op.source

    def operands(static: DenseArrayBase, dynamic, what: str) -> list[_Value]:
        values = static.get_values()
        if len(values) != rank:
            raise LoweringError(
                f"isozyme lowering: memref.subview of {mtype} has {len(values)} "
                f"{what} (expected {rank})"
            )
        dyn = iter(dynamic)
        return [next(dyn) if v == DYNAMIC_INDEX else v for v in values]

    offsets = operands(op.static_offsets, op.offsets, "offsets")
    sizes = operands(op.static_sizes, op.sizes, "sizes")
    steps = operands(op.static_strides, op.strides, "strides")

    src_strides: list[_Value] = [
        s if s is not None else lo.extract(src, i64, _STRIDES, k)
        for k, s in enumerate(lo.static_strides())
    ]
    static_offset = lo.static_offset()
    offset: _Value = (
        static_offset if static_offset is not None else lo.extract(src, i64, _OFFSET)
    )
    for k in range(rank):
        offset = _fold_add(lo, offset, _fold_mul(lo, offsets[k], src_strides[k]))
    new_strides = [_fold_mul(lo, src_strides[k], steps[k]) for k in range(rank)]
    kept = kept_dims(
        mtype,
        result_t,
        [v if isinstance(v, int) else None for v in sizes],
        [v if isinstance(v, int) else None for v in new_strides],
    )
    desc = lo.b.insert(llvm.UndefOp(memref_descriptor_type(len(kept)))).res
    desc = lo.insert(desc, lo.extract(src, _PTR, _ALLOCATED), _ALLOCATED)
    desc = lo.insert(desc, lo.extract(src, _PTR, _ALIGNED), _ALIGNED)
    desc = lo.insert(desc, _materialize(lo, offset), _OFFSET)
    for j, k in enumerate(kept):
        desc = lo.insert(desc, _materialize(lo, sizes[k]), _SIZES, j)
        desc = lo.insert(desc, _materialize(lo, new_strides[k]), _STRIDES, j)
    Rewriter.replace_op(op, [], [desc])


def _src_fields(lo: MemrefLowerer, src: SSAValue) -> tuple[list[_Value], list[_Value]]:
    """The source's sizes and strides, static ones as ints."""
    sizes: list[_Value] = [
        s if s is not None else lo.extract(src, i64, _SIZES, k)
        for k, s in ((k, lo.static_size(k)) for k in range(lo.rank))
    ]
    strides: list[_Value] = [
        s if s is not None else lo.extract(src, i64, _STRIDES, k)
        for k, s in enumerate(lo.static_strides())
    ]
    return sizes, strides


def _new_descriptor(lo: MemrefLowerer, src: SSAValue, sizes: list[_Value],
                    strides: list[_Value]) -> SSAValue:
    """A descriptor with ``src``'s pointers and offset and the given sizes/strides."""
    desc = lo.b.insert(llvm.UndefOp(memref_descriptor_type(len(sizes)))).res
    desc = lo.insert(desc, lo.extract(src, _PTR, _ALLOCATED), _ALLOCATED)
    desc = lo.insert(desc, lo.extract(src, _PTR, _ALIGNED), _ALIGNED)
    static_offset = lo.static_offset()
    offset = lo.const(static_offset) if static_offset is not None else \
        lo.extract(src, i64, _OFFSET)
    desc = lo.insert(desc, offset, _OFFSET)
    for j, (size, stride) in enumerate(zip(sizes, strides)):
        desc = lo.insert(desc, _materialize(lo, size), _SIZES, j)
        desc = lo.insert(desc, _materialize(lo, stride), _STRIDES, j)
    return desc


def _lower_transpose(op: TransposeOp, mtype: MemRefType) -> None:
    """Result dimension ``k`` is source dimension ``perm[k]``: permute sizes, strides."""
    lo = MemrefLowerer(op, mtype)
    sizes, strides = _src_fields(lo, op.source)
    perm = op.perm
    desc = _new_descriptor(lo, op.source, [sizes[p] for p in perm],
                           [strides[p] for p in perm])
    Rewriter.replace_op(op, [], [desc])


def _groups(op: memref.ExpandShapeOp | memref.CollapseShapeOp) -> list[list[int]]:
    return [[int(i.value.data) for i in g.data] for g in op.reassociation.data]


def _lower_expand_shape(op: memref.ExpandShapeOp, mtype: MemRefType) -> None:
    """Source dimension ``i`` splits into the result dimensions of group ``i`` (sizes
    from ``output_shape``); the group's innermost stride is the source's, each outer one
    the next inner stride times the next inner size (a split is always a view)."""
    lo = MemrefLowerer(op, mtype)
    _, src_strides = _src_fields(lo, op.src)
    dyn = iter(op.output_shape)
    out_sizes: list[_Value] = [
        next(dyn) if v == DYNAMIC_INDEX else v for v in op.static_output_shape.get_values()
    ]
    out_strides: list[_Value] = [0] * len(out_sizes)
    for i, group in enumerate(_groups(op)):
        stride = src_strides[i]
        for k in reversed(group):
            out_strides[k] = stride
            stride = _fold_mul(lo, stride, out_sizes[k])
    Rewriter.replace_op(op, [], [_new_descriptor(lo, op.src, out_sizes, out_strides)])


def _lower_collapse_shape(op: memref.CollapseShapeOp, mtype: MemRefType) -> None:
    """Each group of source dimensions becomes one dimension of the product of their
    sizes, with the stride of the group's innermost dimension whose size is not 1 (the
    frontend checks at run time that the group is contiguous)."""
    lo = MemrefLowerer(op, mtype)
    sizes, strides = _src_fields(lo, op.src)
    out_sizes: list[_Value] = []
    out_strides: list[_Value] = []
    for group in _groups(op):
        size: _Value = 1
        for k in group:
            size = _fold_mul(lo, size, sizes[k])
        stride: _Value = 1
        for k in group:  # outer to inner: the last dimension not of size 1 wins
            if isinstance(sizes[k], int):
                if sizes[k] != 1:
                    stride = strides[k]
                continue
            one = lo.b.insert(icmp(sizes[k], lo.const(1), "eq")).res
            stride = lo.b.insert(llvm.SelectOp(
                one, _materialize(lo, stride), _materialize(lo, strides[k]))).res
        out_sizes.append(size)
        out_strides.append(stride)
    Rewriter.replace_op(op, [], [_new_descriptor(lo, op.src, out_sizes, out_strides)])


def _lower_extract_strided_metadata(op: memref.ExtractStridedMetaDataOp,
                                    mtype: MemRefType) -> None:
    """The descriptor's fields; the base buffer is a rank-0 descriptor of the same
    allocation."""
    lo = MemrefLowerer(op, mtype)
    sizes, strides = _src_fields(lo, op.source)
    base = lo.b.insert(llvm.UndefOp(memref_descriptor_type(0))).res
    base = lo.insert(base, lo.extract(op.source, _PTR, _ALLOCATED), _ALLOCATED)
    base = lo.insert(base, lo.extract(op.source, _PTR, _ALIGNED), _ALIGNED)
    base = lo.insert(base, lo.const(0), _OFFSET)
    static_offset = lo.static_offset()
    offset = lo.const(static_offset) if static_offset is not None else \
        lo.extract(op.source, i64, _OFFSET)
    Rewriter.replace_op(op, [], [base, offset, *[_materialize(lo, v) for v in sizes],
                                 *[_materialize(lo, v) for v in strides]])


_LOWERINGS = {
    memref.LoadOp: (_lower_load, lambda op: op.memref),
    memref.StoreOp: (_lower_store, lambda op: op.memref),
    memref.DimOp: (_lower_dim, lambda op: op.source),
    memref.AllocOp: (_lower_alloc, lambda op: op.memref),
    memref.AllocaOp: (_lower_alloc, lambda op: op.memref),
    memref.DeallocOp: (_lower_dealloc, lambda op: op.memref),
    memref.CastOp: (_lower_cast, lambda op: op.source),
    memref.SubviewOp: (_lower_subview, lambda op: op.source),
    memref.ExpandShapeOp: (_lower_expand_shape, lambda op: op.src),
    memref.CollapseShapeOp: (_lower_collapse_shape, lambda op: op.src),
    memref.ExtractStridedMetaDataOp: (_lower_extract_strided_metadata, lambda op: op.source),
    TransposeOp: (_lower_transpose, lambda op: op.source),
}


class ConvertMemrefToLLVMPass(ModulePass):
    """Lower ``memref`` types to descriptor structs and the supported ``memref`` ops
    to the ``llvm`` dialect."""

    name = "convert-memref-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        # Record the memref types first: lowering an alloc/cast retypes its users'
        # operands to the descriptor struct.
        todo: list[tuple[Operation, MemRefType]] = []
        for o in op.walk():
            entry = _LOWERINGS.get(type(o))
            if entry is not None:
                todo.append((o, _memref_type(entry[1](o), o.name)))
        for o, mtype in todo:
            _LOWERINGS[type(o)][0](o, mtype)
        # Remaining memref values: block arguments and results of other ops
        # (func.call, ...).
        for o in op.walk():
            for res in list(o.results):
                if isinstance(res.type, MemRefType):
                    Rewriter.replace_value_with_new_type(res, convert_type(res.type))
            for region in o.regions:
                for block in region.blocks:
                    for arg in list(block.args):
                        if isinstance(arg.type, MemRefType):
                            Rewriter.replace_value_with_new_type(
                                arg, convert_type(arg.type)
                            )
