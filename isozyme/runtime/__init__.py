"""isozyme's runtime: JIT compilation and calling of lowered modules (CPU)."""

from isozyme.runtime.jit import CompiledModule, compile_llvm_ir, compile_llvm_module

__all__ = ["CompiledModule", "compile_llvm_ir", "compile_llvm_module"]
