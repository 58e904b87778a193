"""``shrink-fills``: do not fill the part of a fresh buffer that the next loop writes.

``new = np.zeros(n)`` followed by ``for i in range(1, n - 1): new[i] = ...`` fills all
of ``new`` with zeros and then overwrites all but two elements; its adjoint in reverse
mode fills the adjoint buffer with zeros and then adds into all but two elements
(``nb[i] = nb[i] + du[i]``).  In a stencil's time loop that fill is a full pass over
the buffer per step, in the primal and in both sweeps of the gradient.

A fill (an ``scf.parallel``/``scf.for`` from 0 to the buffer's size, step 1, storing one
value defined outside it at the induction variable) of a rank-1 ``memref.alloc`` of the
same block is shrunk to the elements outside ``[lo, hi)`` when the next op after it
(only ``arith`` ops between) is an ``scf.for`` with step 1 and an ``index`` induction
variable whose only use of the buffer
is one store per iteration at ``+-iv + b`` (the contiguous range ``[lo, hi)``), either a
plain store of a value that does not read the buffer, or an accumulation
``buf[idx] = buf[idx] + v``, whose load then becomes the fill value (``fill + v``: the
same sum, bit for bit).  The shrunk fill goes right before the writer loop, after the
``arith`` ops that may define the loop's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import IndexType, IntegerAttr, ModuleOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.passes.gather_accumulations import iv_coefficient


def _const_index(v: SSAValue, value: int) -> bool:
    op = v.owner
    return (
        isinstance(op, arith.ConstantOp)
        and isinstance(op.value, IntegerAttr)
        and op.value.value.data == value
    )


@dataclass
class _Fill:
    op: scf.ParallelOp | scf.ForOp
    buf: SSAValue
    value: SSAValue
    size: SSAValue


def _fill(op: Operation) -> _Fill | None:
    """``op`` as a fill of a rank-1 local buffer over its whole extent, or None."""
    if isinstance(op, scf.ParallelOp):
        if len(op.lowerBound) != 1 or op.initVals or op.res:
            return None
        lb, ub, step = op.lowerBound[0], op.upperBound[0], op.step[0]
    elif isinstance(op, scf.ForOp):
        if op.res:
            return None
        lb, ub, step = op.lb, op.ub, op.step
    else:
        return None
    if not (_const_index(lb, 0) and _const_index(step, 1)):
        return None
    body = op.body.block
    ops = list(body.ops)
    if len(ops) != 2 or not isinstance(ops[0], memref.StoreOp):
        return None
    store = ops[0]
    buf = store.memref
    alloc = buf.owner
    if not (
        isinstance(alloc, memref.AllocOp)
        and alloc.parent_block() is op.parent_block()
        and len(store.indices) == 1
        and store.indices[0] is body.args[0]
        and not (isinstance(store.value.owner, Operation)
                 and store.value.owner.parent_block() is body)
    ):
        return None
    # the upper bound is the buffer's size: its dim, or the alloc's size operand
    size_ok = ub in alloc.dynamic_sizes or (
        isinstance(ub.owner, memref.DimOp) and ub.owner.source is buf
    )
    return _Fill(op, buf, store.value, ub) if size_ok else None


def _writer(loop: Operation, buf: SSAValue) -> tuple[memref.StoreOp, int] | None:
    """The single store of ``buf`` in ``loop`` (flat, step 1) at ``+-iv + b``, and the
    sign, when the loop uses ``buf`` for nothing else (but the load it accumulates)."""
    if not isinstance(loop, scf.ForOp) or not _const_index(loop.step, 1):
        return None
    body = loop.body.block
    if not isinstance(body.args[0].type, IndexType):
        return None  # an i64 induction variable: the range arithmetic below is index
    stores = [o for o in body.ops if isinstance(o, memref.StoreOp) and o.memref is buf]
    if len(stores) != 1 or any(o.regions for o in body.ops):
        return None
    store = stores[0]
    sign = iv_coefficient(store.indices[0], body)
    if sign not in (1, -1):
        return None
    load = _accumulated(store)
    for use in buf.uses:
        user = use.operation
        if user.parent_block() is body and user not in (store, load):
            return None
        if user is store and store.value is buf:
            return None
    return store, sign


def _accumulated(store: memref.StoreOp) -> memref.LoadOp | None:
    """The load ``buf[idx]`` when ``store`` is ``buf[idx] = buf[idx] + v``."""
    add = store.value.owner
    if not isinstance(add, arith.AddfOp) or not add.result.has_one_use():
        return None
    for side in (add.lhs, add.rhs):
        load = side.owner
        if (
            isinstance(load, memref.LoadOp)
            and load.memref is store.memref
            and list(load.indices) == list(store.indices)
            and side.has_one_use()
        ):
            return load
    return None


def _next_loop(op: Operation) -> Operation | None:
    nxt = op.next_op
    while nxt is not None and nxt.name.startswith("arith.") and not nxt.regions:
        nxt = nxt.next_op
    return nxt


def _shrink(fill: _Fill, loop: scf.ForOp, store: memref.StoreOp, sign: int) -> None:
    body = loop.body.block
    # right before the writer, not the fill: the loop's bounds and the index chain's
    # outside values may be defined by the arith ops between the fill and the loop
    # (xDSL's verify() does not check dominance); nothing between reads the buffer
    ip = InsertPoint.before(loop)

    def emit(op: Operation) -> SSAValue:
        Rewriter.insert_op(op, ip)
        return op.results[0]

    zero = emit(arith.ConstantOp.from_int_and_width(0, IndexType()))
    one = emit(arith.ConstantOp.from_int_and_width(1, IndexType()))
    # the element range [lo, hi) the loop writes, clamped to [0, size]
    vmap: dict[SSAValue, SSAValue] = {body.args[0]: loop.lb}
    idx = store.indices[0]
    chain = _closure(idx, body)  # index_cast/addi/subi/constant (iv_coefficient)
    for op in body.ops:
        if op in chain:
            emit(op.clone(value_mapper=vmap))
    idx0 = vmap.get(idx, idx)
    trip = emit(arith.MaxSIOp(emit(arith.SubiOp(loop.ub, loop.lb)), zero))
    if sign > 0:
        lo, hi = idx0, emit(arith.AddiOp(idx0, trip))
    else:
        lo = emit(arith.AddiOp(emit(arith.SubiOp(idx0, trip)), one))
        hi = emit(arith.AddiOp(idx0, one))
    lo = emit(arith.MinSIOp(emit(arith.MaxSIOp(lo, zero)), fill.size))
    hi = emit(arith.MaxSIOp(emit(arith.MinSIOp(hi, fill.size)), lo))
    for start, stop in ((zero, lo), (hi, fill.size)):
        part = Block(arg_types=[IndexType()])
        part.add_op(memref.StoreOp.get(fill.value, fill.buf, [part.args[0]]))
        part.add_op(scf.YieldOp())
        Rewriter.insert_op(scf.ForOp(start, stop, one, [], part), ip)
    Rewriter.erase_op(fill.op)
    load = _accumulated(store)
    if load is not None:  # buf[idx] is the fill value here: fill + v
        load.res.replace_all_uses_with(fill.value)
        Rewriter.erase_op(load)


def _closure(v: SSAValue, body: Block) -> set[Operation]:
    """The ops of ``body`` that ``v`` is computed from."""
    needed: set[Operation] = set()
    work = [v]
    while work:
        owner = work.pop().owner
        if isinstance(owner, Operation) and owner.parent_block() is body and owner not in needed:
            needed.add(owner)
            work.extend(owner.operands)
    return needed


@dataclass(frozen=True)
class ShrinkFillsPass(ModulePass):
    """Fill only the elements of a fresh buffer that the next loop does not write."""

    name = "shrink-fills"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for candidate in [o for o in op.walk() if isinstance(o, (scf.ParallelOp, scf.ForOp))]:
            fill = _fill(candidate)
            if fill is None:
                continue
            loop = _next_loop(candidate)
            if loop is None:
                continue
            got = _writer(loop, fill.buf)
            if got is None:
                continue
            assert isinstance(loop, scf.ForOp)
            _shrink(fill, loop, *got)
