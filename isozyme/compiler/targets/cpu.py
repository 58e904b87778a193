"""The ``cpu`` target: the module lowered to the ``llvm`` dialect, for LLVM's JIT.

Stage ``llvm``: ``convert-parallel-to-for`` (``scf.parallel`` as ``scf.for`` nests,
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
from isozyme.compiler.lowering.add_c_entry_points import AddCEntryPointsPass
from isozyme.compiler.lowering.convert_arith_to_llvm import ConvertArithToLLVMPass
from isozyme.compiler.lowering.convert_cf_to_llvm import ConvertCfToLLVMPass
from isozyme.compiler.lowering.convert_check_to_llvm import ConvertCheckToLLVMPass
from isozyme.compiler.lowering.convert_enzyme_cache_to_llvm import (
    ConvertEnzymeCacheToLLVMPass,
)
from isozyme.compiler.lowering.convert_func_to_llvm import ConvertFuncToLLVMPass
from isozyme.compiler.lowering.convert_math_to_llvm import ConvertMathToLLVMPass
from isozyme.compiler.lowering.convert_memref_to_llvm import ConvertMemrefToLLVMPass
from isozyme.compiler.lowering.convert_parallel_to_for import ConvertParallelToForPass
from isozyme.compiler.lowering.convert_scf_to_cf import ConvertScfToCfPass
from isozyme.compiler.lowering.expand_memref_copy import ExpandMemrefCopyPass
from isozyme.compiler.passes.split_accumulations import SplitAccumulationsPass
from isozyme.compiler.targets import LLVMArtefact, OnStage, Target

#: The passes that lower a ``simplified``-stage module to the ``llvm`` dialect, in
#: order (re-exported as ``isozyme.compiler.lowering.LOWERING_PASSES``).
LLVM_LOWERING_PASSES: tuple[type[ModulePass], ...] = (
    ExpandMemrefCopyPass,
    ConvertScfToCfPass,
    ConvertMemrefToLLVMPass,
    ConvertArithToLLVMPass,
    ConvertMathToLLVMPass,
    ConvertEnzymeCacheToLLVMPass,
    ConvertFuncToLLVMPass,
    ConvertCfToLLVMPass,
    ConvertCheckToLLVMPass,
    AddCEntryPointsPass,
)


class CpuTarget(Target):
    """Native code for the host CPU through LLVM."""

    name = "cpu"
    stages = ("llvm",)

    def lowering_passes(self) -> Sequence[ModulePass]:
        """``convert-parallel-to-for`` (the CPU runs parallel loops sequentially),
        ``split-accumulations`` again (the adjoints of parallel loops are loops now, and
        a loop per accumulation vectorizes), then :data:`LLVM_LOWERING_PASSES`,
        instantiated."""
        return (ConvertParallelToForPass(), SplitAccumulationsPass(),
                *(p() for p in LLVM_LOWERING_PASSES))

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
