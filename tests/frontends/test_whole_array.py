"""Whole-array numpy code (``linalg.generic`` on buffers, docs/ir.md).

Each function is traced, the module verified and round-tripped through the printer and
parser, lowered with xDSL's ``convert-linalg-to-loops`` (memrefs with dynamic sizes) and
evaluated with the reference evaluator against numpy on random inputs of a few shapes,
including 1-element arrays and non-contiguous views (strided, transposed).  Results come
back as returned scalars or through an output array argument (``out[...] = expr``).
"""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import isozyme
from xdsl.context import Context
from xdsl.dialects.linalg.ops import GenericOp
from xdsl.dialects.builtin import MemRefType, f32, f64, i64
from xdsl.transforms.lower_affine import LowerAffinePass

from isozyme.errors import TraceError
from isozyme.frontends.python import TracedFunction, array_memref_type, trace

from .roundtrip import reparse
from .ir_eval import evaluate, lower_linalg

THIS_FILE = os.path.basename(__file__)
A1 = array_memref_type(1, f64)
A2 = array_memref_type(2, f64)
A3 = array_memref_type(3, f64)
I1 = array_memref_type(1, i64)
F1 = array_memref_type(1, f32)
RNG = np.random.default_rng(1)


# --------------------------------------------------------------------------- helpers


def _view_of(a: np.ndarray) -> np.ndarray:
    """The same values as a non-contiguous view (strided for 1-D, transposed for 2-D,
    axes reversed otherwise)."""
    if a.ndim == 1:
        base = np.zeros(a.shape[0] * 2, a.dtype)
        view = base[::2]
    else:
        base = np.zeros(a.shape[::-1], a.dtype)
        view = base.T
    view[...] = a
    return view


def check(fn, types, *arg_sets, rel=1e-10, views=True) -> TracedFunction:
    """Trace ``fn``, lower its generics to loops and compare with numpy on each argument
    set (results and the contents of array arguments after the call), once with
    contiguous arrays and once with non-contiguous views of them."""
    traced = trace(fn, types)
    reparse(traced)
    assert any(isinstance(op, GenericOp) for op in traced.module.walk()) or not any(
        isinstance(t, MemRefType) for t in types
    )
    lowered = lower_linalg(traced.module)
    assert not any(isinstance(op, GenericOp) for op in lowered.walk())
    for args in arg_sets:
        for use_views in (False, True) if views else (False,):
            py_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
            ir_args = [
                (_view_of(a) if use_views else a.copy()) if isinstance(a, np.ndarray) else a
                for a in args
            ]
            expected = fn(*py_args)
            memory: dict = {}
            results = evaluate(lowered, traced.func_name, *ir_args, memory=memory)
            assert memory["allocs"] == memory["deallocs"], memory
            got = tuple(results) if traced.returns_tuple else (results[0] if results else None)
            if isinstance(expected, tuple):
                assert got == pytest.approx(expected, rel=rel, nan_ok=True)
            elif expected is not None:
                assert got == pytest.approx(float(expected), rel=rel, abs=1e-12, nan_ok=True), (
                    expected, got)
            for p, q in zip(py_args, ir_args):
                if isinstance(p, np.ndarray):
                    np.testing.assert_allclose(q, p, rtol=rel, atol=1e-12)
    return traced


def vec(n):
    return RNG.standard_normal(n)


def mat(n, m):
    return RNG.standard_normal((n, m))


def pos(*shape):
    return RNG.uniform(0.5, 2.0, shape)


def generic_count(traced: TracedFunction) -> int:
    return sum(isinstance(op, GenericOp) for op in traced.module.walk())


# --------------------------------------------------------------------------- elementwise


def ew_arith(x, y, out):
    out[...] = x * y + 1.0 - y / 2.0 + 3.0 * x - (x - y) / (y * y + 1.0)


def ew_scalars(x, s, out):
    out[:] = s * x + x / s - 2 + s ** 2 * x ** 2


def ew_pow(x, y, out):
    out[...] = x ** 3 + x ** 0.5 + x ** y + 2.0 ** y + x ** -1


def ew_unary(x, out):
    out[...] = -x + abs(x) + np.abs(-x) + (+x)


def ew_ufuncs(x, out):
    out[...] = (np.sin(x) + np.cos(x) + np.tan(x) + np.exp(x) + np.log(x) + np.sqrt(x)
                + np.tanh(x) + np.arctan(x) + np.sinh(x) + np.cosh(x) + np.log1p(x)
                + np.expm1(x) + np.square(x))


def ew_binary_ufuncs(x, y, out):
    out[...] = np.maximum(x, y) + np.minimum(x, 0.5) + np.power(x, y) + np.power(x, 2) \
        + np.maximum(1.0, y)


