"""The ``memref`` dialect's (and ``memref_ext``'s) table: how each buffer op takes part in
AD, beside the scalar rules of ``arith.py``/``math.py`` (Enzyme-MLIR's
MemRefDerivatives.td).

* ``MEMREF_VIEWS``: ops whose result is a view of a source buffer's memory (no copy),
  with the operand that is the source.  Forward and reverse mode take the same view of
  the source's shadow; the activity analysis links a view and its source both ways; the
  buffer analyses see through them.
* ``MEMREF_WRITES``: ops that write buffers, with the buffers they write (the activity
  and read-only analyses, the runtime's writeable check).
* ``MEMREF_COLLAPSES``: views that merge dimensions of their source, which the source's
  layout must allow (a reshaped argument's shadow needs the same strides).
* ``MEMREF_ALLOCS``: ops that allocate a new buffer, with that buffer.
* the registered rules (Enzyme's shadow memory): forward mode loads a value's tangent
  from, and stores it into, the shadow buffer at the same index; reverse mode's load
  adds its adjoint into the shadow, a store takes the overwritten value's adjoint from
  the shadow and zeroes it.  Active local buffers get shadows (zeroed in reverse mode,
  per reverse iteration when allocated in a loop), views of shadowed buffers are taken
  again of the shadows.  A ``memref.alloca`` gets a shadow ``memref.alloca``; a
  ``memref.alloca_scope`` is differentiated structurally (a region run once).
* in the reverse of a parallel loop (``scf.parallel``), iterations run concurrently:
  a load's adjoint is added into the shadow with ``memref.atomic_rmw addf`` unless the
  element is provably private to the iteration (:func:`private_element`), then with a
  plain load/add/store.  ``memref.atomic_rmw addf`` (``x[k] += v`` in a parallel loop)
  is differentiated as an accumulation: the tangent is accumulated the same way, the
  adjoint of ``v`` is the shadow's element.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from xdsl.dialects import memref, scf
from xdsl.dialects.builtin import IndexType, MemRefType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint

from isozyme.compiler.ad_rules.registry import (
    Edge,
    InactiveRule,
    MemoryRule,
    RegionRule,
    register,
)
from isozyme.compiler.analysis.injectivity import defined_inside, followed_iv
from isozyme.compiler.emitter import Emitter
from isozyme.dialects.memref_ext import ATOMIC_RMW_KIND, TransposeOp, atomic_rmw
from isozyme.errors import UnsupportedError

MEMREF_VIEWS: dict[type[Operation], Callable[[Operation], SSAValue]] = {
    memref.SubviewOp: lambda op: op.source,  # type: ignore[attr-defined]
    memref.CastOp: lambda op: op.source,  # type: ignore[attr-defined]
    memref.ExpandShapeOp: lambda op: op.src,  # type: ignore[attr-defined]
    memref.CollapseShapeOp: lambda op: op.src,  # type: ignore[attr-defined]
    TransposeOp: lambda op: op.source,  # type: ignore[attr-defined]
}

MEMREF_WRITES: dict[type[Operation], Callable[[Operation], Sequence[SSAValue]]] = {
    memref.StoreOp: lambda op: [op.memref],  # type: ignore[attr-defined]
    memref.CopyOp: lambda op: [op.destination],  # type: ignore[attr-defined]
    memref.AtomicRMWOp: lambda op: [op.memref],  # type: ignore[attr-defined]
}

MEMREF_COLLAPSES: dict[type[Operation], Callable[[Operation], SSAValue]] = {
    memref.CollapseShapeOp: lambda op: op.src,  # type: ignore[attr-defined]
}

MEMREF_ALLOCS: dict[type[Operation], Callable[[Operation], SSAValue]] = {
    memref.AllocOp: lambda op: op.memref,  # type: ignore[attr-defined]
}


# shadow buffers ------------------------------------------------------------------------
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
    """Store ``value`` into every element of ``buf``: one ``scf.parallel`` over all of
    its dimensions (a rank-0 buffer: one store).  Parallel so that a GPU target runs
    the fill as a kernel (a host loop would write device memory one element at a
    time); the CPU target turns it back into an ``scf.for`` nest."""
    t = buf.type
    assert isinstance(t, MemRefType)
    index = IndexType()
    rank = len(t.get_shape())
    if rank == 0:
        e.insert(memref.StoreOp.get(e.const(value, t.element_type), buf, []))
        return
    c0, c1 = e.const(0, index), e.const(1, index)
    dims = [
        e.insert(memref.DimOp(buf, e.const(k, index))).result
        for k in range(rank)
    ]
    body = Block(arg_types=[index] * rank)
    be = Emitter(InsertPoint.at_end(body))
    be.insert(memref.StoreOp.get(be.const(value, t.element_type), buf, list(body.args)))
    be.insert(scf.ReduceOp())
    e.insert(scf.ParallelOp([c0] * rank, dims, [c1] * rank, Region([body])))


def emit_add_into(e: Emitter, dst: SSAValue, src: SSAValue) -> None:
    """``dst += src`` elementwise over buffers of the same sizes: one ``scf.parallel``
    over all dimensions (a kernel on a GPU target, like :func:`emit_fill`).  The
    reverse sweep seeds the shadow of a returned buffer with it; ``src`` is only read."""
    t = dst.type
    assert isinstance(t, MemRefType)
    index = IndexType()
    rank = len(t.get_shape())
    if rank == 0:
        old = e.insert(memref.LoadOp.get(dst, [])).res
        add = e.add(old, e.insert(memref.LoadOp.get(src, [])).res, reassoc=True)
        e.insert(memref.StoreOp.get(add, dst, []))
        return
    c0, c1 = e.const(0, index), e.const(1, index)
    dims = [e.insert(memref.DimOp(dst, e.const(k, index))).result for k in range(rank)]
    body = Block(arg_types=[index] * rank)
    be = Emitter(InsertPoint.at_end(body))
    idx = list(body.args)
    old = be.insert(memref.LoadOp.get(dst, idx)).res
    add = be.add(old, be.insert(memref.LoadOp.get(src, idx)).res, reassoc=True)
    be.insert(memref.StoreOp.get(add, dst, idx))
    be.insert(scf.ReduceOp())
    e.insert(scf.ParallelOp([c0] * rank, dims, [c1] * rank, Region([body])))


def _indices(op: Operation, get: Callable[[SSAValue], SSAValue]):
    return [get(i) for i in op.indices]  # type: ignore[attr-defined]


# parallel loops ------------------------------------------------------------------------
def private_element(op: Operation, loop: Operation) -> bool:
    """Whether the element ``op`` (a load, store or atomic of a buffer) accesses is
    private to one iteration of parallel ``loop``: the buffer is allocated in the body,
    or every access of that buffer in the body is this same element, whose indices
    follow every induction variable of ``loop`` (distinct iterations, distinct
    elements).  Then shadow accumulations into it need no atomics."""
    from isozyme.compiler.analysis.buffers import root_buffer

    root = root_buffer(op.memref)  # type: ignore[attr-defined]
    if defined_inside(loop, root):
        return True
    for inner in loop.walk():
        if inner is op or isinstance(inner, memref.DimOp):
            continue
        if not any(
            isinstance(o.type, MemRefType) and root_buffer(o) is root for o in inner.operands
        ):
            continue
        if not isinstance(inner, (memref.LoadOp, memref.StoreOp, memref.AtomicRMWOp)):
            return False  # a view, a copy, a call: not analysed
        same = inner.memref is op.memref  # type: ignore[attr-defined]
        if not same or list(inner.indices) != list(op.indices):  # type: ignore[attr-defined]
            return False
    ivs = list(loop.regions[0].block.args)
    followed = {followed_iv(i, loop, ivs) for i in op.indices}  # type: ignore[attr-defined]
    return all(iv in followed for iv in ivs)


def accumulate_into_shadow(
    rev: Any, ctx: Any, op: Operation, shadow: SSAValue, idx: list[SSAValue], adj: SSAValue
) -> None:
    """``shadow[idx] += adj`` for primal access ``op``: atomic inside the reverse of a
    parallel loop unless the element is private to the iteration."""
    e = ctx.e
    if any(not private_element(op, loop) for loop in ctx.parallels):
        e.insert(atomic_rmw("addf", adj, shadow, idx))
        return
    old = e.insert(memref.LoadOp.get(shadow, idx)).res
    e.insert(memref.StoreOp.get(e.add(old, adj, reassoc=True), shadow, idx))


# rules -----------------------------------------------------------------------------------
class LoadRule(MemoryRule):
    """``memref.load``: the tangent is loaded from the shadow; the adjoint is added into
    the shadow.  Recomputed (not cached) when the memory it reads is final."""

    recompute = "load"

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        yield op.memref, op.res  # type: ignore[attr-defined]

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, memref.LoadOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        if op.memref in fwd.tan and fwd.info.is_active(op.res):
            idx = _indices(op, lambda i: fwd.vmap.get(i, i))
            fwd.tan[op.res] = tuple(
                e.insert(memref.LoadOp.get(sh, idx)).res for sh in fwd.tan[op.memref]
            )

    def reverse(self, rev: Any, ctx: Any, op: Operation) -> None:
        assert isinstance(op, memref.LoadOp)
        sh = rev.shadow.get(op.memref)
        if sh is None:
            return
        adj = ctx.adj.get(op.res)
        if adj is None or not rev.info.is_active(op.res):
            return
        idx = _indices(op, lambda i: rev.primal(i, ctx))
        for sh_lane, adj_lane in zip(sh, adj):
            accumulate_into_shadow(rev, ctx, op, sh_lane, idx, adj_lane)


class StoreRule(MemoryRule):
    """``memref.store``: the tangent is stored into the shadow; in reverse, the stored
    value's adjoint is taken from the shadow, which is zeroed (the old value is gone)."""

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        yield op.value, op.memref  # type: ignore[attr-defined]

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, memref.StoreOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        if op.memref in fwd.tan:
            ts = fwd.tangent_or_zero(e, op.value)
            idx = _indices(op, lambda i: fwd.vmap.get(i, i))
            for t, sh in zip(ts, fwd.tan[op.memref], strict=True):
                e.insert(memref.StoreOp.get(t, sh, idx))

    def reverse(self, rev: Any, ctx: Any, op: Operation) -> None:
        assert isinstance(op, memref.StoreOp)
        sh = rev.shadow.get(op.memref)
        if sh is None:
            return
        e = ctx.e
        idx = _indices(op, lambda i: rev.primal(i, ctx))
        olds = []
        for sh_lane in sh:
            old = e.insert(memref.LoadOp.get(sh_lane, idx)).res
            e.insert(memref.StoreOp.get(e.zero(old.type), sh_lane, idx))
            olds.append(old)
        rev.accumulate(ctx, op.value, olds)


