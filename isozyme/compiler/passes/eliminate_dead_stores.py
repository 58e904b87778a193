"""``eliminate-dead-stores``: drop stores into a local buffer that nothing reads again.

Reverse mode zeroes an adjoint after taking it (``t = nb[i]; nb[i] = 0``) so that a
later accumulation starts from zero.  When the buffer is a local allocation that is
freed right after the loop (the adjoint of a temporary of a loop body, as in a stencil
step ``new = np.zeros(n)``), the zero is never read: it only costs a store, and it is a
plain store among the loop's accumulations, which keeps ``split-accumulations`` and
``gather-accumulations`` from giving the loop its gather form.

A store ``R[I] = v`` in the flat body of an ``scf.for`` is dropped when

* ``R`` is a ``memref.alloc``/``memref.alloca`` result (not a view) in the same block
  as the loop,
* every op after the loop in that block uses ``R`` only to ``memref.dealloc`` it (no
  read, no view, no nested use),
* in the loop body every load of ``R`` reads ``R[I]`` (the same index values) and comes
  before the store, and one of the indices ``I`` is an injective function of the
  induction variable: no later iteration reads the element.

A store into a local allocation (used only by loads, stores, dims and frees) of the
same block, after which that block only frees the buffer, is dropped too (the primal
result of ``np.sum(...)`` in a ``Reverse`` request, which nothing returns), and a
local allocation that is only stored into and freed goes with its stores and frees.
The ``dce`` after this pass then drops the loop that computed a dropped store's value
when nothing else uses it (a serial sum of 10**6 terms in Rosenbrock's vectorized
gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import memref, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from isozyme.compiler.analysis.injectivity import followed_iv


def _unused_after(first: Operation, buf: SSAValue) -> bool:
    """Whether every op after ``first`` in its block uses ``buf`` only to free it."""
    op = first.next_op
    while op is not None:
        if isinstance(op, memref.DeallocOp) and op.memref is buf:
            op = op.next_op
            continue
        if any(o is buf for inner in op.walk() for o in inner.operands):
            return False
        op = op.next_op
    return True


def _dead(store: memref.StoreOp, loop: scf.ForOp) -> bool:
    buf = store.memref
    owner = buf.owner
    if not isinstance(owner, (memref.AllocOp, memref.AllocaOp)):
        return False
    if owner.parent_block() is not loop.parent_block():
        return False
    # anywhere: only loads, stores, dims and the free (no view, call or cast that
    # could read the buffer under another name)
    if not all(isinstance(u.operation, _PLAIN_USES) for u in buf.uses):
        return False
    body = loop.body.block
    iv = body.args[0]
    if not any(followed_iv(i, loop, [iv]) is iv for i in store.indices):
        return False
    seen_store = False
    for op in body.ops:
        if op is store:
            seen_store = True
        elif op.regions:
            return False
        elif any(o is buf for o in op.operands) and not (
            isinstance(op, memref.LoadOp)
            and not seen_store
            and list(op.indices) == list(store.indices)
        ):
            return False
    return _unused_after(loop, buf)


def _erase_if_write_only(alloc: memref.AllocOp | memref.AllocaOp) -> None:
    """Erase ``alloc``, its stores and its frees when nothing reads the buffer (a load
    whose value nothing uses does not count)."""
    buf = alloc.memref
    users = [u.operation for u in buf.uses]
    if not all(
        isinstance(u, memref.DeallocOp)
        or (isinstance(u, memref.StoreOp) and u.memref is buf and u.value is not buf)
        or (isinstance(u, memref.LoadOp) and not u.res.uses)  # a load nothing uses
        for u in users
    ):
        return
    for u in users:
        Rewriter.erase_op(u)
    Rewriter.erase_op(alloc)


#: The uses of a buffer that do not hand it on under another name.
_PLAIN_USES = (memref.LoadOp, memref.StoreOp, memref.DimOp, memref.DeallocOp)


@dataclass(frozen=True)
class EliminateDeadStoresPass(ModulePass):
    """Drop stores into local buffers that nothing reads afterwards (a loop's zeroed
    adjoint freed after the loop, a last store followed only by the free, buffers only
    written)."""

    name = "eliminate-dead-stores"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for store in [o for o in op.walk() if isinstance(o, memref.StoreOp)]:
            owner = store.memref.owner
            if (
                isinstance(owner, (memref.AllocOp, memref.AllocaOp))
                and owner.parent_block() is store.parent_block()
                and all(isinstance(u.operation, _PLAIN_USES) for u in store.memref.uses)
                and _unused_after(store, store.memref)
            ):
                Rewriter.erase_op(store)  # the buffer's last store: nothing reads it
        for alloc in [o for o in op.walk() if isinstance(o, (memref.AllocOp, memref.AllocaOp))]:
            _erase_if_write_only(alloc)
        for loop in [o for o in op.walk() if isinstance(o, scf.ForOp)]:
            body = loop.body.block
            for store in [s for s in body.ops if isinstance(s, memref.StoreOp)]:
                if _dead(store, loop):
                    Rewriter.erase_op(store)
