"""Arrays: finite-difference checks of Duplicated buffers in Forward and Reverse mode,
the reference document's array examples, IR size independence and bad input."""

import numpy as np
import pytest

import isozyme as iz
from isozyme import (
    Active,
    AnnotationError,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Reverse,
    ReverseWithPrimal,
    autodiff,
    gradient,
    gradient_,
)
from tests import array_programs as P

RNG = np.random.default_rng(0)


def _point(n, lo=-1.0, hi=1.0, dtype=np.float64):
    return RNG.uniform(lo, hi, n).astype(dtype)


# (function, argument builder): arrays are differentiated, scalars stay Const
CASES = {
    "rosenbrock_inp": (P.rosenbrock_inp, lambda: [_point(2)]),
    "rosenbrock_loop": (P.rosenbrock_loop, lambda: [_point(7)]),
    "sum_sq": (P.sum_sq, lambda: [_point(5)]),
    "dot": (P.dot, lambda: [_point(4), _point(4)]),
    "scale_in_place": (P.scale_in_place, lambda: [_point(5), 1.7]),
    "matvec_norm": (P.matvec_norm, lambda: [_point(6).reshape(2, 3), _point(3)]),
    "matvec_transposed": (P.matvec_norm, lambda: [_point(6).reshape(3, 2).T, _point(3)]),
    "strided_view": (P.sum_sq, lambda: [_point(9)[::-2]]),
    "local_buffer": (P.local_buffer, lambda: [_point(5)]),
    "stencil_steps": (P.stencil_steps, lambda: [_point(8), 3]),
    "last_element": (P.last_element, lambda: [_point(3)]),
    "branchy": (P.branchy, lambda: [np.array([0.5, -0.3, 0.8, -1.2])]),
    "while_over_array": (P.while_over_array, lambda: [np.array([0.9, 1.1, 0.7])]),
    "float32": (P.sum_sq, lambda: [_point(4, dtype=np.float32)]),
    # whole-array numpy
    "elementwise": (P.elementwise, lambda: [_point(5), _point(5)]),
    "ufuncs": (P.ufuncs, lambda: [_point(6, 0.1, 0.9)]),
    "power_ops": (P.power_ops, lambda: [np.array([0.3, -0.7, 1.2, -0.4])]),
    "broadcast_row": (P.broadcast_row, lambda: [_point(6).reshape(2, 3), _point(3)]),
    "broadcast_newaxis": (P.broadcast_newaxis, lambda: [_point(3), _point(4)]),
    "reduce_axis0": (P.reduce_axis0, lambda: [_point(6).reshape(3, 2)]),
    "reduce_axis1_keepdims": (P.reduce_axis1_keepdims, lambda: [_point(6, 0.2, 1.0).reshape(2, 3)]),
    "mean_and_prod": (P.mean_and_prod, lambda: [_point(4, 0.3, 1.0)]),
    "max_min": (P.max_min, lambda: [np.array([0.3, -0.9, 0.5, 0.1])]),
    "dot_vec": (P.dot_vec, lambda: [_point(4), _point(4)]),
    "matvec": (P.matvec, lambda: [_point(6).reshape(3, 2), _point(2)]),
    "matmat": (P.matmat, lambda: [_point(6).reshape(2, 3), _point(12).reshape(3, 4)]),
    "outer": (P.outer_fn, lambda: [_point(3), _point(2)]),
    "transpose": (P.transpose_fn, lambda: [_point(6).reshape(3, 2)]),
    "einsum": (P.einsum_fn, lambda: [_point(6).reshape(2, 3), _point(9).reshape(3, 3)]),
    "where": (P.where_fn, lambda: [np.array([0.5, -0.3, 0.8, -1.2])]),
    "clip": (P.clip_fn, lambda: [np.array([0.2, -0.9, 0.7, 0.1])]),
    "maximum": (P.maximum_fn, lambda: [np.array([0.2, -0.9, 0.7]), np.array([0.5, -0.1, 0.3])]),
    "logsumexp": (P.logsumexp, lambda: [_point(5)]),
    "logsumexp_rows": (P.logsumexp_rows, lambda: [_point(6).reshape(2, 3)]),
    "diag": (P.diag_fn, lambda: [_point(9).reshape(3, 3)]),
    "stack_concat": (P.stack_concat, lambda: [_point(3), _point(3)]),
    "array_from_scalars": (P.array_from_scalars, lambda: [_point(2)]),
    "reshape": (P.reshape_fn, lambda: [_point(6)]),
    "scalar_times_array": (P.scalar_times_array, lambda: [_point(4), 1.3]),
    "gmm": (P.gmm_objective, lambda: [_point(3), _point(6).reshape(3, 2), _point(6).reshape(3, 2),
                                      _point(8).reshape(4, 2)]),
    "gmm_einsum": (P.gmm_einsum, lambda: [_point(3), _point(6).reshape(3, 2),
                                          _point(6).reshape(3, 2), _point(8).reshape(4, 2)]),
    "mixed_loop_and_array": (P.mixed_loop_and_array, lambda: [_point(5)]),
    "in_place_whole_array": (P.in_place_whole_array, lambda: [_point(4), _point(4)]),
    "float32_whole_array": (P.elementwise, lambda: [_point(4, dtype=np.float32),
                                                   _point(4, dtype=np.float32)]),
    "transposed_view_input": (P.matvec, lambda: [_point(6).reshape(2, 3).T, _point(2)]),
    # slices and views
    "rows_in_loop": (P.rows_in_loop, lambda: [_point(6).reshape(3, 2), _point(2)]),
    "vectorized_rosenbrock": (P.vectorized_rosenbrock, lambda: [_point(6)]),
    "stencil_vectorized": (P.stencil_vectorized, lambda: [_point(7), 3]),
    "slice_assign": (P.slice_assign, lambda: [_point(3), _point(2)]),
    "strided_slices": (P.strided_slices, lambda: [_point(6)]),
}


