"""Vector (batch) forward mode: BatchDuplicated of width W, gradient(Forward, chunk=k),
jacobian in forward mode, make_zero and onehot.

Every batched lane is checked against finite differences and against the plain
(width 1) forward derivative along the same seed; the reference document's examples
give their exact numbers.
"""

import numpy as np
import pytest

import isozyme as iz
from isozyme import (
    AnnotationError,
    BatchDuplicated,
    BatchDuplicatedNoNeed,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Reverse,
    ReverseWithPrimal,
    autodiff,
    gradient,
)
from isozyme.calls import stats
from isozyme import jacobian, make_zero, onehot
from tests import array_programs as P
from tests.test_arrays_ad import ALL_DUPLICATED, CASES, copies, fd_gradient, tolerance

RNG = np.random.default_rng(8)


def rosenbrock(x, y):
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def foo(x):
    return np.array([P.rosenbrock_inp(x), x[0] * x[1]])


# -- the reference document ---------------------------------------------------------------
def test_reference_vector_forward_scalars():
    res = autodiff(ForwardWithPrimal, rosenbrock, BatchDuplicated(1.0, (1.0, 0.0)),
                   BatchDuplicated(3.0, (0.0, 1.0)))
    assert res == ((-800.0, 400.0), 400.0)


def test_reference_vector_forward_array():
    x = np.array([1.0, 3.0])
    dx_1, dx_2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    res = autodiff(ForwardWithPrimal, P.rosenbrock_inp, BatchDuplicated(x, (dx_1, dx_2)))
    assert res == ((-800.0, 400.0), 400.0)
    assert autodiff(Forward, P.rosenbrock_inp, BatchDuplicated(x, (dx_1, dx_2))) == (
        (-800.0, 400.0),
    )


def test_reference_gradient_forward_chunk():
    for chunk in (None, 1, 2, 5):
        (g,) = gradient(Forward, P.rosenbrock_inp, [1.0, 2.0], chunk=chunk)
        np.testing.assert_array_equal(g, [-400.0, 200.0])
    res = gradient(ForwardWithPrimal, P.rosenbrock_inp, [1.0, 2.0], chunk=2)
    np.testing.assert_array_equal(res.derivs[0], [-400.0, 200.0])
    assert res.val == 100.0


@pytest.mark.parametrize("chunk", [None, 1, 2])
def test_reference_jacobian_forward(chunk):
    (J,) = jacobian(Forward, foo, [1.0, 2.0], chunk=chunk)
    np.testing.assert_array_equal(J, [[-400.0, 200.0], [2.0, 1.0]])
    res = jacobian(ForwardWithPrimal, foo, [1.0, 2.0], chunk=chunk)
    np.testing.assert_array_equal(res.derivs[0], [[-400.0, 200.0], [2.0, 1.0]])
    np.testing.assert_array_equal(res.val, [100.0, 2.0])


# -- every array program, batched -----------------------------------------------------------
def _batched(name, args, k, seeds, cls=BatchDuplicated):
    return [
        cls(a, seeds) if i == k
        else BatchDuplicated(a, tuple(np.zeros_like(a) for _ in seeds))
        if name in ALL_DUPLICATED and isinstance(a, np.ndarray)
        else Const(a)
        for i, a in enumerate(args)
    ]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("width", [2, 3])
def test_batch_lanes_match_finite_differences_and_plain_forward(name, width):
    f, make = CASES[name]
    args = make()
    rtol, atol = tolerance(args)
    for k in [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]:
        want = fd_gradient(f, [a.astype(np.float64) if isinstance(a, np.ndarray) else a
                               for a in args], k)
        seeds = tuple(RNG.uniform(-1, 1, args[k].shape).astype(args[k].dtype)
                      for _ in range(width))
        work = copies(args)
        lanes, primal = autodiff(ForwardWithPrimal, f, *_batched(name, work, k,
                                                               tuple(s.copy() for s in seeds)))
        assert isinstance(lanes, tuple) and len(lanes) == width
        assert primal == pytest.approx(f(*copies(args)), rel=rtol)
        for lane, seed in zip(lanes, seeds):
            assert lane == pytest.approx(float(np.sum(want * seed)), rel=rtol, abs=atol * 10)
            plain_args = [
                Duplicated(a, seed.copy()) if i == k
                else Duplicated(a, np.zeros_like(a))
                if name in ALL_DUPLICATED and isinstance(a, np.ndarray) else Const(a)
                for i, a in enumerate(copies(args))
            ]
            (plain,) = autodiff(Forward, f, *plain_args)
            # tangent sums are reassociable: a lane may be summed in another order than
            # the plain sweep, equal to a few roundings of the arguments' type
            same = 1e-5 if rtol > 1e-6 else 1e-12
            assert lane == pytest.approx(plain, rel=same, abs=same)


