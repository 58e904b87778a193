"""``eliminate-dead-caches``: drop reverse-mode caches whose popped values are unused.

Derivative rules may fetch a primal that the final derivative does not use (the partial
with respect to a constant operand, say); once DCE has removed those uses, the cache's
pops are dead, but pushes and pops have memory effects that DCE must keep.  This pass
removes every cache none of whose pops is used: its ``enzyme.init``, pushes, pops and
``enzyme.cache_free``.  Indexed caches (a ``memref.alloc`` marked ``isozyme.cache``)
go the same way when none of their loads is used: the alloc, its stores, loads and
dealloc.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import memref
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from isozyme.compiler.ad.tape import CACHE_ATTR
from isozyme.dialects.enzyme import InitOp, PopOp


@dataclass(frozen=True)
class EliminateDeadCachesPass(ModulePass):
    """Erase caches whose pops (loads) are all unused."""

    name = "eliminate-dead-caches"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for init in [o for o in op.walk() if isinstance(o, InitOp)]:
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
            if not all(
                isinstance(u, (memref.StoreOp, memref.DeallocOp))
                or (isinstance(u, memref.LoadOp) and not u.res.uses)
                for u in users
            ):
                continue
            for user in users:
                Rewriter.erase_op(user)
            Rewriter.erase_op(alloc)
