"""The ``cpu`` target: the module lowered to the ``llvm`` dialect, for LLVM's JIT.

Stage ``llvm``: ``outline-parallel-loops-cpu`` first (with ``isozyme.config(threads=N)``,
``N > 1``; see :meth:`CpuTarget.lowering_passes`); ``convert-parallel-to-for`` (``scf.parallel`` as ``scf.for`` nests,
atomics as plain read-modify-writes), ``split-accumulations`` (for the loops that
were parallel adjoints), then :data:`LLVM_LOWERING_PASSES` (one pass per
file of :mod:`isozyme.compiler.lowering`), after which only ``llvm`` ops are left. The artefact
is that module (:class:`~isozyme.compiler.targets.LLVMArtefact`); the runtime
(``runtime/jit.py``) translates it to LLVM IR, optimises it and JIT-compiles it.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from isozyme.compiler.lowering import apply_lowering
from isozyme.compiler.passes.registry import pass_info
from isozyme.compiler.targets import LLVMArtefact, OnStage, Target, build_target_passes

#: The registry names of the passes that lower a ``simplified``-stage module to the
#: ``llvm`` dialect, in order.
LLVM_LOWERING: tuple[str, ...] = (
    "expand-memref-copy",
    "convert-scf-to-cf",
    "convert-memref-to-llvm",
    "convert-arith-to-llvm",
    "convert-math-to-llvm",
    "convert-enzyme-cache-to-llvm",
    "convert-func-to-llvm",
    "convert-cf-to-llvm",
    "convert-isz-check-to-llvm",
    "add-c-entry-points",
)

#: Their classes (re-exported as ``isozyme.compiler.lowering.LOWERING_PASSES``).
LLVM_LOWERING_PASSES: tuple[type[ModulePass], ...] = tuple(
    pass_info(n).cls for n in LLVM_LOWERING
)


class CpuTarget(Target):
    """Native code for the host CPU through LLVM."""

    name = "cpu"
    stages = ("llvm",)

    def lowering_passes(self) -> Sequence[ModulePass]:
        """``outline-parallel-loops-cpu`` (the outermost race-free parallel loops become
        chunk functions for the worker pool of ``runtime/thread_pool.py``; it does nothing
        under ``isozyme.config(threads=1)``), ``convert-parallel-to-for`` (the rest run
        sequentially), ``split-accumulations`` again (the adjoints of parallel loops are
        loops now, and a loop per accumulation vectorizes), then :data:`LLVM_LOWERING`
        with ``convert-parallel-dispatch-to-llvm`` after ``convert-isz-check-to-llvm``,
        built from the pass registry (with the custom passes inserted around them)."""
        return build_target_passes(self.threaded_specs())

    def threaded_specs(self) -> tuple[str, ...]:
        """:meth:`lowering_specs` with the worker-pool passes (the GPU targets' host
        programs reuse :meth:`lowering_specs` without them)."""
        specs = self.lowering_specs()
        at = specs.index("convert-isz-check-to-llvm") + 1
        return (
            "outline-parallel-loops-cpu",
            *specs[:at],
            "convert-parallel-dispatch-to-llvm",
            *specs[at:],
        )

    def lowering_specs(self) -> tuple[str, ...]:
        """The registry names of :meth:`lowering_passes` (without custom passes)."""
        return ("convert-parallel-to-for", "split-accumulations", *LLVM_LOWERING)

    def stage_passes(self, stage: str) -> Sequence[ModulePass]:
        """Stage ``llvm``: :meth:`lowering_passes`."""
        return self.lowering_passes() if stage == "llvm" else ()

    def compile(
        self,
        module: ModuleOp,
        ctx: Context,
        *,
        upto: str = "llvm",
        on_stage: OnStage | None = None,
    ) -> LLVMArtefact:
        """Lower ``module`` to the ``llvm`` dialect in place (stage ``llvm``)."""
        apply_lowering(module, self.lowering_passes(), ctx)
        if on_stage is not None:
            on_stage("llvm", module)
        return LLVMArtefact(module)
