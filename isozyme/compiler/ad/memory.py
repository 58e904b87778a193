"""Helpers for derivatives of memory (memref buffers and their shadows)."""

from __future__ import annotations

from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import IndexType, MemRefType
from xdsl.ir import Block, Operation, SSAValue
from xdsl.rewriter import InsertPoint

from isozyme.compiler.analysis.buffers import is_buffer, read_only_buffers, root_buffer
from isozyme.compiler.emitter import Emitter

__all__ = [
    "emit_fill", "emit_shadow_alloc", "emit_zero_like", "is_buffer", "read_only_buffers",
    "root_buffer",
]


def _fills_with_constants(op: Operation, buf: SSAValue) -> bool:
    """Whether ``op``'s only memory effect is storing constants into ``buf``."""
    stores = False
    for inner in op.walk():
        if isinstance(inner, memref.StoreOp):
            if inner.memref is not buf or not isinstance(inner.value.owner, arith.ConstantOp):
                return False
            stores = True
        elif not isinstance(
            inner, (scf.ForOp, scf.YieldOp, arith.ConstantOp, memref.DimOp)
        ) and not (inner.name.startswith("arith.") and not inner.regions):
            return False
    return stores


def initializations(block: Block) -> set[Operation]:
    """Ops that fill a buffer allocated in ``block`` with constants right after its
    ``memref.alloc`` (``np.zeros(n)``), before anything reads it.

    Their reverse would zero the buffer's shadow; but in the reverse sweep nothing reads
    that shadow after them (the allocation comes next, and ends the shadow's life), so
    the reverse sweep skips them.
    """
    skip: set[Operation] = set()
    ops = list(block.ops)
    for k, op in enumerate(ops):
        if not isinstance(op, memref.AllocOp):
            continue
        for nxt in ops[k + 1 :]:
            if isinstance(nxt, (arith.ConstantOp, memref.DimOp)):
                continue
            if not _fills_with_constants(nxt, op.memref):
                break
            skip.add(nxt)
    return skip


def emit_shadow_alloc(e: Emitter, alloc: memref.AllocOp, zero: bool) -> SSAValue:
    """A buffer shaped like ``alloc``'s result (zero-filled when ``zero``)."""
    shadow = e.insert(
        memref.AllocOp(list(alloc.dynamic_sizes), [], alloc.memref.type)
    ).memref
    if zero:
        emit_fill(e, shadow, 0.0)
    return shadow


def emit_zero_like(e: Emitter, buf: SSAValue) -> SSAValue:
    """A new zero-filled buffer with ``buf``'s sizes (identity layout)."""
    t = buf.type
    assert isinstance(t, MemRefType)
    index = IndexType()
    shape = t.get_shape()
    dyn = [
        e.insert(memref.DimOp(buf, e.const(k, index))).result
        for k, size in enumerate(shape) if size < 0
    ]
    out = e.insert(memref.AllocOp(dyn, [], MemRefType(t.element_type, shape))).memref
    emit_fill(e, out, 0.0)
    return out


def emit_fill(e: Emitter, buf: SSAValue, value: float) -> None:
    """Store ``value`` into every element of ``buf`` (a nest of ``scf.for`` loops)."""
    t = buf.type
    assert isinstance(t, MemRefType)
    index = IndexType()
    rank = len(t.get_shape())
    c0, c1 = e.const(0, index), e.const(1, index)
    dims = [
        e.insert(memref.DimOp(buf, e.const(k, index))).result
        for k in range(rank)
    ]

    def nest(em: Emitter, k: int, ivs: list[SSAValue]) -> None:
        if k == rank:
            em.insert(memref.StoreOp.get(em.const(value, t.element_type), buf, ivs))
            return
        body = Block(arg_types=[index])
        be = Emitter(InsertPoint.at_end(body))
        nest(be, k + 1, [*ivs, body.args[0]])
        be.insert(scf.YieldOp())
        em.insert(scf.ForOp(c0, dims[k], c1, [], body))

    nest(e, 0, [])
