"""``gather-accumulations``: re-index sibling scatter loops into one loop in gather form.

After ``split-accumulations`` a reverse loop that scattered into ``dx[i]`` and
``dx[i+1]`` (Rosenbrock) is two loops, each reading the primal and read-modify-writing
the whole shadow: twice the memory traffic of a hand-written adjoint.  This pass fuses a
run of consecutive loops that each accumulate into the same buffer ``m`` at an index
``+-iv + b_k`` by re-indexing each loop by the element it writes: element ``e`` takes
loop ``k``'s contribution at ``iv = (e - b_k)`` (or ``b_k - e``), so the fused loop
reads ``m[e]`` once, adds every loop's contribution and writes it once.  The elements
that not every loop reaches (the ends: ``dx[0]`` has no ``dx[i+1]`` term) are done by
small remainder loops, one range below and one above the common range per loop.

What is fused: consecutive ``scf.for`` ops with step 1, an ``index`` induction
variable, no iteration arguments, a flat body of pure ``arith``/``math`` ops and loads,
and exactly one store, an accumulation
``m[..., idx, ...] = m[..., idx, ...] + v`` whose varying index is ``idx = +-iv + b``
(``addi``/``subi``/``index_cast`` of the induction variable and loop-invariant values),
the other indices loop-invariant and the same in every loop of the run, and no other
load of ``m``'s buffer.  Such loops commute (none reads what another writes, except
through its own accumulation), and every element still receives its contributions in
the original loop order, so the result is bit for bit that of the split loops.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import IndexType, IntegerAttr, ModuleOp
from xdsl.ir import Block, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.analysis.buffers import root_buffer


@dataclass
class _Accumulation:
    """A loop whose single store is ``m[idx] = m[idx] + v`` with ``idx = sign * iv + b``."""

    loop: scf.ForOp
    store: memref.StoreOp
    load: memref.LoadOp
    add: arith.AddfOp
    addend: SSAValue
    dim: int  # the position of the varying index
    sign: int  # +1 or -1


def _is_pure(op: Operation) -> bool:
    return (op.name.startswith("arith.") or op.name.startswith("math.")) and not op.regions


def _is_one(v: SSAValue) -> bool:
    op = v.owner
    return (
        isinstance(op, arith.ConstantOp)
        and isinstance(op.value, IntegerAttr)
        and op.value.value.data == 1
    )


def iv_coefficient(v: SSAValue, body: Block) -> int | None:
    """The coefficient of the induction variable in ``v`` (0: loop-invariant), or None
    when ``v`` is not ``+-iv + b`` built from ``addi``/``subi``/``index_cast``."""
    if isinstance(v, BlockArgument):
        if v.block is not body:
            return 0
        return 1 if v.index == 0 else None
    op = v.owner
    assert isinstance(op, Operation)
    if op.parent_block() is not body or isinstance(op, arith.ConstantOp):
        return 0
    if isinstance(op, arith.IndexCastOp):
        return iv_coefficient(op.input, body)
    if isinstance(op, (arith.AddiOp, arith.SubiOp)):
        a, b = iv_coefficient(op.lhs, body), iv_coefficient(op.rhs, body)
        if a is None or b is None:
            return None
        s = a + b if isinstance(op, arith.AddiOp) else a - b
        return s if s in (-1, 0, 1) else None
    return None


def _accumulation(loop: Operation) -> _Accumulation | None:
    """``loop`` as a fusable accumulation loop, or None."""
    if not isinstance(loop, scf.ForOp) or loop.res or not _is_one(loop.step):
        return None
    body = loop.body.block
    if not isinstance(body.args[0].type, IndexType):
        return None  # an i64 induction variable: _fuse's range arithmetic is index
    ops = list(body.ops)[:-1]
    stores = [op for op in ops if isinstance(op, memref.StoreOp)]
    if len(stores) != 1 or not all(
        _is_pure(op) or isinstance(op, (memref.LoadOp, memref.StoreOp)) for op in ops
    ):
        return None
    store = stores[0]
    add = store.value.owner
    if not isinstance(add, arith.AddfOp) or not add.result.has_one_use():
        return None
    for load_side, addend in ((add.lhs, add.rhs), (add.rhs, add.lhs)):
        load = load_side.owner
        if (
            isinstance(load, memref.LoadOp)
            and load.memref is store.memref
            and list(load.indices) == list(store.indices)
            and load_side.has_one_use()
        ):
            break
    else:
        return None
    signs = [iv_coefficient(i, body) for i in store.indices]
    if None in signs or [s for s in signs if s != 0] not in ([1], [-1]):
        return None
    dim = next(k for k, s in enumerate(signs) if s != 0)
    root = root_buffer(store.memref)
    for other in ops:
        if isinstance(other, memref.LoadOp) and other is not load:
            if root_buffer(other.memref) is root:
                return None
    return _Accumulation(loop, store, load, add, addend, dim, signs[dim])  # type: ignore[arg-type]


def _fits(run: list[_Accumulation], acc: _Accumulation) -> bool:
    """Whether ``acc`` accumulates into the same buffer and invariant indices as ``run``."""
    first = run[0]
    if acc.store.memref is not first.store.memref or acc.dim != first.dim:
        return False
    return all(
        a is b for k, (a, b) in enumerate(zip(acc.store.indices, first.store.indices))
        if k != first.dim
    )


def _runs(block: Block) -> list[list[_Accumulation]]:
    """Maximal runs of at least two consecutive fusable loops of ``block``."""
    runs: list[list[_Accumulation]] = []
    run: list[_Accumulation] = []
    for op in block.ops:
        acc = _accumulation(op)
        if acc is not None and run and _fits(run, acc):
            run.append(acc)
            continue
        if len(run) >= 2:
            runs.append(run)
        run = [acc] if acc is not None else []
    if len(run) >= 2:
        runs.append(run)
    return runs


def _closure(values: list[SSAValue], body: Block) -> set[Operation]:
    """The ops of ``body`` that ``values`` are computed from."""
    needed: set[Operation] = set()
    work = [v.owner for v in values if isinstance(v.owner, Operation)]
    while work:
        op = work.pop()
        if op in needed or op.parent_block() is not body:
            continue
        needed.add(op)
        work.extend(v.owner for v in op.operands if isinstance(v.owner, Operation))
    return needed


class _Emitter:
    """Inserts index arithmetic before an anchor op."""

    def __init__(self, anchor: Operation) -> None:
        self.ip = InsertPoint.before(anchor)

    def op(self, op: Operation) -> SSAValue:
        Rewriter.insert_op(op, self.ip)
        return op.results[0]

    def const(self, value: int) -> SSAValue:
        return self.op(arith.ConstantOp.from_int_and_width(value, IndexType()))


def _clone_into(
    ops: list[Operation], keep: set[Operation] | None, vmap: dict[SSAValue, SSAValue],
    block: Block,
) -> None:
    for op in ops:
        if keep is None or op in keep:
            block.add_op(op.clone(value_mapper=vmap))


def _iv_of(acc: _Accumulation, e: SSAValue, c: SSAValue, block: Block) -> SSAValue:
    """The iteration of ``acc``'s loop that writes element ``e`` (``e - c`` or ``c - e``)."""
    op = arith.SubiOp(e, c) if acc.sign > 0 else arith.SubiOp(c, e)
    block.add_op(op)
    return op.result


