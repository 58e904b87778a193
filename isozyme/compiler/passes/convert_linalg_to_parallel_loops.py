"""``convert-linalg-to-parallel-loops``: linalg ops on memrefs become ``scf.parallel``
over their parallel dimensions, with ``scf.for`` loops inside for the others.

Upstream MLIR's pass of the same name, in its simplest correct form, for the ops xDSL's
``convert-linalg-to-loops`` lowers (every ``LinalgStructuredOperation`` on memrefs:
``linalg.generic``, which is all isozyme's frontend emits, ``fill`` included, and the
named ops, whose bodies xDSL spells out)::

    linalg.generic {indexing_maps = [(d0, d1) -> (d0, d1), (d0, d1) -> (d0)],
                    iterator_types = ["parallel", "reduction"]}
        ins(%a : memref<?x?xf64>) outs(%s : memref<?xf64>) {...}

becomes ::

    scf.parallel (%i) = (%c0) to (%n) step (%c1) {
      scf.for %j = %c0 to %m step %c1 {
        %x = memref.load %a[%i, %j]   %acc = memref.load %s[%i]
        ... body ...                  memref.store %r, %s[%i]
      }
      scf.reduce
    }

All parallel dimensions go to one ``scf.parallel``, outermost, in their order; the
others (reductions, and a "parallel" dimension that some output does not index
directly, which could make two iterations write one element) become ``scf.for`` loops
inside it, in their order. Moving parallel dimensions outwards is legal: every output
element still sees its reduction iterations in the original order, and distinct
parallel iterations write distinct elements. Loads happen in the innermost loop for the
block arguments the body uses (outputs included), stores after the body, as in
``convert-linalg-to-loops``; ``linalg.index`` becomes the induction variable of its
dimension. Without parallel dimensions the result is ``convert-linalg-to-loops``'s
``scf.for`` nest; without loops (rank 0), the body inlined.

**Full sums** are the exception to "no parallel dimension, no ``scf.parallel``": a
generic whose single output has no dimension (rank 0, or an indexing map of constants:
``np.sum(x * x)``, ``np.dot(x, y)``, ``np.sum(A)``, the sum of ``np.mean``), that is
not also an input, and whose body yields ``arith.addf(out, e)`` or ``addf(e, out)``
(``addi`` for integers) with the output's block argument used nowhere else, becomes
one ``scf.parallel`` over all its dimensions carrying the sum as a reduction::

    %init = memref.load %s[]
    %r = scf.parallel (%i, %j) = (%c0, %c0) to (%n, %m) step (%c1, %c1) init (%init) {
      %x = memref.load %a[%i, %j]
      ... body computing %e ...
      scf.reduce(%e) { ^bb0(%acc, %v): %t = arith.addf %acc, %v; scf.reduce.return %t }
    }
    memref.store %r, %s[]

It stays parallel through AD (the ``scf.parallel`` rules differentiate an ``addf``
reduction) and is one kernel on GPU targets instead of a host loop over a rank-0
buffer. The reduce region keeps the body's operand order (the accumulator where the
output was), so ``convert-parallel-to-for`` adds in exactly the sequential loop's order
on the CPU. Other combiners (``mulf``, ``maximumf``...) keep the ``scf.for`` nest, and
so do partial reductions (their parallel output dimensions are the ``scf.parallel``).

The ``optimized`` stage runs it before AD (:mod:`isozyme.compiler.pipeline`).
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.context import Context
from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import IndexType, IntegerAttr, MemRefType, ModuleOp
from xdsl.dialects.linalg.abstract_ops import LinalgStructuredOperation as LinalgOp
from xdsl.dialects.linalg.attrs import IteratorType
from xdsl.dialects.linalg.ops import IndexOp, YieldOp
from xdsl.ir import Block, Region, SSAValue
from xdsl.ir.affine import AffineConstantExpr, AffineDimExpr
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint
from xdsl.transforms.convert_linalg_to_loops import create_loop_bounds
from xdsl.transforms.loop_nest_lowering_utils import indices_for_map
from xdsl.utils.exceptions import PassFailedException


def parallel_dims(op: LinalgOp) -> list[int]:
    """The dimensions of ``op`` that may run in parallel: iterator type ``parallel`` and
    a plain dimension of every output's indexing map."""
    maps = [m.data for m in op.get_indexing_maps().data[len(op.inputs):]]
    out: list[int] = []
    for d, it in enumerate(op.get_iterator_types().data):
        if it.data != IteratorType.PARALLEL:
            continue
        if all(any(isinstance(e, AffineDimExpr) and e.position == d for e in m.results)
               for m in maps):
            out.append(d)
    return out