class AtomicAddRule(MemoryRule):
    """``memref.atomic_rmw addf`` (``x[k] += v``): the tangent of ``v`` is accumulated
    into the shadow the same way; in reverse, ``v``'s adjoint is the shadow element
    (which keeps its value: the old element flows on with derivative 1), and the
    adjoint of the returned old value, if any, is added into the shadow."""

    def _check(self, op: Operation) -> None:
        kind = op.kind.value.data  # type: ignore[attr-defined]
        if kind != ATOMIC_RMW_KIND["addf"]:
            raise UnsupportedError(
                f"isozyme cannot differentiate memref.atomic_rmw of kind {kind}: only "
                "addf (x[k] += v) is supported"
            )

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        yield op.value, op.memref  # type: ignore[attr-defined]
        yield op.memref, op.result  # type: ignore[attr-defined]

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, memref.AtomicRMWOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        if op.memref in fwd.tan:
            self._check(op)
            ts = fwd.tangent_or_zero(e, op.value)
            idx = _indices(op, lambda i: fwd.vmap.get(i, i))
            olds = tuple(
                e.insert(atomic_rmw("addf", t, sh, idx)).result
                for t, sh in zip(ts, fwd.tan[op.memref], strict=True)
            )
            if fwd.info.is_active(op.result):
                fwd.tan[op.result] = olds

    def reverse(self, rev: Any, ctx: Any, op: Operation) -> None:
        assert isinstance(op, memref.AtomicRMWOp)
        sh = rev.shadow.get(op.memref)
        if sh is None:
            return
        self._check(op)
        idx = _indices(op, lambda i: rev.primal(i, ctx))
        adj_old = ctx.adj.get(op.result)
        if rev.info.is_active(op.value):
            rev.accumulate(
                ctx, op.value, [ctx.e.insert(memref.LoadOp.get(s, idx)).res for s in sh]
            )
        if adj_old is not None and rev.info.is_active(op.result):
            for s, a in zip(sh, adj_old):
                accumulate_into_shadow(rev, ctx, op, s, idx, a)


