"""``resolve-shaped-type-result-dims``: whole-array code in an inlined helper (GradBench
ode's right-hand side) loses its run-time broadcast views and fuses; sizes that may
really be 1 keep numpy's broadcasting; gradients match central differences."""

import numpy as np
import pytest

import isozyme as iz
from isozyme import Active, Const, Duplicated, ForwardWithPrimal, Reverse
from isozyme.errors import ShapeError

from tests.finite_differences import central_gradient


def rhs(x, y):
    """ode's right-hand side, as a helper: z_0 = x_0, z_i = x_i y_{i-1}."""
    z = np.empty_like(y)
    z[0] = x[0]
    z[1:] = x[1:] * y[:-1]
    return z


def rk4_last(x, s):
    h = 1.0 / s
    y = np.zeros_like(x)
    for _ in range(s):
        k1 = rhs(x, y)
        k2 = rhs(x, y + h / 2 * k1)
        k3 = rhs(x, y + h / 2 * k2)
        k4 = rhs(x, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return np.sum(y * y)


def rk4_numpy(x, s):
    h = 1.0 / s
    y = np.zeros_like(x)
    for _ in range(s):
        k1 = rhs(x, y)
        k2 = rhs(x, y + h / 2 * k1)
        k3 = rhs(x, y + h / 2 * k2)
        k4 = rhs(x, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return float(np.sum(y * y))


def add_helper(a, b):
    return a + b


def head_plus(x):
    """x[:1] (size 1 at run time, not in the type) broadcast against x in a helper."""
    return np.sum(add_helper(x[:1], x) * x)


def head_plus_numpy(x):
    return float(np.sum((x[:1] + x) * x))


def test_rk4_step_fuses_and_loses_broadcast_views():
    x = np.linspace(0.5, 1.5, 6)
    ir = iz.ir(ForwardWithPrimal, rk4_last, Const(x), Const(3), stage="optimized")
    # before the pass: 21 loops and run-time broadcast checks in the time loop
    assert "could not be broadcast" not in ir
    assert ir.count('"scf.parallel"') <= 9
    assert "arith.select" not in ir.split("scf.for")[2]  # no stride select(size == 1, 0, 1)


@pytest.mark.parametrize("n", [2, 3, 7])
def test_rk4_gradient_matches_finite_differences(n):
    x = np.linspace(0.3, 1.7, n)
    dx = np.zeros_like(x)
    iz.autodiff(Reverse, rk4_last, Active, Duplicated(x, dx), Const(4))
    fd = central_gradient(rk4_numpy, [x], (4,))
    np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-9)
    val = iz.autodiff(ForwardWithPrimal, rk4_last, Const(x), Const(4))[1]
    assert val == pytest.approx(rk4_numpy(x, 4), rel=1e-12)


@pytest.mark.parametrize("n", [1, 4])
def test_size_that_may_be_one_still_broadcasts(n):
    x = np.linspace(1.0, 2.0, n)
    assert iz.autodiff(ForwardWithPrimal, head_plus, Const(x))[1] == pytest.approx(
        head_plus_numpy(x), rel=1e-12)
    (g,) = iz.gradient(Reverse, head_plus, x)
    np.testing.assert_allclose(g, central_gradient(head_plus_numpy, [x]), rtol=1e-6)


def mismatched(x, y):
    return np.sum(add_helper(x[1:], y))


def test_mismatched_sizes_in_a_helper_still_raise():
    with pytest.raises(ShapeError, match="could not be broadcast"):
        iz.autodiff(ForwardWithPrimal, mismatched, Const(np.ones(5)), Const(np.ones(3)))
