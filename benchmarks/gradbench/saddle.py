"""GradBench ``saddle``: a saddle point by nested gradient descent (nested AD).

``f(p1, p2) = (p1x^2 + p1y^2) - (p2x^2 + p2y^2)``.  Step 1 finds
``argmin_p1 max_p2 f(p1, p2)``: the outer descent needs the gradient of
``max_primal(p1) = f(p1, argmax_p2 f(p1, p2))``, a function whose inner ``argmax`` is
itself a gradient descent using ``f``'s gradient, so the outer derivative differentiates
through the inner descent's loop *and* the inner derivative (nested AD).  Step 2 is
``argmax_p2 f(p1*, p2)``.  Both start from ``start``; the output is ``p1* + p2*``.

Four variants, named by the modes of (outer, inner) AD: ``ff``, ``fr``, ``rf``, ``rr``.
With isozyme, the inner gradient is ``autodiff`` called inside ``max_primal`` (traced,
so it becomes an ``enzyme.autodiff``/``enzyme.fwddiff`` request in the IR), and the
outer gradient is ``autodiff`` of ``max_primal`` itself.
"""

from __future__ import annotations

import numpy as np

import isozyme as iz
from isozyme import Active, Const, Duplicated, Forward, ForwardWithPrimal, Reverse

from gradbench import gd

VARIANTS = ("ff", "fr", "rf", "rr")


def objective(p1x: float, p1y: float, p2x: float, p2y: float) -> float:
    """The function whose saddle point is sought."""
    return (p1x * p1x + p1y * p1y) - (p2x * p2x + p2y * p2y)


def neg_objective(p2x: float, p2y: float, p1x: float, p1y: float) -> float:
    """``-f`` as a function of p2 (maximising f is minimising this)."""
    return -objective(p1x, p1y, p2x, p2y)


def neg_gradient_r(p2x: float, p2y: float, p1x: float, p1y: float) -> tuple:
    """The gradient of ``-f`` with respect to p2: one reverse sweep."""
    ((_, _, g0, g1),) = iz.autodiff(Reverse, objective, Active, Const(p1x), Const(p1y),
                                    Active(p2x), Active(p2y))
    return -g0, -g1


def neg_gradient_f(p2x: float, p2y: float, p1x: float, p1y: float) -> tuple:
    """The gradient of ``-f`` with respect to p2: two forward sweeps."""
    (g0,) = iz.autodiff(Forward, objective, Const(p1x), Const(p1y),
                        Duplicated(p2x, 1.0), Duplicated(p2y, 0.0))
    (g1,) = iz.autodiff(Forward, objective, Const(p1x), Const(p1y),
                        Duplicated(p2x, 0.0), Duplicated(p2y, 1.0))
    return -g0, -g1


def max_primal_r(p1x: float, p1y: float, p2x: float, p2y: float) -> float:
    """``max_p2 f(p1, p2)`` by gradient ascent from (p2x, p2y), reverse-mode inner AD."""
    q0, q1 = gd.argmin2(neg_objective, neg_gradient_r, p2x, p2y, p1x, p1y)
    return objective(p1x, p1y, q0, q1)


def max_primal_f(p1x: float, p1y: float, p2x: float, p2y: float) -> float:
    """``max_p2 f(p1, p2)`` by gradient ascent from (p2x, p2y), forward-mode inner AD."""
    q0, q1 = gd.argmin2(neg_objective, neg_gradient_f, p2x, p2y, p1x, p1y)
    return objective(p1x, p1y, q0, q1)


def outer_gradient(outer: str, max_primal, p1: np.ndarray, start: tuple) -> np.ndarray:
    """d max_primal / d p1 (the inner descent and its AD differentiated through)."""
    if outer == "r":
        ((g0, g1, _, _),) = iz.autodiff(Reverse, max_primal, Active, Active(p1[0]), Active(p1[1]),
                                        Const(start[0]), Const(start[1]))
        return np.array([g0, g1])
    (g0,) = iz.autodiff(Forward, max_primal, Duplicated(p1[0], 1.0), Duplicated(p1[1], 0.0),
                        Const(start[0]), Const(start[1]))
    (g1,) = iz.autodiff(Forward, max_primal, Duplicated(p1[0], 0.0), Duplicated(p1[1], 1.0),
                        Const(start[0]), Const(start[1]))
    return np.array([g0, g1])


def run(variant: str, start: tuple[float, float]) -> list[float]:
    """One GradBench function (``ff``, ``fr``, ``rf``, ``rr``): ``[p1*, p2*]``."""
    outer, inner = variant
    max_primal = max_primal_r if inner == "r" else max_primal_f
    neg_gradient = neg_gradient_r if inner == "r" else neg_gradient_f

    def cost(p1: np.ndarray) -> float:  # the compiled primal of max_primal
        return iz.autodiff(ForwardWithPrimal, max_primal, Const(p1[0]), Const(p1[1]),
                           Const(start[0]), Const(start[1]))[1]

    p1 = gd.argmin(cost, lambda p1: outer_gradient(outer, max_primal, p1, start), np.array(start))
    p2 = gd.argmin2(neg_objective, neg_gradient, start[0], start[1], float(p1[0]), float(p1[1]))
    return [float(p1[0]), float(p1[1]), float(p2[0]), float(p2[1])]