class AllocRule(MemoryRule):
    """``memref.alloc``: an active buffer gets a shadow (zeroed in reverse mode).  In
    reverse mode a buffer allocated in a loop body or branch lives for one iteration:
    its shadow lives for the matching reverse iteration, zeroed at its start."""

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, memref.AllocOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        if fwd.info.is_active(op.memref):
            fwd.tan[op.memref] = tuple(
                emit_shadow_alloc(e, fwd.vmap[op.memref].owner, zero=False)
                for _ in range(fwd.width)
            )

    def forward_sweep(self, rev: Any, e: Emitter, op: Operation) -> bool:
        assert isinstance(op, memref.AllocOp)
        if not rev.info.is_active(op.memref):
            return False
        clone = e.insert(op.clone(value_mapper=rev.fwd_map))
        rev.shadow[op.memref] = tuple(
            emit_shadow_alloc(e, clone, zero=True) for _ in range(rev.width)
        )
        return True

    def reverse_entry(self, rev: Any, ctx: Any, op: Operation) -> None:
        assert isinstance(op, memref.AllocOp)
        if rev.info.is_active(op.memref):
            sizes = [rev.primal(v, ctx) for v in op.dynamic_sizes]
            shadows = []
            for _ in range(rev.width):
                sh = ctx.e.insert(memref.AllocOp(sizes, [], op.memref.type)).memref
                emit_fill(ctx.e, sh, 0.0)
                shadows.append(sh)
            rev.shadow[op.memref] = tuple(shadows)

    def reverse(self, rev: Any, ctx: Any, op: Operation) -> None:
        assert isinstance(op, memref.AllocOp)
        if ctx.parent is not None and op.memref in rev.shadow:
            for sh in rev.shadow.pop(op.memref):
                ctx.e.insert(memref.DeallocOp.get(sh))