def full_sum_combiner(op: LinalgOp) -> arith.AddfOp | arith.AddiOp | None:
    """The ``arith.addf``/``addi`` that combines ``op``'s single output when ``op`` is a
    full sum reduction (see the module docstring), else None.

    Conditions: at least one loop, one output whose indexing map has only constant
    results (every iteration updates one element), not also an input, and a body
    yielding ``add(out, e)`` or ``add(e, out)`` where the output block argument has no
    other use (so ``e`` does not depend on it) and the sum is used only by the yield.
    """
    if len(op.outputs) != 1 or not op.get_iterator_types().data:
        return None
    out_map = op.get_indexing_maps().data[-1].data
    if not all(isinstance(r, AffineConstantExpr) for r in out_map.results):
        return None
    if any(v is op.outputs[0] for v in op.inputs):
        return None
    block = op.body.block
    out_arg = block.args[-1]
    terminator = block.last_op
    if not isinstance(terminator, YieldOp) or len(terminator.operands) != 1:
        return None
    combiner = terminator.operands[0].owner
    if not isinstance(combiner, (arith.AddfOp, arith.AddiOp)):
        return None
    if combiner.parent_block() is not block or not combiner.result.has_one_use():
        return None
    if not out_arg.has_one_use() or [combiner.lhs, combiner.rhs].count(out_arg) != 1:
        return None
    return combiner


