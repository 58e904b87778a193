"""``convert-cf-to-llvm``: lower ``cf.br``/``cf.cond_br``/``cf.switch`` to ``llvm.br`` and
``llvm.cond_br``."""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects import builtin, cf, llvm
from xdsl.dialects.builtin import IndexType, IntegerAttr, i64
from xdsl.ir import Block
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)


class BranchLowering(RewritePattern):
    """``cf.br ^bb(args)`` -> ``llvm.br ^bb(args)``."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: cf.BranchOp, rewriter: PatternRewriter, /):
        rewriter.replace(op, llvm.BrOp(op.successor, *op.arguments))


class CondBranchLowering(RewritePattern):
    """``cf.cond_br`` -> ``llvm.cond_br``."""

    @op_type_rewrite_pattern
    def match_and_rewrite(
        self, op: cf.ConditionalBranchOp, rewriter: PatternRewriter, /
    ):
        rewriter.replace(
            op,
            llvm.CondBrOp(
                op.cond,
                op.then_block,
                op.then_arguments,
                op.else_block,
                op.else_arguments,
            ),
        )


class SwitchLowering(RewritePattern):
    """``cf.switch`` -> a chain of ``llvm.cond_br`` (xDSL has no ``llvm.switch``): one
    comparison of the flag per case, in order, each in a new block after the switch's,
    the last one falling through to the default destination."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: cf.SwitchOp, rewriter: PatternRewriter, /):
        block = op.parent_block()
        assert block is not None
        region = block.parent_region()
        assert region is not None
        values = (
            [] if op.case_values is None
            else [int(v) for v in op.case_values.get_values()]
        )
        cases = [
            (v, dest, list(args))
            for v, dest, args in zip(values, op.case_blocks, op.case_operand, strict=True)
        ]
        default, default_args, flag = op.default_block, list(op.default_operands), op.flag
        if not cases:
            rewriter.replace(op, llvm.BrOp(default, *default_args))
            return
        flag_t = i64 if isinstance(flag.type, IndexType) else flag.type
        eq = IntegerAttr(llvm.ICmpPredicateFlag("eq").to_int(), i64)
        tests = [block] + [Block() for _ in cases[1:]]
        after = block.next_block
        for b in tests[1:]:
            if after is None:
                region.add_block(b)
            else:
                region.insert_block_before(b, after)
        rewriter.erase(op)
        for k, ((value, dest, args), test) in enumerate(zip(cases, tests)):
            const = llvm.ConstantOp(IntegerAttr(value, flag_t), flag_t)
            cmp = llvm.ICmpOp(flag, const.result, eq)
            last = k == len(cases) - 1
            else_block = default if last else tests[k + 1]
            else_args = default_args if last else []
            branch = llvm.CondBrOp(cmp.res, dest, args, else_block, else_args)
            for new in (const, cmp, branch):
                test.add_op(new)


class ConvertCfToLLVMPass(ModulePass):
    """Lower unstructured control flow (``cf``) to the ``llvm`` dialect."""

    name = "convert-cf-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [BranchLowering(), CondBranchLowering(), SwitchLowering()]
            ),
            apply_recursively=False,
        ).rewrite_module(op)