def _shadow_alloca(
    e: Emitter, op: memref.AllocaOp, size: Callable[[SSAValue], SSAValue]
) -> SSAValue:
    """A zero-filled ``memref.alloca`` shaped like ``op``'s (``size`` maps its dynamic
    sizes to the values at the insertion point)."""
    props = {} if op.alignment is None else {"alignment": op.alignment}
    shadow = e.insert(memref.AllocaOp.build(
        operands=[[size(v) for v in op.dynamic_sizes], []],
        result_types=[op.memref.type], properties=props,
    )).memref
    emit_fill(e, shadow, 0.0)
    return shadow


class AllocaRule(MemoryRule):
    """``memref.alloca``: an active buffer gets a zeroed shadow ``memref.alloca`` (both
    modes; stack memory, so nothing to free).  In reverse mode a buffer allocated in a
    loop body or branch gets its shadow in the matching reverse block, as
    :class:`AllocRule` does."""

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, memref.AllocaOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        if fwd.info.is_active(op.memref):
            fwd.tan[op.memref] = tuple(
                _shadow_alloca(e, op, lambda v: fwd.vmap.get(v, v))
                for _ in range(fwd.width)
            )

    def forward_sweep(self, rev: Any, e: Emitter, op: Operation) -> bool:
        assert isinstance(op, memref.AllocaOp)
        if not rev.info.is_active(op.memref):
            return False
        e.insert(op.clone(value_mapper=rev.fwd_map))
        rev.shadow[op.memref] = tuple(
            _shadow_alloca(e, op, lambda v: rev.fwd_map.get(v, v))
            for _ in range(rev.width)
        )
        return True

    def reverse_entry(self, rev: Any, ctx: Any, op: Operation) -> None:
        assert isinstance(op, memref.AllocaOp)
        if rev.info.is_active(op.memref):
            rev.shadow[op.memref] = tuple(
                _shadow_alloca(ctx.e, op, lambda v: rev.primal(v, ctx))
                for _ in range(rev.width)
            )

    def reverse(self, rev: Any, ctx: Any, op: Operation) -> None:
        if ctx.parent is not None:
            rev.shadow.pop(op.results[0], None)