# programs that write into an array argument with values that depend on the others:
# every array must be Duplicated (a zero shadow for the ones not being checked)
ALL_DUPLICATED = {"in_place_whole_array"}


def annotate(name, work, k, shadow):
    return [
        Duplicated(a, shadow) if i == k
        else Duplicated(a, np.zeros_like(a)) if name in ALL_DUPLICATED and isinstance(a, np.ndarray)
        else Const(a)
        for i, a in enumerate(work)
    ]


def fd_gradient(f, args, k, h=1e-6):
    """Central differences of f with respect to every element of array argument k."""
    base = args[k]
    g = np.zeros(base.shape)
    for idx in np.ndindex(base.shape):
        plus = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        minus = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        plus[k][idx] += h
        minus[k][idx] -= h
        g[idx] = (f(*plus) - f(*minus)) / (2 * h)
    return g


def copies(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def tolerance(args):
    return (1e-3, 1e-3) if any(getattr(a, "dtype", None) == np.float32 for a in args) else (1e-6, 1e-8)


def array_positions(args):
    return [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("mode", [Reverse, ReverseWithPrimal])
def test_reverse_matches_finite_differences(name, mode):
    f, make = CASES[name]
    args = make()
    rtol, atol = tolerance(args)
    for k in array_positions(args):
        want = fd_gradient(f, [a.astype(np.float64) if isinstance(a, np.ndarray) else a
                               for a in args], k)
        work = copies(args)
        shadow = np.zeros_like(work[k])
        res = autodiff(mode, f, Active, *annotate(name, work, k, shadow))
        assert res[0] == (None,) * len(args)
        np.testing.assert_allclose(shadow, want, rtol=rtol, atol=atol)
        if mode.with_primal:
            assert res[1] == pytest.approx(f(*copies(args)), rel=rtol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_finite_differences(name):
    f, make = CASES[name]
    args = make()
    rtol, atol = tolerance(args)
    for k in array_positions(args):
        want = fd_gradient(f, [a.astype(np.float64) if isinstance(a, np.ndarray) else a
                               for a in args], k)
        seed = RNG.uniform(-1, 1, args[k].shape).astype(args[k].dtype)
        work = copies(args)
        (t, primal) = autodiff(ForwardWithPrimal, f, *annotate(name, work, k, seed.copy()))
        assert t == pytest.approx(float(np.sum(want * seed)), rel=rtol, abs=atol * 10)
        assert primal == pytest.approx(f(*copies(args)), rel=rtol)


def test_reverse_accumulates_into_shadow_on_every_call():
    x, dx = np.array([1.0, 2.0]), np.zeros(2)
    autodiff(Reverse, P.rosenbrock_inp, Active, Duplicated(x, dx))
    autodiff(Reverse, P.rosenbrock_inp, Active, Duplicated(x, dx))
    assert dx.tolist() == [-800.0, 400.0]


def test_reference_array_examples():
    x, dx = np.array([1.0, 2.0]), np.array([0.0, 0.0])
    assert autodiff(Reverse, P.rosenbrock_inp, Active, Duplicated(x, dx)) == ((None,),)
    assert dx.tolist() == [-400.0, 200.0]
    x, dx = np.array([1.0, 3.0]), np.array([1.0, 1.0])
    assert autodiff(ForwardWithPrimal, P.rosenbrock_inp, Duplicated, Duplicated(x, dx)) == (
        -400.0, 400.0)
    (g,) = gradient(Reverse, P.rosenbrock_inp, [1.0, 2.0])
    assert g.tolist() == [-400.0, 200.0]
    res = gradient(ReverseWithPrimal, P.rosenbrock_inp, [1.0, 2.0])
    assert res.derivs[0].tolist() == [-400.0, 200.0] and res.val == 100.0
    dx = np.array([7.0, 7.0])
    (out,) = gradient_(Reverse, dx, P.rosenbrock_inp, [1.0, 2.0])
    assert out is dx and dx.tolist() == [-400.0, 200.0]
    (g,) = gradient(Forward, P.rosenbrock_inp, [1.0, 2.0])
    assert g.tolist() == [-400.0, 200.0]
    (g,) = gradient(Forward, P.rosenbrock_inp, [1.0, 2.0], chunk=1)
    assert g.tolist() == [-400.0, 200.0]
    res = gradient(ForwardWithPrimal, P.rosenbrock_inp, [1.0, 2.0])
    assert res.derivs[0].tolist() == [-400.0, 200.0] and res.val == 100.0


def test_output_buffer_seed_and_tangent():
    # f only writes into `out`: its shadow holds the seed in reverse, the tangent in forward
    x = np.array([1.0, 2.0, 3.0])
    out, dout = np.zeros(3), np.array([1.0, 10.0, 100.0])
    dx = np.zeros(3)
    autodiff(Reverse, P.write_output, Const, Duplicated(x, dx), Duplicated(out, dout))
    assert dx.tolist() == [2.0, 40.0, 600.0]
    assert dout.tolist() == [0.0, 0.0, 0.0]  # the overwritten values' adjoints are taken
    out, dout = np.zeros(3), np.zeros(3)
    autodiff(Forward, P.write_output, Const, Duplicated(x, np.ones(3)), Duplicated(out, dout))
    assert out.tolist() == [2.0, 5.0, 10.0]
    assert dout.tolist() == [2.0, 4.0, 6.0]


def test_inputs_untouched_unless_written():
    x = np.array([0.3, -0.2, 0.9])
    before = x.copy()
    gradient(Reverse, P.sum_sq, x)
    autodiff(Forward, P.sum_sq, Duplicated(x, np.ones(3)))
    assert np.array_equal(x, before)
    y = np.array([1.0, 2.0])
    autodiff(Reverse, P.scale_in_place, Active, Duplicated(y, np.zeros(2)), Const(2.0))
    assert y.tolist() == [2.0, 4.0]  # the function itself writes y


def test_ir_size_does_not_depend_on_n():
    texts = {
        iz.ir(Reverse, P.rosenbrock_loop, Duplicated(np.ones(n), np.zeros(n)), stage="simplified")
        for n in (10, 1000, 100000)
    }
    assert len(texts) == 1


def test_no_retrace_for_new_shapes_or_strides():
    from isozyme.api import stats

    gradient(Reverse, P.sum_sq, np.ones(3))
    traces = stats["traces"]
    # contiguous, no dimension of size 1: one signature (size-1 dimensions are part of
    # the signature: they broadcast; see test_broadcasting.py)
    for x in (np.ones(50), np.arange(10.0), np.ones(2)):
        (g,) = gradient(Reverse, P.sum_sq, x)
        np.testing.assert_allclose(g, 2 * x)
    assert stats["traces"] == traces
    # a strided view is the other signature (dynamic innermost stride), compiled once
    for x in (np.arange(10.0)[::3], np.ones(7)[::-1], np.arange(9.0)[1::2]):
        (g,) = gradient(Reverse, P.sum_sq, x)
        np.testing.assert_allclose(g, 2 * x)
    assert stats["traces"] == traces + 1


@pytest.mark.parametrize(
    "x, dx, message",
    [
        (np.ones(3), np.zeros(4), "shape"),
        (np.ones(3), np.zeros(3, dtype=np.float32), "dtype"),
        (np.ones((2, 2)), np.zeros(4), "shape"),
    ],
)
def test_bad_shadow_is_rejected_before_anything_runs(x, dx, message):
    x0, dx0 = x.copy(), dx.copy()
    with pytest.raises(AnnotationError, match=message):
        autodiff(Reverse, P.sum_sq, Active, Duplicated(x, dx))
    assert np.array_equal(x, x0) and np.array_equal(dx, dx0)


def test_aliasing_shadow_is_rejected():
    x = np.ones(4)
    with pytest.raises(AnnotationError, match="aliases"):
        Duplicated(x, x[::-1])
    assert x.tolist() == [1.0] * 4


def test_unsupported_dtype():
    with pytest.raises(iz.UnsupportedError, match="complex128"):
        autodiff(Reverse, P.sum_sq, Active, Const(np.ones(2, dtype=np.complex128)))


def test_const_array_receiving_active_values_is_refused():
    x, y = np.ones(3), np.ones(3)
    with pytest.raises(AnnotationError, match="argument 0 .* Const array"):
        autodiff(Forward, P.in_place_whole_array, Const(x), Duplicated(y, np.ones(3)))
    assert x.tolist() == [1.0] * 3


def test_function_returning_nothing_differentiates_through_output_buffer():
    x = np.array([1.0, 2.0, 3.0])
    out, dout = np.zeros(3), np.array([1.0, 10.0, 100.0])
    dx = np.zeros(3)
    assert autodiff(Reverse, P.write_only, Duplicated(x, dx), Duplicated(out, dout)) == (
        (None, None),)
    assert dx.tolist() == [2.0, 40.0, 600.0]
    out, dout = np.zeros(3), np.zeros(3)
    assert autodiff(Forward, P.write_only, Duplicated(x, np.ones(3)), Duplicated(out, dout)) == (
        None,)
    assert out.tolist() == [2.0, 5.0, 10.0] and dout.tolist() == [2.0, 4.0, 6.0]


def test_returned_array_forward_tangent_and_primal():
    x = np.array([0.5, 1.0, 2.0])
    t, y = autodiff(ForwardWithPrimal, P.returns_array, Duplicated(x, np.ones(3)))
    np.testing.assert_allclose(y, np.sin(x) * x)
    np.testing.assert_allclose(t, np.cos(x) * x + np.sin(x))
    (t2,) = autodiff(Forward, P.returns_pair, Duplicated(x, np.ones(3)))
    np.testing.assert_allclose(t2[0], 2 * x)
    assert t2[1] == pytest.approx(float(np.sum(2 * x)))


def test_returned_array_in_reverse_is_refused():
    x = np.ones(2)
    with pytest.raises(AnnotationError, match="returns an array"):
        autodiff(Reverse, P.returns_array, Duplicated(x, np.zeros(2)))


class _Wrapped:
    """An array owned by someone else, exposing only __array_interface__ (like torch)."""

    def __init__(self, a):
        self._a = a
        self.__array_interface__ = a.__array_interface__


def test_array_interface_objects_are_accepted_without_copy():
    x, dx = np.array([1.0, 2.0]), np.zeros(2)
    autodiff(Reverse, P.rosenbrock_inp, Active, Duplicated(_Wrapped(x), _Wrapped(dx)))
    assert dx.tolist() == [-400.0, 200.0]


def test_mismatched_sizes_raise_before_running():
    x, y = np.ones(4), np.ones(3)
    dx = np.zeros(4)
    with pytest.raises(iz.ShapeError, match="dimension 0"):
        autodiff(Reverse, P.elementwise, Active, Duplicated(x, dx), Const(y))
    assert dx.tolist() == [0.0] * 4
    A, v = np.ones((2, 3)), np.ones(4)
    with pytest.raises(iz.ShapeError):
        autodiff(Forward, P.matvec, Duplicated(A, np.ones((2, 3))), Const(v))
    # the right sizes still work, with no new compilation
    (g,) = gradient(Reverse, P.elementwise, np.ones(3), np.ones(3))[:1]
    assert g.shape == (3,)


def test_final_loads_are_recomputed_not_cached():
    # u is written by the time loop, but not after the final sum: the reverse sweep can
    # load u again instead of caching every element of the sum loop
    text = iz.ir(Reverse, P.stencil_steps, Active, Duplicated(np.ones(8), np.zeros(8)),
                 Const(3), stage="simplified")
    assert "enzyme.push" not in text
