"""``expand-memref-copy``: rewrite ``memref.copy`` into ``scf.for`` loops (or, with
``parallel``, one ``scf.parallel``).

``memref.copy %src, %dst`` (same shape and element type, any strided layouts) becomes
a loop nest over the source's sizes (``memref.dim``, or constants for static sizes)
that loads each element from ``%src`` and stores it to ``%dst``; a rank-0 copy is one
``memref.load`` and one ``memref.store``. The loops are lowered by the passes that
follow (``convert-scf-to-cf``, ``convert-memref-to-llvm``), so every layout the
load/store lowering handles works for both sides. Overlapping source and destination
give unspecified results (as in MLIR).

The pass runs first in :data:`isozyme.compiler.lowering.LOWERING_PASSES`. The GPU
targets also run it with ``parallel=True`` before ``gpu-outline-parallel-loops``: each
copy becomes one ``scf.parallel`` over all of its dimensions, so it is outlined into a
kernel instead of a host loop that would copy device memory one element at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith, builtin, memref, scf
from xdsl.dialects.builtin import DYNAMIC_INDEX, IndexType, IntegerAttr, MemRefType
from xdsl.ir import Block, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.lowering._common import LoweringError


def _index_const(b: Builder, value: int) -> SSAValue:
    return b.insert(arith.ConstantOp(IntegerAttr(value, IndexType()))).result


def _expand(op: memref.CopyOp, parallel: bool) -> None:
    src_t, dst_t = op.source.type, op.destination.type
    if not isinstance(src_t, MemRefType) or not isinstance(dst_t, MemRefType):
        raise LoweringError("isozyme lowering: memref.copy of unranked memrefs")
    if src_t.get_num_dims() != dst_t.get_num_dims():
        raise LoweringError(
            f"isozyme lowering: memref.copy from {src_t} to {dst_t}: ranks differ"
        )
    b = Builder(InsertPoint.before(op))
    rank = src_t.get_num_dims()
    c0 = _index_const(b, 0) if rank else None
    c1 = _index_const(b, 1) if rank else None
    bounds: list[SSAValue] = []
    for k, (ss, ds) in enumerate(zip(src_t.get_shape(), dst_t.get_shape())):
        static = ss if ss != DYNAMIC_INDEX else ds
        if static != DYNAMIC_INDEX:
            bounds.append(_index_const(b, static))
        else:
            dim = _index_const(b, k)
            bounds.append(b.insert(memref.DimOp(op.source, dim)).result)
    indices: list[SSAValue] = []
    if parallel and rank:
        assert c0 is not None and c1 is not None
        body = Block(arg_types=[IndexType()] * rank)
        b.insert(scf.ParallelOp([c0] * rank, bounds, [c1] * rank, Region([body])))
        indices = list(body.args)
        reduce = Builder(InsertPoint.at_end(body)).insert(scf.ReduceOp())
        b = Builder(InsertPoint.before(reduce))
    for k in range(0 if parallel else rank):
        body = Block(arg_types=[IndexType()])
        assert c0 is not None and c1 is not None
        b.insert(scf.ForOp(c0, bounds[k], c1, [], Region([body])))
        indices.append(body.args[0])
        b = Builder(InsertPoint.at_end(body))
        # Each body ends with scf.yield; later ops go before it.
        yield_op = b.insert(scf.YieldOp())
        b = Builder(InsertPoint.before(yield_op))
    value = b.insert(memref.LoadOp.get(op.source, indices)).res
    b.insert(memref.StoreOp.get(value, op.destination, indices))
    Rewriter.erase_op(op)


@dataclass(frozen=True)
class ExpandMemrefCopyPass(ModulePass):
    """Replace every ``memref.copy`` with an elementwise ``scf.for`` loop nest, or with
    one ``scf.parallel`` over all dimensions when ``parallel`` (the GPU targets, before
    outlining)."""

    name = "expand-memref-copy"

    parallel: bool = field(default=False, metadata={
        "help": "one scf.parallel over all dimensions instead of an scf.for nest"})

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        for copy in [o for o in op.walk() if isinstance(o, memref.CopyOp)]:
            _expand(copy, self.parallel)
