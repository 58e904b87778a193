"""Time spent in compiled code by ``jacobian`` of ``y = sin(A @ x)``, 100 -> 100.

    python benchmarks/jacobian_compiled_time.py [--reverse] [CHUNK ...]   # default 1 8 100

For each chunk: the whole ``jacobian(mode, f, Const(A), x, chunk=c)`` call (best and
median of 7 rounds, µs), a trivial function of the same shapes (``x * 2.0``: the
per-call cost outside compiled code), and the time inside the compiled entry points
alone, summed over the sweeps of one call (every ctypes call of an entry point is
timed; best and median of 7 calls).  Numbers for the comparison of code generation
changes; ``benchmarks/jacobians.py`` is the benchmark beside JAX.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import isozyme as iz  # noqa: E402
import isozyme.runtime.entry_callable as entry_callable  # noqa: E402
from isozyme import Const, Forward, Reverse  # noqa: E402

_IN_CODE = [0.0]
_ENTRY_FNTYPE = entry_callable._ENTRY_FNTYPE


def _timed_entry(address: int):
    """The entry point at ``address``, adding its run time to ``_IN_CODE``."""
    fn = _ENTRY_FNTYPE(address)
    clock = time.perf_counter

    def call(in_ptr, out_ptr):
        t0 = clock()
        fn(in_ptr, out_ptr)
        _IN_CODE[0] += clock() - t0

    return call


entry_callable._ENTRY_FNTYPE = _timed_entry


def sin_matvec(A, x):
    return np.sin(A @ x)


def twice(A, x):
    return x * 2.0


def best_and_median(fn, rounds: int = 7) -> tuple[float, float]:
    """µs per call of ``fn``: best and median of ``rounds`` rounds of about 50 ms."""
    fn()
    t0 = time.perf_counter()
    fn()
    n = max(1, int(0.05 / max(time.perf_counter() - t0, 1e-7)))
    per_call = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        per_call.append((time.perf_counter() - t0) / n * 1e6)
    per_call.sort()
    return per_call[0], per_call[len(per_call) // 2]


def main() -> None:
    args = sys.argv[1:]
    mode = Reverse if "--reverse" in args else Forward
    chunks = [int(a) for a in args if a != "--reverse"] or [1, 8, 100]
    rng = np.random.default_rng(0)
    A, x = rng.normal(size=(100, 100)), rng.normal(size=100)
    want = np.cos(A @ x)[:, None] * A
    cA = Const(A)
    print(f"jacobian({'Reverse' if mode is Reverse else 'Forward'}, sin(A @ x)), µs")
    for c in chunks:
        J = iz.jacobian(mode, sin_matvec, cA, x, chunk=c)[1]
        err = float(np.abs(J - want).max())
        whole = best_and_median(lambda: iz.jacobian(mode, sin_matvec, cA, x, chunk=c))
        trivial = best_and_median(lambda: iz.jacobian(mode, twice, cA, x, chunk=c))
        in_code = []
        for _ in range(7):
            _IN_CODE[0] = 0.0
            iz.jacobian(mode, sin_matvec, cA, x, chunk=c)
            in_code.append(_IN_CODE[0] * 1e6)
        in_code.sort()
        print(f"chunk {c:3d}: call {whole[0]:7.1f} (median {whole[1]:7.1f})  "
              f"trivial {trivial[0]:7.1f}  compiled code {in_code[0]:7.1f} "
              f"(median {in_code[3]:7.1f})  max error {err:.1e}")


if __name__ == "__main__":
    main()
