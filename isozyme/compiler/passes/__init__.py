"""isozyme's compiler passes, one per file, and a registry by MLIR-style name."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass


def available_passes() -> dict[str, Callable[[], ModulePass]]:
    """Pass name -> constructor, for ``isozyme-opt`` (xDSL's generic passes included)."""
    from xdsl.transforms.canonicalize import CanonicalizePass
    from xdsl.transforms.common_subexpression_elimination import (
        CommonSubexpressionElimination,
    )
    from xdsl.transforms.dead_code_elimination import DeadCodeElimination
    from xdsl.transforms.loop_invariant_code_motion import LoopInvariantCodeMotionPass

    from isozyme.compiler.passes.differentiate import DifferentiatePass
    from isozyme.compiler.passes.eliminate_dead_caches import EliminateDeadCachesPass
    from isozyme.compiler.passes.fuse_elementwise import FuseElementwisePass
    from isozyme.compiler.passes.hoist_checks import HoistChecksPass
    from isozyme.compiler.passes.inline import InlinePass
    from isozyme.compiler.passes.simplify_ad import SimplifyADPass
    from isozyme.compiler.passes.verify_buffer_lifetimes import VerifyBufferLifetimesPass

    table: dict[str, Callable[[], ModulePass]] = {
        p.name: p
        for p in (
            InlinePass, CanonicalizePass, CommonSubexpressionElimination,
            DeadCodeElimination, LoopInvariantCodeMotionPass, DifferentiatePass,
            SimplifyADPass, EliminateDeadCachesPass, FuseElementwisePass,
            HoistChecksPass, VerifyBufferLifetimesPass,
        )
    }
    try:
        from isozyme.compiler.lowering import LOWERING_PASSES

        for lp in LOWERING_PASSES:
            table[lp.name] = lp
    except ImportError:  # pragma: no cover - lowering always ships
        pass
    return table
