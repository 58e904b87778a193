"""Sizes as Python ints where the value is fixed per call (issue 9, item 4).

Python code that needs a size of an array argument as an int (``tuple(range(
A.shape[0]))``, ``[0.0] * n``, ``assert``) traces again with that argument's shape
static, and compiles once per shape of it (like ``jax.jit``); sizes that only feed
traced code stay dynamic (one compilation for every shape); ints from traced values
are still TraceErrors.
"""

from __future__ import annotations

import numpy as np
import pytest

import isozyme as iz
from isozyme import (Active, BatchDuplicated, Const, Duplicated, Forward, ForwardWithPrimal,
                     Reverse)
from isozyme.calls import stats
from isozyme.errors import ShapeError, TraceError

RNG = np.random.default_rng(9)


def _compiles() -> int:
    return stats["compiles"]


# -- GradBench's det: Laplace expansion over tuples of row and column indices ----------
def det_of_minor(A, rows, cols):
    """The determinant of the minor of ``A`` on ``rows`` x ``cols`` (Python tuples),
    by Laplace expansion along its first row."""
    if len(rows) == 1:
        return A[rows[0], cols[0]]
    total = 0.0
    sign = 1.0
    for j in range(len(cols)):
        minor = det_of_minor(A, rows[1:], cols[:j] + cols[j + 1:])
        total = total + sign * A[rows[0], cols[j]] * minor
        sign = -sign
    return total


def det(A):
    """``det(A)`` as GradBench's det eval writes it: the indices are a Python tuple."""
    idx = tuple(range(A.shape[0]))
    return det_of_minor(A, idx, idx)


def _fd_gradient(f, A, h=1e-6):
    g = np.zeros_like(A)
    for k in np.ndindex(A.shape):
        up, down = A.copy(), A.copy()
        up[k] += h
        down[k] -= h
        g[k] = (f(up) - f(down)) / (2 * h)
    return g


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_det_by_laplace_expansion_value_and_gradient(n):
    A = RNG.standard_normal((n, n))
    value = iz.autodiff(ForwardWithPrimal, det, Const(A))[1]
    np.testing.assert_allclose(value, np.linalg.det(A), rtol=1e-12, atol=1e-14)
    (g,) = iz.gradient(Reverse, det, A)
    np.testing.assert_allclose(g, _fd_gradient(np.linalg.det, A), rtol=1e-6, atol=1e-8)
    if n > 1:  # the exact gradient: det(A) * inv(A)^T
        np.testing.assert_allclose(g, np.linalg.det(A) * np.linalg.inv(A).T, rtol=1e-9,
                                   atol=1e-12)
    (gf,) = iz.gradient(Forward, det, A)
    np.testing.assert_allclose(gf, g, rtol=1e-12, atol=1e-14)


def test_new_shape_compiles_again_and_known_shapes_do_not():
    iz.clear_cache()
    A3, B3, A4 = (RNG.standard_normal(s) for s in ((3, 3), (3, 3), (4, 4)))
    dA = np.zeros((3, 3))
    start = _compiles()
    iz.autodiff(Reverse, det, Active, Duplicated(A3, dA))
    assert _compiles() == start + 1
    np.testing.assert_allclose(dA, np.linalg.det(A3) * np.linalg.inv(A3).T, rtol=1e-9)
    dB = np.zeros((3, 3))
    iz.autodiff(Reverse, det, Active, Duplicated(B3, dB))  # same shape: cached
    assert _compiles() == start + 1
    np.testing.assert_allclose(dB, np.linalg.det(B3) * np.linalg.inv(B3).T, rtol=1e-9)
    dA4 = np.zeros((4, 4))
    _, val = iz.autodiff(iz.ReverseWithPrimal, det, Active, Duplicated(A4, dA4))
    assert _compiles() == start + 2  # a new shape: one more compilation
    np.testing.assert_allclose(val, np.linalg.det(A4), rtol=1e-12)
    np.testing.assert_allclose(dA4, np.linalg.det(A4) * np.linalg.inv(A4).T, rtol=1e-9)
    dA[:] = 0.0
    iz.autodiff(Reverse, det, Active, Duplicated(A3, dA))  # the first shape is kept
    assert _compiles() == start + 2
    np.testing.assert_allclose(dA, np.linalg.det(A3) * np.linalg.inv(A3).T, rtol=1e-9)


