"""GradBench ``ode``: a linear ODE solved by Runge-Kutta steps, and the gradient of its
last component.

``y'_0 = x_0``, ``y'_i = x_i y_{i-1}`` for i > 0, ``y(0) = 0``, integrated to t = 2 with
``s`` classical fourth-order Runge-Kutta steps (cmpad's ``an_ode``).  ``primal`` is
``y(2)`` (n values); ``gradient`` is the gradient of ``y(2)[-1]`` with respect to ``x``.

Written as a numpy user writes it: the state ``y`` is re-bound each step
(``y = y + h / 6 * (...)``, an array carried through a loop whose trip count ``s`` is
known only at run time) and ``ode_fun`` returns a new array.  With isozyme: ``primal``
is a ``ForwardWithPrimal`` call with every argument Const, ``gradient`` one reverse
sweep (``gradient(Reverse, ...)``) through the ``s`` steps.

GradBench validates ``gradient`` against the derivative of the ODE's *exact* solution
(``tools/manual``), not of the discretisation; on its inputs (n >= 1000) the last
component is exactly 0 after s <= 10 steps (each step reaches 4 components further), and
so is its gradient; the tests also check the gradient of a short system against central
differences of the compiled primal.
"""

from __future__ import annotations

import numpy as np

import isozyme as iz
from isozyme import Const, ForwardWithPrimal, Reverse

from gradbench.inputs import ODEInput

#: The end of the integration interval.
TF = 2.0


def ode_fun(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The right-hand side: ``z_0 = x_0``, ``z_i = x_i y_{i-1}``."""
    z = np.empty_like(y)
    z[0] = x[0]
    z[1:] = x[1:] * y[:-1]
    return z


def primal(x: np.ndarray, s: int) -> np.ndarray:
    """``y(TF)`` after ``s`` Runge-Kutta steps from ``y(0) = 0``."""
    h = TF / s
    y = np.zeros_like(x)
    for _ in range(s):
        k1 = ode_fun(x, y)
        k2 = ode_fun(x, y + h / 2 * k1)
        k3 = ode_fun(x, y + h / 2 * k2)
        k4 = ode_fun(x, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def last(x: np.ndarray, s: int) -> float:
    """The differentiated output: the last component of ``y(TF)``."""
    return primal(x, s)[-1]


def run_primal(inp: ODEInput) -> np.ndarray:
    """GradBench's ``primal`` function: ``y(TF)``, compiled by isozyme."""
    return iz.autodiff(ForwardWithPrimal, primal, Const(inp.x), Const(inp.s))[1]


def run_gradient(inp: ODEInput) -> np.ndarray:
    """GradBench's ``gradient`` function: d y(TF)[-1] / d x, one reverse sweep."""
    g, _ = iz.gradient(Reverse, last, inp.x, Const(inp.s))
    return g
