"""The gradient-descent solver of GradBench's ``particle`` and ``saddle`` evals.

GradBench fixes the solver (``cpp/gradbench/gd.hpp``): start with step ``eta = 1e-5``;
stop when the gradient's norm or the step's length is at most 1e-5; take a step only
when it lowers the objective (then count it, and double ``eta`` after 10 such steps in a
row), else halve ``eta``.  The evals' results depend on this exact schedule.

Two spellings of the same algorithm: ``argmin`` over a numpy vector, run by Python
(the outer optimisations, which call isozyme for gradients), and ``argmin2`` over two
scalars, written so that isozyme traces it (the inner optimisation of ``saddle``,
which the outer gradient differentiates through).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: gd.hpp's constants: first step size, and the tolerance on gradient and step.
ETA0 = 1e-5
TOL = 1e-5
#: Successful steps in a row before the step size doubles.
STREAK = 10


def argmin(f: Callable[[np.ndarray], float], grad: Callable[[np.ndarray], np.ndarray],
           x0: np.ndarray) -> np.ndarray:
    """Minimise ``f`` from ``x0`` given its gradient ``grad`` (plain Python loop)."""
    x = np.array(x0, dtype=np.float64)
    fx = f(x)
    gx = grad(x)
    i = 0
    eta = ETA0
    while True:
        if np.linalg.norm(gx) <= TOL:
            return x
        if i == STREAK:
            eta *= 2.0
            i = 0
            continue
        x_new = x - eta * gx
        if np.linalg.norm(x - x_new) <= TOL:
            return x
        f_new = f(x_new)
        if f_new < fx:
            x, fx = x_new, f_new
            gx = grad(x)
            i += 1
        else:
            eta /= 2.0
            i = 0


def argmin2(f: Callable[..., float], grad: Callable[..., tuple], x0: float, x1: float,
            *params: float) -> tuple:
    """``argmin`` for a function of two scalars, ``f(x0, x1, *params)``, whose gradient
    ``grad(x0, x1, *params)`` returns a pair; scalars only, so it can be traced.  The
    exits are a ``done`` flag in the loop's condition (isozyme traces no ``return`` or
    ``break`` inside a loop on a traced condition)."""
    fx = f(x0, x1, *params)
    g0, g1 = grad(x0, x1, *params)
    i = 0
    eta = ETA0
    done = False
    while not done:
        if math.sqrt(g0 * g0 + g1 * g1) <= TOL:
            done = True
        elif i == STREAK:
            eta = eta * 2.0
            i = 0
        else:
            n0 = x0 - eta * g0
            n1 = x1 - eta * g1
            if math.sqrt((x0 - n0) * (x0 - n0) + (x1 - n1) * (x1 - n1)) <= TOL:
                done = True
            else:
                f_new = f(n0, n1, *params)
                if f_new < fx:
                    x0 = n0
                    x1 = n1
                    fx = f_new
                    g0, g1 = grad(x0, x1, *params)
                    i += 1
                else:
                    eta = eta / 2.0
                    i = 0
    return x0, x1