def test_specialised_ir_has_static_sizes():
    text = iz.ir(Reverse, det, Active, Duplicated(np.eye(3), np.zeros((3, 3))),
                 stage="traced")
    assert "memref<3x3xf64" in text
    assert "memref<?x?xf64" not in text


# -- ordinary programs do not specialise ------------------------------------------------
def trace_of(A):
    n = A.shape[0]
    s = 0.0
    for i in range(n):  # a traced loop: n stays dynamic
        s += A[i, i]
    return s + np.sum(np.zeros((n, n)))


def test_sizes_that_feed_traced_code_stay_dynamic():
    iz.clear_cache()
    start = _compiles()
    for n in (3, 5, 8):
        (g,) = iz.gradient(Reverse, trace_of, np.ones((n, n)))
        np.testing.assert_allclose(g, np.eye(n))
    assert _compiles() == start + 1
    text = iz.ir(Reverse, trace_of, Active, Duplicated(np.ones((3, 3)), np.zeros((3, 3))),
                 stage="traced")
    assert "memref<?x?xf64" in text and "memref<3x3" not in text


def local_sizes(x):
    k = len(tuple(range(np.zeros(3).shape[0])))  # folded: a local array's constant size
    return x[0] * k


def test_constant_sizes_fold_without_specialising():
    iz.clear_cache()
    start = _compiles()
    for n in (2, 6):
        (g,) = iz.gradient(Reverse, local_sizes, np.ones(n))
        np.testing.assert_allclose(g, np.eye(n)[0] * 3)
    assert _compiles() == start + 1


def python_lists(A, x):
    n = A.shape[0]
    weights = [0.0] * n              # list * size
    for i in list(range(n)):         # a Python loop over a Python list
        weights[i] = float(i + 1)
    assert len(weights) == n and A.shape[0] == A.shape[1]
    s = 0.0
    for i in range(n):
        s += weights[i] * A[i, i]
    m = x.shape[0]
    for j in range(m):               # x is not specialised: a traced loop
        s += x[j] * x[j]
    return s


def test_only_the_needed_argument_is_specialised():
    iz.clear_cache()
    start = _compiles()
    A = RNG.standard_normal((3, 3))
    for m in (2, 7):
        x = RNG.standard_normal(m)
        gA, gx = iz.gradient(Reverse, python_lists, A, x)
        np.testing.assert_allclose(gA, np.diag([1.0, 2.0, 3.0]))
        np.testing.assert_allclose(gx, 2 * x)
    assert _compiles() == start + 1  # x's shape is not part of the key
    gA, _ = iz.gradient(Reverse, python_lists, np.ones((4, 4)), np.ones(2))
    np.testing.assert_allclose(gA, np.diag([1.0, 2.0, 3.0, 4.0]))
    assert _compiles() == start + 2


def test_assert_on_a_size_is_checked_per_shape():
    with pytest.raises(AssertionError):
        iz.gradient(Reverse, python_lists, np.ones((3, 4)), np.ones(2))


def on_leaves(p):
    A, b = p["A"], p["b"]
    s = 0.0
    for i in tuple(range(A.shape[0])):
        s = s + A[i, i] * b[0]
    return s


def test_pytree_leaf_specialised():
    for n in (2, 3):
        p = {"A": np.eye(n) * 2.0, "b": np.array([1.5, 0.0])}
        dp = {"A": np.zeros((n, n)), "b": np.zeros(2)}
        iz.autodiff(Reverse, on_leaves, Active, Duplicated(p, dp))
        np.testing.assert_allclose(dp["A"], np.eye(n) * 1.5)
        np.testing.assert_allclose(dp["b"], [2.0 * n, 0.0])


def squares(A):
    n = A.shape[0]
    out = np.zeros(n)
    for i in tuple(range(n)):
        out[i] = A[i] * A[i]
    return out


