"""The GPU stages: outlining ``scf.parallel`` loops into ``gpu.func`` kernels (``gpu``),
printing their CUDA C (``cuda``) and the CPU emulation of that C (``cuda-emu``);
``kernel_checks`` carries run-time checks out of kernels through a status buffer.

See ``docs/gpu.md`` ("Kernels and CUDA C") for the contract with the targets and the
runtime.
"""

from isozyme.compiler.gpu.cuda_emu_source import emu_source
from isozyme.compiler.gpu.cuda_printer import print_cuda
from isozyme.compiler.gpu.outline_parallel_loops import (
    BLOCK_SIZE,
    KERNEL_MODULE,
    OutlineParallelLoopsPass,
)

__all__ = ["BLOCK_SIZE", "KERNEL_MODULE", "OutlineParallelLoopsPass", "emu_source",
           "print_cuda"]