def ew_where(x, y, out):
    out[...] = np.where(x > 0, x, y) + np.where(x <= y, 1.0, 0.0) + np.where(y > x, x * y, -1.0)


def ew_clip(x, out):
    out[...] = np.clip(x, -0.5, 0.5) + np.clip(x, 0.0, None) + x.clip(-1.0, 1.0)


def ew_compare_count(x, y):
    return np.sum(x > y) + np.sum((x >= 0) * x)


def ew_inplace(x, y):
    x += y
    x *= 2.0
    x -= 1
    x /= y * y + 1.0
    x **= 2


def ew_int(x, out):
    out[...] = x * 2 + x // 3 + x % 5 - (x > 1)


def ew_f32(x, out):
    out[...] = np.sin(x) * 2.0 + x


@pytest.mark.parametrize("n", [1, 5])
def test_elementwise_arith(n):
    check(ew_arith, [A1, A1, A1], (vec(n), vec(n), np.zeros(n)))
    check(ew_arith, [A2, A2, A2], (mat(n, 3), mat(n, 3), np.zeros((n, 3))))


@pytest.mark.parametrize("n", [1, 4])
def test_elementwise_scalars(n):
    t = check(ew_scalars, [A1, f64, A1], (vec(n), 1.5, np.zeros(n)), (vec(n), -0.25, np.zeros(n)))
    text = str(t.module)
    assert "affine_map<(d0) -> ()>" in text  # the traced scalar is a scalar input


def test_elementwise_pow_unary_ufuncs():
    check(ew_pow, [A1, A1, A1], (pos(4), pos(4), np.zeros(4)), (pos(1), pos(1), np.zeros(1)))
    check(ew_unary, [A2, A2], (mat(3, 2), np.zeros((3, 2))))
    check(ew_ufuncs, [A1, A1], (RNG.uniform(0.1, 1.0, 6), np.zeros(6)))
    check(ew_binary_ufuncs, [A1, A1, A1], (pos(5), vec(5), np.zeros(5)))


def test_where_clip_compare():
    check(ew_where, [A1, A1, A1], (vec(7), vec(7), np.zeros(7)), (vec(1), vec(1), np.zeros(1)))
    check(ew_clip, [A2, A2], (mat(4, 3), np.zeros((4, 3))))
    t = check(ew_compare_count, [A1, A1], (vec(9), vec(9)))
    assert "memref<?xi1>" in str(t.module)


def test_inplace():
    check(ew_inplace, [A1, A1], (vec(5), vec(5)), (vec(1), vec(1)))
    check(ew_inplace, [A2, A2], (mat(3, 4), mat(3, 4)))


def test_integer_and_f32_arrays():
    check(ew_int, [I1, I1], (np.arange(-4, 6), np.zeros(10, np.int64)))
    check(ew_f32, [F1, F1], (vec(5).astype(np.float32), np.zeros(5, np.float32)), rel=1e-6)


def bc_ranks(A, v, out):
    out[...] = A * v + v - A / (v * v + 1.0)


def bc_column(A, c, out):
    out[...] = A - c[:, None] + c[:, None] * A


def bc_keepdims(A, out):
    out[...] = A - np.max(A, axis=1, keepdims=True) + np.sum(A, axis=0, keepdims=True)


def bc_outer_newaxis(a, b, out):
    out[...] = a[:, None] * b[None, :] + a[:, np.newaxis]


def test_broadcasting():
    check(bc_ranks, [A2, A1, A2], (mat(3, 4), vec(4), np.zeros((3, 4))),
          (mat(1, 1), vec(1), np.zeros((1, 1))))
    t = check(bc_column, [A2, A1, A2], (mat(3, 4), vec(3), np.zeros((3, 4))))
    # c[:, None] is a view with a static 1 dimension, broadcast by a constant index
    assert "memref.expand_shape" in str(t.module) and "memref<?x1xf64, strided" in str(t.module)
    assert "(d0, d1) -> (d0, 0)" in str(t.module)
    check(bc_keepdims, [A2, A2], (mat(3, 4), np.zeros((3, 4))), (mat(1, 2), np.zeros((1, 2))))
    check(bc_outer_newaxis, [A1, A1, A2], (vec(3), vec(2), np.zeros((3, 2))))


