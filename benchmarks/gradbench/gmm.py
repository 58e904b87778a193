"""GradBench ``gmm``: the log posterior of a Gaussian mixture with a Wishart prior on the
precision matrices, and its gradient.

Component k has weight ``softmax(alpha)_k``, mean ``mu[k]`` and precision ``Q_k^T Q_k``,
where ``Q_k`` is lower triangular with diagonal ``exp(q[k])`` and strictly lower part
``l[k]`` (filled column by column).  With ``beta_ik = alpha_k + sum(q[k]) -
|Q_k (x_i - mu_k)|^2 / 2``, the log likelihood is ``sum_i logsumexp_k beta_ik -
n logsumexp(alpha) - n d log(2 pi) / 2``; the log prior (Wishart, ``m`` extra degrees of
freedom, precision ``gamma``) is ``k C - sum_k (gamma^2 |Q_k|_F^2 / 2 - m sum(q[k]))``.
``objective`` is their sum; ``jacobian`` its gradient with respect to alpha, mu, q, l.

Written as a numpy user writes it (as GradBench's JAX and PyTorch tools do): the
triangular factors are built by a fancy-indexed store (``Qs[:, rows, cols] = l`` with
``cols, rows = np.triu_indices(d, 1)``: column by column), the data term is one
``einsum`` over all points and components, ``logsumexp`` is the max-shifted form, and the
constant of the prior sums ``math.lgamma`` over a generator.  With isozyme: the objective
is a ``ForwardWithPrimal`` call with every argument Const, the gradient one reverse sweep
(``gradient(Reverse, ...)``).
"""

from __future__ import annotations

import math

import numpy as np

import isozyme as iz
from isozyme import Const, ForwardWithPrimal, Reverse

from gradbench.inputs import GMMInput


def logsumexp(v: np.ndarray) -> np.ndarray:
    """``log(sum(exp(v)))`` over the last axis, shifted by the maximum for stability."""
    mx = np.max(v, axis=-1)
    return np.log(np.sum(np.exp(v - mx[..., None]), axis=-1)) + mx


def log_gamma_distrib(a: float, p: int) -> float:
    """The log of the multivariate gamma function ``Gamma_p(a)``."""
    return 0.25 * p * (p - 1) * math.log(math.pi) + sum(
        math.lgamma(a + 0.5 * (1 - j)) for j in range(1, p + 1))


def log_wishart_prior(Qs: np.ndarray, sum_qs: np.ndarray, m: int, gamma: float) -> float:
    """The log density of the Wishart prior of every component's precision ``Q^T Q``."""
    k, d, _ = Qs.shape
    n = d + m + 1
    frobenius = np.sum(Qs ** 2, axis=(1, 2))
    out = np.sum(0.5 * gamma * gamma * frobenius - m * sum_qs)
    c = n * d * (math.log(gamma) - 0.5 * math.log(2.0)) - log_gamma_distrib(0.5 * n, d)
    return k * c - out


def objective(alpha: np.ndarray, mu: np.ndarray, q: np.ndarray, l: np.ndarray,
              x: np.ndarray, m: int, gamma: float) -> float:
    """The log posterior of the mixture (alpha, mu, q, l) given the points ``x``."""
    n, d = x.shape
    k = alpha.shape[0]
    sum_qs = np.sum(q, axis=1)
    cols, rows = np.triu_indices(d, 1)  # the strictly lower part, column by column
    diag = np.arange(d)
    Qs = np.zeros((k, d, d))
    Qs[:, diag, diag] = np.exp(q)
    Qs[:, rows, cols] = l
    xcentered = x[:, None, :] - mu[None, :, :]  # (n, k, d)
    Qxcentered = np.einsum("kij,nkj->nki", Qs, xcentered)
    main_term = alpha + sum_qs - 0.5 * np.sum(Qxcentered ** 2, axis=2)  # (n, k)
    slse = np.sum(logsumexp(main_term))
    const = -n * d * 0.5 * math.log(2.0 * math.pi)
    return const + slse - n * logsumexp(alpha) + log_wishart_prior(Qs, sum_qs, m, gamma)


def run_objective(inp: GMMInput) -> float:
    """GradBench's ``objective`` function: the log posterior, compiled by isozyme."""
    return iz.autodiff(ForwardWithPrimal, objective, Const(inp.alpha), Const(inp.mu),
                       Const(inp.q), Const(inp.l), Const(inp.x), Const(inp.m),
                       Const(inp.gamma))[1]


def run_jacobian(inp: GMMInput) -> dict[str, list]:
    """GradBench's ``jacobian`` function: the gradient, one reverse sweep, as the JSON
    object GradBench expects (``alpha``, ``mu``, ``q``, ``l``)."""
    g_alpha, g_mu, g_q, g_l, *_ = iz.gradient(Reverse, objective, inp.alpha, inp.mu, inp.q,
                                              inp.l, Const(inp.x), Const(inp.m),
                                              Const(inp.gamma))
    return {"alpha": g_alpha.tolist(), "mu": g_mu.tolist(), "q": g_q.tolist(),
            "l": g_l.tolist()}