def test_vjp_jacobian_batch_and_nested():
    for n in (3, 4):
        x = np.arange(1.0, n + 1)
        dx = np.zeros(n)
        iz.vjp(Reverse, squares, np.ones(n), Duplicated(x, dx))
        np.testing.assert_allclose(dx, 2 * x)
        (J,) = iz.jacobian(Reverse, squares, x)
        np.testing.assert_allclose(J, np.diag(2 * x))
        (Jf,) = iz.jacobian(Forward, squares, x)
        np.testing.assert_allclose(Jf, np.diag(2 * x))
        (lanes,) = iz.autodiff(Forward, lambda A: np.sum(squares(A)),
                               BatchDuplicated(x, (np.ones(n), x.copy())))
        np.testing.assert_allclose(lanes, (np.sum(2 * x), np.sum(2 * x * x)))
        np.testing.assert_allclose(iz.hvp(lambda A: np.sum(squares(A)), x, np.ones(n)),
                                   2 * np.ones(n))

        def outer(y):  # nested AD: reverse of squares inside a traced function
            dy = np.zeros_like(y)
            iz.autodiff(Reverse, lambda A: np.sum(squares(A)), Active, Duplicated(y, dy))
            return dy[n - 1]

        (g,) = iz.gradient(Reverse, outer, x)
        np.testing.assert_allclose(g, np.eye(n)[n - 1] * 2)


def indices_in_helper(A):
    return tuple(range(A.shape[0]))


def through_helper(A):
    idx = indices_in_helper(A)  # the size is needed inside a traced helper
    return A[idx[-1]] * 2.0


def test_size_needed_inside_a_helper():
    for n in (2, 5):
        (g,) = iz.gradient(Reverse, through_helper, np.arange(float(n)))
        np.testing.assert_allclose(g, np.eye(n)[n - 1] * 2)


def with_product(A, x):
    idx = tuple(range(A.shape[0]))
    return np.sum(A @ x) + A[idx[-1], 0]


def test_shape_errors_still_raised():
    gA, gx = iz.gradient(Reverse, with_product, np.ones((3, 3)), np.ones(3))
    np.testing.assert_allclose(gx, [3.0, 3.0, 3.0])
    with pytest.raises(ShapeError, match="array sizes do not fit"):
        iz.gradient(Reverse, with_product, np.ones((3, 3)), np.ones(4))


# -- ints from traced values are still errors --------------------------------------
def list_of_int_argument(x, k):
    return x * len([0.0] * k)


def range_of_float(x):
    return x * len(tuple(range(x)))


def range_of_element(A):
    return A[0] * len(tuple(range(A[0])))


@pytest.mark.parametrize("fn, args", [
    (list_of_int_argument, (Active(1.0), 3)),
    (range_of_float, (Active(2.0),)),
    (range_of_element, (Const(np.array([2, 3], dtype=np.int64)),)),
])
def test_ints_from_traced_values_are_trace_errors(fn, args):
    with pytest.raises(TraceError, match=r"cannot trace the use of a traced value as a "
                                         r"Python int \(an index, a `range` bound, a size\)"):
        iz.autodiff(Reverse, fn, *args)


def test_trace_without_shapes_refuses():
    from isozyme.frontends.python import array_memref_type, trace
    from xdsl.dialects.builtin import f64

    with pytest.raises(TraceError, match="as a Python int"):
        trace(det, [array_memref_type(2, f64)])
    static = trace(det, [array_memref_type(2, f64)], shapes=[(2, 2)])
    assert static.static_arguments == frozenset({0})
    assert static.arg_types[0].get_shape() == (2, 2)


G = np.arange(100.0)  # large: a hidden argument of the compiled code (isozyme/reads.py)


def reads_global_size(x):
    idx = tuple(range(G.shape[0]))  # a size of a hidden global array, needed as an int
    return x * G[idx[-1]] + np.sum(G * x)


def test_size_of_a_hidden_global_array():
    global G
    saved = G
    try:
        start = _compiles()
        assert iz.autodiff(Reverse, reads_global_size, Active, Active(2.0)) == ((99.0 + G.sum(),),)
        assert "memref<100xf64" in iz.ir(Reverse, reads_global_size, Active, Active(2.0),
                                         stage="traced")
        G = np.arange(80.0)  # another shape: the guard sees it, compiles again
        assert iz.autodiff(Reverse, reads_global_size, Active, Active(2.0)) == ((79.0 + G.sum(),),)
        G[:] = 1.0  # in place: no compilation
        assert iz.autodiff(Reverse, reads_global_size, Active, Active(2.0)) == ((81.0,),)
        assert _compiles() == start + 2
    finally:
        G = saved
