"""Lowering of ``simplified``-stage IR to the ``llvm`` dialect and to LLVM IR.

One ``ModulePass`` per file, named like MLIR's conversions. Each target
(:mod:`isozyme.compiler.targets`) owns its list of them; :func:`apply_lowering` runs a
list, :func:`lower_to_llvm` the CPU target's; :func:`translate_to_llvm_ir` turns the
result into LLVM IR text.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from isozyme.compiler.lowering._common import LoweringError
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
from isozyme.compiler.lowering.convert_scf_to_cf import ConvertScfToCfPass
from isozyme.compiler.lowering.expand_memref_copy import ExpandMemrefCopyPass
from isozyme.timings import phase
from isozyme.compiler.lowering.translate import (
    translate_to_llvm_ir,
    translate_to_llvmlite,
)


def __getattr__(name: str) -> object:
    """``LOWERING_PASSES``: the CPU target's list (:mod:`isozyme.compiler.targets.cpu`
    owns it; imported lazily, since that module imports these passes)."""
    if name == "LOWERING_PASSES":
        from isozyme.compiler.targets.cpu import LLVM_LOWERING_PASSES  # noqa: PLC0415

        return LLVM_LOWERING_PASSES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def apply_lowering(
    module: ModuleOp, passes: Sequence[ModulePass], ctx: Context | None = None
) -> None:
    """Run lowering ``passes`` in order on ``module``, then check that only ``llvm``
    ops are left and verify the module."""
    ctx = ctx if ctx is not None else Context(allow_unregistered=True)
    for p in passes:
        with phase(f"lowering/{p.name}", "lowering"):
            p.apply(ctx, module)
    leftovers = sorted(
        {
            op.name
            for op in module.walk()
            if op is not module and not op.name.startswith("llvm.")
        }
    )
    if leftovers:
        raise LoweringError(
            "isozyme lowering: no conversion to the llvm dialect for "
            + ", ".join(leftovers)
        )
    module.verify()


def lower_to_llvm(module: ModuleOp, ctx: Context | None = None) -> None:
    """Lower a ``simplified``-stage module to the ``llvm`` stage, in place, with the
    CPU target's passes (``convert-parallel-to-for``, then ``LOWERING_PASSES``)."""
    from isozyme.compiler.targets.cpu import CpuTarget  # noqa: PLC0415

    apply_lowering(module, CpuTarget().lowering_passes(), ctx)


__all__ = [
    "LOWERING_PASSES",
    "AddCEntryPointsPass",
    "ConvertArithToLLVMPass",
    "ConvertCfToLLVMPass",
    "ConvertCheckToLLVMPass",
    "ConvertEnzymeCacheToLLVMPass",
    "ConvertFuncToLLVMPass",
    "ConvertMathToLLVMPass",
    "ConvertMemrefToLLVMPass",
    "ConvertScfToCfPass",
    "ExpandMemrefCopyPass",
    "LoweringError",
    "apply_lowering",
    "lower_to_llvm",
    "translate_to_llvm_ir",
    "translate_to_llvmlite",
]
