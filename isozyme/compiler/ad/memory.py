"""Helpers for derivatives of memory (memref buffers and their shadows)."""

from __future__ import annotations

from xdsl.dialects import memref, scf
from xdsl.dialects.builtin import IndexType, MemRefType
from xdsl.ir import Block, SSAValue
from xdsl.rewriter import InsertPoint

from isozyme.compiler.analysis.buffers import is_buffer, read_only_buffers, root_buffer
from isozyme.compiler.emitter import Emitter

__all__ = [
    "emit_fill", "emit_shadow_alloc", "emit_zero_like", "is_buffer", "read_only_buffers",
    "root_buffer",
]


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
