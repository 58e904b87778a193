"""Slices and partial indices as views (``memref.subview``), slice assignment and
returned arrays.

Each function is traced, verified, round-tripped through the printer and parser, lowered
with ``convert-linalg-to-loops`` and evaluated by the reference evaluator (which runs
``memref.subview`` as a numpy view, checked to lie within its source) against numpy:
results, and the contents of the array arguments afterwards (writes through views must
reach them), on contiguous arrays and on non-contiguous views of them.
"""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects.builtin import DYNAMIC_INDEX, MemRefType, f64, i64
from xdsl.dialects.linalg.ops import GenericOp

import isozyme
from isozyme.errors import TraceError
from isozyme.frontends.python import array_memref_type, trace

from .ir_eval import evaluate, lower_linalg
from .test_whole_array import _view_of, reparse

A1 = array_memref_type(1, f64)
A2 = array_memref_type(2, f64)
RNG = np.random.default_rng(7)


def vec(n):
    return RNG.standard_normal(n)


def mat(n, m):
    return RNG.standard_normal((n, m))


def run(fn, types, *arg_sets, returned_arrays=0, views=True):
    """Trace, lower and compare with numpy on each argument set; ``returned_arrays``
    arrays allocated by the function are returned (not freed)."""
    traced = trace(fn, types)
    reparse(traced)
    lowered = lower_linalg(traced.module)
    for args in arg_sets:
        for use_views in (False, True) if views else (False,):
            py_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
            ir_args = [(_view_of(a) if use_views and a.size else a.copy())
                       if isinstance(a, np.ndarray) else a for a in args]
            expected = fn(*py_args)
            memory: dict = {}
            results = evaluate(lowered, traced.func_name, *ir_args, memory=memory)
            assert memory["allocs"] - memory["deallocs"] == returned_arrays, memory
            got = tuple(results) if traced.returns_tuple else (results[0] if results else None)
            expected_t = expected if isinstance(expected, tuple) else (expected,)
            got_t = got if isinstance(got, tuple) else (got,)
            assert len(expected_t) == len(got_t)
            for e, g in zip(expected_t, got_t):
                if isinstance(e, np.ndarray):
                    assert isinstance(g, np.ndarray) and g.shape == e.shape, (e, g)
                    np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
                    # a returned array never aliases an argument
                    assert not any(isinstance(a, np.ndarray) and np.shares_memory(g, a)
                                   for a in ir_args)
                elif e is not None:
                    assert g == pytest.approx(float(e), rel=1e-12, abs=1e-12), (e, g)
            for p, q in zip(py_args, ir_args):
                if isinstance(p, np.ndarray):
                    np.testing.assert_allclose(q, p, rtol=1e-12, atol=1e-12)
    return traced


def ops_named(traced, name):
    return [op for op in traced.module.walk() if op.name == name]


# --------------------------------------------------------------------------- 1-D slices

SLICES_1D = [
    slice(1, -1), slice(2, None), slice(None, 3), slice(None, None, 2), slice(None, None, 3),
    slice(None, None, -1), slice(None, None, -2), slice(1, None, -1), slice(-2, None, -2),
    slice(4, 0, -2), slice(1, 6, 2), slice(-3, -1), slice(5, 1), slice(100, None),
    slice(-100, 2), slice(None, -100), slice(3, 3), slice(-1, -100, -3), slice(0, 100, 4),
]


@pytest.mark.parametrize("s", SLICES_1D, ids=str)
def test_slice_1d_python_bounds(s):
    def f(x):
        v = x[s]
        return np.sum(v * 2.0) + v.shape[0]

    def g(x):  # the view itself, returned (a copy)
        return x[s]

    run(f, [A1], (vec(0),), (vec(1),), (vec(5),), (vec(8),))
    run(g, [A1], (vec(0),), (vec(1),), (vec(5),), (vec(8),), returned_arrays=1)


def test_slice_ir_is_one_subview():
    def f(x):
        return np.sum(x[1:-1])

    traced = run(f, [A1], (vec(4),))
    (sv,) = ops_named(traced, "memref.subview")
    assert str(sv.result.type) == "memref<?xf64, strided<[?], offset: ?>>"
    assert not ops_named(traced, "memref.copy")


def test_full_slices_are_the_array():
    def f(x):
        y = x[:]
        z = x[...]
        y[0] = 3.0
        z[1] += 1.0
        return np.sum(x[::1])

    traced = run(f, [A1], (vec(3),))
    assert not ops_named(traced, "memref.subview")


