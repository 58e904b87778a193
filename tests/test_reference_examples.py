"""The examples of Enzyme.jl's getting-started guide, with its verbatim numbers."""

import numpy as np
import pytest

import isozyme as iz
from isozyme import (
    Active,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Reverse,
    ReverseWithPrimal,
    autodiff,
    gradient,
)


def rosenbrock(x, y):
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def test_reverse():
    assert autodiff(Reverse, rosenbrock, Active, Active(1.0), Active(2.0)) == ((-400.0, 200.0),)


def test_reverse_with_primal():
    assert autodiff(ReverseWithPrimal, rosenbrock, Active, Active(1.0), Active(2.0)) == (
        (-400.0, 200.0),
        100.0,
    )


def test_forward_with_primal_second_arg():
    assert autodiff(ForwardWithPrimal, rosenbrock, Const(1.0), Duplicated(3.0, 1.0)) == (
        400.0,
        400.0,
    )


def test_forward_second_arg():
    assert autodiff(Forward, rosenbrock, Const(1.0), Duplicated(3.0, 1.0)) == (400.0,)


def test_forward_with_primal_first_arg():
    assert autodiff(ForwardWithPrimal, rosenbrock, Duplicated(1.0, 1.0), Const(3.0)) == (
        -800.0,
        400.0,
    )


def test_forward_first_arg():
    assert autodiff(Forward, rosenbrock, Duplicated(1.0, 1.0), Const(3.0)) == (-800.0,)


def test_forward_both_seeded_sums():
    assert autodiff(
        ForwardWithPrimal, rosenbrock, Duplicated(1.0, 1.0), Duplicated(3.0, 1.0)
    ) == (-400.0, 400.0)
    assert autodiff(Forward, rosenbrock, Duplicated(1.0, 1.0), Duplicated(3.0, 1.0)) == (
        -400.0,
    )


def test_duplicated_zero_shadow_equals_const():
    a = autodiff(Forward, rosenbrock, Duplicated(1.0, 0.0), Duplicated(3.0, 1.0))
    b = autodiff(Forward, rosenbrock, Const(1.0), Duplicated(3.0, 1.0))
    assert a == b == (400.0,)


def test_return_activity_duplicated_class():
    assert autodiff(
        ForwardWithPrimal, rosenbrock, Duplicated, Duplicated(1.0, 1.0), Duplicated(3.0, 1.0)
    ) == (-400.0, 400.0)


def test_gradient_scalar_arguments():
    assert gradient(Reverse, rosenbrock, 1.0, 2.0) == (-400.0, 200.0)
    assert gradient(Forward, rosenbrock, 1.0, 2.0) == (-400.0, 200.0)
    assert gradient(Forward, rosenbrock, 1.0, 2.0, chunk=1) == (-400.0, 200.0)
    res = gradient(ReverseWithPrimal, rosenbrock, 1.0, 2.0)
    assert res.derivs == (-400.0, 200.0) and res.val == 100.0
    res = gradient(ForwardWithPrimal, rosenbrock, 1.0, 2.0)
    assert res.derivs == (-400.0, 200.0) and res.val == 100.0


def test_gradient_const_argument_gives_none():
    assert gradient(Reverse, rosenbrock, 1.0, Const(2.0)) == (-400.0, None)
    assert gradient(Forward, rosenbrock, Const(1.0), 2.0) == (None, 200.0)


def test_public_names():
    for name in ("autodiff", "gradient", "ir", "Forward", "ForwardWithPrimal", "Reverse",
                 "ReverseWithPrimal", "Const", "Active", "Duplicated", "DuplicatedNoNeed",
                 "BatchDuplicated", "BatchDuplicatedNoNeed", "gradient_", "jacobian", "hvp",
                 "hvp_", "hvp_and_gradient_", "vjp", "make_zero", "onehot"):
        assert hasattr(iz, name)
        assert name in iz.__all__


# The reference document's vector-mode, convenience and hvp examples, with its numbers
# (more of each in test_batch_forward.py, test_vjp.py and test_hvp.py).
def rosenbrock_inp(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2


def foo(x):
    return np.array([rosenbrock_inp(x), np.prod(x)])


def test_vector_forward_mode():
    assert autodiff(ForwardWithPrimal, rosenbrock, iz.BatchDuplicated(1.0, (1.0, 0.0)),
                    iz.BatchDuplicated(3.0, (0.0, 1.0))) == ((-800.0, 400.0), 400.0)
    x = np.array([1.0, 3.0])
    dx = (np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert autodiff(ForwardWithPrimal, rosenbrock_inp, iz.BatchDuplicated(x, dx)) == (
        (-800.0, 400.0), 400.0)


def test_gradient_convenience():
    for mode in (Reverse, Forward):
        (g,) = gradient(mode, rosenbrock_inp, [1.0, 2.0])
        np.testing.assert_array_equal(g, [-400.0, 200.0])
    for mode in (iz.ReverseWithPrimal, ForwardWithPrimal):
        res = gradient(mode, rosenbrock_inp, [1.0, 2.0])
        np.testing.assert_array_equal(res.derivs[0], [-400.0, 200.0])
        assert res.val == 100.0
    dx = np.zeros(2)
    (out,) = iz.gradient_(Reverse, dx, rosenbrock_inp, [1.0, 2.0])
    assert out is dx
    np.testing.assert_array_equal(dx, [-400.0, 200.0])
    np.testing.assert_array_equal(gradient(Forward, rosenbrock_inp, [1.0, 2.0], chunk=1)[0],
                                  [-400.0, 200.0])


@pytest.mark.parametrize("call", [
    lambda: iz.jacobian(Reverse, foo, [1.0, 2.0]),
    lambda: iz.jacobian(iz.ReverseWithPrimal, foo, [1.0, 2.0]).derivs,
    lambda: iz.jacobian(Reverse, foo, [1.0, 2.0], chunk=2),
    lambda: iz.jacobian(Reverse, foo, [1.0, 2.0], chunk=2, n_outs=(2,)),
    lambda: iz.jacobian(Forward, foo, [1.0, 2.0]),
    lambda: iz.jacobian(Forward, foo, [1.0, 2.0], chunk=2),
])
def test_jacobian_convenience(call):
    (J,) = call()
    np.testing.assert_array_equal(J, [[-400.0, 200.0], [2.0, 1.0]])


def test_jacobian_with_primal_value():
    np.testing.assert_array_equal(iz.jacobian(iz.ReverseWithPrimal, foo, [1.0, 2.0]).val,
                                  [100.0, 2.0])


def sin_prod(x):
    return np.sin(x[0] * x[1])


def test_hvp_family():
    want_hvp = [19.69268826373025, 16.201003759768003]
    want_grad = [2.880510859951098, 1.920340573300732]
    np.testing.assert_allclose(iz.hvp(sin_prod, [2.0, 3.0], [5.0, 2.7]), want_hvp, rtol=1e-14)
    res = np.empty(2)
    iz.hvp_(res, sin_prod, [2.0, 3.0], [5.0, 2.7])
    np.testing.assert_allclose(res, want_hvp, rtol=1e-14)
    res, grad = np.empty(2), np.empty(2)
    iz.hvp_and_gradient_(res, grad, sin_prod, [2.0, 3.0], [5.0, 2.7])
    np.testing.assert_allclose(res, want_hvp, rtol=1e-14)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-14)
