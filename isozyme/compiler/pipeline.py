"""The pass pipeline, stage by stage (names used by ``--print-ir`` and the docs).

=================  ==========================================================
``traced``         frontend output plus the ``enzyme`` request
``optimized``      inline, fuse elementwise linalg, linalg to parallel loops, canonicalize, CSE,
                   DCE, LICM, hoist run-time checks out of loops (before AD)
``differentiated`` ``enzyme-differentiate``: derivative functions generated
``simplified``     ``simplify-ad``, canonicalize, CSE, DCE, ``eliminate-dead-caches``,
                   LICM, ``split-accumulations``
=================  ==========================================================

Then the target's own stages (:mod:`isozyme.compiler.targets`): ``llvm`` for ``cpu``;
``gpu``, ``cuda``, ``host``, ``llvm`` for ``cuda`` and ``cuda-emu``. The runtime adds
``llvm-ir`` and ``llvm-ir-optimized`` (LLVM IR before and after LLVM's O3 pipeline).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.transforms.canonicalize import CanonicalizePass
from xdsl.transforms.common_subexpression_elimination import (
    CommonSubexpressionElimination,
)
from xdsl.transforms.dead_code_elimination import DeadCodeElimination
from xdsl.transforms.loop_invariant_code_motion import LoopInvariantCodeMotionPass
from xdsl.transforms.lower_affine import LowerAffinePass

from isozyme.compiler.context import make_context
from isozyme.compiler.passes.convert_linalg_to_parallel_loops import (
    ConvertLinalgToParallelLoopsPass,
)
from isozyme.compiler.passes.differentiate import DifferentiatePass
from isozyme.compiler.passes.eliminate_dead_caches import EliminateDeadCachesPass
from isozyme.compiler.passes.fuse_elementwise import FuseElementwisePass
from isozyme.compiler.passes.hoist_checks import HoistChecksPass
from isozyme.compiler.passes.inline import InlinePass
from isozyme.compiler.passes.simplify_ad import SimplifyADPass
from isozyme.compiler.passes.split_accumulations import SplitAccumulationsPass
from isozyme.compiler.passes.verify_buffer_lifetimes import VerifyBufferLifetimesPass
from isozyme.compiler.targets import (
    COMMON_STAGES,
    Artefact,
    OnStage,
    Target,
    get_target,
)

#: The IR stages of the ``cpu`` target (the compiler's; see :func:`stages_of`).
IR_STAGES = COMMON_STAGES + ("llvm",)
#: Every stage of the ``cpu`` target, the runtime's LLVM IR included.
ALL_STAGES = IR_STAGES + ("llvm-ir", "llvm-ir-optimized")


STAGE_PASSES: dict[str, Callable[[], Sequence[ModulePass]]] = {
    "optimized": lambda: (
        # Whole-array code: fuse elementwise chains, then lower to loops over buffers
        # before AD, so that the loop and shadow-memory rules differentiate it (see
        # docs/architecture.md); parallel dimensions become scf.parallel, which stays
        # parallel through AD and becomes a kernel on GPU targets.
        # (calls with a user derivative rule stay calls until AD has used the rule)
        InlinePass(keep_ruled=True),
        FuseElementwisePass(),
        ConvertLinalgToParallelLoopsPass(),
        LowerAffinePass(),
        InlinePass(keep_ruled=True),
        CanonicalizePass(),
        CommonSubexpressionElimination(),
        DeadCodeElimination(),
        LoopInvariantCodeMotionPass(),
        # Bounds checks of affine indices: once before each loop instead of per
        # iteration (after LICM, so that invariant sizes are outside the loops).
        HoistChecksPass(),
    ),
    "differentiated": lambda: (DifferentiatePass(),),
    "simplified": lambda: (
        SimplifyADPass(),
        InlinePass(),
        CanonicalizePass(),
        SimplifyADPass(),
        CommonSubexpressionElimination(),
        DeadCodeElimination(),
        EliminateDeadCachesPass(),
        DeadCodeElimination(),
        LoopInvariantCodeMotionPass(),
        SplitAccumulationsPass(),
    ),
}


def run_pipeline(
    module: ModuleOp,
    *,
    target: str | Target = "cpu",
    upto: str | None = None,
    on_stage: OnStage | None = None,
    ctx: Context | None = None,
) -> Artefact | None:
    """Run the stages after ``traced`` up to and including ``upto`` (by default the
    target's last IR stage), in place; return the target's artefact when its stages
    ran, else None.

    ``on_stage(name, ir)`` is called after each stage (and for ``traced`` first) with
    the module, or the text of a stage that is text (``cuda``), e.g. to print it.
    """
    tgt = get_target(target)
    stages = COMMON_STAGES + tgt.stages
    upto = upto or stages[-1]
    if upto not in stages:
        from isozyme.errors import IsozymeError  # noqa: PLC0415

        raise IsozymeError(
            f"the {tgt.name} target has no IR stage {upto!r}; stages: {', '.join(stages)}"
        )
    ctx = ctx or make_context()
    if on_stage is not None:
        on_stage("traced", module)
    if upto == "traced":
        return None
    verify = os.environ.get("ISOZYME_VERIFY") == "1"
    if verify:
        VerifyBufferLifetimesPass().apply(ctx, module)
    for stage in COMMON_STAGES[1:]:
        for p in STAGE_PASSES[stage]():
            p.apply(ctx, module)
        if verify:  # the test suite's check that no stage reads a freed buffer
            VerifyBufferLifetimesPass().apply(ctx, module)
        if on_stage is not None:
            on_stage(stage, module)
        if stage == upto:
            return None
    return tgt.compile(module, ctx, upto=upto, on_stage=on_stage)
