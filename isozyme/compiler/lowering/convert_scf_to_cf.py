"""``convert-scf-to-cf``: lower ``scf.for``/``scf.if``/``scf.while`` to ``cf`` branches.

``scf.for`` and ``scf.if`` reuse xDSL's patterns (``xdsl.transforms.convert_scf_to_cf``);
xDSL has no ``scf.while`` lowering, so :class:`WhileLowering` below follows MLIR's
``SCFToControlFlow``.  ``scf.execute_region`` and ``memref.alloca_scope``, regions run
once, are inlined into the enclosing block's control flow.
"""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects import builtin, cf, memref, scf
from xdsl.ir import Block, Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import BlockInsertPoint, InsertPoint
from xdsl.transforms.convert_scf_to_cf import ForLowering, IfLowering, SwitchLowering


class WhileLowering(RewritePattern):
    """Lower ``scf.while`` to a loop of blocks.

    ::

        ^pre:   ...            br ^before(%init)
        ^before(%a): ...       cond_br %c, ^after(%args), ^continue(%args)
        ^after(%b):  ...       br ^before(%yielded)
        ^continue(%results): ...

    The ``before`` region's ``scf.condition`` and the ``after`` region's ``scf.yield``
    become the branches; the op's results become the continuation block's arguments.
    """

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: scf.WhileOp, rewriter: PatternRewriter, /) -> None:
        pre_block = op.parent_block()
        if pre_block is None:
            return
        parent = pre_block.parent_region()
        assert parent is not None
        remaining = pre_block.split_before(op)
        # Continuation block receives the values forwarded by scf.condition.
        continue_block = Block(arg_types=op.result_types)
        parent.insert_block_before(continue_block, remaining)
        rewriter.insert(cf.BranchOp(remaining), InsertPoint.at_end(continue_block))

        before_entry = op.before_region.first_block
        after_entry = op.after_region.first_block
        assert before_entry is not None and after_entry is not None

        # Terminators may sit in any block once nested scf ops are lowered.
        for block in op.before_region.blocks:
            term = block.last_op
            if isinstance(term, scf.ConditionOp):
                rewriter.replace(
                    term,
                    cf.ConditionalBranchOp(
                        term.condition,
                        after_entry,
                        term.args,
                        continue_block,
                        term.args,
                    ),
                )
        for block in op.after_region.blocks:
            term = block.last_op
            if isinstance(term, scf.YieldOp):
                rewriter.replace(term, cf.BranchOp(before_entry, *term.operands))

        before_continue = BlockInsertPoint.before(continue_block)
        rewriter.inline_region(op.before_region, before_continue)
        rewriter.inline_region(op.after_region, BlockInsertPoint.before(continue_block))
        rewriter.insert(
            cf.BranchOp(before_entry, *op.arguments), InsertPoint.at_end(pre_block)
        )
        rewriter.replace(op, [], continue_block.args)


def inline_region_run_once(
    op: Operation, terminator: type[Operation], rewriter: PatternRewriter
) -> None:
    """Replace ``op``, whose single region runs once from its entry block and leaves
    through ``terminator`` ops (their operands are ``op``'s results), by that region's
    blocks::

        ^pre: ...              br ^entry
        ^entry: ... ^bbN: ...  br ^continue(%values)   // each terminator
        ^continue(%results): ...
    """
    pre_block = op.parent_block()
    assert pre_block is not None
    parent = pre_block.parent_region()
    assert parent is not None
    region = op.regions[0]
    entry = region.first_block
    assert entry is not None and not entry.args
    remaining = pre_block.split_before(op)
    continue_block = Block(arg_types=op.result_types)
    parent.insert_block_before(continue_block, remaining)
    rewriter.insert(cf.BranchOp(remaining), InsertPoint.at_end(continue_block))
    for block in region.blocks:
        term = block.last_op
        if isinstance(term, terminator):
            rewriter.replace(term, cf.BranchOp(continue_block, *term.operands))
    rewriter.inline_region(region, BlockInsertPoint.before(continue_block))
    rewriter.insert(cf.BranchOp(entry), InsertPoint.at_end(pre_block))
    rewriter.replace(op, [], continue_block.args)


class ExecuteRegionLowering(RewritePattern):
    """``scf.execute_region`` (any number of blocks, ``scf.yield`` exits) -> its blocks,
    inlined (:func:`inline_region_run_once`)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(
        self, op: scf.ExecuteRegionOp, rewriter: PatternRewriter, /
    ) -> None:
        inline_region_run_once(op, scf.YieldOp, rewriter)


class AllocaScopeLowering(RewritePattern):
    """``memref.alloca_scope`` -> its blocks, inlined: the ``memref.alloca``s in it then
    live until the function returns, not until the scope ends (no stack save and
    restore: the reverse sweep of AD reads the forward sweep's stack buffers after
    their scope)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(
        self, op: memref.AllocaScopeOp, rewriter: PatternRewriter, /
    ) -> None:
        inline_region_run_once(op, memref.AllocaScopeReturnOp, rewriter)


class ConvertScfToCfPass(ModulePass):
    """Lower ``scf.for``/``if``/``index_switch``/``while``/``execute_region`` (and
    ``memref.alloca_scope``) to ``cf`` branches."""

    name = "convert-scf-to-cf"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite every structured control-flow op of ``op`` in place."""
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [
                    SwitchLowering(),
                    IfLowering(),
                    ForLowering(),
                    WhileLowering(),
                    ExecuteRegionLowering(),
                    AllocaScopeLowering(),
                ]
            )
        ).rewrite_module(op)