# traced bounds
def t_ab(x, a, b):
    return x[a:b]


def t_ab2(x, a, b):
    return x[a:b:2]


def t_abm1(x, a, b):
    return x[a:b:-1]


def t_abm3(x, a, b):
    return x[b:a:-3]


def t_a(x, a, b):
    return x[a:] * 1.0 + 0.0 * b


def t_b(x, a, b):
    return x[:b:-2] * 1.0 + 0.0 * a


BOUNDS = [(0, 5), (1, -1), (-3, 4), (2, 2), (4, 1), (-100, 100), (100, -100), (-1, -7),
          (3, -2), (0, 0), (-2, -1)]


@pytest.mark.parametrize("fn", [t_ab, t_ab2, t_abm1, t_abm3, t_a, t_b])
def test_slice_1d_traced_bounds(fn):
    sets = [(vec(n), a, b) for n in (0, 1, 5, 8) for a, b in BOUNDS]
    run(fn, [A1, i64, i64], *sets, returned_arrays=1)


def test_traced_loop_index_bounds():
    def f(x):
        s = 0.0
        for i in range(len(x)):
            s += np.sum(x[i:]) * np.sum(x[:i]) + np.sum(x[i::-1])
        return s

    run(f, [A1], (vec(1),), (vec(6),))


# --------------------------------------------------------------------------- 2-D


def t_block(A, n):
    return A[1:3, 0:n:2]


def t_row(A, i):
    return A[i, :] * 2.0


def t_row_short(A, i):
    return A[i] + A[-1]


def t_col(A, j):
    return A[:, j] + A[..., 0]


def t_rev(A, k):
    return A[::-1, 1:] * k


@pytest.mark.parametrize("fn,sets", [
    (t_block, [(mat(4, 5), 5), (mat(4, 5), -1), (mat(2, 3), 100), (mat(1, 1), 0)]),
    (t_row, [(mat(3, 4), 0), (mat(3, 4), 2), (mat(3, 4), -1), (mat(3, 4), -3)]),
    (t_row_short, [(mat(3, 4), 1), (mat(1, 2), -1)]),
    (t_col, [(mat(3, 4), 3), (mat(3, 4), -2), (mat(2, 1), 0)]),
    (t_rev, [(mat(3, 4), 2), (mat(1, 1), 1)]),
])
def test_slices_2d(fn, sets):
    run(fn, [A2, i64], *sets, returned_arrays=1)


def test_row_is_rank_reducing_subview():
    traced = trace(t_row, [A2, i64])
    (sv,) = ops_named(traced, "memref.subview")
    assert sv.static_sizes.get_values()[0] == 1  # the dropped dimension: a static 1
    assert str(sv.result.type) == "memref<?xf64, strided<[?], offset: ?>>"


def test_views_of_views_and_new_axes():
    def f(A):
        r = A[1:][::-1]
        c = r[:, 1:][:, 0]
        return np.sum(c[:, None] * A[0][None, :]) + np.sum(A[1:, None, 0])

    run(f, [A2], (mat(4, 3),), (mat(2, 2),))


# --------------------------------------------------------------------------- aliasing


def a_write_through(x):
    v = x[2:]
    v[0] = 5.0
    w = x[::-2]
    w += 1.0
    return x[2]


def a_assign(x, y):
    x[1:-1] = 0.5
    x[:2] = y[1:3]
    x[-2:] += y[:2] * 2.0
    x[::3] -= 1.0


def a_rows(A, v, i):
    A[i, :] = v
    A[:, 0] = 1.0
    A[0] += v
    A[1:, 1:] *= 2.0
    A[..., -1] = A[..., 0] + 3.0


def a_overlap(x):
    x[1:] = x[:-1]
    x[:3] += x[1:4]
    x[:] = x[::-1]


def a_same_view(x, a, b):
    v = x[a:b]
    x[a:b] = v
    x[a:b] += 1.0
    x[a:b] = x[a:b]


@pytest.mark.parametrize("fn,types,sets", [
    (a_write_through, [A1], [(vec(5),), (vec(3),)]),
    (a_assign, [A1, A1], [(vec(6), vec(4)), (vec(9), vec(4))]),
    (a_rows, [A2, A1, i64], [(mat(3, 4), vec(4), 2), (mat(2, 3), vec(3), -1)]),
    (a_overlap, [A1], [(vec(6),), (vec(4),)]),
    (a_same_view, [A1, i64, i64], [(vec(6), 1, -1), (vec(6), -4, 100), (vec(3), 2, 1)]),
])
def test_aliasing(fn, types, sets):
    run(fn, types, *sets)