class LowerToParallelLoops(RewritePattern):
    """One linalg structured op on memrefs -> ``scf.parallel`` + ``scf.for`` nest."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: LinalgOp, rewriter: PatternRewriter) -> None:
        """Replace ``op`` (see the module docstring)."""
        if op.res:
            raise PassFailedException(
                f"convert-linalg-to-parallel-loops: {op.name} with tensor results; "
                "bufferize first"
            )
        at = InsertPoint.before(op)
        bounds = list(create_loop_bounds(rewriter, at, op))
        n = len(bounds)
        maps = [m.data for m in op.get_indexing_maps().data]
        par = parallel_dims(op)
        seq = [d for d in range(n) if d not in par]
        ivs: dict[int, SSAValue] = {}
        if n:
            zero = arith.ConstantOp(IntegerAttr(0, IndexType()))
            one = arith.ConstantOp(IntegerAttr(1, IndexType()))
            rewriter.insert(zero, at)
            rewriter.insert(one, at)
        combiner = None if par else full_sum_combiner(op)
        if combiner is not None:
            self._lower_full_sum(op, combiner, rewriter, at, maps, bounds, zero, one)
            return
        if par:
            block = Block(arg_types=[IndexType()] * len(par))
            reduce_op = scf.ReduceOp()
            block.add_op(reduce_op)
            loop = scf.ParallelOp([zero] * len(par), [bounds[d] for d in par],
                                  [one] * len(par), Region(block))
            rewriter.insert(loop, at)
            ivs.update(zip(par, block.args))
            at = InsertPoint.before(reduce_op)
        for d in seq:
            body = Block(arg_types=[IndexType()])
            yield_op = scf.YieldOp()
            body.add_op(yield_op)
            rewriter.insert(scf.ForOp(zero, bounds[d], one, [], Region(body)), at)
            ivs[d] = body.args[0]
            at = InsertPoint.before(yield_op)
        ind_vars = [ivs[d] for d in range(n)]
        yielded = self._inline_body(op, rewriter, at, maps, ind_vars)
        n_in = len(op.inputs)
        for k, (value, dest) in enumerate(zip(yielded, op.outputs)):
            indices = indices_for_map(rewriter, at, maps[n_in + k], ind_vars)
            rewriter.insert(memref.StoreOp.get(value, dest, indices), at)
        rewriter.erase(op)

    def _lower_full_sum(self, op: LinalgOp, combiner: arith.AddfOp | arith.AddiOp,
                        rewriter: PatternRewriter, at: InsertPoint, maps: Sequence,
                        bounds: Sequence[SSAValue], zero: arith.ConstantOp,
                        one: arith.ConstantOp) -> None:
        """``op`` (a full sum, see :func:`full_sum_combiner`) -> load of the output,
        one ``scf.parallel`` over every dimension reducing the body's contribution by
        ``combiner``'s op, store of the result."""
        n = len(bounds)
        dest = op.outputs[0]
        out_indices = indices_for_map(rewriter, at, maps[-1], [])
        init = memref.LoadOp.get(dest, out_indices)
        rewriter.insert(init, at)
        # The reduce region: ``combiner`` with the accumulator where the body had the
        # output (scf.reduce's first argument is the accumulator), so the CPU's loop
        # adds in the same order as before.
        block = op.body.block
        out_arg = block.args[-1]
        acc_first = combiner.lhs is out_arg
        contribution = combiner.rhs if acc_first else combiner.lhs
        t = combiner.result.type
        reduce_block = Block(arg_types=[t, t])
        acc, value = reduce_block.args
        combine = combiner.clone()
        combine.operands = (acc, value) if acc_first else (value, acc)
        reduce_block.add_op(combine)
        reduce_block.add_op(scf.ReduceReturnOp(combine.result))
        # The body yields its contribution instead of the updated output.
        terminator = block.last_op
        assert terminator is not None
        rewriter.erase(terminator)
        rewriter.erase(combiner)
        block.add_op(YieldOp(contribution))
        body = Block(arg_types=[IndexType()] * n)
        yielded = self._inline_body(op, rewriter, InsertPoint.at_end(body), maps,
                                    list(body.args))
        body.add_op(scf.ReduceOp(yielded, [Region(reduce_block)]))
        loop = scf.ParallelOp([zero] * n, list(bounds), [one] * n, Region(body), [init])
        rewriter.insert(loop, at)
        rewriter.insert(memref.StoreOp.get(loop.res[0], dest, out_indices), at)
        rewriter.erase(op)

    @staticmethod
    def _inline_body(op: LinalgOp, rewriter: PatternRewriter, at: InsertPoint,
                     maps: Sequence, ind_vars: Sequence[SSAValue]) -> list[SSAValue]:
        """Loads of the used block arguments and the body, at ``at``; returns the
        values the body yields (block arguments among them replaced by their loads)."""
        block = op.body.block
        for k, (arg, value) in enumerate(zip(block.args, op.operands)):
            if not arg.uses:
                continue
            if isinstance(value.type, MemRefType):
                indices = indices_for_map(rewriter, at, maps[k], ind_vars)
                load = memref.LoadOp.get(value, indices)
                rewriter.insert(load, at)
                value = load.res
            arg.replace_all_uses_with(value)
        terminator = block.last_op
        assert isinstance(terminator, YieldOp)
        yielded = list(terminator.operands)
        rewriter.erase(terminator)
        for index_op in [o for o in block.ops if isinstance(o, IndexOp)]:
            rewriter.replace(index_op, [], [ind_vars[index_op.dim.value.data]])
        while block.args:
            rewriter.erase_block_argument(block.args[0])
        rewriter.inline_block(block, at)
        return yielded


class ConvertLinalgToParallelLoopsPass(ModulePass):
    """Lower linalg structured ops on memrefs to ``scf.parallel`` over their parallel
    dimensions with ``scf.for`` loops for the others (upstream MLIR's
    ``convert-linalg-to-parallel-loops``)."""

    name = "convert-linalg-to-parallel-loops"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        """Rewrite every linalg structured op of ``op`` in place."""
        PatternRewriteWalker(LowerToParallelLoops(), apply_recursively=False).rewrite_module(op)
