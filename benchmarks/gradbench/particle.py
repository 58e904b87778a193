"""GradBench ``particle``: steer a charged particle to the origin (nested AD).

Two unit charges sit at (10, 10 - w) and (10, 0); a particle starts at (0, 8) with
velocity (0.75, 0) and moves under the force ``-grad_x p(x; w)``, where
``p = sum 1 / |x - charge|``, by naive Euler steps of 0.1 until it crosses the x axis;
the crossing is interpolated linearly and the cost is its x coordinate squared.  Gradient
descent on ``w`` minimises the cost: the outer gradient differentiates the simulation,
whose every step takes an inner gradient of ``p`` (nested AD, inside a ``while`` loop).

Four variants, named by the modes of (outer, inner) AD: ``ff``, ``fr``, ``rf``, ``rr``.
"""

from __future__ import annotations

import math

import numpy as np

import isozyme as iz
from isozyme import Active, Const, Duplicated, Forward, ForwardWithPrimal, Reverse

from gradbench import gd

VARIANTS = ("ff", "fr", "rf", "rr")
#: Euler time step.
DT = 0.1


def potential(c0x: float, c0y: float, c1x: float, c1y: float, x0: float, x1: float) -> float:
    """``p(x)``: the sum of inverse distances from x to the two charges."""
    return (1.0 / math.sqrt((c0x - x0) * (c0x - x0) + (c0y - x1) * (c0y - x1))
            + 1.0 / math.sqrt((c1x - x0) * (c1x - x0) + (c1y - x1) * (c1y - x1)))


def force_r(c0x: float, c0y: float, c1x: float, c1y: float, x0: float, x1: float) -> tuple:
    """``-grad_x p``: one reverse sweep."""
    ((_, _, _, _, g0, g1),) = iz.autodiff(Reverse, potential, Active, Const(c0x), Const(c0y),
                                          Const(c1x), Const(c1y), Active(x0), Active(x1))
    return -g0, -g1


def force_f(c0x: float, c0y: float, c1x: float, c1y: float, x0: float, x1: float) -> tuple:
    """``-grad_x p``: two forward sweeps."""
    (g0,) = iz.autodiff(Forward, potential, Const(c0x), Const(c0y), Const(c1x), Const(c1y),
                        Duplicated(x0, 1.0), Duplicated(x1, 0.0))
    (g1,) = iz.autodiff(Forward, potential, Const(c0x), Const(c0y), Const(c1x), Const(c1y),
                        Duplicated(x0, 0.0), Duplicated(x1, 1.0))
    return -g0, -g1


def naive_euler(w: float, inner: str) -> float:
    """The squared x coordinate where the trajectory crosses the x axis; ``inner``
    ("r" or "f") picks the mode of the force's AD (a Python string: fixed at trace)."""
    c0x, c0y, c1x, c1y = 10.0, 10.0 - w, 10.0, 0.0
    x0, x1 = 0.0, 8.0
    v0, v1 = 0.75, 0.0
    force = force_r if inner == "r" else force_f
    # GradBench's loop: force at x, step x, stop once below the axis, step v.  Written
    # with the test in the while condition (isozyme traces no return inside a loop).
    a0, a1 = force(c0x, c0y, c1x, c1y, x0, x1)
    x0 = x0 + DT * v0
    x1 = x1 + DT * v1
    while x1 > 0.0:
        v0 = v0 + DT * a0
        v1 = v1 + DT * a1
        a0, a1 = force(c0x, c0y, c1x, c1y, x0, x1)
        x0 = x0 + DT * v0
        x1 = x1 + DT * v1
    dt_f = -x1 / v1
    x_t_f = x0 + dt_f * v0
    return x_t_f * x_t_f


def cost_gradient(outer: str, inner: str, w: float) -> float:
    """d naive_euler / d w: through the loop and every inner AD call."""
    if outer == "r":
        ((dw, _),) = iz.autodiff(Reverse, naive_euler, Active, Active(w), inner)
        return dw
    (dw,) = iz.autodiff(Forward, naive_euler, Duplicated(w, 1.0), inner)
    return dw


def run(variant: str, w0: float) -> float:
    """One GradBench function (``ff``, ``fr``, ``rf``, ``rr``): the final w."""
    outer, inner = variant

    def cost(w: np.ndarray) -> float:  # the compiled primal
        return iz.autodiff(ForwardWithPrimal, naive_euler, Const(float(w[0])), inner)[1]

    def grad(w: np.ndarray) -> np.ndarray:
        return np.array([cost_gradient(outer, inner, float(w[0]))])

    return float(gd.argmin(cost, grad, np.array([w0]))[0])
