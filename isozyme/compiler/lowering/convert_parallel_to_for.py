"""``convert-parallel-to-for``: run parallel loops sequentially, as the CPU target does.

Two rewrites, both exact for one thread of execution:

* every ``scf.parallel`` becomes a nest of ``scf.for`` loops, one per induction
  variable, the first induction variable outermost (MLIR's ``ParallelLowering`` in
  ``SCFToControlFlow`` does the same before branching). Reductions (``initVals`` and
  the ``scf.reduce`` terminator, one region per reduction) become ``iter_args`` of every
  loop of the nest: the innermost body combines each iteration's ``scf.reduce`` operand
  into its accumulator with the reduce region's body, inlined, whose block arguments
  are ``(accumulator, operand)`` in that order, as in MLIR::

      %r = scf.parallel (%i, %j) = (%a, %b) to (%c, %d) step (%e, %f) init (%z) {
        ...
        scf.reduce(%v : f64) { ^bb0(%l: f64, %x: f64): %s = arith.addf %l, %x
                                                       scf.reduce.return %s : f64 }
      }

  becomes ::

      %r = scf.for %i = %a to %c step %e iter_args(%acc0 = %z) -> (f64) {
        %in = scf.for %j = %b to %d step %f iter_args(%acc1 = %acc0) -> (f64) {
          ...
          %s = arith.addf %acc1, %v : f64
          scf.yield %s : f64
        }
        scf.yield %in : f64
      }

  A parallel loop without induction variables runs its body once.

* every ``memref.atomic_rmw`` becomes ``memref.load`` + the combining op +
  ``memref.store`` and yields the loaded (old) value, as the atomic does.
  ``kind`` is an ``i64`` property in xDSL with no names attached; its numbering is
  upstream MLIR's current ``arith::AtomicRMWKind`` (:data:`ATOMIC_RMW_KIND`), which
  every producer of ``memref.atomic_rmw`` in isozyme must use (``addf`` is 0).

The CPU target runs this pass before ``convert-scf-to-cf``; a GPU target outlines the
parallel loops instead and never sees it.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.context import Context
from xdsl.dialects import arith, builtin, memref, scf
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.lowering._common import LoweringError
from isozyme.dialects.memref_ext import ATOMIC_RMW_KIND, atomic_rmw  # noqa: F401 (re-exported)


#: ``kind`` value -> the op combining ``(old, value)``; ``assign`` has none.
_COMBINE: dict[int, Callable[[SSAValue, SSAValue], Operation]] = {
    ATOMIC_RMW_KIND["addf"]: arith.AddfOp,
    ATOMIC_RMW_KIND["addi"]: arith.AddiOp,
    ATOMIC_RMW_KIND["andi"]: arith.AndIOp,
    ATOMIC_RMW_KIND["maximumf"]: arith.MaximumfOp,
    ATOMIC_RMW_KIND["maxnumf"]: arith.MaxnumfOp,
    ATOMIC_RMW_KIND["maxs"]: arith.MaxSIOp,
    ATOMIC_RMW_KIND["maxu"]: arith.MaxUIOp,
    ATOMIC_RMW_KIND["minimumf"]: arith.MinimumfOp,
    ATOMIC_RMW_KIND["minnumf"]: arith.MinnumfOp,
    ATOMIC_RMW_KIND["mins"]: arith.MinSIOp,
    ATOMIC_RMW_KIND["minu"]: arith.MinUIOp,
    ATOMIC_RMW_KIND["mulf"]: arith.MulfOp,
    ATOMIC_RMW_KIND["muli"]: arith.MuliOp,
    ATOMIC_RMW_KIND["ori"]: arith.OrIOp,
    ATOMIC_RMW_KIND["xori"]: arith.XOrIOp,
}


def _lower_parallel(op: scf.ParallelOp) -> None:
    """Replace ``op`` by its ``scf.for`` nest (see the module docstring)."""
    body = op.body.block
    reduce_op = body.last_op
    assert isinstance(reduce_op, scf.ReduceOp)
    n_ivs = len(op.lowerBound)
    carried: list[SSAValue] = list(op.initVals)
    types = [v.type for v in carried]
    ivs: list[SSAValue] = []
    outer_for: scf.ForOp | None = None
    insert_at = InsertPoint.before(op)
    for k in range(n_ivs):
        block = Block(arg_types=[builtin.IndexType(), *types])
        loop = scf.ForOp(op.lowerBound[k], op.upperBound[k], op.step[k], carried, block)
        Rewriter.insert_op(loop, insert_at)
        if outer_for is None:
            outer_for = loop
        else:
            # The enclosing loop passes its inner loop's accumulators on.
            Rewriter.insert_op(scf.YieldOp(*loop.results), InsertPoint.after(loop))
        ivs.append(block.args[0])
        carried = list(block.args[1:])
        # A terminator-less block for now: the next loop or the body goes at its end.
        insert_at = InsertPoint.at_end(block)
    # Without induction variables the body runs once, in place of ``op``.
    Rewriter.inline_block(body, insert_at, ivs)
    # The inlined reduce op sits at the end: combine, then yield (inside a loop).
    combined: list[SSAValue] = []
    for acc, operand, region in zip(carried, reduce_op.args, reduce_op.reductions, strict=True):
        rblock = region.block
        ret = rblock.last_op
        assert isinstance(ret, scf.ReduceReturnOp)
        Rewriter.inline_block(rblock, InsertPoint.before(reduce_op), [acc, operand])
        combined.append(ret.result)
        Rewriter.erase_op(ret)
    if n_ivs:
        Rewriter.replace_op(reduce_op, scf.YieldOp(*combined))
        assert outer_for is not None
        Rewriter.replace_op(op, [], list(outer_for.results))
    else:
        Rewriter.erase_op(reduce_op)
        Rewriter.replace_op(op, [], combined)


def _lower_atomic_rmw(op: memref.AtomicRMWOp) -> None:
    """Replace ``op`` by load, combine, store; its result is the loaded value."""
    kind = op.kind.value.data
    indices = list(op.indices)
    load = memref.LoadOp.get(op.memref, indices)
    ops: list[Operation] = [load]
    if kind == ATOMIC_RMW_KIND["assign"]:
        new_value: SSAValue = op.value
    elif kind in _COMBINE:
        combine = _COMBINE[kind](load.res, op.value)
        ops.append(combine)
        new_value = combine.results[0]
    else:
        raise LoweringError(f"isozyme lowering: memref.atomic_rmw of unknown kind {kind}")
    ops.append(memref.StoreOp.get(new_value, op.memref, indices))
    Rewriter.replace_op(op, ops, [load.res])


class ConvertParallelToForPass(ModulePass):
    """Sequentialise ``scf.parallel`` into ``scf.for`` nests and ``memref.atomic_rmw``
    into load/op/store, for targets that run one thread (the CPU)."""

    name = "convert-parallel-to-for"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite every ``scf.parallel`` and ``memref.atomic_rmw`` of ``op`` in place."""
        # Innermost first (reverse pre-order), so each body is already sequential.
        for par in reversed([o for o in op.walk() if isinstance(o, scf.ParallelOp)]):
            _lower_parallel(par)
        for rmw in [o for o in op.walk() if isinstance(o, memref.AtomicRMWOp)]:
            _lower_atomic_rmw(rmw)
