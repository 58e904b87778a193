"""Fancy (integer-array) and boolean-mask indexing (issue 9, item 6): gathers, scatters,
``np.add.at`` and masks, compiled and run, against numpy for the primal (the result and
the final contents of every argument), against central finite differences in Forward and
Reverse mode, exact gradients of repeated gathers, and the errors (type and message, and
the arrays left untouched)."""

from __future__ import annotations

import inspect
import os
import re

import numpy as np
import pytest

import isozyme as iz
from isozyme import (
    Active,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    OutOfBoundsError,
    Reverse,
    ShapeError,
    TraceError,
    UnsupportedError,
    autodiff,
)

HERE = os.path.abspath(__file__)
RNG = np.random.default_rng(9)
D = 3  # the dimension of the GMM-style programs
MASK = np.array([True, False, True, True, False])
LARGE = (np.arange(200) * 7) % 50  # a hidden argument (not baked into the IR)
LARGE_MASK = np.arange(100) % 3 == 0


# --------------------------------------------------------------------------- programs


def take(E, idx):
    return E[idx]


def take_rows(E, idx):
    return E[idx, :]


def take_cols(E, idx):
    return E[:, idx]


def take_pairs(E, rows, cols):
    return E[rows, cols]


def take_list(E):
    return E[[2, 0, -1, 2]]


def take_list_2d(E):
    return E[[[0, 1], [1, 0]], [[2, 2], [0, -1]]]


def take_int_then_array(T, idx):
    return T[0, :, idx]  # not adjacent: the index dimension first (numpy)


def take_adjacent(T, idx):
    return T[:, 1, idx]  # adjacent: in place


def take_array_int(E, idx):
    return E[idx, -1]


def take_traced_int(E, i, idx):
    return E[i, idx]


def take_empty(E):
    return E[[]]


def put_empty(E, v):
    E[[], 1] = v
    E[np.array([], dtype=bool)] = 2.0
    return np.sum(E)


def np_take(E, idx):
    return np.take(E, idx, axis=1) + E.take(idx, axis=0)[:, :1] + np.take(E, idx)[:, None]


def take_large_constant(E):
    return E[LARGE][-34:] + E[:100][LARGE_MASK][LARGE[:34] % 34]


def take_in_loop(E, idx):
    s = 0.0
    for k in range(3):
        s += np.sum(E[idx] * (k + 1))
    return s


def weighted_take(E, idx):
    return np.sum(E[idx] * (np.arange(idx.shape[0]) + 1.0))


def sum_rows(E, rows, cols):
    return np.sum(np.sin(E[rows, cols]) * E[rows, cols])


def put(out, idx, v):
    out[idx] = v
    return np.sum(out)


def put_scalar(out, idx, v):
    out[idx] = v
    return 0.0


def put_rows(out, idx, v):
    out[idx, :] = v
    return 0.0


def iadd(out, idx, v):
    out[idx] += v
    return 0.0


def add_at(out, idx, v):
    np.add.at(out, idx, v)
    return 0.0


def add_at_pairs(out, rows, cols, v):
    np.add.at(out, (rows, cols), v)
    return 0.0


def subtract_at(out, idx, v):
    np.subtract.at(out, idx, v)
    return 0.0


def gmm_qs(icf):
    """GradBench gmm's lower-triangular Q matrices, written the natural way."""
    k = icf.shape[0]
    Qs = np.zeros((k, D, D))
    rows, cols = np.tril_indices(D, -1)
    Qs[:, rows, cols] = icf[:, D:]
    diag = np.arange(D)
    Qs[:, diag, diag] = np.exp(icf[:, :D])
    return Qs


def gmm_qs_loss(icf, x):
    Qs = gmm_qs(icf)
    return np.sum(np.einsum("kij,j->ki", Qs, x) ** 2)


def gmm_qs_traced_d(icf, x):
    """The same with the dimension read from the data (np.tril_indices of a traced d)."""
    d = x.shape[0]
    Qs = np.zeros((icf.shape[0], d, d))
    rows, cols = np.tril_indices(d, -1)
    Qs[:, rows, cols] = icf[:, d:]
    diag = np.arange(d)
    Qs[:, diag, diag] = np.exp(icf[:, :d])
    return np.sum(np.einsum("kij,j->ki", Qs, x) ** 2)


def take_traced_list(E, i, j):
    return E[[i, j, i]]


def sum_traced_list(E, i, j):
    return np.sum(E[[i, j, i]] ** 2)


def put_int_array(out, idx):
    out[idx] = 7
    return out


def put_into_view(A, idx, v):
    A[1][idx] = v
    row = A[2]
    row[idx] += v
    return 0.0


