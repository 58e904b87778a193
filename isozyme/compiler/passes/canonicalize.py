"""``canonicalize``: xDSL's canonicalization, with the constants of loops hoisted first.

Same patterns and driver as xDSL's ``canonicalize`` (every canonicalization pattern of
the ops' dialects, folding, region DCE, to a fixed point); one step is done up front.

**Why isozyme has its own.** xDSL's ``RehoistConstInLoops`` pattern moves the constants
of an ``scf.for`` body to just before the loop: one loop level per application, and the
constant it hoists out of an inner loop lands in the outer loop's body, which the
driver's worklist does not revisit.  So the driver sweeps the whole module again (every
op matched, region DCE rerun) once per level of the deepest loop nest: the GMM gradient
(loops five deep) took six sweeps.  Here one post-order walk moves every constant that
is a direct child of an ``scf.for`` body out of all its enclosing ``scf.for`` loops
(what the pattern does, applied to a fixed point), then xDSL's driver runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.traits import ConstantLike
from xdsl.transforms.canonicalize import CanonicalizePass as XdslCanonicalizePass


def hoist_loop_constants(root: Operation) -> int:
    """Move each constant (``ConstantLike``) directly in an ``scf.for`` body before
    the loop, innermost loops first, so that a constant leaves every ``scf.for`` that
    directly encloses it; returns how many moves were made."""
    moved = 0
    # region-first walk: an inner loop is visited before the loop around it, so what
    # it hoists into the outer body is hoisted again when the outer loop is visited
    for loop in [o for o in root.walk(region_first=True) if isinstance(o, scf.ForOp)]:
        for child in list(loop.body.block.ops):
            if child.has_trait(ConstantLike):
                child.detach()
                Rewriter.insert_op(child, InsertPoint.before(loop))
                moved += 1
    return moved


@dataclass(frozen=True)
class CanonicalizePass(ModulePass):
    """Apply every canonicalization pattern of the ops' dialects (folds, algebraic
    simplifications) to a fixed point.

    xDSL's ``canonicalize``, after hoisting the constants of ``scf.for`` bodies in one
    walk (xDSL's pattern hoists one loop level per sweep of the whole module)."""

    name = "canonicalize"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        """Canonicalize ``op`` in place."""
        hoist_loop_constants(op)
        XdslCanonicalizePass().apply(ctx, op)
