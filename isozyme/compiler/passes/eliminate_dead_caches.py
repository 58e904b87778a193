"""``eliminate-dead-caches``: drop reverse-mode caches whose popped values are unused.

Derivative rules may fetch a primal that the final derivative does not use (the partial
with respect to a constant operand, say); once DCE has removed those uses, the cache's
pops are dead, but pushes and pops have memory effects that DCE must keep.  This pass
removes every cache none of whose pops is used: its ``enzyme.init``, pushes, pops and
``enzyme.cache_free``.  Indexed caches (a ``memref.alloc`` marked ``isozyme.cache``)
go the same way when none of their loads is used: the alloc, its stores, loads and
dealloc.  A stack of such buffers (reverse mode pushes one buffer per iteration of a loop
of unknown trip count) is dead when every popped buffer is only freed or read by unused
loads: the stack goes, with the buffers pushed on it and their stores.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import memref
from xdsl.dialects.builtin import MemRefType, ModuleOp
from xdsl.ir import Operation, OpResult
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from isozyme.compiler.ad.tape import CACHE_ATTR
from isozyme.dialects.enzyme import InitOp, PopOp, PushOp


@dataclass(frozen=True)
class EliminateDeadCachesPass(ModulePass):
    """Erase caches whose pops (loads) are all unused."""

    name = "eliminate-dead-caches"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        """Remove, in place, the caches of ``op`` whose values nobody reads."""
        for init in [o for o in op.walk() if isinstance(o, InitOp)]:
            if isinstance(init.result.type.type, MemRefType):
                _erase_dead_buffer_stack(init)
                continue
            users = [u.operation for u in init.result.uses]
            pops = [u for u in users if isinstance(u, PopOp)]
            if any(p.result.uses for p in pops):
                continue
            for user in users:
                Rewriter.erase_op(user)
            Rewriter.erase_op(init)
        for alloc in [
            o for o in op.walk()
            if isinstance(o, memref.AllocOp) and CACHE_ATTR in o.attributes
        ]:
            users = [u.operation for u in alloc.memref.uses]
            if not all(_dead_use(u) for u in users):
                continue
            for user in users:
                Rewriter.erase_op(user)
            Rewriter.erase_op(alloc)


def _dead_use(user: Operation) -> bool:
    """Whether ``user`` of a cache buffer only writes or frees it, or reads it unused."""
    return isinstance(user, (memref.StoreOp, memref.DeallocOp)) or (
        isinstance(user, memref.LoadOp) and not user.res.uses
    )


def _erase_dead_buffer_stack(init: InitOp) -> None:
    """Erase a stack of cache buffers when no popped buffer is read by a used load."""
    users = [u.operation for u in init.result.uses]
    pops = [u for u in users if isinstance(u, PopOp)]
    pushes = [u for u in users if isinstance(u, PushOp)]
    if not all(_dead_use(u.operation) for p in pops for u in p.result.uses):
        return
    pushed = [p.value for p in pushes]
    if not all(
        isinstance(v, OpResult)
        and isinstance(v.op, memref.AllocOp)
        and CACHE_ATTR in v.op.attributes
        and all(
            isinstance(u.operation, PushOp) or _dead_use(u.operation) for u in v.uses
        )
        for v in pushed
    ):
        return
    for p in pops:
        for u in [u.operation for u in p.result.uses]:
            Rewriter.erase_op(u)
    for v in pushed:
        for u in [u.operation for u in v.uses]:
            Rewriter.erase_op(u)
        assert isinstance(v, OpResult)
        Rewriter.erase_op(v.op)
    for user in [u.operation for u in init.result.uses]:
        Rewriter.erase_op(user)
    Rewriter.erase_op(init)
