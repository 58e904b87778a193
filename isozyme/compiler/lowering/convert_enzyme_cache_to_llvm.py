"""``convert-enzyme-cache-to-llvm``: lower the ``enzyme`` cache ops to a growable stack.

A ``!enzyme.Cache<T>`` becomes a pointer to a ``{ptr data, i64 size, i64 capacity}``
struct, ``llvm.alloca``'d in the entry block of its function (so loops do not grow the
stack) and zero-initialised where ``enzyme.init`` was.  ``enzyme.push``/``enzyme.pop``/
``enzyme.cache_free`` call small internal helpers generated here in the llvm dialect:

* ``__iz_cache_push_<T>(ptr c, T v)``: ``realloc`` to ``max(16, 2*capacity)`` elements
  when full, then ``data[size++] = v``;
* ``__iz_cache_pop_<T>(ptr c) -> T``: ``return data[--size]`` (popping an empty cache is
  undefined, as in Enzyme);
* ``__iz_cache_free(ptr c)``: ``free(data)`` and reset the struct to zero.

They have internal linkage, so LLVM's O3 inlines them and drops their bodies.

A ``!enzyme.Gradient<T>`` (Enzyme-MLIR's mutable slot) is one ``T`` on the stack: its
``enzyme.init`` an ``llvm.alloca`` in the function's entry block and a store of zero
where the init was, ``enzyme.set`` an ``llvm.store``, ``enzyme.get`` an ``llvm.load``;
LLVM's mem2reg then keeps it in a register.

Elements are scalars or memref descriptors (already lowered to
``{ptr, ptr, i64, array<r x i64>, array<r x i64>}`` structs by ``convert-memref-to-llvm``):
reverse mode pushes a whole cache buffer per iteration of a loop of unknown trip count
(``ad/tape.py``); the stack holds the descriptor by value, ``8 * (3 + 2r)`` bytes, and its
helpers are named ``..._memref<r>``.
"""

