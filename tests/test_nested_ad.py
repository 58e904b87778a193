"""Nested AD: ``autodiff``/``gradient`` called on traced values inside a traced function
(isozyme/frontends/python/nested.py, inner-first ``enzyme-differentiate``)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from isozyme import (
    Active,
    AnnotationError,
    BatchDuplicated,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Reverse,
    ReverseWithPrimal,
    UnsupportedError,
    autodiff,
    gradient,
    ir,
)


def mul(x, y):
    return x * y


def x_times_dy_xy(x):
    """x * d/dy (x * y) = x * x."""
    return x * autodiff(Reverse, mul, Active, Const(x), Active(1.5))[0][1]


@pytest.mark.parametrize("x", [3.0, -0.7])
def test_scalar_nested_reverse_inside(x):
    assert autodiff(Reverse, x_times_dy_xy, Active, Active(x)) == ((2 * x,),)
    assert autodiff(Forward, x_times_dy_xy, Duplicated(x, 1.0)) == (2 * x,)
    assert autodiff(ForwardWithPrimal, x_times_dy_xy, Duplicated(x, 1.0)) == (2 * x, x * x)


def dx_of_xx(x):
    """d/dx (x * x) by forward mode inside: 2 x."""
    return autodiff(Forward, mul, Duplicated(x, 1.0), Duplicated(x, 1.0))[0]


def test_scalar_nested_forward_inside():
    assert autodiff(Forward, dx_of_xx, Duplicated(1.25, 1.0)) == (2.0,)
    assert autodiff(Reverse, dx_of_xx, Active, Active(1.25)) == ((2.0,),)


def test_with_primal_inside():
    def value_and_slope(x):
        d, v = autodiff(ReverseWithPrimal, mul, Active, Active(x), Const(x))
        s, p = autodiff(ForwardWithPrimal, mul, Duplicated(x, 1.0), Const(3.0))
        return d[0] + v + s + p  # x + x*x + 3 + 3x

    got = autodiff(ReverseWithPrimal, value_and_slope, Active, Active(2.0))
    assert got == ((1.0 + 4.0 + 3.0,), 2.0 + 4.0 + 3.0 + 6.0)


def sin_sum(x):
    s = 0.0
    for i in range(len(x)):
        s += math.sin(x[i]) * x[i]
    return s


def gradient_into(x, dx):
    autodiff(Reverse, sin_sum, Active, Duplicated(x, dx))


X = np.array([0.3, 1.2, -0.5, 2.0])
V = np.array([1.0, 0.5, 2.0, -1.0])
GRAD = np.cos(X) * X + np.sin(X)
HDIAG = -np.sin(X) * X + 2 * np.cos(X)


def test_forward_over_reverse_with_a_loop():
    g, hv = np.zeros(4), np.zeros(4)
    assert autodiff(Forward, gradient_into, Duplicated(X, V), Duplicated(g, hv)) == (None,)
    np.testing.assert_allclose(g, GRAD, rtol=1e-14)
    np.testing.assert_allclose(hv, HDIAG * V, rtol=1e-13)


def test_inner_reverse_accumulates_into_the_shadow():
    g, hv = np.ones(4), np.zeros(4)
    autodiff(Forward, gradient_into, Duplicated(X, V), Duplicated(g, hv))
    np.testing.assert_allclose(g, 1.0 + GRAD, rtol=1e-14)


def directional(x, v):
    """The forward derivative of sin_sum along v (a loop, forward mode inside)."""
    return autodiff(Forward, sin_sum, Duplicated(x, v))[0]


def test_forward_over_forward_with_a_loop():
    # d/dx <grad, v> along w = v^T H w; H is diagonal here
    w = np.array([0.5, -1.0, 1.5, 2.0])
    got = autodiff(Forward, directional, Duplicated(X, w), Const(V))[0]
    np.testing.assert_allclose(got, np.sum(HDIAG * V * w), rtol=1e-13)


def test_reverse_over_forward_with_a_loop():
    dx = np.zeros(4)
    autodiff(Reverse, directional, Active, Duplicated(X, dx), Const(V))
    np.testing.assert_allclose(dx, HDIAG * V, rtol=1e-13)


def test_reverse_over_reverse_with_a_loop():
    def grad_dot(x, v):
        dx = np.zeros_like(x)
        autodiff(Reverse, sin_sum, Active, Duplicated(x, dx))
        s = 0.0
        for i in range(len(x)):
            s += dx[i] * v[i]
        return s

    dx = np.zeros(4)
    autodiff(Reverse, grad_dot, Active, Duplicated(X, dx), Const(V))
    np.testing.assert_allclose(dx, HDIAG * V, rtol=1e-13)


def test_gradient_inside_a_traced_function():
    def energy(x):
        g = gradient(Reverse, sin_sum, x)[0]
        return np.sum(g * g)

    dx = np.zeros(4)
    autodiff(Reverse, energy, Active, Duplicated(X, dx))
    np.testing.assert_allclose(dx, 2 * GRAD * HDIAG, rtol=1e-12)

    def scalar(x):
        return gradient(Reverse, mul, x, 4.0)[0] * x  # 4 x

    assert autodiff(Reverse, scalar, Active, Active(1.5)) == ((4.0,),)


def test_the_traced_stage_holds_the_request():
    text = ir(Reverse, x_times_dy_xy, Active, Active(3.0), stage="traced")
    assert "enzyme.autodiff @mul" in text
    text = ir(Forward, gradient_into, Duplicated(X, V), Duplicated(X.copy(), V.copy()),
              stage="differentiated")
    assert "fwddiffe" in text


# -- refused -----------------------------------------------------------------------------
def test_closure_over_a_traced_value_is_refused():
    def closure(x):
        return autodiff(Reverse, lambda y: x * y, Active, Active(1.0))[0][0]

    with pytest.raises(UnsupportedError, match="closure.*pass that value as an argument"):
        autodiff(Reverse, closure, Active, Active(2.0))


def test_bad_annotations_inside():
    def active_array(x):
        return autodiff(Reverse, sin_sum, Active, Active(x))[0][0]

    with pytest.raises(AnnotationError, match="Duplicated"):
        autodiff(Reverse, active_array, Active, Duplicated(X, np.zeros(4)))

    def active_forward(x):
        return autodiff(Forward, mul, Active(x), Const(2.0))[0]

    with pytest.raises(AnnotationError, match="Active is for reverse mode"):
        autodiff(Reverse, active_forward, Active, Active(2.0))

    def batch(x):
        return autodiff(Forward, mul, BatchDuplicated(x, (1.0, 2.0)), Const(2.0))[0]

    with pytest.raises((UnsupportedError, AnnotationError)):
        autodiff(Reverse, batch, Active, Active(2.0))


# -- the reverse derivative of a while loop keeps values in enzyme.push/pop caches ------
def while_objective(x):
    s = 0.0
    i = 0
    while s < 5.0:
        s += math.exp(x[i % 2] * 0.3) + x[0] * x[1]
        i += 1
    return s


def while_gradient_into(x, dx):
    autodiff(Reverse, while_objective, Active, Duplicated(x, dx))


def test_forward_over_reverse_through_cache_stacks():
    x, v = np.array([0.4, 0.9]), np.array([1.0, -0.5])
    text = ir(Reverse, while_objective, Active, Duplicated(x, np.zeros(2)),
              stage="differentiated")
    assert "enzyme.push" in text and "enzyme.pop" in text
    g, hv = np.zeros(2), np.zeros(2)
    autodiff(Forward, while_gradient_into, Duplicated(x, v), Duplicated(g, hv))
    h = 1e-6
    fd = (gradient(Reverse, while_objective, x + h * v)[0]
          - gradient(Reverse, while_objective, x - h * v)[0]) / (2 * h)
    np.testing.assert_allclose(g, gradient(Reverse, while_objective, x)[0], rtol=1e-14)
    np.testing.assert_allclose(hv, fd, rtol=1e-6)


def test_reverse_over_reverse_through_cache_stacks_is_refused():
    def grad_sum(x):
        dx = np.zeros_like(x)
        autodiff(Reverse, while_objective, Active, Duplicated(x, dx))
        return dx[0] + dx[1]

    with pytest.raises(UnsupportedError, match="reverse mode over enzyme.push/enzyme.pop"):
        autodiff(Reverse, grad_sum, Active, Duplicated(np.array([0.4, 0.9]), np.zeros(2)))


def test_forward_inside_of_a_tuple_valued_function():
    def pair(x, y):
        return x * y, x + y

    def combine(x):
        (dp, ds), (p, s) = autodiff(ForwardWithPrimal, pair, Duplicated(x, 1.0), Const(2.0))
        return dp * p + ds * s  # 2 * 2x + 1 * (x + 2) = 5x + 2

    assert autodiff(ForwardWithPrimal, combine, Duplicated(3.0, 1.0)) == (5.0, 17.0)


# -- the inner function reads a global array (large: a hidden argument; small: baked) --
from isozyme import hvp  # noqa: E402
from isozyme.reads import hidden_array_ok  # noqa: E402

WG = np.cos(np.arange(200.0)).reshape(50, 4)  # hidden
WS = np.array([[1.0, 2.0, 0.5, -1.0], [0.3, -0.7, 2.0, 1.5]])  # baked


def tanh_data_big(x):
    return np.sum(np.tanh(WG @ x) ** 2)


def tanh_data_small(x):
    return np.sum(np.tanh(WS @ x) ** 2)


def _exact_grad(w, x):
    t = np.tanh(w @ x)
    return w.T @ (2 * t * (1 - t * t))


def _exact_hvp(w, x, v):
    t = np.tanh(w @ x)
    s = 1 - t * t  # d tanh
    return w.T @ ((2 * s * s - 4 * t * t * s) * (w @ v))


@pytest.mark.parametrize("f, w", [(tanh_data_big, WG), (tanh_data_small, WS)])
def test_forward_over_reverse_reading_a_global(f, w):
    assert hidden_array_ok(WG) and not hidden_array_ok(WS)

    def grad_into(x, dx):
        autodiff(Reverse, f, Active, Duplicated(x, dx))

    g, hv = np.zeros(4), np.zeros(4)
    autodiff(Forward, grad_into, Duplicated(X, V), Duplicated(g, hv))
    np.testing.assert_allclose(g, _exact_grad(w, X), rtol=1e-12)
    np.testing.assert_allclose(hv, _exact_hvp(w, X, V), rtol=1e-11, atol=1e-12)


def test_outer_and_two_inner_requests_share_the_global():
    """The outer function reads the array too, and calls the inner target twice (its
    cached trace): one hidden argument of the public function serves all three."""
    def twice(x, dx):
        autodiff(Reverse, tanh_data_big, Active, Duplicated(x, dx))
        autodiff(Reverse, tanh_data_big, Active, Duplicated(x, dx))
        return np.sum(WG @ x)

    g, hv = np.zeros(4), np.zeros(4)
    d, val = autodiff(ForwardWithPrimal, twice, Duplicated(X, V), Duplicated(g, hv))
    assert val == pytest.approx(float(np.sum(WG @ X)), rel=1e-13)
    assert d == pytest.approx(float(np.sum(WG @ V)), rel=1e-12)
    np.testing.assert_allclose(g, 2 * _exact_grad(WG, X), rtol=1e-12)
    np.testing.assert_allclose(hv, 2 * _exact_hvp(WG, X, V), rtol=1e-11, atol=1e-12)
    text = ir(Forward, twice, Duplicated(X, V), Duplicated(g, hv), stage="traced")
    assert text.count("arith.constant") < 40  # WG is an argument, not baked element-wise
    assert re.search(r"func.func private @tanh_data_big\(%0: memref<\?xf64[^\n]*%1: "
                     r"memref<\?x\?xf64", text)  # the target takes it as an argument


def directional_big(x, v):
    return autodiff(Forward, tanh_data_big, Duplicated(x, v))[0]


def test_reverse_over_forward_reading_a_global():
    dx = np.zeros(4)
    autodiff(Reverse, directional_big, Active, Duplicated(X, dx), Const(V))
    np.testing.assert_allclose(dx, _exact_hvp(WG, X, V), rtol=1e-11, atol=1e-12)


def test_nested_request_in_a_helper_reading_a_global():
    """A helper whose nested request reads the global uses the public function's hidden
    argument: the helper is inlined, as a helper reading the global itself is."""
    def helper(x, dx):
        autodiff(Reverse, tanh_data_big, Active, Duplicated(x, dx))

    def outer(x, dx):
        helper(x, dx)

    g, hv = np.zeros(4), np.zeros(4)
    autodiff(Forward, outer, Duplicated(X, V), Duplicated(g, hv))
    np.testing.assert_allclose(g, _exact_grad(WG, X), rtol=1e-12)
    np.testing.assert_allclose(hv, _exact_hvp(WG, X, V), rtol=1e-11, atol=1e-12)


def test_two_levels_of_nesting_reading_a_global():
    """hvp (forward over reverse) of a function that is itself a forward derivative:
    the innermost target's hidden argument comes through the middle one's."""
    w = np.array([0.5, -1.0, 1.5, 2.0])

    def slope(x):
        tangent = np.zeros_like(x) + w  # a traced shadow
        return autodiff(Forward, tanh_data_big, Duplicated(x, tangent))[0]  # grad . w

    h = 1e-5
    got = hvp(slope, X, V)
    fd = (gradient(Reverse, slope, X + h * V)[0] - gradient(Reverse, slope, X - h * V)[0]) / (2 * h)
    np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-6)
    assert np.abs(got).max() > 0.1
