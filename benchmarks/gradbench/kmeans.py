"""GradBench ``kmeans``: the k-means cost and one Newton step direction.

``cost``: ``sum_i min_j |P_i - C_j|^2``.  ``dir``: ``J / H`` elementwise, where ``J`` is
the gradient of the cost with respect to the centroids and ``H`` its Hessian, which is
diagonal, so ``H``'s diagonal is the Hessian-vector product with a vector of ones.
With isozyme: forward mode over a function that calls reverse-mode ``autodiff`` (nested
AD) gives the gradient and ``H @ ones`` in one call; ``run_dir_hvp`` spells the same
with ``gradient`` and ``hvp``.
"""

from __future__ import annotations

import numpy as np

import isozyme as iz
from isozyme import Active, Const, Duplicated, Forward, Reverse

from gradbench.inputs import KMeansInput


def cost(points: np.ndarray, centroids: np.ndarray) -> float:
    """The k-means objective, as loops: each point's squared distance to its nearest
    centroid, summed."""
    n, d = points.shape
    k = centroids.shape[0]
    total = 0.0
    for i in range(n):
        closest = np.inf
        for j in range(k):
            dist = 0.0
            for c in range(d):
                diff = points[i, c] - centroids[j, c]
                dist += diff * diff
            closest = min(closest, dist)
        total += closest
    return total


def run_cost(inp: KMeansInput) -> float:
    """GradBench's ``cost`` function: the objective, compiled by isozyme (the primal is
    a ``ForwardWithPrimal`` call with every argument Const)."""
    return iz.autodiff(iz.ForwardWithPrimal, cost, Const(inp.points), Const(inp.centroids))[1]


def gradient_into(centroids: np.ndarray, points: np.ndarray, grad: np.ndarray) -> None:
    """Write d cost / d centroids into ``grad``: one reverse sweep, by ``autodiff``."""
    dc = np.zeros_like(centroids)
    iz.autodiff(Reverse, cost, Active, Const(points), Duplicated(centroids, dc))
    grad[...] = dc


def run_dir(inp: KMeansInput) -> np.ndarray:
    """GradBench's ``dir`` function: gradient over Hessian diagonal, shape (k, d).

    Forward mode over ``gradient_into`` (nested AD: forward over reverse) with the
    centroids' tangent all ones gives the gradient (the primal output) and ``H @ ones``,
    the Hessian's diagonal (the tangent output), in one call.
    """
    grad = np.zeros_like(inp.centroids)
    hess_diag = np.zeros_like(inp.centroids)
    iz.autodiff(Forward, gradient_into, Duplicated(inp.centroids, np.ones_like(inp.centroids)),
                Const(inp.points), Duplicated(grad, hess_diag))
    return grad / hess_diag


def run_dir_hvp(inp: KMeansInput) -> np.ndarray:
    """``dir`` with the convenience calls: ``gradient(Reverse, ...)`` and ``hvp``.

    ``hvp(f, x, v)`` takes a function of ``x`` alone, so the points reach ``cost``
    through a closure; a closure's array has a shape known while tracing, so the loops
    over its rows run at trace time (unrolled into n*k*d iterations): fine for a tiny
    input, minutes for GradBench's (``run_dir`` passes the points as an argument).
    """
    points = inp.points

    def cost_of(centroids: np.ndarray) -> float:  # hvp(f, x, v) takes f of x alone
        return cost(points, centroids)

    (grad,) = iz.gradient(Reverse, cost_of, inp.centroids)
    hess_diag = iz.hvp(cost_of, inp.centroids, np.ones_like(inp.centroids))
    return grad / hess_diag