def put_overlapping(x, idx):
    x[idx] = x[::-1][:2]
    return 0.0


def put_self_indexed(p):
    p[p] = p + 10  # the indices are read before the first store (numpy)
    p[p[:2] - 10] += 5
    return p


def take_traced_slices(E, a, idx):
    return E[a:, idx][..., ::-1]


def gather_copy_is_a_copy(A, idx):
    B = A[idx]
    B[0, 0] = 100.0
    return A


def scatter_in_loop(x, idx, n):
    out = np.zeros(x.shape[0])
    for k in range(n):
        np.add.at(out, idx, x[idx] * (k + 1.0))
        out[idx] = np.sin(out[idx])
    return np.sum(out * x)


def mask_in_loop(x, n):
    for k in range(n):
        x[x > 0.5] *= 0.9
        x[x < -0.5] = x[x < -0.5] ** 2
    return np.sum(x * x)


def add_at_in_prange(E, idx, out):
    for i in iz.prange(E.shape[0]):
        np.add.at(out, idx, E[i] * E[i])
    return np.sum(out * out)


def iadd_in_prange(E, idx, out):
    for i in iz.prange(E.shape[0]):
        out[idx] += E[i]
    return 0.0


def masked(x):
    return x[x > 0.5]


def masked_sum(x):
    return np.sum(x[x > 0.0] ** 2)


def masked_2d(A):
    return A[A > 0.0]


def masked_rows(A):
    return A[A[:, 0] > 0.0]


def masked_const(x):
    return x[MASK]


def mask_zero(x):
    x[x < 0.0] = 0.0
    return np.sum(x * x)


def mask_assign_array(x):
    x[x > 0.0] = x[x > 0.0] * 3.0
    return np.sum(x * x)


def mask_iadd(x, y):
    x[y > 0.0] += 2.0 * y[y > 0.0]
    return np.sum(x * x)


def mask_rows_assign(A, v):
    A[A[:, 0] > 0.0] = v
    return np.sum(A)


def mask_bad_size(x, m):
    x[m > 0.0] = 1.0
    return 0.0


def mask_bad_value(x, v):
    x[x > 0.0] = v
    return 0.0


def float_index(E, f):
    return E[f]


def put_bad_shape(out, idx, v):
    out[idx] = v
    return 0.0


def newaxis_mix(E, idx):
    return E[idx, None]


# --------------------------------------------------------------------------- helpers


def vec(*shape):
    return RNG.uniform(-1.0, 1.0, shape)


def ints(*values):
    return np.array(values, dtype=np.int64)


def primal(f, *args):
    """The compiled result of ``f`` and the arguments afterwards, compared with numpy."""
    mine = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    ref = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    got = autodiff(ForwardWithPrimal, f, *[Const(a) for a in mine])[1]
    expected = f(*ref)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)
    assert np.shape(got) == np.shape(expected)
    for a, b in zip(mine, ref):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
    return got


def fd(f, args, k, h=1e-6):
    g = np.zeros(args[k].shape)
    for i in np.ndindex(args[k].shape):
        plus = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        minus = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        plus[k][i] += h
        minus[k][i] -= h
        g[i] = (f(*plus) - f(*minus)) / (2 * h)
    return g


def _annotate(args, k, seed):
    """Float arrays Duplicated (``seed`` the shadow of argument ``k``, zeros for the
    others: they may receive active values), int arrays and scalars Const."""
    return [Duplicated(a.copy(), seed if j == k else np.zeros_like(a))
            if isinstance(a, np.ndarray) and a.dtype == np.float64
            else Const(a.copy() if isinstance(a, np.ndarray) else a)
            for j, a in enumerate(args)]


def reverse_grad(f, args, k):
    dx = np.zeros_like(args[k])
    autodiff(Reverse, f, Active, *_annotate(args, k, dx))
    return dx


def forward_grad(f, args, k):
    g = np.zeros(args[k].shape)
    for i in np.ndindex(args[k].shape):
        seed = np.zeros(args[k].shape)
        seed[i] = 1.0
        g[i] = autodiff(Forward, f, *_annotate(args, k, seed))[0]
    return g


def line_of(fn, text):
    lines, start = inspect.getsourcelines(fn)
    return start + next(k for k, line in enumerate(lines) if text in line)


# --------------------------------------------------------------------------- gathers


