"""``parallelize-host-loops``: ``scf.for`` nests whose iterations are independent by
construction become one ``scf.parallel``, so that a GPU target outlines them into a
kernel.

On the ``cuda`` target every array the host program touches is device memory: a host
loop that fills or copies an array writes it one element (one ``cuMemcpy``) at a time.
The frontend emits such loops for ``np.zeros``/``np.ones``/``np.full``, ``x.fill(v)``,
``np.copy``, ``np.arange``, ``np.concatenate`` and friends, and a user's own
``for i in range(n): y[i] = ...`` into a fresh array is one too.

A nest is rewritten when its iterations cannot interact:

* a perfect nest of ``scf.for`` loops without ``iter_args`` whose bounds are defined
  outside the nest, not inside an ``scf.parallel`` (a kernel already);
* its ops are side-effect free (``arith`` without regions, ``memref.dim``), loads, and
  stores;
* every store writes a buffer the function allocated (the ``memref.alloc`` result
  itself, identity layout: fresh memory that nothing else aliases), at indices that
  follow every induction variable of the nest injectively (``i``, ``n - 1 - i``,
  ``i + c``...: distinct iterations, distinct elements);
* every other access of a stored buffer (through any view) is a load or store of
  that buffer at the same indices: an iteration reads only its own element (the
  reverse of a copy loop, ``dt[i] += du[i]; du[i] = 0``, qualifies).

Bounds of each loop become the dimensions of the ``scf.parallel``, first loop first,
as ``convert-parallel-to-for`` would nest them back. The GPU targets run this pass
before ``gpu-outline-parallel-loops``; the CPU target never does (its loops are
unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import memref, scf
from xdsl.dialects.builtin import MemRefType, ModuleOp, NoneAttr
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from isozyme.compiler.analysis.buffers import root_buffer
from isozyme.compiler.analysis.injectivity import defined_inside, followed_iv


def _nest(loop: scf.ForOp) -> list[scf.ForOp] | None:
    """The loops of the perfect nest rooted at ``loop`` (outermost first), or None when
    some loop carries values or the nest is not perfect."""
    loops = [loop]
    while True:
        cur = loops[-1]
        if cur.iter_args:
            return None
        inner = [o for o in cur.body.block.ops if isinstance(o, scf.ForOp)]
        if not inner:
            return loops
        if len(inner) > 1:
            return None
        loops.append(inner[0])


def _pure(op: Operation) -> bool:
    return (op.name.startswith("arith.") and not op.regions) or isinstance(op, memref.DimOp)


def _identity_layout(t: object) -> bool:
    return isinstance(t, MemRefType) and isinstance(t.layout, NoneAttr)


def _independent(loops: list[scf.ForOp]) -> bool:
    """Whether the iterations of the nest ``loops`` touch disjoint memory (see the
    module docstring)."""
    root = loops[0]
    if any(defined_inside(root, v) for lp in loops[1:] for v in (lp.lb, lp.ub, lp.step)):
        return False  # a triangular nest is not a rectangle
    ivs = {lp.body.block.args[0] for lp in loops}
    accesses: list[memref.LoadOp | memref.StoreOp] = []
    stored: dict[SSAValue, list[SSAValue]] = {}
    for lp in loops:
        for op in lp.body.block.ops:
            if isinstance(op, (scf.ForOp, scf.YieldOp)) or _pure(op):
                continue
            if not isinstance(op, (memref.LoadOp, memref.StoreOp)):
                return False
            accesses.append(op)
            if isinstance(op, memref.StoreOp):
                buf, idx = op.memref, list(op.indices)
                if not isinstance(buf.owner, memref.AllocOp) or not _identity_layout(buf.type):
                    return False
                if not ivs <= {followed_iv(i, root, ivs) for i in idx}:
                    return False
                if stored.setdefault(buf, idx) != idx:
                    return False
    if not stored:
        return False
    # A stored buffer is accessed only at its iteration's own element.
    return all(
        a.memref in stored and list(a.indices) == stored[a.memref]
        for a in accesses if root_buffer(a.memref) in stored
    )


def _rewrite(loops: list[scf.ForOp]) -> None:
    """Replace the nest by one ``scf.parallel`` with the same body."""
    root = loops[0]
    body = Block(arg_types=[lp.body.block.args[0].type for lp in loops])
    for lp, arg in zip(loops, body.args):
        lp.body.block.args[0].replace_all_uses_with(arg)
    for lp in loops:
        for op in list(lp.body.block.ops):
            if isinstance(op, (scf.ForOp, scf.YieldOp)):
                continue
            op.detach()
            body.add_op(op)
    body.add_op(scf.ReduceOp())
    par = scf.ParallelOp(
        [lp.lb for lp in loops], [lp.ub for lp in loops], [lp.step for lp in loops],
        Region([body]),
    )
    Rewriter.replace_op(root, par, [])


@dataclass(frozen=True)
class ParallelizeHostLoopsPass(ModulePass):
    """Turn every ``scf.for`` nest outside parallel loops whose iterations write
    distinct elements of fresh buffers and read nothing they write into one
    ``scf.parallel`` (see the module docstring)."""

    name = "parallelize-host-loops"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        del ctx
        done: set[Operation] = set()
        for loop in [o for o in op.walk() if isinstance(o, scf.ForOp)]:
            if loop in done or _in_parallel(loop):
                continue
            loops = _nest(loop)
            if loops is None or not _independent(loops):
                continue
            done.update(loops)
            _rewrite(loops)


def _in_parallel(op: Operation) -> bool:
    p = op.parent_op()
    while p is not None:
        if isinstance(p, scf.ParallelOp):
            return True
        p = p.parent_op()
    return False
