"""``eliminate-dead-caches``: drop reverse-mode caches whose popped values are unused.

Derivative rules may fetch a primal that the final derivative does not use (the partial
with respect to a constant operand, say); once DCE has removed those uses, the cache's
pops are dead, but pushes and pops have memory effects that DCE must keep.  This pass
removes every cache none of whose pops is used: its ``enzyme.init``, pushes, pops and
``enzyme.cache_free``.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from isozyme.dialects.enzyme import InitOp, PopOp


@dataclass(frozen=True)
class EliminateDeadCachesPass(ModulePass):
    """Erase caches whose pops are all unused."""

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