class AllocaScopeRule(RegionRule):
    """``memref.alloca_scope``: a region run once, differentiated structurally (as a
    branch of ``scf.if`` that is always taken).  Forward mode: a new scope that also
    returns the tangents of its active results.  Reverse mode: the reverse of the body
    in a new scope, returning the updated adjoints of the outside scalars it reads."""

    def cache_dims(self, op: Operation) -> list[tuple[SSAValue, ...]] | None:
        return []

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        assert isinstance(op, memref.AllocaScopeOp)
        yield from zip(_scope_return(op).operands, op.results)

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, memref.AllocaScopeOp)
        act = [i for i, r in enumerate(op.results) if fwd.info.is_active(r)]
        types = [r.type for r in op.results]
        types += [op.results[i].type for i in act for _ in range(fwd.width)]
        block = Block()
        be = Emitter(InsertPoint.at_end(block))
        term = fwd.emit_block_body(be, op.scope.block)
        values = [fwd.vmap.get(v, v) for v in term.operands]
        values += fwd.tangents_of(be, [term.operands[i] for i in act])
        be.insert(memref.AllocaScopeReturnOp.create(operands=values))
        new = e.insert(memref.AllocaScopeOp.create(result_types=types, regions=[Region(block)]))
        for i, r in enumerate(op.results):
            fwd.vmap[r] = new.results[i]
        fwd.bind_tangents([op.results[i] for i in act], new.results[len(op.results):])

    def reverse(self, rev: Any, ctx: Any, op: Operation) -> None:
        from isozyme.compiler.ad.tape import RevCtx  # noqa: PLC0415
        from isozyme.compiler.ad_rules.scf import outer_active_scalars  # noqa: PLC0415

        assert isinstance(op, memref.AllocaScopeOp)
        outer = outer_active_scalars(rev, op)
        if not outer and not rev.touches_shadow(op):
            return
        block = Block()
        child = RevCtx(op.scope.block, ctx, block)
        for v in outer:
            child.adj[v] = rev.adj_or_zero(ctx, ctx, v)
        for y, r in zip(_scope_return(op).operands, op.results):
            rev.accumulate(child, y, ctx.adj.get(r) if rev.info.is_active(r) else None)
        rev.reverse_block(child)
        child.e.insert(memref.AllocaScopeReturnOp.create(
            operands=[a for v in outer for a in child.adj[v]]
        ))
        types = [v.type for v in outer for _ in range(rev.width)]
        scope = ctx.e.insert(
            memref.AllocaScopeOp.create(result_types=types, regions=[Region(block)])
        )
        for k, v in enumerate(outer):
            ctx.adj[v] = rev.lanes(scope.results, k)


def _scope_return(op: memref.AllocaScopeOp) -> Operation:
    term = op.scope.block.last_op
    assert isinstance(term, memref.AllocaScopeReturnOp)
    return term


class DeallocRule(MemoryRule):
    """``memref.dealloc``: frees the shadow too; in reverse mode both frees move after
    the reverse sweep, which still reads the shadow."""

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, memref.DeallocOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        for sh in fwd.tan.get(op.memref, ()):
            e.insert(memref.DeallocOp.get(sh))

    def forward_sweep(self, rev: Any, e: Emitter, op: Operation) -> bool:
        assert isinstance(op, memref.DeallocOp)
        if op.memref not in rev.shadow:
            return False
        rev.deferred_frees += [rev.fwd_map[op.memref], *rev.shadow[op.memref]]
        return True


class ViewRule(MemoryRule):
    """A view (``MEMREF_VIEWS``): the same view is taken of the source's shadow.  A view
    is metadata over its source: the reverse sweep takes it again rather than caching
    a buffer."""

    recompute = "always"

    def __init__(self, source: Callable[[Operation], SSAValue]):
        self.source = source

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        yield self.source(op), op.results[0]
        yield op.results[0], self.source(op)

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        e.insert(op.clone(value_mapper=fwd.vmap))
        src = self.source(op)
        if src in fwd.tan:
            fwd.tan[op.results[0]] = tuple(
                e.insert(op.clone(value_mapper={**fwd.vmap, src: sh})).results[0]
                for sh in fwd.tan[src]
            )

    def forward_sweep(self, rev: Any, e: Emitter, op: Operation) -> bool:
        src = self.source(op)
        if src not in rev.shadow:
            return False
        e.insert(op.clone(value_mapper=rev.fwd_map))
        rev.shadow[op.results[0]] = tuple(
            e.insert(op.clone(value_mapper={**rev.fwd_map, src: sh})).results[0]
            for sh in rev.shadow[src]
        )
        return True

    def reverse_entry(self, rev: Any, ctx: Any, op: Operation) -> None:
        src = self.source(op)
        if src in rev.shadow:
            mapping = {o: rev.primal(o, ctx) for o in op.operands[1:]}
            rev.shadow[op.results[0]] = tuple(
                ctx.e.insert(op.clone(value_mapper={**mapping, src: sh})).results[0]
                for sh in rev.shadow[src]
            )

    def reverse(self, rev: Any, ctx: Any, op: Operation) -> None:
        if ctx.parent is not None:
            rev.shadow.pop(op.results[0], None)


MEMREF_RULES: dict[type[Operation], Any] = {
    memref.LoadOp: LoadRule(),
    memref.StoreOp: StoreRule(),
    memref.AllocOp: AllocRule(),
    memref.AllocaOp: AllocaRule(),
    memref.AllocaScopeOp: AllocaScopeRule(),
    memref.DeallocOp: DeallocRule(),
    memref.AtomicRMWOp: AtomicAddRule(),
    memref.DimOp: InactiveRule(recompute="always"),
    **{t: ViewRule(source) for t, source in MEMREF_VIEWS.items()},
}

register(MEMREF_RULES)