def test_batch_of_returned_array_and_noneed():
    x = RNG.uniform(0.1, 0.9, 5)
    seeds = onehot(x, 0, 3)
    res = autodiff(Forward, P.ufuncs, BatchDuplicatedNoNeed(x, seeds))
    (lanes,) = res
    assert len(lanes) == 3
    for lane, seed in zip(lanes, seeds):
        (plain,) = autodiff(Forward, P.ufuncs, Duplicated(x, seed))
        assert lane == pytest.approx(plain, rel=1e-12)


def test_batch_function_returning_arrays_gives_array_lanes():
    x = RNG.uniform(-1, 1, 4)

    def f(x):
        return np.sin(x) * x

    lanes, primal = autodiff(ForwardWithPrimal, f, BatchDuplicated(x, onehot(x, 1, 3)))
    np.testing.assert_allclose(primal, np.sin(x) * x)
    d = np.cos(x) * x + np.sin(x)
    np.testing.assert_allclose(lanes[0], [0, d[1], 0, 0], atol=1e-15)
    np.testing.assert_allclose(lanes[1], [0, 0, d[2], 0], atol=1e-15)


def test_batch_mixes_scalar_and_array_arguments_and_const():
    def f(a, x, c):
        s = 0.0
        for i in range(x.shape[0]):
            s += a * x[i] ** 2 + c
        return s

    x = RNG.uniform(-1, 1, 3)
    lanes = autodiff(Forward, f, BatchDuplicated(2.0, (1.0, 0.0, 0.5)),
                     BatchDuplicated(x, (np.zeros(3), np.ones(3), x.copy())), Const(0.3))[0]
    assert lanes[0] == pytest.approx(np.sum(x**2))
    assert lanes[1] == pytest.approx(np.sum(2 * 2.0 * x))
    assert lanes[2] == pytest.approx(0.5 * np.sum(x**2) + np.sum(2 * 2.0 * x * x))


def test_batch_pytree_argument():
    def f(p):
        return p["w"][0] * p["w"][1] + p["b"] ** 2

    p = {"w": np.array([2.0, 3.0]), "b": 1.5}
    seeds = ({"w": np.array([1.0, 0.0]), "b": 0.0}, {"w": np.zeros(2), "b": 1.0})
    lanes, val = autodiff(ForwardWithPrimal, f, BatchDuplicated(p, seeds))
    assert lanes == (3.0, 3.0) and val == 8.25


def test_batch_loop_carried_tangents_and_branches():
    def f(x):
        s = 1.0
        for i in range(x.shape[0]):
            if x[i] > 0:
                s = s * x[i]
            else:
                s = s + np.sin(x[i])
        return s

    x = np.array([0.5, -0.3, 1.5, -2.0])
    seeds = onehot(x)
    lanes = autodiff(Forward, f, BatchDuplicated(x, seeds))[0]
    np.testing.assert_allclose(lanes, fd_gradient(f, [x], 0), rtol=1e-7)


def test_partials_are_computed_once_for_all_lanes():
    def f(x):
        return np.sin(x[0]) * x[1]

    x = np.array([0.3, 0.4])
    args = (Forward, f, BatchDuplicated(x, onehot(x) + (x.copy(),)))
    text = iz.ir(*args, stage="differentiated")
    body = text[text.index("func.func private @fwddiffe3f"):]
    assert body.count("math.sin") == 1 and body.count("math.cos") == 1
    assert iz.ir(*args, stage="simplified").count("math.cos") == 1


def test_one_compile_per_width():
    x = RNG.uniform(-1, 1, 3)
    before = stats["traces"]
    for _ in range(3):
        autodiff(Forward, P.sum_sq, BatchDuplicated(x, onehot(x, 0, 2)))
    autodiff(Forward, P.sum_sq, BatchDuplicated(x, onehot(x)))
    assert stats["traces"] - before == 2  # widths 2 and 3


