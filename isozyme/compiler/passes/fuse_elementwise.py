"""``linalg-fuse-elementwise``: fuse an elementwise producer into its single consumer.

Whole-array numpy code traces to one ``linalg.generic`` per operation, each writing a
fresh temporary buffer: ``np.sum((1.0 - x[:-1])**2 + ...)`` is eight generics and seven
temporaries.  Unfused, the primal streams every temporary through memory, and reverse
mode must cache every value it loads from a temporary (temporaries are written, so
their loads cannot be recomputed).  Fused, the chain is one generic over the inputs,
which the reverse sweep recomputes instead of caching.

A producer ``P`` is fused into a consumer ``C`` when ``P`` is all-parallel with one
output ``t`` written through the identity map, ``t`` is a local ``memref.alloc`` that
nothing but ``P``, ``C`` (once, as an input) and its ``memref.dealloc`` use, ``P`` and
``C`` sit in the same block, every op between them writes only other fresh local
buffers (so ``P``'s inputs still hold the same values when ``C`` runs), and ``C`` does
not write into a buffer ``P`` reads (numpy evaluates ``u[1:-1] = f(u[:-2], u[2:])``
into a temporary first), unless ``P`` reads only the element ``C`` writes and both are
all-parallel (``w = w * 0.99 + 0.01`` carried in w's buffer).  The fused op
reads ``P``'s inputs through ``P``'s maps composed with ``C``'s map for ``t``, and its
body computes ``P``'s body in place of the loaded ``t`` element.

Fusion moves the reads of ``P``'s inputs down to ``C``: a ``memref.dealloc`` of one of
them between ``P`` and ``C`` (an inlined helper frees its temporaries before its
caller consumes the result) moves down to just after the fused op, so that no buffer
is read after it is freed.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import memref
from xdsl.dialects.linalg.ops import GenericOp, YieldOp
from xdsl.dialects.builtin import AffineMapAttr, MemRefType, ModuleOp
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.ir.affine import AffineMap
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.ad_rules import call_of, written_by
from isozyme.compiler.analysis.buffers import root_buffer

_MAX_ROUNDS = 64


def _writes(op: Operation) -> list[SSAValue] | None:
    """Buffers ``op`` may write (None: unknown, e.g. a call or a loop)."""
    if isinstance(op, GenericOp):
        return list(op.outputs)
    if call_of(op) is not None or op.regions:
        return None
    # the rule tables' writers: memref.store, memref.copy, memref.atomic_rmw
    return list(written_by(op))


def _is_fresh(buf: SSAValue) -> bool:
    return isinstance(buf.owner, memref.AllocOp)


def _fusable(p: GenericOp, c: GenericOp, t: SSAValue) -> bool:
    if len(p.outputs) != 1 or p.outputs[0] is not t or not _is_fresh(t):
        return False
    if any(it.data.value != "parallel" for it in p.iterator_types):
        return False
    maps = [m.data for m in p.indexing_maps]
    if maps[-1] != AffineMap.identity(maps[-1].num_dims):
        return False
    if p.body.block.args[-1].uses:  # P reads its output: not elementwise
        return False
    users = {u.operation for u in t.uses}
    if any(u not in (p, c) and not isinstance(u, memref.DeallocOp) for u in users):
        return False
    if list(c.inputs).count(t) != 1 or t in c.outputs or t in p.inputs:
        return False
    # C writing into what P reads (`u[1:-1] = f(u[:-2], u[2:])`) needs the temporary:
    # fused, iteration i would read elements that iteration i-1 already overwrote. Not
    # when P reads the very buffer C writes, at the element C writes in that iteration
    # (`w = w * 0.99 + 0.01` carried in w's buffer: read, then written, in place) and C
    # is all-parallel too: a reduction (`o[i] += t[i] * B[i, j]`) writes o[i] in several
    # iterations, and fused, later ones would read the partial sum instead of the old o[i].
    c_maps = [m.data for m in c.indexing_maps]
    t_map = c_maps[list(c.inputs).index(t)]
    c_parallel = all(it.data.value == "parallel" for it in c.iterator_types)
    for o, o_map in zip(c.outputs, c_maps[len(c.inputs):]):
        for v, v_map in zip(p.inputs, maps):
            if not isinstance(v.type, MemRefType) or root_buffer(v) is not root_buffer(o):
                continue
            if (
                not c_parallel
                or v is not o
                or v_map != AffineMap.identity(v_map.num_dims)
                or t_map != o_map
            ):
                return False
    block = p.parent_block()
    if block is None or block is not c.parent_block():
        return False
    op = p.next_op
    while op is not None and op is not c:
        written = _writes(op)
        if written is None or any(not _is_fresh(w) or w in p.inputs for w in written):
            return False
        op = op.next_op
    return op is c


def _fuse(p: GenericOp, c: GenericOp, idx: int) -> None:
    """Replace consumer ``c`` by the fusion of producer ``p`` into its input ``idx``."""
    t = c.inputs[idx]
    c_maps = [m.data for m in c.indexing_maps]
    p_maps = [m.data for m in p.indexing_maps]
    n_c_in = len(c.inputs)
    inputs = [*c.inputs[:idx], *p.inputs, *c.inputs[idx + 1 :]]
    maps = [
        *c_maps[:idx],
        *(pm.compose(c_maps[idx]) for pm in p_maps[: len(p.inputs)]),
        *c_maps[idx + 1 : n_c_in],  # C's output maps come after, once
    ]
    c_args, p_args = c.body.block.args, p.body.block.args
    block = Block(
        arg_types=[
            *(a.type for a in c_args[:idx]),
            *(a.type for a in p_args[: len(p.inputs)]),
            *(a.type for a in c_args[idx + 1 :]),
        ]
    )
    vmap: dict[SSAValue, SSAValue] = {}
    k = 0
    for a in c_args[:idx]:
        vmap[a] = block.args[k]
        k += 1
    for a in p_args[: len(p.inputs)]:
        vmap[a] = block.args[k]
        k += 1
    for a in c_args[idx + 1 :]:
        vmap[a] = block.args[k]
        k += 1
    for op in p.body.block.ops:
        if isinstance(op, YieldOp):
            vmap[c_args[idx]] = vmap.get(op.operands[0], op.operands[0])
            break
        block.add_op(op.clone(value_mapper=vmap))
    for op in c.body.block.ops:
        block.add_op(op.clone(value_mapper=vmap))
    fused = GenericOp(
        inputs,
        list(c.outputs),
        Region(block),
        [AffineMapAttr(m) for m in [*maps, *c_maps[n_c_in:]]],
        list(c.iterator_types),
    )
    # P's inputs are now read at C: frees of them between P and C move after C.
    p_roots = {root_buffer(v) for v in p.inputs if isinstance(v.type, MemRefType)}
    early_frees: list[memref.DeallocOp] = []
    op = p.next_op
    while op is not None and op is not c:
        if isinstance(op, memref.DeallocOp) and root_buffer(op.memref) in p_roots:
            early_frees.append(op)
        op = op.next_op
    Rewriter.replace_op(c, fused)
    for free in reversed(early_frees):
        free.detach()
        Rewriter.insert_op(free, InsertPoint.after(fused))
    alloc = t.owner
    for use in list(t.uses):
        if isinstance(use.operation, memref.DeallocOp):
            Rewriter.erase_op(use.operation)
    Rewriter.erase_op(p)
    assert isinstance(alloc, Operation)
    Rewriter.erase_op(alloc)


@dataclass(frozen=True)
class FuseElementwisePass(ModulePass):
    """Fuse elementwise ``linalg.generic`` producers into their single consumers."""

    name = "linalg-fuse-elementwise"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for _ in range(_MAX_ROUNDS):
            if not self._fuse_one(op):
                return

    @staticmethod
    def _fuse_one(module: ModuleOp) -> bool:
        for c in module.walk():
            if not isinstance(c, GenericOp):
                continue
            for idx, t in enumerate(c.inputs):
                if not isinstance(t.type, MemRefType):
                    continue
                producers = [
                    u.operation for u in t.uses
                    if isinstance(u.operation, GenericOp)
                    and u.operation is not c
                    and t in u.operation.outputs
                ]
                if len(producers) == 1 and _fusable(producers[0], c, t):
                    _fuse(producers[0], c, idx)
                    return True
        return False
