"""``convert-arith-to-llvm``: lower ``arith`` ops to the ``llvm`` dialect.

``index`` values become ``i64``. Fast-math flags of float ops are carried over.
Ops that LLVM spells as intrinsics (``maximumf``, ``fptosi``...) become ``llvm.call``s
of a declared intrinsic, because ``xdsl.backend.llvm`` can emit fast-math flags on calls
but not on its ``llvm.intr.*`` ops, and has no ``fptosi``/``maximum`` op at all.
"""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects import arith, builtin, llvm
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, IntegerType, i1, i64
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from isozyme.compiler.lowering._common import (
    LoweringError,
    call,
    convert_type,
    declare_function,
    llvm_fastmath,
    module_of,
    type_suffix,
    with_result_type,
)

# arith op -> llvm op for plain integer binary ops (same operand/result types).
_INT_BINARY: dict[type[Operation], type[Operation]] = {
    arith.AddiOp: llvm.AddOp,
    arith.SubiOp: llvm.SubOp,
    arith.MuliOp: llvm.MulOp,
    arith.DivSIOp: llvm.SDivOp,
    arith.DivUIOp: llvm.UDivOp,
    arith.RemSIOp: llvm.SRemOp,
    arith.RemUIOp: llvm.URemOp,
    arith.AndIOp: llvm.AndOp,
    arith.OrIOp: llvm.OrOp,
    arith.XOrIOp: llvm.XOrOp,
    arith.ShLIOp: llvm.ShlOp,
    arith.ShRSIOp: llvm.AShrOp,
    arith.ShRUIOp: llvm.LShrOp,
}

# arith op -> llvm op for float binary ops (carry fast-math flags).
_FLOAT_BINARY: dict[type[Operation], type[llvm.AbstractFloatArithOp]] = {
    arith.AddfOp: llvm.FAddOp,
    arith.SubfOp: llvm.FSubOp,
    arith.MulfOp: llvm.FMulOp,
    arith.DivfOp: llvm.FDivOp,
}

# arith float min/max -> LLVM intrinsic base name (NaN semantics match one to one).
_FLOAT_MINMAX: dict[type[Operation], str] = {
    arith.MaximumfOp: "llvm.maximum",
    arith.MinimumfOp: "llvm.minimum",
    arith.MaxnumfOp: "llvm.maxnum",
    arith.MinnumfOp: "llvm.minnum",
}

# arith integer min/max -> the icmp predicate that selects the lhs.
_INT_MINMAX: dict[type[Operation], str] = {
    arith.MaxSIOp: "sgt",
    arith.MinSIOp: "slt",
    arith.MaxUIOp: "ugt",
    arith.MinUIOp: "ult",
}


def icmp(lhs: SSAValue, rhs: SSAValue, predicate: str) -> llvm.ICmpOp:
    """``llvm.icmp "<predicate>" lhs, rhs``."""
    return llvm.ICmpOp(
        lhs, rhs, IntegerAttr(llvm.ICmpPredicateFlag(predicate).to_int(), i64)
    )


def int_constant(value: int, t: Attribute) -> llvm.ConstantOp:
    """``llvm.mlir.constant(value : t)`` for an integer type ``t``."""
    return llvm.ConstantOp(IntegerAttr(value, t), t)


class ConstantLowering(RewritePattern):
    """``arith.constant`` -> ``llvm.mlir.constant`` (``index`` becomes ``i64``)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.ConstantOp, rewriter: PatternRewriter, /):
        t = convert_type(op.result.type)
        value = op.value
        if isinstance(value, IntegerAttr):
            assert isinstance(t, IntegerType)
            value = IntegerAttr(value.value.data, t)
        elif not isinstance(value, FloatAttr):
            raise LoweringError(
                "isozyme lowering: only scalar arith.constant is supported, "
                f"got {value}"
            )
        rewriter.replace(op, llvm.ConstantOp(value, t))


class IntBinaryLowering(RewritePattern):
    """Integer binary ops (``addi``, ``divsi``, ``andi``...) -> the llvm op of the same
    meaning."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        target = _INT_BINARY.get(type(op))
        if target is None:
            return
        t = convert_type(op.results[0].type)
        new = target(op.operands[0], op.operands[1])  # type: ignore[call-arg]
        rewriter.replace(op, with_result_type(new, t))


