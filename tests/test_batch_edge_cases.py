"""Edge cases of batch mode, jacobian, vjp and hvp found in review: a batch of one lane,
lanes sharing a shadow, functions that write their arguments, aliasing hvp inputs,
float32 seeds, misplaced return activities, array-valued gradient(Forward), and
numpy that isozyme does not trace applied to a global array."""

import numpy as np
import pytest

import isozyme as iz
from isozyme import (
    Active,
    AnnotationError,
    BatchDuplicated,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Reverse,
    autodiff,
    gradient,
    jacobian,
    vjp,
)


def square(x):
    return x * x


def sum_sq(x):
    return np.sum(x * x)


def times(a, b):
    return a * b


# -- a batch of one lane is a batch: results in 1-tuples ----------------------------------
def test_batch_of_width_one():
    assert autodiff(Forward, square, BatchDuplicated(3.0, (1.0,))) == ((6.0,),)
    x = np.array([1.0, 2.0])
    assert autodiff(ForwardWithPrimal, sum_sq, BatchDuplicated(x, (np.array([1.0, 0.0]),))) == (
        (2.0,), 5.0)
    dx = np.zeros(2)
    assert vjp(Reverse, sum_sq, BatchDuplicated(x, (dx,)), seeds=(1.0,)) == (((None,),),)
    np.testing.assert_array_equal(dx, [2.0, 4.0])
    assert vjp(Reverse, times, Active(2.0), Active(3.0), seeds=(1.0,)) == (((3.0, 2.0),),)
    assert vjp(Reverse, times, Active(2.0), Active(3.0), seeds=(1.0, 2.0)) == (
        ((3.0, 2.0), (6.0, 4.0)),)


# -- every lane needs a shadow of its own --------------------------------------------------
def store_and_read(x, y):
    y[0] = x[0] * 2.0
    return y[0] * 3.0


def test_lanes_sharing_a_shadow_are_refused():
    d = np.zeros(3)
    with pytest.raises(AnnotationError, match="lanes 0 and 1 share memory"):
        BatchDuplicated(np.zeros(3), (d, d))
    block = np.zeros((3, 2))
    with pytest.raises(AnnotationError, match="lanes 0 and 2 share memory"):
        BatchDuplicated(np.zeros(3), (block[:, 0], np.zeros(3), block[:, 0]))
    with pytest.raises(AnnotationError, match="lanes 0 and 1 share memory"):
        BatchDuplicated({"a": np.zeros(2)}, ({"a": d[:2]}, {"a": d[1:]}))
    # rows of one block, and interleaved columns, are separate memory
    BatchDuplicated(np.zeros(2), (block[0, :2], block[1, :2]))
    BatchDuplicated(np.zeros(3), (block[:, 0], block[:, 1]))


def test_batched_lanes_of_a_written_argument_stay_apart():
    x, y = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    dx1, dx2 = np.zeros(3), np.zeros(3)
    dy1, dy2 = np.zeros(3), np.zeros(3)
    vjp(Reverse, store_and_read, BatchDuplicated(x, (dx1, dx2)), BatchDuplicated(y, (dy1, dy2)),
        seeds=(1.0, 10.0))
    np.testing.assert_array_equal(dx1, [6.0, 0.0, 0.0])
    np.testing.assert_array_equal(dx2, [60.0, 0.0, 0.0])
    t1, t2 = np.array([1.0, 0, 0]), np.array([10.0, 0, 0])
    lanes = autodiff(Forward, store_and_read, BatchDuplicated(x, (t1, t2)),
                     BatchDuplicated(y, (np.zeros(3), np.zeros(3))))[0]
    assert lanes == (6.0, 60.0)


# -- functions that write their arguments: every sweep sees the same inputs ---------------
def writes_its_argument(x):
    x[0] = x[0] * x[1]
    return x[0] * x[2]


def writes_and_returns_array(x):
    x[0] = x[0] * x[1]
    return np.array([x[0] * x[2], x[1]])


@pytest.mark.parametrize("mode", [Forward, Reverse])
@pytest.mark.parametrize("chunk", [1, 2, None])
def test_jacobian_of_a_function_writing_its_argument(mode, chunk):
    x = np.array([1.0, 2.0, 3.0])
    (J,) = jacobian(mode, writes_its_argument, x, chunk=chunk)
    np.testing.assert_array_equal(J, [6.0, 3.0, 2.0])
    np.testing.assert_array_equal(x, [2.0, 2.0, 3.0])  # as one call of f leaves it
    x = np.array([1.0, 2.0, 3.0])
    (J,) = jacobian(mode, writes_and_returns_array, x, chunk=chunk)
    np.testing.assert_array_equal(J, [[6.0, 3.0, 2.0], [0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(x, [2.0, 2.0, 3.0])


def test_gradient_forward_of_a_function_writing_its_argument():
    x = np.array([1.0, 2.0, 3.0])
    (g,) = gradient(Forward, writes_its_argument, x, chunk=1)
    np.testing.assert_array_equal(g, [6.0, 3.0, 2.0])


# -- hvp, vjp, jacobian and gradient input handling -----------------------------------------
def cubic(x):
    return np.sum(x * x * x)


def test_hvp_along_x_itself():
    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(iz.hvp(cubic, x, x), 6 * x * x)
    np.testing.assert_array_equal(x, [1.0, 2.0])


def test_reverse_jacobian_with_n_outs_in_float32():
    x = np.array([1.0, 2.0], dtype=np.float32)
    (J,) = jacobian(Reverse, sin_of, x, n_outs=(2,))
    assert J.dtype == np.float32
    np.testing.assert_allclose(J, np.diag(np.cos(x)), rtol=1e-6)


def sin_of(x):
    return np.sin(x)


def test_vjp_refuses_a_return_activity():
    x, dx = np.ones(2), np.zeros(2)
    with pytest.raises(AnnotationError, match="vjp takes no return activity"):
        vjp(Reverse, sum_sq, 1.0, iz.Const, Duplicated(x, dx))
    with pytest.raises(AnnotationError, match="vjp takes no return activity"):
        vjp(Reverse, sum_sq, Active, BatchDuplicated(x, (dx, np.zeros(2))), seeds=(1.0, 1.0))
    np.testing.assert_array_equal(dx, 0.0)


def test_gradient_forward_refuses_an_array_valued_function():
    with pytest.raises(AnnotationError, match="gradient needs a function returning a float"):
        gradient(Forward, sin_of, np.array([1.0, 2.0]))
    with pytest.raises(AnnotationError, match="chunk must be a positive int"):
        gradient(Forward, sum_sq, np.array([1.0, 2.0]), chunk=True)


# -- numpy that isozyme does not trace, on a large global array -----------------------------
DATA = np.linspace(0.0, 1.0, 300).reshape(100, 3)


def scaled_by_norm(x):
    return x * np.linalg.norm(DATA)


def test_untraced_numpy_of_a_global_array_is_computed_at_trace_time():
    ((d,),) = autodiff(Reverse, scaled_by_norm, Active, Active(2.0))
    assert d == pytest.approx(np.linalg.norm(DATA), rel=1e-14)
