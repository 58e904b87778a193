"""hvp, hvp_, hvp_and_gradient_: forward over reverse (isozyme/hessians.py).

Exact reference numbers (Enzyme.jl's documentation), finite differences of the reverse
gradient for array programs (a loop, a stencil, a GMM objective), symmetric Hessians
assembled from hvps, bad input leaving buffers untouched, one trace per function.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import isozyme as iz
from isozyme import AnnotationError, ReadOnlyError, Reverse, gradient, hvp, hvp_, hvp_and_gradient_
from isozyme.calls import stats
from tests.array_programs import gmm_objective

X0 = np.array([2.0, 3.0])
V0 = np.array([5.0, 2.7])
HVP0 = [19.69268826373025, 16.201003759768003]
GRAD0 = [2.880510859951098, 1.920340573300732]


def sin_product(x):
    return math.sin(x[0] * x[1])


def sin_product_np(x):
    return np.sin(x[0] * x[1])


@pytest.mark.parametrize("f", [sin_product, sin_product_np])
def test_reference_hvp(f):
    np.testing.assert_allclose(hvp(f, X0, V0), HVP0, rtol=0, atol=1e-12)


def test_reference_hvp_inplace_and_gradient():
    res = np.full(2, 7.0)
    assert hvp_(res, sin_product, X0, V0) is res
    np.testing.assert_allclose(res, HVP0, rtol=0, atol=1e-12)
    res, grad = np.full(2, 7.0), np.full(2, -1.0)
    out = hvp_and_gradient_(res, grad, sin_product, X0, V0)
    assert out[0] is res and out[1] is grad
    np.testing.assert_allclose(res, HVP0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grad, GRAD0, rtol=0, atol=1e-12)


def test_lists_are_float64_arrays():
    np.testing.assert_allclose(hvp(sin_product, [2.0, 3.0], [5.0, 2.7]), HVP0, atol=1e-12)


# -- array programs against finite differences of the reverse gradient ---------------
def loop_objective(x):
    s = 0.0
    for i in range(len(x) - 1):
        s += math.sin(x[i] * x[i + 1]) + x[i] * x[i] * x[i + 1]
    return s


def stencil_objective(x):
    y = np.zeros_like(x)
    for i in range(1, len(x) - 1):
        y[i] = x[i - 1] - 2.0 * x[i] + x[i + 1]
    return np.sum(y * y * x) + np.sum(np.exp(0.1 * x))


RNG = np.random.default_rng(8)
ALPHAS = RNG.normal(size=3)
ICF = 0.2 * RNG.normal(size=(3, 2))
POINTS = RNG.normal(size=(5, 2))


def gmm_of_means(means):
    return gmm_objective(ALPHAS, means, ICF, POINTS)


def _fd_hvp(f, x, v, h=1e-5):
    gp = gradient(Reverse, f, x + h * v)[0]
    gm = gradient(Reverse, f, x - h * v)[0]
    return (gp - gm) / (2 * h)


@pytest.mark.parametrize("f, x", [
    (loop_objective, RNG.normal(size=6)),
    (stencil_objective, RNG.normal(size=7)),
    (gmm_of_means, RNG.normal(size=(3, 2))),
])
def test_hvp_against_finite_differences_of_gradient(f, x):
    v = RNG.normal(size=x.shape)
    got = hvp(f, x, v)
    np.testing.assert_allclose(got, _fd_hvp(f, x, v), rtol=1e-6, atol=1e-7)
    res, grad = np.empty_like(x), np.empty_like(x)
    hvp_and_gradient_(res, grad, f, x, v)
    np.testing.assert_allclose(res, got, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(grad, gradient(Reverse, f, x)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("f, n", [(loop_objective, 5), (stencil_objective, 6)])
def test_hessian_from_unit_vectors_is_symmetric(f, n):
    x = RNG.normal(size=n)
    hess = np.stack([hvp(f, x, e) for e in np.eye(n)], axis=1)
    np.testing.assert_allclose(hess, hess.T, rtol=0, atol=1e-8)
    assert np.abs(hess).max() > 0.1  # not trivially zero


def test_float32():
    x, v = X0.astype(np.float32), V0.astype(np.float32)
    got = hvp(sin_product_np, x, v)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, HVP0, rtol=1e-4)


def test_two_calls_trace_once():
    def quartic(x):
        return np.sum(x * x * x * x)

    x = np.array([1.0, -2.0, 0.5])
    before = stats["traces"]
    first = hvp(quartic, x, np.ones(3))
    np.testing.assert_allclose(first, 12 * x * x, rtol=1e-14)
    after_one = stats["traces"]
    second = hvp(quartic, 2 * x, np.ones(3))
    np.testing.assert_allclose(second, 48 * x * x, rtol=1e-14)
    assert after_one - before == 1
    assert stats["traces"] == after_one


# -- bad input -------------------------------------------------------------------------
def test_bad_shapes_leave_buffers_untouched():
    res, grad = np.full(2, 7.0), np.full(2, 8.0)
    with pytest.raises(AnnotationError, match="v has shape/dtype"):
        hvp_and_gradient_(res, grad, sin_product, X0, np.ones(3))
    with pytest.raises(AnnotationError, match="res has shape/dtype"):
        hvp_(np.zeros(3), sin_product, X0, V0)
    with pytest.raises(AnnotationError, match="grad has shape/dtype"):
        hvp_and_gradient_(res, np.zeros(2, dtype=np.float32), sin_product, X0, V0)
    assert (res == 7.0).all() and (grad == 8.0).all()


def test_non_float_inputs():
    with pytest.raises(AnnotationError, match="x must be a float64 or float32 array"):
        hvp(sin_product, np.array([2, 3]), V0)
    with pytest.raises(AnnotationError, match="x must be a float64 or float32 array"):
        hvp(sin_product, 2.0, V0)
    res = np.full(2, 7.0)
    with pytest.raises(AnnotationError, match="v must be a float64 or float32 array"):
        hvp_(res, sin_product, X0, "v")
    assert (res == 7.0).all()


def test_read_only_and_aliased_outputs():
    res, grad = np.full(2, 7.0), np.full(2, 8.0)
    res.flags.writeable = False
    with pytest.raises(ReadOnlyError, match="res is read-only"):
        hvp_and_gradient_(res, grad, sin_product, X0, V0)
    assert (res == 7.0).all() and (grad == 8.0).all()
    x = X0.copy()
    with pytest.raises(AnnotationError, match="share memory"):
        hvp_(x, sin_product, x, V0)
    np.testing.assert_array_equal(x, X0)


def test_failure_while_running_restores_outputs():
    def not_traceable(x):
        return float(np.random.rand()) * x[0]

    res, grad = np.full(2, 7.0), np.full(2, 8.0)
    with pytest.raises(iz.IsozymeError):
        hvp_and_gradient_(res, grad, not_traceable, X0, V0)
    assert (res == 7.0).all() and (grad == 8.0).all()


# -- f reads a global data array (nested.py: the target's hidden arrays) ---------------
from isozyme.reads import hidden_array_ok  # noqa: E402

POINTS_BIG = RNG.normal(size=(600, 2))  # hidden: passed as an argument on every call
POINTS_SMALL = RNG.normal(size=(4, 2))  # baked into the IR


def gmm_of_means_big(means):
    return gmm_objective(ALPHAS, means, ICF, POINTS_BIG)


def gmm_of_means_small(means):
    return gmm_objective(ALPHAS, means, ICF, POINTS_SMALL)


def test_global_data_sizes_are_on_both_sides_of_the_hidden_threshold():
    assert hidden_array_ok(POINTS_BIG) and not hidden_array_ok(POINTS_SMALL)


@pytest.mark.parametrize("f", [gmm_of_means_big, gmm_of_means_small])
def test_hvp_of_gmm_reading_global_data(f):
    x, v = RNG.normal(size=(3, 2)), RNG.normal(size=(3, 2))
    got = hvp(f, x, v)
    np.testing.assert_allclose(got, _fd_hvp(f, x, v), rtol=1e-6, atol=1e-6)
    assert np.abs(got).max() > 1.0  # the data matter: not trivially zero
    res, grad = np.empty_like(x), np.empty_like(x)
    hvp_and_gradient_(res, grad, f, x, v)
    np.testing.assert_allclose(res, got, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(grad, gradient(Reverse, f, x)[0], rtol=1e-12, atol=1e-12)


def _sum_of_squares_big(x):
    return np.sum((QB @ x) ** 2)  # H = 2 QB^T QB


QB = np.ones((40, 3))  # 120 elements: hidden


def test_hvp_sees_the_global_changed_in_place_and_rebound():
    """As at top level: a hidden array is fetched on every call (in-place changes and a
    rebinding of the same shape need no new trace); another shape traces again."""
    global QB
    saved = QB
    x, v = np.array([1.0, -2.0, 0.5]), np.array([0.3, 1.0, -1.0])
    try:
        QB = np.arange(120.0).reshape(40, 3) / 50.0
        np.testing.assert_allclose(hvp(_sum_of_squares_big, x, v), 2 * QB.T @ (QB @ v),
                                   rtol=1e-12)
        traces = stats["traces"]
        QB *= -1.5  # in place
        QB[3, 1] = 7.0
        np.testing.assert_allclose(hvp(_sum_of_squares_big, x, v), 2 * QB.T @ (QB @ v),
                                   rtol=1e-12)
        QB = np.cos(np.arange(120.0)).reshape(40, 3)  # rebound, same shape
        np.testing.assert_allclose(hvp(_sum_of_squares_big, x, v), 2 * QB.T @ (QB @ v),
                                   rtol=1e-12)
        assert stats["traces"] == traces
        QB = np.sin(np.arange(150.0)).reshape(50, 3)  # another shape
        np.testing.assert_allclose(hvp(_sum_of_squares_big, x, v), 2 * QB.T @ (QB @ v),
                                   rtol=1e-12)
    finally:
        QB = saved


QS = np.ones((2, 3))  # 6 elements: baked


def _sum_of_squares_small(x):
    return np.sum((QS @ x) ** 2)


def test_hvp_sees_a_small_global_changed_in_place():
    """A baked array is compared by value on every call: changed in place, it traces
    again (as at top level)."""
    x, v = np.array([1.0, -2.0, 0.5]), np.array([0.3, 1.0, -1.0])
    saved = QS.copy()
    try:
        QS[:] = [[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]]
        np.testing.assert_allclose(hvp(_sum_of_squares_small, x, v), 2 * QS.T @ (QS @ v),
                                   rtol=1e-12)
        QS[1, 2] = -3.0
        np.testing.assert_allclose(hvp(_sum_of_squares_small, x, v), 2 * QS.T @ (QS @ v),
                                   rtol=1e-12)
    finally:
        QS[:] = saved
