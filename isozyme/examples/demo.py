"""``isozyme demo``: differentiate the bundled examples and show derivatives and IR."""

from __future__ import annotations

from collections.abc import Sequence

import isozyme as iz
from isozyme.cli import run_diff
from isozyme.examples.rosenbrock import power_loop, rosenbrock


def target_name() -> str:
    """The target the demo runs on (CPU until the GPU backend lands)."""
    return "cpu (LLVM JIT)"


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
