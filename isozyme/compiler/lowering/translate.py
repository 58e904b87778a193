"""Translate an ``llvm``-stage module to LLVM IR with ``xdsl.backend.llvm``.

``xdsl.backend.llvm.convert.convert_module`` ignores ``llvm.func``'s linkage, so this
wrapper re-applies ``internal`` linkage afterwards: private functions and the cache
helpers may then be inlined and dropped by LLVM.
"""

from __future__ import annotations

import llvmlite.ir as ir
from xdsl.backend.llvm.convert import convert_module
from xdsl.dialects import llvm
from xdsl.dialects.builtin import ModuleOp


def translate_to_llvmlite(
    module: ModuleOp, target_triple: str | None = None
) -> ir.Module:
    """Convert ``module`` (``llvm`` dialect only) to an ``llvmlite.ir.Module``.

    ``target_triple`` defaults to the host's triple.
    """
    result = convert_module(module, fallback_target_triple=target_triple)
    for op in module.ops:
        if (
            isinstance(op, llvm.FuncOp)
            and op.body.blocks
            and op.linkage.linkage.data == "internal"
        ):
            result.get_global(op.sym_name.data).linkage = "internal"
    return result


def translate_to_llvm_ir(module: ModuleOp, target_triple: str | None = None) -> str:
    """LLVM IR text of ``module`` (``llvm`` dialect only)."""
    return str(translate_to_llvmlite(module, target_triple))