def test_lower_affine_after_linalg():
    """The constant indices of broadcast maps lower with lower-affine to arith."""
    t = trace(bc_column, [A2, A1, A2])
    lowered = lower_linalg(t.module)
    assert any(op.name == "affine.apply" for op in lowered.walk())
    LowerAffinePass().apply(Context(), lowered)
    lowered.verify()
    assert not any(op.name.startswith("affine.") for op in lowered.walk())
    A, c = mat(3, 4), vec(3)
    out = np.zeros((3, 4))
    evaluate(lowered, t.func_name, A, c, out)
    np.testing.assert_allclose(out, A - c[:, None] + c[:, None] * A)


# --------------------------------------------------------------------------- reductions


def red_full(x):
    return np.sum(x) + np.prod(x) + np.max(x) - np.min(x) + np.mean(x) + x.sum() + x.max()


def red_axis0(A, out):
    out[...] = np.sum(A, axis=0) + np.prod(A, axis=0) + np.max(A, axis=0) + A.min(axis=0) \
        + np.mean(A, axis=0)


def red_axis1(A, out):
    out[...] = np.sum(A, axis=1) + A.prod(axis=-1) + np.amax(A, 1) + np.min(A, axis=1) \
        + A.mean(axis=1)


def red_tuple(A):
    return np.sum(A, axis=(0, 1)) + np.max(A, axis=(1, 0)) + np.mean(A)


def red_keepdims(A, out):
    out[...] = np.sum(A, axis=1, keepdims=True) + np.max(A, axis=0, keepdims=True)


def red_keepdims_full(A):
    s = np.sum(A, keepdims=True)
    return s[0, 0]


def red_3d(T, out):
    out[...] = np.sum(T, axis=2) + np.mean(T, axis=2) + np.max(T, axis=(0, 2))[None, :]


def red_int(x):
    return np.sum(x) + np.max(x) + np.min(x) + np.prod(x)


@pytest.mark.parametrize("n,m", [(1, 1), (3, 4)])
def test_reductions(n, m):
    check(red_full, [A1], (pos(n),), (vec(m),))
    check(red_axis0, [A2, A1], (pos(n, m), np.zeros(m)))
    check(red_axis1, [A2, A1], (pos(n, m), np.zeros(n)))
    check(red_tuple, [A2], (mat(n, m),))
    check(red_keepdims, [A2, A2], (mat(n, m), np.zeros((n, m))))
    check(red_keepdims_full, [A2], (mat(n, m),))
    check(red_3d, [A3, A2], (RNG.standard_normal((n, m, 2)), np.zeros((n, m))))


def test_reduction_ir_form():
    t = check(red_axis1, [A2, A1], (mat(2, 3), np.zeros(2)))
    text = str(t.module)
    assert 'iterator_types = ["parallel", "reduction"]' in text
    assert "0xfff0000000000000" in text  # max starts at -inf
    check(red_int, [I1], (np.array([3, -1, 4, 2], dtype=np.int64),))


# --------------------------------------------------------------------------- contractions


def c_dot11(x, y):
    return np.dot(x, y) + x @ y + np.einsum("i,i->", x, y) + np.inner(x, y)


def c_matvec(A, v, out):
    out[...] = np.dot(A, v) + A @ v + np.einsum("ij,j->i", A, v)


def c_vecmat(v, A, out):
    out[...] = v @ A + np.dot(v, A)


def c_matmul(A, B, out):
    out[...] = A @ B + np.matmul(A, B) + np.einsum("ij,jk->ik", A, B) + A.dot(B)


def c_abt(A, B, out):
    out[...] = np.einsum("ik,jk->ij", A, B) + A @ B.T


def c_outer(a, b, out):
    out[...] = np.outer(a, b) + np.einsum("i,j->ij", a, b)


def c_bcast_product(X, M, out3, out2):
    out3[...] = np.einsum("nk,kd->nkd", X, M)
    out2[...] = np.einsum("nkd,kd->nk", out3, M) + np.einsum("nk,kd->nk", X, M)


def c_transpose(A, out):
    out[...] = A.T + np.transpose(A) + A.transpose()


def c_transpose3(T, out):
    out[...] = np.transpose(T, (2, 0, 1)) + T.transpose(2, 0, 1)


def c_implicit(A, B):
    return np.sum(np.einsum("ij,jk", A, B)) + np.einsum("ii", A @ B.T)


def logsumexp_rows(x, out):
    m = np.max(x, axis=1, keepdims=True)
    out[...] = np.log(np.sum(np.exp(x - m), axis=1)) + np.max(x, axis=1)


