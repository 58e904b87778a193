"""A process that compiles several functions, from 4 threads, and checks the results.

Run by ``tests/test_thread_safety.py`` twice at the same time (two processes compiling
at once).  Exits non-zero on a wrong result; prints ``ok`` last.
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

from isozyme import Active, Duplicated, ReverseWithPrimal, autodiff


def make(k: float):
    def f(x):
        return math.exp(k * x) + x**3

    return f


def weighted(v, w):
    return np.sum(v * v * w)


def main(seed: int) -> None:
    errors: list[str] = []
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        barrier.wait()
        k = 0.1 * (seed + i)
        f = make(k)
        for x in (0.5, 1.0):
            (g,), val = autodiff(ReverseWithPrimal, f, Active, Active(x))
            if abs(g - (k * math.exp(k * x) + 3 * x * x)) > 1e-9 or abs(val - f(x)) > 1e-9:
                errors.append(f"thread {i}: {g}, {val}")
        v = np.linspace(0.0, 1.0, 6 + i)
        w = np.full_like(v, k)
        dv = np.zeros_like(v)
        autodiff(ReverseWithPrimal, weighted, Active, Duplicated(v, dv), w)
        if not np.allclose(dv, 2 * v * w, rtol=1e-12):
            errors.append(f"thread {i}: array gradient {dv}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main(int(sys.argv[1]))