# -- bad input -------------------------------------------------------------------------------
def test_batch_errors_leave_buffers_untouched():
    x = np.array([1.0, 2.0])
    d1, d2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    keep = (x.copy(), d1.copy(), d2.copy())
    with pytest.raises(AnnotationError, match="different numbers of shadows"):
        autodiff(Forward, P.dot, BatchDuplicated(x, (d1, d2)), BatchDuplicated(x.copy(), (d1,)))
    with pytest.raises(AnnotationError, match="mixes Duplicated and BatchDuplicated"):
        autodiff(Forward, P.dot, BatchDuplicated(x, (d1, d2)), Duplicated(x.copy(), d1.copy()))
    with pytest.raises(AnnotationError, match="shape/dtype"):
        BatchDuplicated(x, (d1, np.zeros(3)))
    with pytest.raises(AnnotationError, match="non-empty tuple"):
        BatchDuplicated(x, [d1, d2])
    with pytest.raises(AnnotationError, match="aliases"):
        BatchDuplicated(x, (d1, x))
    with pytest.raises(AnnotationError, match="use BatchDuplicated"):
        autodiff(Forward, P.sum_sq, Duplicated, BatchDuplicated(x, (d1, d2)))
    with pytest.raises(AnnotationError, match="immutable scalar"):
        autodiff(Reverse, P.sum_sq, iz.Active, BatchDuplicated(1.0, (1.0, 0.0)))
    for a, b in zip((x, d1, d2), keep):
        np.testing.assert_array_equal(a, b)


# -- jacobian, forward mode ------------------------------------------------------------------
def _fd_jacobian(f, x, h=1e-6):
    cols = []
    for idx in np.ndindex(x.shape):
        p, m = x.copy(), x.copy()
        p[idx] += h
        m[idx] -= h
        cols.append((np.asarray(f(p)) - np.asarray(f(m))) / (2 * h))
    return np.stack(cols, axis=-1).reshape(np.shape(f(x)) + x.shape)


def stencil(u):
    out = np.zeros(u.shape[0] - 2)
    for i in range(1, u.shape[0] - 1):
        out[i - 1] = u[i - 1] - 2.0 * u[i] + u[i + 1] * u[i]
    return out


def sin_matvec(x):
    return np.sin(A_MAT @ x)


A_MAT = RNG.uniform(-1, 1, (4, 6))


def matrix_in_matrix_out(M):
    return np.tanh(M) @ M.T


# Jacobians of a loop with a stencil, whole-array code, a matrix function, a loop
JACOBIAN_PROGRAMS = [
    (stencil, RNG.uniform(-1, 1, 7)),
    (sin_matvec, RNG.uniform(-1, 1, 6)),
    (matrix_in_matrix_out, RNG.uniform(-1, 1, (2, 3))),
    (P.rosenbrock_loop, RNG.uniform(-1, 1, 5)),
]


@pytest.mark.parametrize("f, x", JACOBIAN_PROGRAMS)
@pytest.mark.parametrize("chunk", [1, 3, None, 100])
def test_forward_jacobian_matches_finite_differences(f, x, chunk):
    (J,) = jacobian(Forward, f, x, chunk=chunk)
    want = _fd_jacobian(f, x)
    assert J.shape == want.shape == np.shape(f(x)) + x.shape
    np.testing.assert_allclose(J, want, rtol=1e-6, atol=1e-8)


def test_forward_jacobian_several_arguments_tuple_outputs_and_const():
    def f(a, x, n):
        return a * np.sum(x**2), np.cos(x) * a

    x = RNG.uniform(-1, 1, 3)
    Ja, Jx, Jn = jacobian(Forward, f, 0.7, x, 4)
    assert Jn is None
    assert Ja[0] == pytest.approx(np.sum(x**2))
    np.testing.assert_allclose(Ja[1], np.cos(x))
    np.testing.assert_allclose(Jx[0], 2 * 0.7 * x)
    np.testing.assert_allclose(Jx[1], np.diag(-np.sin(x) * 0.7))
    (Jc,) = jacobian(Forward, lambda_free_sum, Const(x))
    assert Jc is None


def lambda_free_sum(x):
    return np.sum(x)


def test_jacobian_bad_arguments():
    with pytest.raises(AnnotationError, match="chunk"):
        jacobian(Forward, foo, [1.0, 2.0], chunk=0)
    with pytest.raises(AnnotationError, match="n_outs"):
        jacobian(Reverse, foo, [1.0, 2.0], n_outs=2)
    with pytest.raises(AnnotationError, match="Duplicated"):
        jacobian(Forward, foo, Duplicated(np.ones(2), np.ones(2)))


