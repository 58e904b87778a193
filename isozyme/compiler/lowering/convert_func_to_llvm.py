"""``convert-func-to-llvm``: lower ``func.func``/``func.call``/``func.return``.

* ``func.func`` -> ``llvm.func``; private functions get ``internal`` linkage, public
  ones ``external``. Argument and block-argument types are converted (``index`` ->
  ``i64``, ``!enzyme.Cache<T>`` -> ``!llvm.ptr``).
* Several results are returned as an LLVM literal struct built with
  ``llvm.insertvalue``; ``func.call`` reads them back with ``llvm.extractvalue``.
"""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects import builtin, func, llvm
from xdsl.dialects.builtin import DenseArrayBase, i64
from xdsl.ir import Operation, Region
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import Rewriter

from isozyme.compiler.lowering._common import convert_type, result_type_of


def _position(i: int) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, [i])


class FuncLowering(RewritePattern):
    """``func.func`` -> ``llvm.func`` with converted signature and block arguments."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: func.FuncOp, rewriter: PatternRewriter, /):
        inputs = [convert_type(t) for t in op.function_type.inputs]
        outputs = [convert_type(t) for t in op.function_type.outputs]
        body = op.detach_region(op.body)
        # Every block argument, including the loop headers made by convert-scf-to-cf.
        for block in body.blocks:
            for arg in list(block.args):
                new_t = convert_type(arg.type)
                if new_t != arg.type:
                    Rewriter.replace_value_with_new_type(arg, new_t)
        private = op.sym_visibility is not None and op.sym_visibility.data == "private"
        is_declaration = not body.blocks
        linkage = "internal" if private and not is_declaration else "external"
        rewriter.replace(
            op,
            llvm.FuncOp(
                op.sym_name.data,
                llvm.LLVMFunctionType(inputs, result_type_of(outputs)),
                linkage=llvm.LinkageAttr(linkage),
                body=body if not is_declaration else Region(),
            ),
        )


class ReturnLowering(RewritePattern):
    """``func.return`` -> ``llvm.return`` (of a struct when there are several values)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: func.ReturnOp, rewriter: PatternRewriter, /):
        values = list(op.arguments)
        if len(values) <= 1:
            rewriter.replace(op, llvm.ReturnOp(values[0] if values else None))
            return
        struct_t = result_type_of([convert_type(v.type) for v in values])
        new_ops: list[Operation] = [llvm.UndefOp(struct_t)]
        for i, v in enumerate(values):
            new_ops.append(llvm.InsertValueOp(_position(i), new_ops[-1].results[0], v))
        new_ops.append(llvm.ReturnOp(new_ops[-1].results[0]))
        rewriter.replace(op, new_ops)


class CallLowering(RewritePattern):
    """``func.call`` -> ``llvm.call`` (+ ``llvm.extractvalue`` per result when several)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: func.CallOp, rewriter: PatternRewriter, /):
        result_types = [convert_type(r.type) for r in op.results]
        ret = result_type_of(result_types)
        new_call = llvm.CallOp(
            op.callee,
            *op.arguments,
            return_type=None if not result_types else ret,
        )
        if len(result_types) <= 1:
            rewriter.replace(op, new_call)
            return
        assert new_call.returned is not None
        extracts = [
            llvm.ExtractValueOp(_position(i), new_call.returned, t)
            for i, t in enumerate(result_types)
        ]
        rewriter.replace(op, [new_call, *extracts], [e.res for e in extracts])


class ConvertFuncToLLVMPass(ModulePass):
    """Lower the ``func`` dialect of the module to ``llvm.func``/``call``/``return``."""

    name = "convert-func-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [ReturnLowering(), CallLowering(), FuncLowering()]
            ),
            apply_recursively=False,
        ).rewrite_module(op)
