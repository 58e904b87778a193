"""The ``cuda-emu`` target: the ``cuda`` target's kernels and host program, run on the
CPU.

The stages are ``cuda``'s (``gpu``, ``cuda``, ``host``, ``llvm``); the differences:
the kernel source is the CUDA C wrapped for the host C++ compiler (``emu_source``: a
header emulating the CUDA built-ins, per-kernel trampolines running the blocks in a
shuffled order, and ``iz_emu_launch`` with ``cuLaunchKernel``'s signature), the host
program launches through ``iz_emu_launch``, and its allocations stay ``malloc``
(host memory: arguments are numpy arrays). ``runtime/cuda_emu.py`` compiles and runs
it, so every GPU derivative can be checked on machines without a GPU.
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects import gpu
from xdsl.dialects.builtin import ModuleOp

from isozyme.abi import EMU_LAUNCH_SYMBOL
from isozyme.compiler.targets.cuda import CudaTarget


class CudaEmuTarget(CudaTarget):
    """The CUDA target emulated on the CPU (kernels compiled by the host C++
    compiler, host memory)."""

    name = "cuda-emu"
    launch_symbol: ClassVar[str] = EMU_LAUNCH_SYMBOL
    device_memory: ClassVar[bool] = False

    def kernel_source(self, module: ModuleOp, kernels: gpu.ModuleOp | None, cuda: str) -> str:
        """The emulation's C++ (empty without kernels)."""
        del module, cuda
        if kernels is None:
            return ""
        from isozyme.compiler.gpu.cuda_emu_source import emu_source  # noqa: PLC0415

        return emu_source(kernels)
