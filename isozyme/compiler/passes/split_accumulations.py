"""``split-accumulations``: give every shadow accumulation of a loop a loop of its own.

Reverse mode turns a primal read ``x[i+1]`` into a scatter, ``dx[i+1] += ...``.  A
reverse loop that scatters into ``dx[i]`` and ``dx[i+1]`` (Rosenbrock) or into
``du[i-1]``, ``du[i]`` and ``du[i+1]`` (a stencil) carries a dependency through memory
from one iteration to the next, so LLVM cannot vectorize it.  Split into one loop per
accumulation, each loop touches every element once and vectorizes.

A loop is split when it is flat (no nested regions, no calls, no caches), its iteration
arguments are passed through unchanged, its stores are either accumulations
``m[I] = m[I] + v`` (the load of ``m[I]`` feeding only that add) or plain stores, and no
value it computes reads memory the loop writes, except an element that a plain store
overwrites after the read (the adjoint taken from a shadow and zeroed).  Each
accumulation gets a loop holding the ops it needs (recomputed in every loop: they are
pure); the plain stores go last, after every read of what they overwrite.  Reordering
the accumulations is legal because AD's own sums are reassociable (see
``isozyme/compiler/ad/reverse.py``).

Reassociable sums (``fastmath<reassoc>``: AD's adjoint sums, the tangent sums of
forward mode) into distinct local allocations share a loop, up to
:data:`SUMS_PER_LOOP` of them: the lanes of vector forward mode (``dy_l[i] += A[i, k]
* dx_l[k]``, one per lane) then load what they share (``A[i, k]``) once per group and
LLVM vectorizes the group's reductions together; one loop per lane reloads it per lane
and pays each short reduction's set-up and horizontal sum alone (the lanes of a
100 x 100 matvec: 1.4x slower at width 8, 1.8x at width 100).  Local allocations
cannot alias each other or the loop's reads, so LLVM keeps each sum in a register.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.analysis.buffers import root_buffer

#: The most reassociable sums one split loop holds (vector forward mode's lanes).
#: Measured on the lanes of a 100 x 100 matvec at width 100 (8): 2 sums a loop are
#: 1.6x (1.2x) faster than one, 4 are 1.65x (1.25x), 8 are 1.8x (1.4x).  Not more:
#: the sums and their vector partial sums must fit in the registers.
SUMS_PER_LOOP = 8


def _is_pure(op: Operation) -> bool:
    return (op.name.startswith("arith.") or op.name.startswith("math.")) and not op.regions


def _accumulated_load(store: memref.StoreOp) -> memref.LoadOp | None:
    """The load ``m[I]`` when ``store`` is ``m[I] = m[I] + v``."""
    add = store.value.owner
    if not isinstance(add, arith.AddfOp):
        return None
    for side in (add.lhs, add.rhs):
        load = side.owner
        if (
            isinstance(load, memref.LoadOp)
            and load.memref is store.memref
            and list(load.indices) == list(store.indices)
            and side.has_one_use()
            and add.result.has_one_use()
        ):
            return load
    return None


def _groups(body: Block) -> list[list[memref.StoreOp]] | None:
    """The stores of each split loop, or None when the loop must stay whole."""
    ops = list(body.ops)[:-1]
    stores = [op for op in ops if isinstance(op, memref.StoreOp)]
    for op in ops:
        if not (_is_pure(op) or isinstance(op, (memref.LoadOp, memref.StoreOp))):
            return None
    accumulations = [s for s in stores if _accumulated_load(s) is not None]
    plain = [s for s in stores if _accumulated_load(s) is None]
    if len(accumulations) < 2:
        return None
    rmw_loads = {_accumulated_load(s) for s in accumulations}
    accumulated_roots = {root_buffer(s.memref) for s in accumulations}
    position = {op: k for k, op in enumerate(ops)}
    for load in (op for op in ops if isinstance(op, memref.LoadOp) and op not in rmw_loads):
        root = root_buffer(load.memref)
        if root in accumulated_roots:
            return None
        overwriting = [s for s in plain if root_buffer(s.memref) is root]
        if any(
            s.memref is not load.memref
            or list(s.indices) != list(load.indices)
            or position[s] < position[load]
            for s in overwriting
        ):
            return None
    groups = _group_sums(accumulations)
    groups[-1].extend(plain)
    return groups


def _groupable(store: memref.StoreOp) -> bool:
    """Whether ``store`` accumulates a reassociable sum into a local allocation."""
    add = store.value.owner
    assert isinstance(add, arith.AddfOp)
    flags = add.fastmath.data if add.fastmath is not None else ()
    root = root_buffer(store.memref)
    return (
        arith.FastMathFlag.REASSOC in flags
        and isinstance(root.owner, (memref.AllocOp, memref.AllocaOp))
    )


def _group_sums(accumulations: list[memref.StoreOp]) -> list[list[memref.StoreOp]]:
    """The accumulations in loop groups: reassociable sums into distinct local
    allocations share a group (up to :data:`SUMS_PER_LOOP`), every other one is alone."""
    groups: list[list[memref.StoreOp]] = []
    open_groups: list[list[memref.StoreOp]] = []
    for store in accumulations:
        if not _groupable(store):
            groups.append([store])
            continue
        root = root_buffer(store.memref)
        group = next(
            (g for g in open_groups if all(root_buffer(s.memref) is not root for s in g)),
            None,
        )
        if group is None:
            group = []
            groups.append(group)
            open_groups.append(group)
        group.append(store)
        if len(group) == SUMS_PER_LOOP:
            open_groups.remove(group)
    return groups


def _slice(stores: list[memref.StoreOp]) -> set[Operation]:
    """The ops of the loop body that ``stores`` need (their backward closure)."""
    body = stores[0].parent_block()
    needed: set[Operation] = set()
    work: list[Operation] = list(stores)
    while work:
        op = work.pop()
        if op in needed:
            continue
        needed.add(op)
        for v in op.operands:
            owner = v.owner
            if isinstance(owner, Operation) and owner.parent_block() is body:
                work.append(owner)
    return needed


def _split(loop: scf.ForOp, groups: list[list[memref.StoreOp]]) -> None:
    body = loop.body.block
    for k, res in enumerate(loop.res):  # iteration arguments are passed through
        res.replace_all_uses_with(loop.iter_args[k])
    ip = InsertPoint.before(loop)
    for group in groups:
        keep = _slice(group)
        new_body = Block(arg_types=[body.args[0].type])
        vmap: dict[SSAValue, SSAValue] = {body.args[0]: new_body.args[0]}
        vmap.update(zip(body.args[1:], loop.iter_args))  # passed-through values
        for op in body.ops:
            if op in keep:
                new_body.add_op(op.clone(value_mapper=vmap))
        new_body.add_op(scf.YieldOp())
        Rewriter.insert_op(scf.ForOp(loop.lb, loop.ub, loop.step, [], new_body), ip)
    Rewriter.erase_op(loop)


def _passes_through(loop: scf.ForOp) -> bool:
    body = loop.body.block
    term = body.last_op
    assert term is not None
    return list(term.operands) == list(body.args[1:])


@dataclass(frozen=True)
class SplitAccumulationsPass(ModulePass):
    """Split loops that scatter several accumulations into one loop per accumulation
    (per group of reassociable sums into distinct local allocations)."""

    name = "split-accumulations"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for loop in [o for o in op.walk() if isinstance(o, scf.ForOp)]:
            if not _passes_through(loop):
                continue
            groups = _groups(loop.body.block)
            if groups is not None:
                _split(loop, groups)
