"""numpy's answer or a clear error (issue 6, items 1 and 2): broadcasting of dimensions
that are 1 at trace time or only at run time, and views (reshape, ravel, asarray, .T,
new axes) whose writes reach their base, checked against numpy for the primal (the
result and the final contents of every argument) and against finite differences in
forward and reverse mode."""

import numpy as np
import pytest

import isozyme as iz
from isozyme import (
    Active,
    Const,
    Duplicated,
    ForwardWithPrimal,
    Reverse,
    ShapeError,
    UnsupportedError,
    autodiff,
)
from tests import semantics_programs as P
from tests.test_arrays_ad import copies, fd_gradient

RNG = np.random.default_rng(6)


def pos(*shape):
    return RNG.uniform(0.5, 1.5, shape)


CASES = {
    "col_times_matrix": (P.col_times_matrix, lambda: [pos(3), pos(3, 4)]),
    "const_row": (P.const_row, lambda: [pos(2, 3)]),
    "zeros_column": (P.zeros_column, lambda: [pos(2, 3)]),
    "slice_ratio": (P.slice_ratio, lambda: [pos(2, 3)]),
    "slice_ratio_wide": (P.slice_ratio, lambda: [pos(2, 5)]),
    "arg_column": (P.times, lambda: [pos(3, 1), pos(3, 4)]),
    "arg_row": (P.times, lambda: [pos(1, 4), pos(3, 4)]),
    "arg_one_by_one": (P.times, lambda: [pos(1, 1), pos(3, 4)]),
    "arg_scalar_like": (P.times, lambda: [pos(1), pos(5)]),
    "tail_is_one": (P.tail_times, lambda: [pos(3), pos(4)]),
    "tail_matches": (P.tail_times, lambda: [pos(6), pos(4)]),
    "first_into": (P.first_into, lambda: [pos(2, 3), pos(3)]),
    "row_assign": (P.row_assign, lambda: [pos(3, 2), pos(3)]),
    "stencil_like": (P.stencil_like, lambda: [pos(7)]),
    "reshape_write": (P.reshape_write, lambda: [pos(6)]),
    "ravel_write": (P.ravel_write, lambda: [pos(2, 3)]),
    "asarray_write": (P.asarray_write, lambda: [pos(4)]),
    "transpose_sees_writes": (P.transpose_sees_writes, lambda: [pos(2, 3)]),
    "transpose_write": (P.transpose_write, lambda: [pos(2, 3)]),
    "newaxis_sees_writes": (P.newaxis_sees_writes, lambda: [pos(3)]),
    "flatten_copies": (P.flatten_copies, lambda: [pos(3)]),
    "reshape_2d": (P.reshape_2d, lambda: [pos(2, 3)]),
    "transposed_product": (P.transposed_product, lambda: [pos(3, 2), pos(3)]),
    "ravel_transposed_input": (P.ravel_any, lambda: [pos(2, 3)]),
    "matvec_tail": (P.matvec_tail, lambda: [pos(2, 3), pos(4)]),
    "einsum_broadcasts_arg": (P.einsum_rows, lambda: [pos(2, 3), pos(1, 3)]),
    "stack": (P.stacked, lambda: [pos(3), pos(3)]),
    "batched_matmul_broadcasts_stacks": (P.batched_matmul, lambda: [pos(2, 2, 3), pos(1, 3, 2)]),
    "same_length_slices_broadcast": (P.ends_where, lambda: [pos(4), pos(4, 4)]),
    "ravel_of_reversed_copies": (P.ravel_reversed, lambda: [pos(4)]),
    "newaxis_targets": (P.newaxis_targets, lambda: [pos(3), pos(3, 1)]),
    "assign_drops_leading_ones": (P.assign_with_leading_ones, lambda: [pos(3), pos(1, 1, 2)]),
    "einsum_broadcasts_run_time": (P.einsum_rows, lambda: [pos(2, 3), pos(2, 3)[:, 0:1]]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_primal_and_arguments_match_numpy(name):
    f, make = CASES[name]
    args = make()
    want_args = copies(args)
    want = f(*want_args)
    got_args = copies(args)
    (_, primal) = autodiff(ForwardWithPrimal, f, *[Const(a) for a in got_args])
    assert primal == pytest.approx(want, rel=1e-12)
    for g, w in zip(got_args, want_args):
        np.testing.assert_allclose(g, w, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reverse_and_forward_match_finite_differences(name):
    f, make = CASES[name]
    args = make()
    for k in range(len(args)):
        want = fd_gradient(f, args, k)
        work = copies(args)
        shadows = [np.zeros_like(a) for a in work]
        autodiff(Reverse, f, Active, *[Duplicated(a, s) for a, s in zip(work, shadows)])
        np.testing.assert_allclose(shadows[k], want, rtol=1e-6, atol=1e-7)
        seed = RNG.uniform(-1, 1, args[k].shape)
        work = copies(args)
        anns = [Duplicated(a, seed.copy() if i == k else np.zeros_like(a))
                for i, a in enumerate(work)]
        (t, _) = autodiff(ForwardWithPrimal, f, *anns)
        assert t == pytest.approx(float(np.sum(want * seed)), rel=1e-6, abs=1e-7)


def test_one_compiled_function_never_treats_one_and_n_alike():
    # the same signature (a derived size) is 1 in one call and 3 in the next
    for n in (3, 5, 3, 4):
        x, y = pos(n), pos(n - 2 if n != 3 else 4)
        if n - 2 not in (1, len(y)):
            continue
        assert autodiff(ForwardWithPrimal, P.tail_times, Const(x), Const(y))[1] == \
            pytest.approx(P.tail_times(x, y))


def test_size_one_dimensions_are_part_of_the_signature():
    before = iz.calls.stats["traces"]
    for shape in ((3, 1), (3, 4), (1, 4), (1, 1), (3, 1)):
        x, X = pos(*shape), pos(3, 4)
        assert autodiff(ForwardWithPrimal, P.times, Const(x), Const(X))[1] == \
            pytest.approx(np.sum(x * X))
    assert iz.calls.stats["traces"] - before <= 4


@pytest.mark.parametrize("x, y", [(pos(6), pos(3)), (pos(3, 4), pos(3, 5)), (pos(2, 4), pos(3, 4))])
def test_incompatible_argument_shapes_raise_before_the_call(x, y):
    with pytest.raises(ValueError):
        np.sum(x * y)  # numpy refuses too
    for mode in (Reverse, ForwardWithPrimal):
        dx, dy = np.full_like(x, 7.0), np.full_like(y, 7.0)
        xs, ys = x.copy(), y.copy()
        with pytest.raises(ShapeError):
            if mode is Reverse:
                autodiff(mode, P.times, Active, Duplicated(x, dx), Duplicated(y, dy))
            else:
                autodiff(mode, P.times, Duplicated(x, dx), Duplicated(y, dy))
        assert (dx == 7.0).all() and (dy == 7.0).all()
        assert (x == xs).all() and (y == ys).all()


def test_incompatible_run_time_sizes_raise_shape_error():
    x, y = pos(7), pos(3)  # x[2:] has 5 elements against 3
    with pytest.raises(ValueError):
        P.tail_times(x, y)
    dx, dy = np.zeros(7), np.zeros(3)
    with pytest.raises(ShapeError, match="could not be broadcast"):
        autodiff(Reverse, P.tail_times, Active, Duplicated(x, dx), Duplicated(y, dy))
    assert not dx.any() and not dy.any()
    # the same compiled code still works afterwards
    assert autodiff(ForwardWithPrimal, P.tail_times, Const(pos(5)), Const(y))[1] > 0


def test_assigning_a_larger_value_into_a_size_one_target_raises():
    X, v = pos(2, 1), pos(3)
    with pytest.raises(ValueError):
        P.add_into(X, v)  # numpy: non-broadcastable output operand
    with pytest.raises(ShapeError):
        autodiff(ForwardWithPrimal, P.add_into, Const(X), Const(v))
    # a value of size 1 at run time fits (derived size: checked in the compiled code)
    assert autodiff(ForwardWithPrimal, P.first_into, Const(pos(2, 1)), Const(v))[1] > 0


LAYOUTS = [((4, 6), lambda a: a[:, :3]), ((4, 6), lambda a: a[:, ::2]),
           ((6,), lambda a: a[::2]), ((3, 4), lambda a: a.T), ((2, 3), lambda a: a),
           ((3, 4), lambda a: np.asfortranarray(a))]


@pytest.mark.parametrize("f", [P.ravel_then_write, P.reshape_then_write])
@pytest.mark.parametrize("base, view", LAYOUTS)
def test_ravel_and_reshape_of_arguments_view_or_copy_as_numpy_does(f, base, view):
    # the signature records each argument's layout: a view where numpy views, a copy
    # where numpy copies (its writes do not reach the argument)
    B = pos(*base)
    want_X = view(B.copy())
    want = f(want_X)
    got_X = view(B.copy())
    (_, primal) = autodiff(ForwardWithPrimal, f, Const(got_X))
    assert primal == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(got_X, want_X, rtol=1e-12)
    h = 1e-6
    want_g = np.zeros(want_X.shape)
    for idx in np.ndindex(want_g.shape):
        plus, minus = view(B.copy()), view(B.copy())
        plus[idx] += h
        minus[idx] -= h
        want_g[idx] = (f(plus) - f(minus)) / (2 * h)
    dX = view(np.zeros(base))
    autodiff(Reverse, f, Active, Duplicated(view(B.copy()), dX))
    np.testing.assert_allclose(dX, want_g, rtol=1e-6, atol=1e-7)


def test_ravel_of_a_non_contiguous_view_made_in_the_function_is_refused():
    X = pos(4, 6)
    assert not np.shares_memory(X[:, :3].ravel(), X)  # numpy copies: isozyme refuses
    dX = np.zeros_like(X)
    with pytest.raises(UnsupportedError, match="not C-contiguous"):
        autodiff(Reverse, P.ravel_of_slice, Active, Duplicated(X, dX))
    assert not dX.any()
    # the same compiled code where the slice is the whole array: a view, as in numpy
    X = pos(4, 3)
    assert autodiff(ForwardWithPrimal, P.ravel_of_slice, Const(X))[1] == \
        pytest.approx(P.ravel_of_slice(X))


def test_reshape_of_a_uniformly_strided_argument_is_a_view():
    X = pos(4, 6)[:, ::2]
    assert np.shares_memory(X.reshape(-1), X)  # numpy: a view
    want_x = X.copy()
    P.reshape_flat_write(want_x)
    got = autodiff(ForwardWithPrimal, P.reshape_flat_write, Const(X))[1]
    assert got == pytest.approx(P.reshape_flat_write(X.copy()))
    np.testing.assert_array_equal(X, want_x)
    # not equally spaced: numpy copies, and so does isozyme (the argument is unchanged)
    Y = pos(4, 6)[:, :3]
    before = Y.copy()
    got = autodiff(ForwardWithPrimal, P.reshape_flat_write, Const(Y))[1]
    assert got == pytest.approx(P.reshape_flat_write(before.copy()))
    np.testing.assert_array_equal(Y, before)


def test_reshape_to_a_wrong_size_raises_shape_error():
    with pytest.raises(ShapeError, match="cannot reshape"):
        autodiff(ForwardWithPrimal, P.reshape_write, Const(pos(5)))


def test_views_are_views_in_the_ir():
    text = iz.ir(ForwardWithPrimal, P.transpose_sees_writes, Const(pos(2, 3)), stage="traced")
    assert "memref.transpose" in text and "linalg.generic" not in text.split("memref.transpose")[0]
    text = iz.ir(ForwardWithPrimal, P.reshape_write, Const(pos(6)), stage="traced")
    assert "memref.expand_shape" in text
    text = iz.ir(ForwardWithPrimal, P.ravel_write, Const(pos(2, 3)), stage="traced")
    assert "memref.collapse_shape" in text


def test_matmul_does_not_broadcast_its_inner_dimension():
    A = pos(2, 3)
    with pytest.raises(ValueError):
        P.matvec(A, pos(1))  # numpy: mismatch in its core dimension
    with pytest.raises(ShapeError):
        autodiff(ForwardWithPrimal, P.matvec, Const(A), Const(pos(1)))
    with pytest.raises(ShapeError):
        autodiff(ForwardWithPrimal, P.matvec, Const(A), Const(pos(4)))
    with pytest.raises(ShapeError):  # x[1:] has 4 elements against 3: checked at run time
        autodiff(ForwardWithPrimal, P.matvec_tail, Const(A), Const(pos(5)))


def test_a_reshaped_argument_needs_a_shadow_of_the_same_layout():
    X = pos(2, 3)
    dX = np.zeros((3, 2)).T  # same shape, other strides: the merged view would differ
    with pytest.raises(iz.AnnotationError, match="same memory layout"):
        autodiff(Reverse, P.ravel_write, Active, Duplicated(X, dX))
    assert not dX.any()
    dX = np.zeros_like(X)
    autodiff(Reverse, P.ravel_write, Active, Duplicated(X.copy(), dX))
    np.testing.assert_allclose(dX, fd_gradient(P.ravel_write, [X], 0), rtol=1e-6, atol=1e-7)


def test_a_negative_traced_size_raises_as_numpy_does():
    with pytest.raises(ValueError):
        P.zeros_of(pos(2), -1)
    with pytest.raises(ShapeError, match="negative dimensions"):
        autodiff(ForwardWithPrimal, P.zeros_of, Const(pos(2)), Const(-1))
    assert autodiff(ForwardWithPrimal, P.zeros_of, Const(np.ones(2)), Const(3))[1] == 3.0


@pytest.mark.parametrize("f, args", [
    (P.stacked, (pos(3), pos(4))),
    (P.batched_matmul, (pos(2, 2, 3), pos(3, 3, 2))),
    (P.batched_matmul, (pos(2, 2, 3), pos(2, 2, 2))),
])
def test_shapes_numpy_rejects_raise_shape_error_before_anything_runs(f, args):
    with pytest.raises(ValueError):
        f(*args)
    shadows = [np.full_like(a, 3.0) for a in args]
    with pytest.raises(ShapeError):
        autodiff(Reverse, f, Active, *[Duplicated(a, s) for a, s in zip(args, shadows)])
    assert all((s == 3.0).all() for s in shadows)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
def test_max_of_nothing_raises_as_numpy_does(shape):
    X = np.ones(shape)
    with pytest.raises(ValueError, match="zero-size array"):
        P.max_of(X)
    with pytest.raises(ShapeError, match="zero-size array to reduction operation"):
        autodiff(ForwardWithPrimal, P.max_of, Const(X))
    assert autodiff(ForwardWithPrimal, P.max_of, Const(np.ones((2, 3))))[1] == 4.0


def test_a_reshape_in_a_helper_needs_a_shadow_of_the_same_layout_too():
    x = np.ones((2, 3))
    base = np.zeros((2, 6))
    with pytest.raises(iz.AnnotationError, match="same memory layout"):
        autodiff(Reverse, P.reshape_in_helper, Active, Duplicated(x, base[:, :3]))
    assert not base.any()  # nothing written, in the shadow or next to it
    dx = np.zeros((2, 3))
    autodiff(Reverse, P.reshape_in_helper, Active, Duplicated(x, dx))
    np.testing.assert_array_equal(dx.ravel(), np.arange(6.0))
