"""isozyme's runtime: one executor per target's artefact (see
:mod:`isozyme.compiler.targets`): :mod:`.jit` runs LLVM modules on the CPU,
:mod:`.cuda_emu` runs the GPU targets' host program with kernels compiled for the CPU,
:mod:`.cuda` runs it with kernels on an NVIDIA GPU through CuPy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from isozyme.runtime import thread_pool  # noqa: F401 (binds __iz_parallel_for for the JIT)
from isozyme.runtime.jit import CompiledModule, compile_llvm_ir, compile_llvm_module

if TYPE_CHECKING:
    from isozyme.compiler.targets import Artefact
    from isozyme.runtime.disk_cache import CacheHit


def load_artefact(
    artefact: "Artefact | CacheHit", cache_key: str | None = None
) -> CompiledModule:
    """Compile and load a target's artefact with its executor; the result's ``entry``
    gives Python callables of its C entry points.  A disk cache hit
    (:class:`isozyme.runtime.disk_cache.CacheHit`) loads its object code;
    ``cache_key``: store the CPU code compiled from ``artefact`` under that key."""
    from isozyme.compiler.targets import GpuArtefact, LLVMArtefact  # noqa: PLC0415
    from isozyme.runtime.disk_cache import CacheHit  # noqa: PLC0415

    if isinstance(artefact, CacheHit):
        from isozyme.runtime.jit import load_cached  # noqa: PLC0415

        return load_cached(artefact.code)
    if isinstance(artefact, LLVMArtefact):
        from isozyme.runtime import jit  # noqa: PLC0415 (looked up per call: benchmarks time it)

        return jit.compile_llvm_module(artefact.module, cache_key=cache_key)
    if isinstance(artefact, GpuArtefact) and artefact.target == "cuda-emu":
        from isozyme.runtime.cuda_emu import load_emu_artefact  # noqa: PLC0415

        return load_emu_artefact(artefact)
    if isinstance(artefact, GpuArtefact) and artefact.target == "cuda":
        from isozyme.runtime.cuda import load_cuda_artefact  # noqa: PLC0415

        return load_cuda_artefact(artefact)
    raise TypeError(f"isozyme runtime: no executor for {artefact!r}")


__all__ = ["CompiledModule", "compile_llvm_ir", "compile_llvm_module", "load_artefact"]