@pytest.mark.parametrize("n,m,k", [(1, 1, 1), (3, 4, 2)])
def test_contractions(n, m, k):
    check(c_dot11, [A1, A1], (vec(m), vec(m)))
    check(c_matvec, [A2, A1, A1], (mat(n, m), vec(m), np.zeros(n)))
    check(c_vecmat, [A1, A2, A1], (vec(n), mat(n, m), np.zeros(m)))
    check(c_matmul, [A2, A2, A2], (mat(n, m), mat(m, k), np.zeros((n, k))))
    check(c_abt, [A2, A2, A2], (mat(n, m), mat(k, m), np.zeros((n, k))))
    check(c_outer, [A1, A1, A2], (vec(n), vec(k), np.zeros((n, k))))
    check(c_bcast_product, [A2, A2, A3, A2],
          (mat(n, k), mat(k, m), np.zeros((n, k, m)), np.zeros((n, k))))
    check(c_transpose, [A2, A2], (mat(n, n), np.zeros((n, n))))
    check(c_transpose3, [A3, A3], (RNG.standard_normal((n, m, k)), np.zeros((k, n, m))))
    check(c_implicit, [A2, A2], (mat(n, n), mat(n, n)))
    check(logsumexp_rows, [A2, A1], (mat(n, m) * 30, np.zeros(n)))


def test_matvec_ir_form():
    def f(A, v, out):
        out[...] = A @ v

    t = trace(f, [A2, A1, A1])
    text = reparse(t)
    assert "affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d1)>, " \
           "affine_map<(d0, d1) -> (d0)>" in text
    assert 'iterator_types = ["parallel", "reduction"]' in text


# --------------------------------------------------------------------------- GMM


def gmm_objective(alphas, means, icf, x):
    """ADBench's GMM objective with a diagonal inverse Cholesky factor (exp(icf))."""
    Qdiags = np.exp(icf)
    sum_qs = np.sum(icf, axis=1)
    xcentered = x[:, None, :] - means[None, :, :]
    Lxcentered = Qdiags[None] * xcentered
    sqsum = np.sum(Lxcentered ** 2, axis=2)
    inner = alphas + sum_qs - 0.5 * sqsum
    m = np.max(inner, axis=1, keepdims=True)
    lse = np.log(np.sum(np.exp(inner - m), axis=1)) + m[:, 0]
    am = np.max(alphas)
    lse_alphas = np.log(np.sum(np.exp(alphas - am))) + am
    n = x.shape[0]
    return np.sum(lse) - n * lse_alphas


def gmm_objective_ref(alphas, means, icf, x):
    Qdiags = np.exp(icf)
    sum_qs = np.sum(icf, axis=1)
    xc = x[:, None, :] - means[None, :, :]
    sqsum = np.sum((Qdiags[None] * xc) ** 2, axis=2)
    inner = alphas + sum_qs - 0.5 * sqsum
    m = inner.max(axis=1, keepdims=True)
    lse = np.log(np.exp(inner - m).sum(axis=1)) + m[:, 0]
    return lse.sum() - x.shape[0] * (np.log(np.exp(alphas - alphas.max()).sum()) + alphas.max())


@pytest.mark.parametrize("n,k,d", [(1, 1, 1), (5, 3, 2)])
def test_gmm(n, k, d):
    args = (vec(k), mat(k, d), mat(k, d) * 0.3, mat(n, d))
    t = trace(gmm_objective, [A1, A2, A2, A2])
    reparse(t)
    lowered = lower_linalg(t.module)
    for a in (args, tuple(_view_of(v) for v in args)):
        memory: dict = {}
        (got,) = evaluate(lowered, t.func_name, *a, memory=memory)
        assert memory["allocs"] == memory["deallocs"]
        assert got == pytest.approx(gmm_objective_ref(*args), rel=1e-10)


# --------------------------------------------------------------------------- item 4


def mk_array(a, b, out):
    v = np.array([a, b * 2.0, 3.0])
    M = np.array([[a, b], [b, a]])
    out[...] = M @ np.array([v[0], v[1]]) + v[2]


def mk_diag(v, A, out):
    D = np.diag(v)
    out[...] = D @ v + np.diag(A)


def mk_concat_stack(a, b):
    c = np.concatenate([a, b, a])
    S = np.stack([a, b])
    T = np.stack([a, b], axis=1)
    return np.sum(c * c) + np.sum(S @ b) + np.sum(T) + c[len(a)]


def mk_reshape(A, v):
    f = A.reshape(-1)
    g = A.ravel() + A.flatten()
    M = v.reshape(2, -1)
    return np.sum(f * np.arange(f.shape[0])) + np.sum(g) + np.sum(M @ M.T)