from __future__ import annotations

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import builtin, func, llvm
from xdsl.dialects.builtin import (
    AnyFloat,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint

from isozyme.compiler.lowering._common import (
    CACHE_STRUCT,
    HELPER_PREFIX,
    byte_size,
    call,
    convert_type,
    declare_function,
    descriptor_rank,
    module_of,
    type_suffix,
)
from isozyme.dialects.enzyme import (
    CacheFreeOp,
    GetOp,
    GradientInitOp,
    GradientType,
    InitOp,
    PopOp,
    PushOp,
    SetOp,
)

_PTR = llvm.LLVMPointerType()
_FREE_HELPER = f"{HELPER_PREFIX}cache_free"


def _has_symbol(module: ModuleOp, name: str) -> bool:
    for op in module.ops:
        sym = op.properties.get("sym_name")
        if sym is not None and sym.data == name:  # type: ignore[attr-defined]
            return True
    return False


def _const(b: Builder, value: int) -> SSAValue:
    return b.insert(llvm.ConstantOp(IntegerAttr(value, i64), i64)).result


def _icmp(lhs: SSAValue, rhs: SSAValue, predicate: str) -> llvm.ICmpOp:
    return llvm.ICmpOp(
        lhs, rhs, IntegerAttr(llvm.ICmpPredicateFlag(predicate).to_int(), i64)
    )


def _element_size(t: Attribute) -> int:
    """Bytes of one stack element: a scalar, or a memref descriptor struct (every
    field 8 bytes wide: two pointers, the offset, r sizes and r strides)."""
    rank = descriptor_rank(t)
    if rank is not None:
        return 8 * (3 + 2 * rank)
    return byte_size(t)


def _element_suffix(t: Attribute) -> str:
    """The helpers' name suffix for element type ``t``."""
    rank = descriptor_rank(t)
    if rank is not None:
        return f"memref{rank}"
    return type_suffix(t)


def _field(b: Builder, cache: SSAValue, index: int) -> SSAValue:
    """Pointer to field ``index`` of the cache struct."""
    return b.insert(llvm.GEPOp(cache, [0, index], CACHE_STRUCT)).result


def _helper(
    name: str, arg_types: list[Attribute], ret: Attribute, body: Region
) -> llvm.FuncOp:
    return llvm.FuncOp(
        name,
        llvm.LLVMFunctionType(arg_types, ret),
        linkage=llvm.LinkageAttr("internal"),
        body=body,
    )


def _build_push(name: str, t: Attribute) -> llvm.FuncOp:
    entry = Block(arg_types=[_PTR, t])
    grow = Block()
    store = Block(arg_types=[_PTR])
    cache, value = entry.args

    b = Builder(InsertPoint.at_end(entry))
    p_data = _field(b, cache, 0)
    p_size = _field(b, cache, 1)
    p_cap = _field(b, cache, 2)
    data = b.insert(llvm.LoadOp(p_data, _PTR)).dereferenced_value
    size = b.insert(llvm.LoadOp(p_size, i64)).dereferenced_value
    cap = b.insert(llvm.LoadOp(p_cap, i64)).dereferenced_value
    full = b.insert(_icmp(size, cap, "eq")).res
    b.insert(llvm.CondBrOp(full, grow, [], store, [data]))

    # Grow geometrically so n pushes cost O(n) copies.
    b = Builder(InsertPoint.at_end(grow))
    doubled = b.insert(llvm.MulOp(cap, _const(b, 2))).res
    small = b.insert(_icmp(doubled, _const(b, 16), "ult")).res
    new_cap = b.insert(llvm.SelectOp(small, _const(b, 16), doubled)).res
    nbytes = b.insert(llvm.MulOp(new_cap, _const(b, _element_size(t)))).res
    new_data = b.insert(call("realloc", [data, nbytes], _PTR)).returned
    assert new_data is not None
    b.insert(llvm.StoreOp(new_data, p_data))
    b.insert(llvm.StoreOp(new_cap, p_cap))
    b.insert(llvm.BrOp(store, new_data))

    b = Builder(InsertPoint.at_end(store))
    slot = b.insert(
        llvm.GEPOp(store.args[0], [llvm.GEP_USE_SSA_VAL], t, ssa_indices=[size])
    ).result
    b.insert(llvm.StoreOp(value, slot))
    b.insert(llvm.StoreOp(b.insert(llvm.AddOp(size, _const(b, 1))).res, p_size))
    b.insert(llvm.ReturnOp())
    return _helper(name, [_PTR, t], llvm.LLVMVoidType(), Region([entry, grow, store]))


def _build_pop(name: str, t: Attribute) -> llvm.FuncOp:
    entry = Block(arg_types=[_PTR])
    (cache,) = entry.args
    b = Builder(InsertPoint.at_end(entry))
    p_data = _field(b, cache, 0)
    p_size = _field(b, cache, 1)
    size = b.insert(llvm.LoadOp(p_size, i64)).dereferenced_value
    top = b.insert(llvm.SubOp(size, _const(b, 1))).res
    b.insert(llvm.StoreOp(top, p_size))
    data = b.insert(llvm.LoadOp(p_data, _PTR)).dereferenced_value
    slot = b.insert(
        llvm.GEPOp(data, [llvm.GEP_USE_SSA_VAL], t, ssa_indices=[top])
    ).result
    value = b.insert(llvm.LoadOp(slot, t)).dereferenced_value
    b.insert(llvm.ReturnOp(value))
    return _helper(name, [_PTR], t, Region([entry]))


def _build_free(name: str) -> llvm.FuncOp:
    entry = Block(arg_types=[_PTR])
    (cache,) = entry.args
    b = Builder(InsertPoint.at_end(entry))
    data = b.insert(llvm.LoadOp(_field(b, cache, 0), _PTR)).dereferenced_value
    b.insert(call("free", [data], None))
    zero = b.insert(llvm.ZeroOp(result_types=[CACHE_STRUCT])).results[0]
    b.insert(llvm.StoreOp(zero, cache))
    b.insert(llvm.ReturnOp())
    return _helper(name, [_PTR], llvm.LLVMVoidType(), Region([entry]))


def _ensure_helper(module: ModuleOp, kind: str, element: Attribute | None) -> str:
    """Declare the libc functions and define the helper ``kind`` once per module;
    return its name."""
    declare_function(module, "realloc", [_PTR, i64], _PTR)
    declare_function(module, "free", [_PTR], llvm.LLVMVoidType())
    if kind == "free":
        name = _FREE_HELPER
    else:
        assert element is not None
        name = f"{HELPER_PREFIX}cache_{kind}_{_element_suffix(element)}"
    if not _has_symbol(module, name):
        if kind == "push":
            helper = _build_push(name, element)  # type: ignore[arg-type]
        elif kind == "pop":
            helper = _build_pop(name, element)  # type: ignore[arg-type]
        else:
            helper = _build_free(name)
        module.body.block.add_op(helper)
    return name


def _entry_block(op: Operation) -> Block:
    """The entry block of the function enclosing ``op``."""
    cur: Operation | None = op
    while cur is not None and not isinstance(cur, (func.FuncOp, llvm.FuncOp)):
        cur = cur.parent_op()
    if cur is None or cur.regions[0].first_block is None:
        raise ValueError("isozyme lowering: enzyme.init outside a function")
    return cur.regions[0].first_block


class InitLowering(RewritePattern):
    """``enzyme.init`` -> ``llvm.alloca`` (function entry) + a zero ``llvm.store``."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: InitOp, rewriter: PatternRewriter, /):
        entry = _entry_block(op)
        one = llvm.ConstantOp(IntegerAttr(1, i64), i64)
        alloca = llvm.AllocaOp(one, CACHE_STRUCT, alignment=8)
        rewriter.insert([one, alloca], InsertPoint.at_start(entry))
        zero = llvm.ZeroOp(result_types=[CACHE_STRUCT])
        store = llvm.StoreOp(zero, alloca)
        rewriter.replace(op, [zero, store], [alloca.res])


class GradientInitLowering(RewritePattern):
    """``enzyme.init`` of a gradient -> ``llvm.alloca`` of one ``T`` (function entry)
    + a store of zero, so that a ``get`` before any ``set`` reads 0."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: GradientInitOp, rewriter: PatternRewriter, /):
        gradient = op.result.type
        assert isinstance(gradient, GradientType)
        t = convert_type(gradient.basetype)
        entry = _entry_block(op)
        one = llvm.ConstantOp(IntegerAttr(1, i64), i64)
        alloca = llvm.AllocaOp(one, t, alignment=8)
        rewriter.insert([one, alloca], InsertPoint.at_start(entry))
        zero = _zero(t)
        store = llvm.StoreOp(zero.results[0], alloca)
        rewriter.replace(op, [zero, store], [alloca.res])


def _zero(t: Attribute) -> Operation:
    """The zero of ``t``: a constant for a number (``llvm.mlir.zero`` takes LLVM types
    only), ``llvm.mlir.zero`` for a pointer or a struct (a memref descriptor)."""
    if isinstance(t, AnyFloat):
        return llvm.ConstantOp(FloatAttr(0.0, t), t)
    if isinstance(t, IntegerType):
        return llvm.ConstantOp(IntegerAttr(0, t), t)
    return llvm.ZeroOp(result_types=[t])


class SetLowering(RewritePattern):
    """``enzyme.set`` -> ``llvm.store`` into the gradient's slot."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: SetOp, rewriter: PatternRewriter, /):
        rewriter.replace(op, llvm.StoreOp(op.value, op.gradient), [])


class GetLowering(RewritePattern):
    """``enzyme.get`` -> ``llvm.load`` from the gradient's slot."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: GetOp, rewriter: PatternRewriter, /):
        t = convert_type(op.result.type)
        rewriter.replace(op, llvm.LoadOp(op.gradient, t))


class PushLowering(RewritePattern):
    """``enzyme.push`` -> ``llvm.call @__iz_cache_push_<T>``."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: PushOp, rewriter: PatternRewriter, /):
        t = convert_type(op.value.type)
        name = _ensure_helper(module_of(op), "push", t)
        rewriter.replace(op, call(name, [op.cache, op.value], None))


class PopLowering(RewritePattern):
    """``enzyme.pop`` -> ``llvm.call @__iz_cache_pop_<T>``."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: PopOp, rewriter: PatternRewriter, /):
        t = convert_type(op.result.type)
        name = _ensure_helper(module_of(op), "pop", t)
        rewriter.replace(op, call(name, [op.cache], t))


class CacheFreeLowering(RewritePattern):
    """``enzyme.cache_free`` -> ``llvm.call @__iz_cache_free``."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: CacheFreeOp, rewriter: PatternRewriter, /):
        name = _ensure_helper(module_of(op), "free", None)
        rewriter.replace(op, call(name, [op.cache], None))


class ConvertEnzymeCacheToLLVMPass(ModulePass):
    """Lower ``enzyme.init``/``push``/``pop``/``cache_free`` and the gradient ops
    ``enzyme.init``/``set``/``get`` to the ``llvm`` dialect."""

    name = "convert-enzyme-cache-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place, adding the helper functions it needs."""
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [InitLowering(), PushLowering(), PopLowering(), CacheFreeLowering(),
                 GradientInitLowering(), SetLowering(), GetLowering()]
            ),
            apply_recursively=False,
        ).rewrite_module(op)
