"""``simplify-ad``: algebraic clean-up of AD output.

Derivative rules are applied mechanically, so AD output is full of ``x * 1``,
``x + 0``, ``0 * x``, ``-(-x)`` and arithmetic on constants.  These rewrites remove
them.  ``x * 0 -> 0``, ``0 / x -> 0``, ``x + 0 -> x`` and ``0 - x -> -x`` are not
IEEE-exact (NaN/inf inputs, signed zeros), so they apply only to zeros the AD passes
made (marked :data:`isozyme.compiler.emitter.AD_ZERO`: a structurally zero tangent or
adjoint, the freedom Enzyme takes too), never to the user's own ``0.0``, whose
arithmetic stays numpy's.  The other rewrites (``x * 1``, ``x - 0``, ``x * -1``,
``-(-x)``, constant folding) are exact.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import FloatAttr, ModuleOp, UnitAttr
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from isozyme.compiler.emitter import AD_ZERO
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)


def float_constant(v: SSAValue) -> float | None:
    """The value of ``v`` if it is a scalar float ``arith.constant``."""
    owner = v.owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, FloatAttr):
        return owner.value.value.data
    return None


def ad_zero(v: SSAValue) -> bool:
    """Whether ``v`` is a float zero made by the AD passes (see :data:`AD_ZERO`)."""
    owner = v.owner
    return float_constant(v) == 0.0 and AD_ZERO in owner.attributes  # type: ignore[union-attr]


def _replace_with_const(rewriter: PatternRewriter, op: Operation, value: float) -> None:
    rewriter.replace(op, arith.ConstantOp(FloatAttr(value, op.results[0].type)))


def _replace_with_ad_zero(rewriter: PatternRewriter, op: Operation) -> None:
    zero = arith.ConstantOp(FloatAttr(0.0, op.results[0].type))
    zero.attributes[AD_ZERO] = UnitAttr()
    rewriter.replace(op, zero)


_FOLD = {
    arith.AddfOp: operator.add,
    arith.SubfOp: operator.sub,
    arith.MulfOp: operator.mul,
}


class FoldConstantArithmetic(RewritePattern):
    """c1 op c2 -> c for float add/sub/mul (and div by a nonzero constant)."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if type(op) not in _FOLD and not isinstance(op, arith.DivfOp):
            return
        a, b = (float_constant(v) for v in op.operands)
        if a is None or b is None:
            return
        if isinstance(op, arith.DivfOp):
            if b == 0.0:
                return
            _replace_with_const(rewriter, op, a / b)
        else:
            _replace_with_const(rewriter, op, _FOLD[type(op)](a, b))


class SimplifyMul(RewritePattern):
    """x*1 -> x, x*0 -> 0 (an AD zero), x*(-1) -> -x."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.MulfOp, rewriter: PatternRewriter) -> None:
        for c_side, other in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            c = float_constant(c_side)
            if c == 1.0:
                rewriter.replace(op, [], [other])
                return
            if ad_zero(c_side):
                _replace_with_ad_zero(rewriter, op)
                return
            if c == -1.0:
                rewriter.replace(op, arith.NegfOp(other))
                return


class SimplifyAdd(RewritePattern):
    """x+0 -> x, x+(-y) -> x-y."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.AddfOp, rewriter: PatternRewriter) -> None:
        for c_side, other in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            if ad_zero(c_side):
                rewriter.replace(op, [], [other])
                return
        if isinstance(op.rhs.owner, arith.NegfOp):
            rewriter.replace(op, arith.SubfOp(op.lhs, op.rhs.owner.operand))


class SimplifySub(RewritePattern):
    """x-0 -> x, 0-x -> -x, x-(-y) -> x+y."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.SubfOp, rewriter: PatternRewriter) -> None:
        if float_constant(op.rhs) == 0.0 and not math.copysign(1.0, float_constant(op.rhs)) < 0:
            rewriter.replace(op, [], [op.lhs])  # x - (+0) is x for every x
        elif ad_zero(op.lhs):
            rewriter.replace(op, arith.NegfOp(op.rhs))
        elif isinstance(op.rhs.owner, arith.NegfOp):
            rewriter.replace(op, arith.AddfOp(op.lhs, op.rhs.owner.operand))


class SimplifyDiv(RewritePattern):
    """x/1 -> x, 0/x -> 0."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.DivfOp, rewriter: PatternRewriter) -> None:
        if float_constant(op.rhs) == 1.0:
            rewriter.replace(op, [], [op.lhs])
        elif ad_zero(op.lhs):
            _replace_with_ad_zero(rewriter, op)


class SimplifyNeg(RewritePattern):
    """-(-x) -> x, -(c) -> constant, -(a*b) with a negated factor -> product."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.NegfOp, rewriter: PatternRewriter) -> None:
        inner = op.operand.owner
        if isinstance(inner, arith.NegfOp):
            rewriter.replace(op, [], [inner.operand])
            return
        c = float_constant(op.operand)
        if c is not None:
            _replace_with_const(rewriter, op, -c)


class SimplifySelect(RewritePattern):
    """select(c, x, x) -> x."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: arith.SelectOp, rewriter: PatternRewriter) -> None:
        if op.lhs == op.rhs:
            rewriter.replace(op, [], [op.lhs])


@dataclass(frozen=True)
class SimplifyADPass(ModulePass):
    """Apply the AD clean-up rewrites to a fixed point."""

    name = "simplify-ad"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [
                    FoldConstantArithmetic(),
                    SimplifyMul(),
                    SimplifyAdd(),
                    SimplifySub(),
                    SimplifyDiv(),
                    SimplifyNeg(),
                    SimplifySelect(),
                ]
            )
        ).rewrite_module(op)