# -- jacobian, reverse mode (rows: vector-Jacobian products) ----------------------------------
@pytest.mark.parametrize("chunk, n_outs", [(None, None), (2, None), (2, (2,))])
def test_reference_jacobian_reverse(chunk, n_outs):
    (J,) = jacobian(Reverse, foo, [1.0, 2.0], chunk=chunk, n_outs=n_outs)
    np.testing.assert_array_equal(J, [[-400.0, 200.0], [2.0, 1.0]])
    res = jacobian(ReverseWithPrimal, foo, [1.0, 2.0], chunk=chunk)
    np.testing.assert_array_equal(res.derivs[0], [[-400.0, 200.0], [2.0, 1.0]])
    np.testing.assert_array_equal(res.val, [100.0, 2.0])


@pytest.mark.parametrize("f, x", JACOBIAN_PROGRAMS)
@pytest.mark.parametrize("chunk", [1, 3, None, 100])
def test_reverse_jacobian_matches_forward_and_finite_differences(f, x, chunk):
    (J,) = jacobian(Reverse, f, x, chunk=chunk)
    np.testing.assert_allclose(J, _fd_jacobian(f, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(J, jacobian(Forward, f, x)[0], rtol=1e-12, atol=1e-14)


def test_reverse_jacobian_several_arguments_and_tuple_outputs():
    def f(a, x, n):
        return a * np.sum(x**2), np.cos(x) * a

    x = RNG.uniform(-1, 1, 3)
    for chunk in (1, 2, None):
        rev = jacobian(Reverse, f, 0.7, x, 4, chunk=chunk)
        fwd = jacobian(Forward, f, 0.7, x, 4, chunk=chunk)
        assert rev[2] is None and fwd[2] is None
        for r, w in zip(rev[:2], fwd[:2]):
            for rb, wb in zip(r, w):
                np.testing.assert_allclose(rb, wb, rtol=1e-12, atol=1e-15)


# -- make_zero and onehot --------------------------------------------------------------------
def test_make_zero_and_onehot():
    from dataclasses import dataclass

    @dataclass
    class Params:
        w: np.ndarray
        b: float
        n: int

    z = make_zero(Params(np.ones((2, 2), dtype=np.float32), 1.5, 3))
    assert isinstance(z, Params) and z.n == 3 and z.b == 0.0
    assert z.w.dtype == np.float32 and not z.w.any()
    assert make_zero((1.0, [np.ones(2)])) == (0.0, [pytest.approx(np.zeros(2))])
    seeds = onehot(np.zeros((2, 2)))
    assert len(seeds) == 4
    np.testing.assert_array_equal(sum(s * (k + 1) for k, s in enumerate(seeds)),
                                  [[1, 2], [3, 4]])
    assert onehot(2.0) == (1.0,)
    assert len(onehot(np.zeros(5), 1, 3)) == 2
    with pytest.raises(AnnotationError):
        onehot("x")
    with pytest.raises(AnnotationError):
        onehot(np.zeros(2), 1, 5)


# -- the GPU target, checked on the CPU (cuda-emu; the kernels also compile with nvcc) ----
def prange_kernel(x, y):
    for i in iz.prange(x.shape[0]):
        y[i] = np.sin(x[i]) * x[i]


def prange_sum(x):
    t = 0.0
    for i in iz.prange(x.shape[0]):
        t += x[i] * x[i] * x[i]
    return t


@pytest.mark.parametrize("target", ["cpu", "cuda-emu"])
def test_batch_forward_of_parallel_loops(target):
    x = RNG.uniform(-1, 1, 7)
    with iz.target(target):
        y = np.zeros(7)
        dys = (np.zeros(7), np.zeros(7), np.zeros(7))
        autodiff(Forward, prange_kernel, BatchDuplicated(x, onehot(x, 2, 5)),
                 BatchDuplicated(y, dys))
        d = np.cos(x) * x + np.sin(x)
        for lane, k in zip(dys, range(2, 5)):
            np.testing.assert_allclose(lane, np.where(np.arange(7) == k, d, 0.0), atol=1e-15)
        (J,) = jacobian(Forward, prange_sum, x, chunk=3)
        np.testing.assert_allclose(J, 3 * x**2, rtol=1e-13)
