"""``np.vectorize(g)`` made outside traced code (a module-level ``gammaln``) and called
on arrays in traced code: ``g``'s scalar rule applied elementwise
(``functions.converted_call``), checked against numpy and central differences.

The compiled code's cache guard must compare such a global by value (its ``pyfunc``,
``otypes``, ``excluded`` and ``signature``); until ``isozyme/reads.py`` does, the
``_vectorize_compared_by_value`` fixture adds that rule to ``reads._freeze``.
"""

import math

import numpy as np
import pytest

import isozyme.reads as reads
from isozyme import Active, Duplicated, Forward, ReverseWithPrimal, autodiff
from isozyme.errors import TraceError

gammaln = np.vectorize(math.lgamma)
erf_typed = np.vectorize(math.erf, otypes=[float])
gammaln_gufunc = np.vectorize(math.lgamma, signature="()->()")


@pytest.fixture(autouse=True)
def _vectorize_compared_by_value(monkeypatch):
    """What reads._freeze should do for np.vectorize (see the module docstring)."""
    if not isinstance(_unfrozen(gammaln), Exception):
        return  # reads.py compares np.vectorize already
    freeze = reads._freeze

    def freeze_vectorize(v, budget, depth):
        if isinstance(v, np.vectorize):
            return (np.vectorize, *(freeze(x, budget, depth + 1) for x in
                                    (v.pyfunc, v.otypes, v.excluded, v.signature)))
        return freeze(v, budget, depth)

    monkeypatch.setattr(reads, "_freeze", freeze_vectorize)


def _unfrozen(v):
    try:
        return reads.freeze(v)
    except reads.Unfreezable as exc:
        return exc


def _fd_gradient(f, v, eps=1e-6):
    g = np.zeros_like(v)
    for i in np.ndindex(v.shape):
        e = np.zeros_like(v)
        e[i] = eps
        g[i] = (f(v + e) - f(v - e)) / (2 * eps)
    return g


def weighted_gammaln(x):
    return np.sum(gammaln(x) * x)


def gammaln_of_a_matrix_expression(x):
    return np.sum(gammaln(x[:, None] * x[None, :] + 0.25))


def typed_erf_plus_gammaln(x):
    return np.sum(erf_typed(x - 1.0) + gammaln(2.0 * x))


PROGRAMS = [weighted_gammaln, gammaln_of_a_matrix_expression, typed_erf_plus_gammaln]


@pytest.mark.parametrize("f", PROGRAMS, ids=lambda f: f.__name__)
def test_primal_and_gradient(f):
    x = np.array([0.3, 1.7, 2.6, 4.4, 11.5])
    dx = np.zeros_like(x)
    (_, primal) = autodiff(ReverseWithPrimal, f, Active, Duplicated(x.copy(), dx))
    assert primal == pytest.approx(f(x), rel=1e-13)
    np.testing.assert_allclose(dx, _fd_gradient(f, x), rtol=1e-6, atol=1e-8)
    seed = np.array([0.5, -1.0, 0.25, 2.0, -0.75])
    (t,) = autodiff(Forward, f, Duplicated(x.copy(), seed))
    assert t == pytest.approx(float(np.sum(_fd_gradient(f, x) * seed)), rel=1e-6)


def test_exact_values():
    x = np.array([1.0, 3.0, 5.0])
    (_, primal) = autodiff(ReverseWithPrimal, weighted_gammaln, Active,
                           Duplicated(x, np.zeros(3)))
    assert primal == pytest.approx(3.0 * math.log(2.0) + 5.0 * math.log(24.0), rel=1e-14)


def test_vectorize_with_a_signature_is_refused():
    def f(x):
        return np.sum(gammaln_gufunc(x))

    with pytest.raises(TraceError, match=r"cannot trace a call to numpy\.\w+ on an array"):
        autodiff(ReverseWithPrimal, f, Active, Duplicated(np.ones(3), np.zeros(3)))