@pytest.mark.parametrize("f,args", [
    (take, [vec(5), ints(0, -1, 3, 0, -5)]),  # negative and repeated indices
    (take, [vec(5), ints(4, 0, 1, 2, 2, -1).reshape(2, 3)]),  # 2-D index array
    (take, [vec(4, 3), ints(3, 0, -2)]),  # rows
    (take_rows, [vec(4, 3), ints(1, 1, -4)]),
    (take_cols, [vec(4, 3), ints(2, -3, 2, 1)]),
    (take_pairs, [vec(4, 3), ints(0, 3, -1), ints(2, 0, 1)]),
    (take_pairs, [vec(4, 3), ints(0, 3, -1).reshape(3, 1), ints(2, 0)]),  # broadcast
    (take_list, [vec(6)]),
    (take_list_2d, [vec(2, 3)]),
    (take_int_then_array, [vec(2, 3, 4), ints(3, 0)]),
    (take_adjacent, [vec(2, 3, 4), ints(3, 0, 3)]),
    (take_in_loop, [vec(5), ints(4, 1, 1)]),
    (take_array_int, [vec(4, 3), ints(3, -4, 1)]),
    (take_traced_int, [vec(4, 3), -2, ints(2, 0, -1)]),
    (take_empty, [vec(4, 3)]),
    (take_large_constant, [vec(100, 2)]),
    (take_traced_slices, [vec(4, 3), 1, ints(2, 0)]),
    (np_take, [vec(3, 3), ints(2, -1, 0)]),
    (take, [vec(4, 3), np.zeros((2, 0), np.int64)]),  # empty index arrays
    (gmm_qs, [vec(2, D + D * (D - 1) // 2)]),
    (gmm_qs_traced_d, [vec(2, 4 + 4 * 3 // 2), vec(4)]),
    (take_traced_list, [vec(5), 3, -1]),
    (gather_copy_is_a_copy, [vec(3, 2), ints(1, 2)]),
])
def test_gather_matches_numpy(f, args):
    primal(f, *args)


def test_gather_ir_does_not_grow_with_the_index_array():
    small = iz.ir(Reverse, sum_take, Active, Duplicated(vec(5), vec(5)), Const(ints(0, 1)))
    large = iz.ir(Reverse, sum_take, Active, Duplicated(vec(500), vec(500)),
                  Const(np.arange(300) % 7))
    assert len(small.splitlines()) == len(large.splitlines())


@pytest.mark.parametrize("f,args,k", [
    (weighted_take, [vec(5), ints(0, -1, 3, 0, 0)], 0),
    (sum_rows, [vec(4, 3), ints(0, 3, -1, 0), ints(2, 0, 1, 2)], 0),
    (take_in_loop, [vec(5), ints(4, 1, 1)], 0),
    (gmm_qs_loss, [vec(2, D + D * (D - 1) // 2), vec(D)], 0),
    (gmm_qs_loss, [vec(2, D + D * (D - 1) // 2), vec(D)], 1),
    (gmm_qs_traced_d, [vec(2, 4 + 4 * 3 // 2), vec(4)], 0),
    (sum_traced_list, [vec(5), 3, -1], 0),
    (scatter_in_loop, [vec(5), ints(4, 0, 4, -2), 3], 0),
])
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_gather_gradients_match_finite_differences(f, args, k, mode):
    got = (forward_grad if mode == "forward" else reverse_grad)(f, args, k)
    np.testing.assert_allclose(got, fd(f, args, k), rtol=1e-6, atol=1e-8)


def sum_take(E, idx):
    return np.sum(E[idx])


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_repeated_gather_accumulates_in_the_gradient(mode):
    args = [vec(4), ints(0, 0, 1, -4)]
    got = (forward_grad if mode == "forward" else reverse_grad)(sum_take, args, 0)
    np.testing.assert_array_equal(got, [3.0, 1.0, 0.0, 0.0])


# --------------------------------------------------------------------------- scatters


@pytest.mark.parametrize("f,args", [
    (put, [vec(5), ints(3, -1, 0), vec(3)]),
    (put, [vec(5), ints(2, 2, 2), vec(3)]),  # repeated: the last write wins
    (put, [vec(5), ints(3, 0, 1, 4).reshape(2, 2), vec(2, 2)]),
    (put, [vec(5), ints(3, 0, 1, 4).reshape(2, 2), vec(2)]),  # value broadcast
    (put_scalar, [vec(5), ints(1, -2), 7.5]),
    (put_rows, [vec(4, 3), ints(2, 0), vec(3)]),
    (put_rows, [vec(4, 3), ints(2, 0), vec(2, 3)]),
    (iadd, [vec(5), ints(1, 1, 3, -5), vec(4)]),  # numpy: += does not accumulate
    (add_at, [vec(5), ints(1, 1, 3, -5), vec(4)]),  # np.add.at does
    (add_at, [vec(4, 2), ints(1, 1, 0), vec(3, 2)]),
    (add_at_pairs, [vec(4, 2), ints(1, 1, 0), ints(0, 0, 1), vec(3)]),
    (subtract_at, [vec(5), ints(4, 4), vec(2)]),
    (put_int_array, [ints(1, 2, 3, 4), ints(-1, 0)]),
    (put_empty, [vec(0, 2), 5.0]),
    (put_self_indexed, [ints(3, 0, 2, 1)]),
    (put_into_view, [vec(3, 4), ints(3, 0, 3), vec(3)]),
    (put_overlapping, [vec(4), ints(0, 2)]),
])
def test_scatter_matches_numpy(f, args):
    primal(f, *args)


def test_scatter_without_bounds_checks():
    old = iz.config(boundscheck=False)
    try:
        primal(add_at, vec(5), ints(1, 1, 3, -5), vec(4))
        primal(put_rows, vec(4, 3), ints(2, 0), vec(2, 3))
    finally:
        iz.config(**old)


def put_then_sum(out, idx, v):
    out[idx] = v * v
    return np.sum(out * out)


def add_at_then_sum(out, idx, v):
    np.add.at(out, idx, v * v)
    return np.sum(out * out)


def iadd_then_sum(out, idx, v):
    out[idx] += v * v
    return np.sum(out * out)


@pytest.mark.parametrize("f", [put_then_sum, add_at_then_sum, iadd_then_sum])
@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_scatter_gradients_match_finite_differences(f, k, mode):
    args = [vec(5), ints(1, 3, 1, -1), vec(4)]
    got = (forward_grad if mode == "forward" else reverse_grad)(f, args, k)
    np.testing.assert_allclose(got, fd(f, args, k), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize("f,args", [
    (masked, [vec(7)]),
    (masked, [vec(7) - 5.0]),  # all false: an empty result
    (masked, [vec(7) + 5.0]),  # all true
    (masked_sum, [vec(6)]),
    (masked_2d, [vec(3, 4)]),
    (masked_rows, [vec(5, 2)]),
    (masked_const, [vec(5)]),
    (mask_zero, [vec(6)]),
    (mask_zero, [vec(6) + 5.0]),
    (mask_assign_array, [vec(6)]),
    (mask_iadd, [vec(6), vec(6)]),
    (mask_rows_assign, [vec(5, 2), vec(2)]),
    (mask_rows_assign, [vec(5, 2), 4.0]),
    (mask_in_loop, [vec(7) * 1.5, 3]),
])
def test_masks_match_numpy(f, args):
    primal(f, *args)


@pytest.mark.parametrize("f,args,k", [
    (masked_sum, [vec(6)], 0),
    (mask_zero, [vec(6)], 0),
    (mask_assign_array, [vec(6)], 0),
    (mask_iadd, [vec(6), vec(6)], 0),
    (mask_iadd, [vec(6), vec(6)], 1),
    (mask_in_loop, [vec(7) * 1.5, 3], 0),
])
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_mask_gradients_match_finite_differences(f, args, k, mode):
    args = [np.where(np.abs(a) < 0.05, 0.3, a) if isinstance(a, np.ndarray) else a
            for a in args]  # away from the kinks
    got = (forward_grad if mode == "forward" else reverse_grad)(f, args, k)
    np.testing.assert_allclose(got, fd(f, args, k), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- errors


def test_float_index_array_is_refused():
    with pytest.raises(TraceError, match="index array of dtype float64.*integer \\(or boolean\\)"):
        autodiff(ForwardWithPrimal, float_index, Const(vec(4)), Const(np.array([0.0, 1.0])))


def test_gather_out_of_bounds():
    where = f"{HERE}:{line_of(take, 'return E[idx]')}"
    with pytest.raises(OutOfBoundsError, match="^" + re.escape(
            f"{where}: index 5 is out of bounds for axis 0 with size 4") + "$"):
        autodiff(ForwardWithPrimal, take, Const(vec(4)), Const(ints(0, 5)))
    with pytest.raises(OutOfBoundsError, match="index -6 is out of bounds for axis 1 with size 3"):
        autodiff(ForwardWithPrimal, take_pairs, Const(vec(4, 3)), Const(ints(0, 1)),
                 Const(ints(-6, 1)))


@pytest.mark.parametrize("f,extra", [(put, [vec(3)]), (add_at, [vec(3)]),
                                     (iadd, [vec(3)])])
def test_scatter_out_of_bounds_leaves_the_array_untouched(f, extra):
    out = vec(5)
    before = out.copy()
    with pytest.raises(OutOfBoundsError, match="index 9 is out of bounds for axis 0 with size 5"):
        autodiff(ForwardWithPrimal, f, Const(out), Const(ints(0, 1, 9)), *map(Const, extra))
    np.testing.assert_array_equal(out, before)


def test_mask_shape_mismatch():
    x = vec(4)
    before = x.copy()
    with pytest.raises(OutOfBoundsError, match="boolean index did not match indexed array along "
                       "axis 0; size of axis is 4 but size of corresponding boolean axis is 3"):
        autodiff(ForwardWithPrimal, mask_bad_size, Const(x), Const(vec(3)))
    np.testing.assert_array_equal(x, before)
    with pytest.raises(OutOfBoundsError, match="size of axis is 4 but size of corresponding "
                       "boolean axis is 5"):
        autodiff(ForwardWithPrimal, masked_const, Const(vec(4)))


def test_mask_value_of_the_wrong_size():
    x = np.array([1.0, -1.0, 2.0])
    before = x.copy()
    with pytest.raises(ShapeError, match="value array of size 3 cannot be broadcast to an "
                       "indexing result of size 2"):
        autodiff(ForwardWithPrimal, mask_bad_value, Const(x), Const(vec(3)))
    np.testing.assert_array_equal(x, before)


def test_scatter_value_of_the_wrong_shape():
    out = vec(5)
    before = out.copy()
    with pytest.raises(ShapeError, match="value array of size 3 cannot be broadcast"):
        autodiff(ForwardWithPrimal, put_bad_shape, Const(out), Const(ints(0, 1)), Const(vec(3)))
    np.testing.assert_array_equal(out, before)


def test_none_with_index_arrays_is_refused():
    with pytest.raises(UnsupportedError, match="None .* together with index arrays"):
        autodiff(ForwardWithPrimal, newaxis_mix, Const(vec(4)), Const(ints(0, 1)))


# --------------------------------------------------------------------------- cuda-emu


@pytest.mark.skipif(__import__("shutil").which("g++") is None, reason="cuda-emu needs g++")
@pytest.mark.parametrize("f,args,k", [
    (sum_take, [vec(4), ints(0, 0, 1, -4, 0)], 0),  # repeated: the adjoint accumulates
    (add_at_then_sum, [vec(5), ints(1, 3, 1, -1), vec(4)], 2),
    (iadd_then_sum, [vec(5), ints(1, 3, 1, -1), vec(4)], 0),
    (mask_iadd, [vec(6), vec(6)], 1),
])
def test_gradients_on_the_cuda_emulator(f, args, k):
    """On the GPU target the gathers and scatters stay sequential loops (no race on a
    repeated index); the gradient is the CPU's."""
    args = [np.where(np.abs(a) < 0.05, 0.3, a) if a.dtype == np.float64 else a for a in args]
    with iz.target("cuda-emu"):
        got = reverse_grad(f, args, k)
    np.testing.assert_allclose(got, fd(f, args, k), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- prange


def test_add_at_in_a_prange_body_is_atomic():
    args = [Const(vec(4)), Const(ints(0, 2, 0)), Const(np.zeros(3))]
    text = iz.ir(ForwardWithPrimal, add_at_in_prange, *args, stage="optimized")
    assert '"memref.atomic_rmw"' in text
    src = iz.ir(ForwardWithPrimal, add_at_in_prange, *args, stage="cuda", target="cuda")
    assert "atomicAdd" in src


@pytest.mark.parametrize("target", ["cpu", "cuda-emu"])
@pytest.mark.parametrize("k", [0, 2])
def test_add_at_in_a_prange_body_numbers_and_gradients(target, k):
    """Several iterations add into one element (repeated indices, every iteration the
    same ones): the numbers of the sequential loop, no race (cuda-emu's race checker is
    on in the test suite), gradients against finite differences."""
    if target == "cuda-emu" and __import__("shutil").which("g++") is None:
        pytest.skip("cuda-emu needs g++")
    args = [vec(4), ints(0, 2, 0, -1), vec(3)]
    with iz.target(target):
        primal(add_at_in_prange, *args)
        got = reverse_grad(add_at_in_prange, args, k)
    np.testing.assert_allclose(got, fd(add_at_in_prange, args, k), rtol=1e-6, atol=1e-8)


def test_fancy_update_in_a_prange_body_points_to_add_at():
    with pytest.raises(TraceError, match="in a prange body write np.add.at"):
        autodiff(ForwardWithPrimal, iadd_in_prange, Const(vec(4)), Const(ints(0, 1)),
                 Const(np.zeros(3)))