def test_augmented_slice_assignment_does_not_copy_back():
    traced = trace(a_same_view, [A1, i64, i64])
    # one generic for `+= 1.0`, none for the stores of a view into itself
    assert sum(isinstance(op, GenericOp) for op in traced.module.walk()) == 1


def test_overlapping_assignment_goes_through_a_temporary():
    def f(x):
        x[1:] = x[:-1]

    traced = trace(f, [A1])
    assert len(ops_named(traced, "memref.alloc")) == 1


def test_writes_into_views_of_transposes_reach_the_base():
    def f(x):
        y = x.T
        z = y[1:]
        z[0] = 2.0
        return x[0]

    traced = trace(f, [A1])
    assert not ops_named(traced, "memref.alloc")  # views only: no copy
    x = np.arange(4.0)
    evaluate(lower_linalg(traced.module), traced.func_name, x)
    assert x.tolist() == [0.0, 2.0, 2.0, 3.0]  # z[0] is x[1]


# --------------------------------------------------------------------------- programs


def rosenbrock(x):
    return np.sum((1.0 - x[:-1]) ** 2 + 100.0 * (x[1:] - x[:-1] ** 2) ** 2)


def stencil_step(u):
    u[1:-1] = u[1:-1] + 0.1 * (u[:-2] - 2.0 * u[1:-1] + u[2:])
    return np.sum(u)


def stencil_steps(u, steps):
    for t in range(steps):
        u[1:-1] = u[1:-1] + 0.1 * (u[:-2] - 2.0 * u[1:-1] + u[2:])


def test_vectorized_rosenbrock():
    traced = run(rosenbrock, [A1], (vec(2),), (vec(7),), (vec(1),), (vec(0),))
    assert len(ops_named(traced, "memref.subview")) == 2  # x[:-1] is made once


def test_stencil_step_reads_old_values():
    run(stencil_step, [A1], (vec(3),), (vec(10),), (vec(2),))
    run(stencil_steps, [A1, i64], (vec(8), 3), (vec(5), 0))


def test_views_in_loops_are_made_at_top_level():
    traced = trace(stencil_steps, [A1, i64])
    func = traced.module.ops.first
    top = [op.name for op in func.body.block.ops]
    assert top.count("memref.subview") == 3  # u[1:-1], u[:-2], u[2:]: before the loop


def test_rosenbrock_gradient_end_to_end():
    x = np.array([0.3, -0.5, 1.2, 0.7, 0.1])
    (g,) = isozyme.gradient(isozyme.Reverse, rosenbrock, x)
    expected = np.zeros_like(x)
    expected[:-1] += -2.0 * (1.0 - x[:-1]) - 400.0 * x[:-1] * (x[1:] - x[:-1] ** 2)
    expected[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    np.testing.assert_allclose(g, expected, rtol=1e-12)


# --------------------------------------------------------------------------- returns


def r_fresh(x):
    return np.sin(x) * x


def r_arg(x):
    return x


def r_view(x):
    return x[1:]


def r_local(x):
    y = np.zeros(len(x))
    y[0] = 1.0
    return y


def r_tuple(x):
    y = x * 2.0
    return y, np.sum(y)


def r_two(A):
    return A[0], A.T, A[:, None, 0]


def r_same_twice(x):
    y = x + 1.0
    return y, y


def test_returned_arrays():
    t = run(r_fresh, [A1], (vec(4),), returned_arrays=1)
    assert t.result_types == [MemRefType(f64, [DYNAMIC_INDEX])]
    assert len(ops_named(t, "memref.dealloc")) == 1  # np.sin(x) only
    for fn in (r_arg, r_view, r_local):
        t = run(fn, [A1], (vec(4),), (vec(1),), returned_arrays=1)
        assert str(t.result_types[0]) == "memref<?xf64>"
    t = run(r_tuple, [A1], (vec(3),), returned_arrays=1)
    assert t.returns_tuple and str(t.result_types[1]) == "f64"
    run(r_two, [A2], (mat(3, 2),), returned_arrays=3)
    t = run(r_same_twice, [A1], (vec(2),), returned_arrays=1)
    assert len(ops_named(t, "memref.alloc")) == 1


def test_helper_returning_a_view_of_its_local_array():
    def tail(v):
        w = v * 2.0
        return w[1:]

    def head(v):
        return v[:2]

    def f(x):
        return np.sum(tail(x)) + np.sum(head(x))

    run(f, [A1], (vec(4),))
