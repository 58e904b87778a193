"""The user's own float arithmetic keeps IEEE semantics through the AD clean-up passes
(``simplify-ad`` folds only the zeros AD made): ``inf * 0.0`` is NaN, ``-2.0 * 0.0`` is
``-0.0``, ``0.0 - 0.0`` is ``+0.0``, ``0.0 / 0.0`` is NaN, as numpy computes them."""

import numpy as np
import pytest

from isozyme import Active, Duplicated, ForwardWithPrimal, ReverseWithPrimal, autodiff


def times_zero(x):
    return x * 0.0


def times_minus_zero(x):
    return x * -0.0


def zero_over(x):
    return 0.0 / x


def zero_minus(x):
    return 0.0 - x


def plus_zero(x):
    return x + 0.0


@pytest.mark.parametrize("f, x", [(times_zero, np.inf), (times_zero, -2.0),
                                  (times_minus_zero, 3.0), (zero_over, 0.0),
                                  (zero_minus, 0.0), (plus_zero, -0.0)])
def test_primal_matches_numpy_bit_for_bit(f, x):
    with np.errstate(all="ignore"):
        want = f(np.float64(x))
    for got in (autodiff(ReverseWithPrimal, f, Active, Active(x))[1],
                autodiff(ForwardWithPrimal, f, Duplicated(x, 1.0))[1]):
        if np.isnan(want):
            assert np.isnan(got)
        else:
            assert got == want and np.signbit(got) == np.signbit(want)


def test_derivative_of_a_product_with_zero_is_still_simplified():
    # d/dx (x * 0.0) = 0.0 at a finite point in both modes
    assert autodiff(ReverseWithPrimal, times_zero, Active, Active(2.0))[0] == (0.0,)
    assert autodiff(ForwardWithPrimal, times_zero, Duplicated(2.0, 1.0))[0] == 0.0
