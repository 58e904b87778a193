"""Loops over the rows of a large global or closure array stay loops.

A large numpy array read as a global or closure variable is a hidden argument of the
compiled function (isozyme/reads.py); its memref type has run-time sizes like an array
argument's, so ``range(PTS.shape[0])`` is an ``scf.for``, the IR does not grow with the
array, indexing it is bounds-checked, and the cache guard sees rebinding and in-place
changes.
"""

from __future__ import annotations

import numpy as np
import pytest

import isozyme
from isozyme import Const, Duplicated, Forward, Reverse
from isozyme.errors import OutOfBoundsError

RNG = np.random.default_rng(8)
PTS = RNG.random((400, 2))
SMALL = RNG.random((10, 2))  # 20 elements: baked into the IR
ROWS = RNG.random((40, 2))  # 80 elements: hidden, iterated in Python


def sq_dist(c):
    """Sum of squared distances from ``c`` to the rows of the global ``PTS``."""
    s = 0.0
    for i in range(PTS.shape[0]):
        s += (PTS[i, 0] - c[0]) ** 2 + (PTS[i, 1] - c[1]) ** 2
    return s


def sq_dist_len(c):
    """As :func:`sq_dist` with ``len`` and a helper that reads the global itself."""
    s = 0.0
    for i in range(len(PTS)):
        s += _row_dist(i, c)
    return s


def _row_dist(i, c):
    return (PTS[i, 0] - c[0]) ** 2 + (PTS[i, 1] - c[1]) ** 2


def sq_dist_small(c):
    s = 0.0
    for i in range(SMALL.shape[0]):
        s += (SMALL[i, 0] - c[0]) ** 2 + (SMALL[i, 1] - c[1]) ** 2
    return s


def past_the_end(c):
    s = 0.0
    for i in range(PTS.shape[0]):
        s += PTS[i + 1, 0] * c[0]  # the last i reads row PTS.shape[0]
    return s


def make_closure(data):
    """A function reading the array ``data`` through its closure."""
    def f(c):
        s = 0.0
        for i in range(data.shape[0]):
            s += (data[i, 0] - c[0]) ** 2 + (data[i, 1] - c[1]) ** 2
        return s
    return f


def exact(points, c):
    return float(np.sum((points - c) ** 2))


def exact_grad(points, c):
    return 2.0 * (points.shape[0] * c - points.sum(axis=0))


@pytest.fixture(autouse=True)
def _restore_globals():
    global PTS, SMALL, ROWS
    saved = PTS, SMALL, ROWS
    yield
    PTS, SMALL, ROWS = saved


def _optimized_ir(fn) -> str:
    c = np.array([0.3, 0.7])
    return isozyme.ir(Reverse, fn, Duplicated(c, np.zeros(2)), stage="optimized")


def test_loop_over_global_rows_is_an_scf_for_of_the_same_size():
    global PTS
    ir_400 = _optimized_ir(sq_dist)
    assert "scf.for" in ir_400
    PTS = RNG.random((4000, 2))
    ir_4000 = _optimized_ir(sq_dist)
    assert "scf.for" in ir_4000
    # the same code: the row count is a run-time size, not 400 unrolled iterations
    assert len(ir_400.splitlines()) == len(ir_4000.splitlines())
    assert len(ir_400.splitlines()) < 200
    assert "400" not in ir_400 and "4000" not in ir_4000  # no size baked in
    # the array's values are not constants of the IR either
    assert f"{PTS[0, 0]:.6e}"[:6] not in ir_4000


def test_reverse_gradient_matches_exact_value():
    c = np.array([0.3, 0.7])
    (g,) = isozyme.gradient(Reverse, sq_dist, c)
    np.testing.assert_allclose(g, exact_grad(PTS, c), rtol=1e-12)
    (g,) = isozyme.gradient(Reverse, sq_dist_len, c)
    np.testing.assert_allclose(g, exact_grad(PTS, c), rtol=1e-12)