def _fuse(run: list[_Accumulation]) -> None:
    first = run[0]
    em = _Emitter(first.loop)
    zero, one = em.const(0), em.const(1)
    los, his, cs = [], [], []
    for acc in run:
        body = acc.loop.body.block
        idx = acc.store.indices[acc.dim]
        # idx at iv = lb: the index chain cloned before the run
        vmap: dict[SSAValue, SSAValue] = {body.args[0]: acc.loop.lb}
        chain = _closure([idx], body)
        for op in body.ops:
            if op in chain:
                em.op(op.clone(value_mapper=vmap))
        idx0 = vmap.get(idx, idx)
        trip = em.op(arith.MaxSIOp(em.op(arith.SubiOp(acc.loop.ub, acc.loop.lb)), zero))
        if acc.sign > 0:
            lo, hi = idx0, em.op(arith.AddiOp(idx0, trip))
            cs.append(em.op(arith.SubiOp(idx0, acc.loop.lb)))
        else:
            lo = em.op(arith.AddiOp(em.op(arith.SubiOp(idx0, trip)), one))
            hi = em.op(arith.AddiOp(idx0, one))
            cs.append(em.op(arith.AddiOp(idx0, acc.loop.lb)))
        los.append(lo)
        his.append(hi)
    common_lo, common_hi = los[0], his[0]
    for lo, hi in zip(los[1:], his[1:]):
        common_lo = em.op(arith.MaxSIOp(common_lo, lo))
        common_hi = em.op(arith.MinSIOp(common_hi, hi))
    common_hi = em.op(arith.MaxSIOp(common_hi, common_lo))

    # the fused loop: one read and one write of m[e], every loop's contribution
    fused = Block(arg_types=[IndexType()])
    e = fused.args[0]
    addends = []
    for acc, c in zip(run, cs):
        body = acc.loop.body.block
        vmap = {body.args[0]: _iv_of(acc, e, c, fused)}
        _clone_into(list(body.ops)[:-1], _closure([acc.addend], body), vmap, fused)
        addends.append(vmap.get(acc.addend, acc.addend))
    indices = list(first.store.indices)
    indices[first.dim] = e
    load = memref.LoadOp.get(first.store.memref, indices)
    fused.add_op(load)
    total = load.res
    for acc, v in zip(run, addends):
        add = arith.AddfOp(total, v, flags=acc.add.fastmath)
        fused.add_op(add)
        total = add.result
    fused.add_op(memref.StoreOp.get(total, first.store.memref, indices))
    fused.add_op(scf.YieldOp())
    Rewriter.insert_op(scf.ForOp(common_lo, common_hi, one, [], fused), em.ip)

    # the ends: each loop's elements outside the common range, in the original order
    for acc, c, lo, hi in zip(run, cs, los, his):
        below_hi = em.op(arith.MinSIOp(common_lo, hi))
        above_lo = em.op(arith.MaxSIOp(common_hi, lo))
        for start, stop in ((lo, below_hi), (above_lo, hi)):
            rest = Block(arg_types=[IndexType()])
            body = acc.loop.body.block
            vmap = {body.args[0]: _iv_of(acc, rest.args[0], c, rest)}
            _clone_into(list(body.ops)[:-1], None, vmap, rest)
            rest.add_op(scf.YieldOp())
            Rewriter.insert_op(scf.ForOp(start, stop, one, [], rest), em.ip)
    for acc in run:
        Rewriter.erase_op(acc.loop)


@dataclass(frozen=True)
class GatherAccumulationsPass(ModulePass):
    """Fuse consecutive loops that scatter into one buffer at shifted indices
    (``dx[i] += a``, ``dx[i+1] += b``) into one loop in gather form plus end loops."""

    name = "gather-accumulations"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        blocks = dict.fromkeys(o.parent_block() for o in op.walk() if isinstance(o, scf.ForOp))
        for block in blocks:
            if block is None:
                continue
            for run in _runs(block):
                _fuse(run)
