"""Lowering of ``simplified``-stage IR to the ``llvm`` dialect and to LLVM IR.

One ``ModulePass`` per file, named like MLIR's conversions. :func:`lower_to_llvm`
runs them in order; :func:`translate_to_llvm_ir` turns the result into LLVM IR text.
"""

from __future__ import annotations

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
from isozyme.compiler.lowering.translate import (
    translate_to_llvm_ir,
    translate_to_llvmlite,
)

#: The passes of :func:`lower_to_llvm`, in order.
LOWERING_PASSES: tuple[type[ModulePass], ...] = (
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


def lower_to_llvm(module: ModuleOp, ctx: Context | None = None) -> None:
    """Lower a ``simplified``-stage module to the ``llvm`` stage, in place.

    Runs :data:`LOWERING_PASSES` in order, then checks that only ``llvm`` ops are left
    and verifies the module.
    """
    ctx = ctx if ctx is not None else Context(allow_unregistered=True)
    for pass_cls in LOWERING_PASSES:
        pass_cls().apply(ctx, module)
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
    "lower_to_llvm",
    "translate_to_llvm_ir",
    "translate_to_llvmlite",
]