class FloatBinaryLowering(RewritePattern):
    """``addf``/``subf``/``mulf``/``divf`` -> ``llvm.fadd``... with fast-math flags."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        target = _FLOAT_BINARY.get(type(op))
        if target is None:
            return
        rewriter.replace(
            op, target(op.operands[0], op.operands[1], llvm_fastmath(op))
        )


class NegfLowering(RewritePattern):
    """``arith.negf`` -> ``llvm.fneg``."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.NegfOp, rewriter: PatternRewriter, /):
        rewriter.replace(op, llvm.FNegOp(op.operand, llvm_fastmath(op)))


class FloatMinMaxLowering(RewritePattern):
    """``maximumf``/``minimumf``/``maxnumf``/``minnumf`` -> ``llvm.call`` of
    ``llvm.maximum.f64``/``llvm.minimum``/``llvm.maxnum``/``llvm.minnum``."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        base = _FLOAT_MINMAX.get(type(op))
        if base is None:
            return
        t = op.results[0].type
        name = f"{base}.{type_suffix(t)}"
        declare_function(module_of(op), name, [t, t], t)
        rewriter.replace(
            op, call(name, [op.operands[0], op.operands[1]], t, llvm_fastmath(op))
        )


class IntMinMaxLowering(RewritePattern):
    """``maxsi``/``minsi``/``maxui``/``minui`` -> ``llvm.icmp`` + ``llvm.select``."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        pred = _INT_MINMAX.get(type(op))
        if pred is None:
            return
        lhs, rhs = op.operands
        cmp = icmp(lhs, rhs, pred)
        sel = with_result_type(
            llvm.SelectOp(cmp, lhs, rhs), convert_type(op.results[0].type)
        )
        rewriter.replace(op, [cmp, sel])


class CmpiLowering(RewritePattern):
    """``arith.cmpi`` -> ``llvm.icmp`` (same predicate names)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.CmpiOp, rewriter: PatternRewriter, /):
        name = arith.CMPI_COMPARISON_OPERATIONS[op.predicate.value.data]
        rewriter.replace(op, icmp(op.lhs, op.rhs, name))


class CmpfLowering(RewritePattern):
    """``arith.cmpf`` -> ``llvm.fcmp`` (same predicate names).

    The constant predicates ``true``/``false`` become an ``i1`` constant: xDSL's LLVM
    emitter has no spelling for them."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.CmpfOp, rewriter: PatternRewriter, /):
        name = arith.CMPF_COMPARISON_OPERATIONS[op.predicate.value.data]
        if name in ("true", "false"):
            rewriter.replace(op, int_constant(int(name == "true"), i1))
            return
        rewriter.replace(op, llvm.FCmpOp(op.lhs, op.rhs, name))


