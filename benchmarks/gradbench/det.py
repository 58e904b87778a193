"""GradBench ``det``: the determinant of an ell x ell matrix by expansion by minors, and
its gradient (the cofactor matrix).

``det(A) = sum_j (-1)^j A[0, j] det(minor(A, 0, j))``, recursively down to 1 x 1 minors
(cmpad's ``det_by_minor``): ell! products, a benchmark of scalar-heavy recursive code.

Written as a Python user writes it: the minor left after removing rows and columns is
named by the tuples of its remaining row and column indices, starting from
``tuple(range(A.shape[0]))``, and the recursion stops at one row.  The recursion runs
while tracing, on those Python tuples, so the matrix's size must be a Python int when
tracing (one compilation per ell).  With isozyme: ``primal`` is a ``ForwardWithPrimal``
call with the matrix Const, ``gradient`` one reverse sweep (``gradient(Reverse, ...)``).
"""

from __future__ import annotations

import numpy as np

import isozyme as iz
from isozyme import Const, ForwardWithPrimal, Reverse

from gradbench.inputs import DetInput


def det_of_minor(A: np.ndarray, rows: tuple[int, ...], cols: tuple[int, ...]) -> float:
    """The determinant of ``A[np.ix_(rows, cols)]``, expanded along its first row."""
    if len(rows) == 1:
        return A[rows[0], cols[0]]
    total = 0.0
    sign = 1.0
    for j, c in enumerate(cols):
        sub = det_of_minor(A, rows[1:], cols[:j] + cols[j + 1:])
        total = total + sign * A[rows[0], c] * sub
        sign = -sign
    return total


def det(A: np.ndarray) -> float:
    """The determinant of the square matrix ``A`` by expansion by minors."""
    n = A.shape[0]
    return det_of_minor(A, tuple(range(n)), tuple(range(n)))


def run_primal(inp: DetInput) -> float:
    """GradBench's ``primal`` function: the determinant, compiled by isozyme."""
    return iz.autodiff(ForwardWithPrimal, det, Const(inp.A))[1]


def run_gradient(inp: DetInput) -> np.ndarray:
    """GradBench's ``gradient`` function: d det(A) / d A, flattened row-major."""
    (g,) = iz.gradient(Reverse, det, inp.A)
    return g.reshape(-1)
