"""The scalar examples of Enzyme.jl's getting-started guide, with its verbatim numbers."""

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
                 "ReverseWithPrimal", "Const", "Active", "Duplicated", "DuplicatedNoNeed"):
        assert hasattr(iz, name)