class SelectLowering(RewritePattern):
    """``arith.select`` -> ``llvm.select``."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.SelectOp, rewriter: PatternRewriter, /):
        new = llvm.SelectOp(op.cond, op.lhs, op.rhs)
        rewriter.replace(op, with_result_type(new, convert_type(op.result.type)))


class FloorCeilDivLowering(RewritePattern):
    """``floordivsi``/``ceildivsi`` -> ``sdiv`` + a correction of one, as MLIR's
    ``arith-expand`` does: ``floordiv`` subtracts one when the remainder is non-zero
    and its sign differs from the divisor's; ``ceildiv`` adds one when they agree."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, (arith.FloorDivSIOp, arith.CeilDivSIOp)):
            return
        t = convert_type(op.results[0].type)
        a, b = op.operands
        zero = int_constant(0, t)
        one = int_constant(1, t)
        q = with_result_type(llvm.SDivOp(a, b), t)
        r = with_result_type(llvm.SRemOp(a, b), t)
        r_nonzero = icmp(r.results[0], zero.result, "ne")
        r_neg = icmp(r.results[0], zero.result, "slt")
        b_neg = icmp(b, zero.result, "slt")
        if isinstance(op, arith.FloorDivSIOp):
            signs = icmp(r_neg.res, b_neg.res, "ne")
            adjusted = with_result_type(llvm.SubOp(q.results[0], one.result), t)
        else:
            signs = icmp(r_neg.res, b_neg.res, "eq")
            adjusted = with_result_type(llvm.AddOp(q.results[0], one.result), t)
        fix = llvm.AndOp(r_nonzero.res, signs.res)
        res = llvm.SelectOp(fix.res, adjusted.results[0], q.results[0])
        rewriter.replace(
            op, [zero, one, q, r, r_nonzero, r_neg, b_neg, signs, adjusted, fix, res]
        )


class CastLowering(RewritePattern):
    """Conversions: ``sitofp``, ``fptosi``, ``fptoui``, ``index_cast``, ``extf``,
    ``truncf``, ``extui``, ``extsi``, ``trunci``, ``bitcast``.

    ``fptosi``/``fptoui`` become LLVM's saturating intrinsics (xDSL's llvm dialect has
    no ``fptosi`` op); they agree with ``fptosi`` wherever that is defined.
    """

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(
            op,
            (
                arith.SIToFPOp,
                arith.FPToSIOp,
                arith.FPToUIOp,
                arith.IndexCastOp,
                arith.ExtFOp,
                arith.TruncFOp,
                arith.ExtUIOp,
                arith.ExtSIOp,
                arith.TruncIOp,
                arith.BitcastOp,
            ),
        ):
            return
        src = op.operands[0]
        src_t = convert_type(src.type)
        dst_t = convert_type(op.results[0].type)
        new: Operation
        match op:
            case arith.SIToFPOp():
                new = llvm.SIToFPOp(src, dst_t)
            case arith.FPToSIOp() | arith.FPToUIOp():
                kind = "fptosi" if isinstance(op, arith.FPToSIOp) else "fptoui"
                name = f"llvm.{kind}.sat.{type_suffix(dst_t)}.{type_suffix(src_t)}"
                declare_function(module_of(op), name, [src_t], dst_t)
                new = call(name, [src], dst_t)
            case arith.ExtFOp():
                new = llvm.FPExtOp(src, dst_t)
            case arith.TruncFOp():
                new = llvm.FPTruncOp(src, dst_t)
            case arith.BitcastOp():
                new = llvm.BitcastOp(src, dst_t)
            case _:
                # Integer width changes (index counts as i64).
                assert isinstance(src_t, IntegerType) and isinstance(dst_t, IntegerType)
                src_w, dst_w = src_t.width.data, dst_t.width.data
                if src_w == dst_w:
                    rewriter.replace(op, [], [src])
                    return
                if src_w > dst_w:
                    new = llvm.TruncOp(src, dst_t)
                elif isinstance(op, arith.ExtUIOp) or src_t == i1:
                    # i1 -> wider is unsigned (a bool is 0/1, never -1).
                    new = llvm.ZExtOp(src, dst_t)
                else:
                    new = llvm.SExtOp(src, dst_t)
        rewriter.replace(op, new)


class ConvertArithToLLVMPass(ModulePass):
    """Lower every ``arith`` op of the module to the ``llvm`` dialect."""

    name = "convert-arith-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [
                    ConstantLowering(),
                    IntBinaryLowering(),
                    FloatBinaryLowering(),
                    NegfLowering(),
                    FloatMinMaxLowering(),
                    IntMinMaxLowering(),
                    CmpiLowering(),
                    CmpfLowering(),
                    SelectLowering(),
                    FloorCeilDivLowering(),
                    CastLowering(),
                ]
            ),
            apply_recursively=False,
        ).rewrite_module(op)
