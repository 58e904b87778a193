"""``isozyme demo``: differentiate the bundled examples and show derivatives and IR."""

from __future__ import annotations

from collections.abc import Sequence

import isozyme as iz
from isozyme.cli import run_diff
from isozyme.examples.kernels import smooth_energy
from isozyme.examples.rosenbrock import power_loop, rosenbrock


def gpu_target() -> str | None:
    """``"cuda"`` when this machine can run it (CuPy and a CUDA device), else None."""
    from isozyme.runtime.cuda import unavailable

    return "cuda" if unavailable() is None else None


def target_name() -> str:
    """The target the demo's kernel example runs on."""
    return "cuda (CuPy)" if gpu_target() else "cpu (LLVM JIT; no CUDA device here)"


def main(print_ir: Sequence[str] = ("traced", "simplified", "llvm-ir-optimized")) -> None:
    """Run the demo, printing the IR stages in ``print_ir`` for the first example."""
    print(f"isozyme {iz.__version__} demo — target: {target_name()}\n")
    print("rosenbrock(x, y) = (1 - x)^2 + 100 (y - x^2)^2\n")
    run_diff(rosenbrock, iz.Reverse, [iz.Active(1.0), iz.Active(2.0)], print_ir)
    print()
    run_diff(rosenbrock, iz.ForwardWithPrimal,
             [iz.Const(1.0), iz.Duplicated(3.0, 1.0)], [])
    print()
    print("power_loop(x, n): a loop with a runtime trip count (scf.for, reversed with a cache)\n")
    run_diff(power_loop, iz.ReverseWithPrimal, [iz.Active(1.5), iz.Const(5)], ["simplified"])
    print()
    print("gradient(Reverse, rosenbrock, 1.0, 2.0) =", iz.gradient(iz.Reverse, rosenbrock, 1.0, 2.0))
    print()
    kernels(print_ir)


def kernels(print_ir: Sequence[str]) -> None:
    """The prange example in reverse mode: on the GPU when there is one (its CUDA C is
    printed in any case), else on the CPU."""
    import numpy as np

    target = gpu_target()
    if target is not None:
        import cupy as xp
    else:
        xp = np
    print(f"smooth_energy(x, y): two prange loops (GPU kernels), reverse mode on {target or 'cpu'}\n")
    x = xp.asarray(np.linspace(0.0, 1.0, 8))
    dx, y, dy = xp.zeros(8), xp.zeros(8), xp.zeros(8)
    args = [iz.Duplicated(x, dx), iz.Duplicated(y, dy)]
    stages = ["cuda"] if print_ir else []
    if stages:  # the kernels as CUDA C, printed on any machine
        texts = iz.ir_stages(iz.Reverse, smooth_energy, iz.Active, *args, stages=stages,
                             target="cuda")
        for s in stages:
            print(f"// ----- {s} (target cuda) -----")
            print(texts[s].rstrip())
            print()
    run_diff(smooth_energy, iz.Reverse, [iz.Active, *args], [], target=target)
    print("d/dx =", dx)