def test_array_builders():
    check(mk_array, [f64, f64, A1], (1.5, -2.0, np.zeros(2)))
    check(mk_diag, [A1, A2, A1], (vec(3), mat(3, 3), np.zeros(3)), (vec(1), mat(1, 1), np.zeros(1)))
    check(mk_concat_stack, [A1, A1], (vec(3), vec(3)), (vec(1), vec(1)))
    # reshape/ravel are views: of contiguous arrays only (numpy would copy the others)
    t = check(mk_reshape, [A2, A1], (mat(3, 2), vec(6)), (mat(1, 1), vec(2)), views=False)
    with pytest.raises(isozyme.UnsupportedError, match="not C-contiguous"):
        evaluate(lower_linalg(t.module), t.func_name, mat(4, 6)[:, :2], vec(6))


# --------------------------------------------------------------------------- loops, helpers


def in_loop(A, out):
    s = 0.0
    for i in range(A.shape[0]):
        s += np.sum(A * (i + 1.0))
    out[...] = A.sum(axis=0) * s


def helper(a, b):
    return a * b + np.sin(a)


def uses_helper(x, y):
    return np.sum(helper(x, y)) + np.sum(helper(y, x))


def test_loops_and_helpers():
    check(in_loop, [A2, A1], (mat(3, 2), np.zeros(2)))
    check(uses_helper, [A1, A1], (vec(4), vec(4)))


def test_one_generic_per_operation():
    def f(x, y, out):
        out[...] = np.sin(x) * y

    t = trace(f, [A1, A1, A1])
    assert generic_count(t) == 3  # sin, *, the copy into out
    allocs = [op for op in t.module.walk() if op.name == "memref.alloc"]
    deallocs = [op for op in t.module.walk() if op.name == "memref.dealloc"]
    assert len(allocs) == len(deallocs) == 2


# --------------------------------------------------------------------------- errors


def err_median(x):
    return np.median(x)  # ERR


def err_sort_method(x):
    return x.sort()  # ERR


def err_slice(x):
    return np.sum(x[1.5:])  # ERR


def err_row(A):
    return np.sum(A[A * 2.0])  # ERR


def err_dot_rank(A):
    return np.sum(np.dot(A[None], A))  # ERR


def err_einsum_sublist(A):
    return np.sum(np.einsum(A, [0, 1]))  # ERR


def err_axis(A, k):
    return np.sum(np.sum(A, axis=k))  # ERR


def err_kwargs(x):
    return np.sum(np.sin(x, where=x > 0))  # ERR


def err_where1(x):
    return np.sum(np.where(x > 0))  # ERR


def line_of(fn, text: str) -> int:
    lines, start = inspect.getsourcelines(fn)
    for k, line in enumerate(lines):
        if text in line:
            return start + k
    raise AssertionError(text)


@pytest.mark.parametrize(
    "fn,types,words",
    [
        (err_median, [A1], ["median", "whole-array"]),
        (err_sort_method, [A1], ["sort", "whole-array"]),
        (err_slice, [A1], ["slice bound of type float"]),
        (err_row, [A2], ["index array of dtype float64"]),
        (err_dot_rank, [A2], ["np.dot", "whole-array"]),
        (err_einsum_sublist, [A2], ["subscripts string"]),
        (err_axis, [A2, i64], ["axis"]),
        (err_kwargs, [A1], ["keyword"]),
        (err_where1, [A1], ["np.where with one argument"]),
    ],
)
def test_errors(fn, types, words):
    with pytest.raises(TraceError) as e:
        trace(fn, types)
    message = str(e.value)
    assert f"{THIS_FILE}:{line_of(fn, 'ERR')}:" in message, message
    for w in words:
        assert w in message, message


# --------------------------------------------------------------------------- more views


def v_rows_cols(A, out_row, out_col):
    out_row[...] = A[0, :] + 2.0 * A[2, ...] + A[:, 1][None, :][0, :][0]
    out_col[:] = A[:, 1] * A.shape[0]


def v_int_scalar(x):
    n = x.shape[0]
    return np.sum(x * n) + np.sum(n - x)


def test_int_indices_and_int_scalars():
    check(v_rows_cols, [A2, A1, A1], (mat(3, 2), np.zeros(2), np.zeros(3)))
    check(v_int_scalar, [A1], (vec(4),), (vec(1),))


def write_transpose(A):
    B = A.T
    B[0, 1] = 1.0
    return A[1, 0]


def write_newaxis(x):
    y = x[:, None]
    y += 1.0
    return x[0]


def test_writes_into_transposes_and_new_axes_reach_the_base():
    for fn, types, arg, want in [(write_transpose, [A2], np.zeros((2, 2)), 1.0),
                                 (write_newaxis, [A1], np.zeros(3), 1.0)]:
        traced = trace(fn, types)
        (got,) = evaluate(lower_linalg(traced.module), traced.func_name, arg)
        assert got == want
