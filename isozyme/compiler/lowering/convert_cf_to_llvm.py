"""``convert-cf-to-llvm``: lower ``cf.br``/``cf.cond_br`` to ``llvm.br``/``llvm.cond_br``."""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects import builtin, cf, llvm
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


class ConvertCfToLLVMPass(ModulePass):
    """Lower unstructured control flow (``cf``) to the ``llvm`` dialect."""

    name = "convert-cf-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        PatternRewriteWalker(
            GreedyRewritePatternApplier([BranchLowering(), CondBranchLowering()]),
            apply_recursively=False,
        ).rewrite_module(op)