def test_forward_gradient_and_primal():
    c = np.array([-0.2, 1.5])
    (g,) = isozyme.gradient(Forward, sq_dist, c)
    np.testing.assert_allclose(g, exact_grad(PTS, c), rtol=1e-12)
    dc = np.zeros(2)
    (_, val) = isozyme.autodiff(isozyme.ReverseWithPrimal, sq_dist, isozyme.Active,
                                Duplicated(c, dc))
    assert val == pytest.approx(exact(PTS, c), rel=1e-12)


def test_gradient_against_finite_differences():
    c = np.array([0.1, -0.4])
    (g,) = isozyme.gradient(Reverse, sq_dist, c)
    h = 1e-6
    fd = [(exact(PTS, c + h * e) - exact(PTS, c - h * e)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_hvp_is_the_exact_hessian_product():
    # H = 2 N I for the sum of squared distances to N points
    c, v = np.array([0.3, 0.7]), np.array([1.0, -2.0])
    np.testing.assert_allclose(isozyme.hvp(sq_dist, c, v), 2.0 * PTS.shape[0] * v,
                               rtol=1e-12)


def test_rebinding_to_another_shape_gives_the_new_result():
    global PTS
    c = np.array([0.3, 0.7])
    (g,) = isozyme.gradient(Reverse, sq_dist, c)
    np.testing.assert_allclose(g, exact_grad(PTS, c), rtol=1e-12)
    for rows in (1000, 3, 1):
        PTS = RNG.random((rows, 2))
        (g,) = isozyme.gradient(Reverse, sq_dist, c)
        np.testing.assert_allclose(g, exact_grad(PTS, c), rtol=1e-12)
        assert isozyme.hvp(sq_dist, c, np.array([1.0, 0.0]))[0] == pytest.approx(2.0 * rows)
    # another dtype and strides (a column-sliced view: rows not contiguous)
    PTS = RNG.random((500, 4))[:, ::2]
    (g,) = isozyme.gradient(Reverse, sq_dist, c)
    np.testing.assert_allclose(g, exact_grad(PTS, c), rtol=1e-12)
    PTS = RNG.random((300, 2)).astype(np.float32)
    (g,) = isozyme.gradient(Reverse, sq_dist, c)
    np.testing.assert_allclose(g, exact_grad(PTS.astype(np.float64), c), rtol=1e-5)


def test_in_place_change_is_seen():
    c = np.array([0.3, 0.7])
    (g0,) = isozyme.gradient(Reverse, sq_dist, c)
    np.testing.assert_allclose(g0, exact_grad(PTS, c), rtol=1e-12)
    PTS[:] = RNG.random(PTS.shape)  # same object: no retrace, the new values are read
    (g1,) = isozyme.gradient(Reverse, sq_dist, c)
    np.testing.assert_allclose(g1, exact_grad(PTS, c), rtol=1e-12)
    assert not np.allclose(g0, g1)


def test_out_of_bounds_row_of_the_hidden_array_raises():
    dc = np.zeros(2)
    with pytest.raises(OutOfBoundsError, match="out of bounds for axis 0 with size 400"):
        isozyme.autodiff(Reverse, past_the_end, isozyme.Active, Duplicated(np.ones(2), dc))
    assert not dc.any()


def test_closure_array_is_a_loop_and_sees_its_cell():
    pts = RNG.random((400, 2))
    f = make_closure(pts)
    c = np.array([0.3, 0.7])
    ir = _optimized_ir(f)
    assert "scf.for" in ir and len(ir.splitlines()) < 200
    (g,) = isozyme.gradient(Reverse, f, c)
    np.testing.assert_allclose(g, exact_grad(pts, c), rtol=1e-12)
    np.testing.assert_allclose(isozyme.hvp(f, c, np.array([0.0, 1.0])),
                               [0.0, 2.0 * 400], rtol=1e-12)
    # another closure of the same code over an array of another shape
    other = RNG.random((900, 2))
    f2 = make_closure(other)
    assert len(_optimized_ir(f2).splitlines()) == len(ir.splitlines())
    (g,) = isozyme.gradient(Reverse, f2, c)
    np.testing.assert_allclose(g, exact_grad(other, c), rtol=1e-12)


def test_small_global_is_baked_and_rebinding_retraces():
    global SMALL
    c = np.array([0.3, 0.7])
    (g,) = isozyme.gradient(Reverse, sq_dist_small, c)
    np.testing.assert_allclose(g, exact_grad(SMALL, c), rtol=1e-12)
    SMALL = RNG.random((5, 2))
    (g,) = isozyme.gradient(Reverse, sq_dist_small, c)
    np.testing.assert_allclose(g, exact_grad(SMALL, c), rtol=1e-12)


def test_const_argument_and_hidden_global_give_the_same_ir_size():
    def by_argument(c, pts):
        s = 0.0
        for i in range(pts.shape[0]):
            s += (pts[i, 0] - c[0]) ** 2 + (pts[i, 1] - c[1]) ** 2
        return s

    c = np.array([0.3, 0.7])
    arg_ir = isozyme.ir(Reverse, by_argument, Duplicated(c, np.zeros(2)), Const(PTS),
                        stage="optimized")
    assert abs(len(arg_ir.splitlines()) - len(_optimized_ir(sq_dist).splitlines())) < 10


def iterate_rows(c):
    """Python iteration over the global's rows (unrolled: its length is the trace's)."""
    s = 0.0
    for i, p in enumerate(ROWS):
        s += (p[0] - c[0]) ** 2 * i
    return s + sum([q[1] * c[1] for q in ROWS])


def test_iterating_a_hidden_array_reads_its_rows_at_run_time():
    c = np.array([0.3, 0.7])
    idx = np.arange(ROWS.shape[0])

    def expected():
        return [np.sum(2.0 * (c[0] - ROWS[:, 0]) * idx), ROWS[:, 1].sum()]

    (g,) = isozyme.gradient(Reverse, iterate_rows, c)
    np.testing.assert_allclose(g, expected(), rtol=1e-12)
    ROWS[:] = RNG.random(ROWS.shape)  # the rows are loads, not constants: no stale result
    (g,) = isozyme.gradient(Reverse, iterate_rows, c)
    np.testing.assert_allclose(g, expected(), rtol=1e-12)


def test_a_local_array_of_the_same_name_is_not_hidden():
    def local(c):
        PTS = np.ones((100, 2))  # noqa: N806 - shadows the global on purpose
        s = 0.0
        for i in range(PTS.shape[0]):
            s += PTS[i, 0] * c[0]
        return s

    (g,) = isozyme.gradient(Reverse, local, np.array([0.3, 0.7]))
    np.testing.assert_allclose(g, [100.0, 0.0])


def make_rebindable(data):
    """A closure over ``data`` and a function that rebinds its cell."""
    def f(c):
        return np.sum((data - c) ** 2)

    def rebind(new):
        nonlocal data
        data = new
    return f, rebind


def test_closure_cell_rebound_or_changed_in_place_gives_the_new_result():
    pts = RNG.random((200, 2))
    f, rebind = make_rebindable(pts)
    c = np.array([0.3, 0.7])
    (g,) = isozyme.gradient(Reverse, f, c)
    np.testing.assert_allclose(g, exact_grad(pts, c), rtol=1e-12)
    pts[:] = RNG.random(pts.shape)
    (g,) = isozyme.gradient(Reverse, f, c)
    np.testing.assert_allclose(g, exact_grad(pts, c), rtol=1e-12)
    for new in (RNG.random((700, 2)), RNG.random((5, 2)), RNG.random((200, 2))):
        rebind(new)
        (g,) = isozyme.gradient(Reverse, f, c)
        np.testing.assert_allclose(g, exact_grad(new, c), rtol=1e-12)
