"""The numpy functions of issue 9 item 2, end to end: traced, compiled, run against
numpy (shapes, dtypes, values), differentiated in Forward mode (each float output's
tangent against a central finite difference along a random direction) and in Reverse
mode (the gradient of ``sum(sin(output))`` over the float outputs against central finite
differences), on two shapes each.

Several functions share one program (a tuple of results) to keep the compile count low.
Errors for the arguments that stay unsupported: type and message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

import isozyme
from isozyme import Duplicated, Forward, ForwardWithPrimal, Reverse, TraceError, autodiff, gradient

RNG = np.random.default_rng(9)


# --------------------------------------------------------------------------- programs


def stats_1d(x):
    return (np.var(x), np.std(x, ddof=1), np.linalg.norm(x), np.linalg.norm(x, 1),
            np.linalg.norm(x, np.inf), np.linalg.norm(x, -np.inf), np.linalg.norm(x, 3),
            x.var(), np.sqrt(np.var(x, ddof=0)))


def stats_2d(A):
    return (np.var(A, axis=0), np.std(A, axis=1, keepdims=True), A.var(ddof=1),
            A.std(axis=(0, 1)), np.linalg.norm(A), np.linalg.norm(A, "fro"),
            np.linalg.norm(A, 1), np.linalg.norm(A, -np.inf), np.linalg.norm(A, axis=0),
            np.linalg.norm(A, axis=1, keepdims=True), np.linalg.norm(A, 1, axis=1))


def scans(A):
    return (np.cumsum(A), np.cumsum(A, axis=0), A.cumprod(axis=1), np.cumprod(A),
            np.diff(A), np.diff(A, 2, axis=0), np.roll(A, 2), np.roll(A, -1, axis=1),
            np.roll(A, (1, 5), axis=(0, 1)))


def builders(x):
    n = x.shape[0]
    return (np.eye(3) * x[0], np.eye(n, 4, 1) * x[1], np.eye(n, k=-1) + np.identity(n),
            np.linspace(x[0], x[1], n), np.linspace(0.0, 1.0, 5, endpoint=False) * x[2],
            np.linspace(-1.0, x[0], 4, retstep=True)[1], np.linspace(2.0, 3.0, n) * x,
            np.eye(2, dtype=np.int64))


def triangles(A):
    r, c = np.triu_indices(A.shape[0], 1, A.shape[1])
    r2, c2 = np.tril_indices_from(A[:, : A.shape[0]])
    return (np.triu(A), np.tril(A, -1), np.triu(A, 1), np.tril(A, 1), r, c,
            A[r, c] * 2.0, r2, c2, np.triu_indices(3)[1])


def shapes(A):
    return (np.squeeze(A[None, :, None]), np.expand_dims(A, 0), np.expand_dims(A, (0, 3)),
            A[:, :1].squeeze(1), np.concatenate([A, 2 * A], axis=1),
            np.concatenate([A, A[:1]]), np.concatenate([A, A], axis=None),
            np.hstack([A, A * A]), np.hstack([A[0], A[1]]), np.vstack([A, A[0]]),
            np.stack([A, A + 1], axis=2), np.pad(A, 1),
            np.pad(A, ((0, 1), (2, 0)), constant_values=1.5),
            np.pad(A[0], (2, 1), constant_values=A[1, 1]),
            A.reshape(-1), A.reshape(A.shape[0], 2, -1), np.reshape(A, (1, -1, 2, 1)),
            A.reshape(2, -1)[1])


def elementwise(x):
    y = np.zeros(x.shape[0])
    np.sin(x, out=y)
    z = np.empty_like(x)
    w = np.multiply(x, y, z)  # w is z
    np.add(z, 1.0, z)
    # (w + 0.0: a helper returning one buffer twice is freed twice, functions.py)
    return (np.logaddexp(x, x[::-1]), np.logaddexp(x, x), np.logaddexp(x, -700.0 - x),
            np.log1p(x * x), np.expm1(x), np.logaddexp2(x, 0.5), y, z, w + 0.0,
            np.logaddexp(x[0], 2.0 * x[1]))


def arg_reductions(A):
    i = np.argmax(A)
    j = np.argmin(A, axis=0)
    k = A.argmax(axis=1)
    flags = (np.any(A > 0.5), np.all(A > -3.0), np.any(A > 1e9, axis=0),
             A.all(axis=1, keepdims=True), np.all(A[:0] > 0))
    best = A[i // A.shape[1], i % A.shape[1]] * 3.0
    return (i, j, k, np.argmax(A, axis=1, keepdims=True), np.argmin(A), best, *flags)


def contractions(x):
    a = x.reshape(2, 3, -1)
    b = x.reshape(2, -1, 3)
    return (a @ b, x.reshape(1, 2, 3, -1) @ x.reshape(2, 1, -1, 3), np.matmul(x[:3], a),
            np.einsum("...ij,...jk->...ik", a, b), np.einsum("...i,...i", a, a))


def lgamma_loop(x):
    s = 0.0
    t = 0.0
    for i in range(x.shape[0]):
        s = s + math.lgamma(x[i] * 3.0 - 2.6) + math.lgamma(x[i] * 40.0 + 0.3)
        t = t + math.gamma(x[i] + 0.2) + math.gamma(-x[i] - 0.4)
    return s, t


@dataclass
class Case:
    fn: Callable[..., Any]
    shapes: list[tuple[int, ...]]
    positive: bool = False  # inputs in (0.2, 1.2): lgamma away from its poles


CASES = [
    Case(stats_1d, [(5,), (8,)]),
    Case(stats_2d, [(3, 4), (5, 2)]),
    Case(scans, [(3, 4), (4, 6)]),
    Case(builders, [(5,), (3,)]),
    Case(triangles, [(3, 4), (4, 4)]),
    Case(shapes, [(2, 4), (3, 6)]),
    Case(elementwise, [(6,), (3,)]),
    Case(arg_reductions, [(3, 4), (4, 2)]),
    Case(contractions, [(24,), (36,)]),
    Case(lgamma_loop, [(4,), (2,)], positive=True),
]


# --------------------------------------------------------------------------- helpers


def _point(case: Case, shape: tuple[int, ...]) -> np.ndarray:
    if case.positive:
        return RNG.uniform(0.2, 1.2, size=shape)
    return RNG.normal(size=shape)


def _as_tuple(v: Any) -> tuple:
    return v if isinstance(v, tuple) else (v,)


def _is_float(v: Any) -> bool:
    return np.asarray(v).dtype.kind == "f"


def _check_value(got: Any, want: Any, what: str) -> None:
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), what
        assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
        assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=what)
        return
    assert not isinstance(got, np.ndarray), what
    if isinstance(want, (bool, np.bool_)):
        assert isinstance(got, (bool, np.bool_)) and bool(got) == bool(want), what
    elif isinstance(want, (int, np.integer)):
        assert isinstance(got, (int, np.integer)) and int(got) == int(want), what
    else:
        assert got == pytest.approx(float(want), rel=1e-12, abs=1e-12), what


def _scalarized(fn: Callable[..., Any], float_outputs: list[int]) -> Callable[..., Any]:
    """``sum(sin(out_i))`` over the float outputs of ``fn``: one scalar for Reverse."""

    def g(x):
        outs = fn(x)
        total = 0.0
        for i in float_outputs:
            total = total + np.sum(np.sin(outs[i]))
        return total

    return g


def _fd(f: Callable[[np.ndarray], Any], x: np.ndarray, v: np.ndarray, h: float = 1e-6) -> Any:
    hi, lo = f(x + h * v), f(x - h * v)
    return (np.asarray(hi) - np.asarray(lo)) / (2 * h)


def _ids(case: Case) -> str:
    return case.fn.__name__


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_primal_and_forward(case: Case) -> None:
    for shape in case.shapes:
        x = _point(case, shape)
        want = _as_tuple(case.fn(x.copy()))
        v = RNG.normal(size=shape)
        tangents, primal = autodiff(ForwardWithPrimal, case.fn, Duplicated(x.copy(), v.copy()))
        primal = _as_tuple(primal)
        assert len(primal) == len(want)
        for k, (g, w) in enumerate(zip(primal, want)):
            _check_value(g, w, f"{case.fn.__name__} output {k} at shape {shape}")
        floats = [k for k, w in enumerate(want) if _is_float(w)]
        tangents = _as_tuple(tangents)
        assert len(tangents) == len(floats)
        for k, t in zip(floats, tangents):
            fd = _fd(lambda p: _as_tuple(case.fn(p))[k], x, v)
            np.testing.assert_allclose(t, fd, rtol=1e-5, atol=1e-6 * (1 + np.max(np.abs(fd))),
                                       err_msg=f"{case.fn.__name__} tangent {k} at {shape}")


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_reverse(case: Case) -> None:
    for shape in case.shapes:
        x = _point(case, shape)
        floats = [k for k, w in enumerate(_as_tuple(case.fn(x.copy()))) if _is_float(w)]
        g = _scalarized(case.fn, floats)
        (grad,) = gradient(Reverse, g, x.copy())
        fd = np.zeros_like(x)
        for i in np.ndindex(*shape):
            e = np.zeros_like(x)
            e[i] = 1.0
            fd[i] = _fd(g, x, e)
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * (1 + np.max(np.abs(fd))),
                                   err_msg=f"{case.fn.__name__} gradient at {shape}")


def test_forward_gradient_agrees_with_reverse() -> None:
    # gradient(Forward) (one tangent per element) agrees with Reverse
    def g(x):
        return np.sum(np.cumsum(x) * np.roll(x, 1)) + np.var(x) * np.linalg.norm(x)

    x = RNG.normal(size=7)
    (rev,) = gradient(Reverse, g, x.copy())
    (fwd,) = gradient(Forward, g, x.copy())
    np.testing.assert_allclose(fwd, rev, rtol=1e-12, atol=1e-12)


def test_lgamma_matches_math_lgamma() -> None:
    # digits of the primal over the whole line (poles excluded), and digamma
    pts = np.concatenate([np.linspace(-7.9, 25.0, 157), [1.0, 2.0, 0.5, 1e-3, 150.5, 1e5,
                                                         -0.5, -100.3, 3.5e7]])

    def lg(x):
        out = np.zeros(x.shape[0])
        for i in range(x.shape[0]):
            out[i] = math.lgamma(x[i])
        return out

    got = autodiff(ForwardWithPrimal, lg, Duplicated(pts.copy(), np.ones_like(pts)))
    want = np.array([math.lgamma(p) for p in pts])
    np.testing.assert_allclose(got[1], want, rtol=1e-13, atol=1e-14 * 20)
    h = 1e-6 * np.maximum(1.0, np.abs(pts))  # relative steps: lgamma(3.5e7) is 5.7e8
    digamma = np.array([(math.lgamma(p + d) - math.lgamma(p - d)) / (2 * d)
                        for p, d in zip(pts, h)])
    np.testing.assert_allclose(got[0], digamma, rtol=1e-5, atol=1e-6)
    try:
        from scipy.special import digamma as exact  # only to check digits
    except ImportError:
        pass
    else:
        np.testing.assert_allclose(got[0], exact(pts), rtol=1e-11, atol=1e-12)
    assert got[0][pts == 1.0] == pytest.approx(-0.5772156649015329, rel=1e-13)  # -euler
    assert got[0][pts == 2.0] == pytest.approx(1 - 0.5772156649015329, rel=1e-13)


def test_special_values() -> None:
    def f(a, b, x):
        return (np.logaddexp(a, b), math.lgamma(x), np.logaddexp2(a, b))

    for a, b in [(-np.inf, -np.inf), (np.inf, 1.0), (np.inf, np.inf), (np.nan, 1.0),
                 (1.0, np.nan), (np.nan, np.inf), (-np.inf, 3.0)]:
        res = autodiff(ForwardWithPrimal, f, Duplicated(a, 0.0), Duplicated(b, 0.0),
                       Duplicated(np.inf, 0.0))[1]
        with np.errstate(invalid="ignore"):
            np.testing.assert_equal(res[0], np.logaddexp(a, b))
            np.testing.assert_equal(res[2], np.logaddexp2(a, b))
        assert res[1] == math.inf


def test_logaddexp_derivative_at_a_tie() -> None:
    # d/da logaddexp(a, b) at a == b is 1/2 for each operand
    def f(a, b):
        return np.logaddexp(a, b)

    res = autodiff(Reverse, f, isozyme.Active, isozyme.Active(0.3), isozyme.Active(0.3))
    assert res[0] == pytest.approx((0.5, 0.5), rel=1e-15)


def test_scans_stay_loops() -> None:
    # the scan is an scf.for whose IR does not grow with the size: the same compiled
    # code serves n = 3 and n = 3000, and the traced IR has no per-element ops
    def f(x):
        return np.sum(np.cumprod(np.cumsum(x)) * 1e-3)

    small = isozyme.ir(Reverse, f, isozyme.Active, Duplicated(np.ones(3), np.zeros(3)),
                       stage="traced")
    big = isozyme.ir(Reverse, f, isozyme.Active, Duplicated(np.ones(3000), np.zeros(3000)),
                     stage="traced")
    assert "scf.for" in small and small == big
    x = RNG.uniform(0.5, 1.0, size=50)
    (g,) = gradient(Reverse, f, x)
    fd = np.array([_fd(f, x, e) for e in np.eye(50)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_ufunc_out_returns_the_array() -> None:
    def f(x):
        y = np.zeros(x.shape[0])
        r = np.exp(x, out=y)
        r[0] = 7.0  # r is y
        return y, np.sum(r)

    _, (y, s) = autodiff(ForwardWithPrimal, f, Duplicated(np.zeros(3), np.ones(3)))
    np.testing.assert_array_equal(y, [7.0, 1.0, 1.0])
    assert s == 9.0


# --------------------------------------------------------------------------- errors


def err_norm_spectral(A):
    return np.linalg.norm(A, 2)  # ERR


def err_pad_mode(x):
    return np.sum(np.pad(x, 1, mode="edge"))  # ERR


def err_diff_prepend(x):
    return np.sum(np.diff(x, prepend=0.0))  # ERR


def err_cumsum_out(x):
    return np.sum(np.cumsum(x, out=x))  # ERR


def err_eye_traced_k(x, k):
    return np.sum(np.eye(3, k=k) * x[0])  # ERR


def err_ufunc_where(x):
    return np.sum(np.exp(x, where=x > 0))  # ERR


def err_var_where(x):
    return np.var(x, where=x > 0)  # ERR


def err_linspace_arrays(x):
    return np.sum(np.linspace(x, x + 1.0, 3))  # ERR


@pytest.mark.parametrize("fn,args,words", [
    (err_norm_spectral, (np.ones((2, 2)),), ["ord=2", "SVD"]),
    (err_pad_mode, (np.ones(3),), ["np.pad with mode='edge'", "constant"]),
    (err_diff_prepend, (np.ones(3),), ["np.diff with prepend=/append="]),
    (err_cumsum_out, (np.ones(3),), ["np.cumsum with out="]),
    (err_eye_traced_k, (np.ones(3), 1), ["np.eye with an offset k"]),
    (err_ufunc_where, (np.ones(3),), ["numpy.exp with keyword arguments (where)"]),
    (err_var_where, (np.ones(3),), ["np.var with where="]),
    (err_linspace_arrays, (np.ones(3),), ["np.linspace with array start/stop"]),
], ids=lambda v: getattr(v, "__name__", ""))
def test_errors(fn, args, words) -> None:
    with pytest.raises(TraceError) as e:
        autodiff(Forward, fn, *[Duplicated(a, np.ones_like(a)) if isinstance(a, np.ndarray)
                                else a for a in args])
    message = str(e.value)
    for w in words:
        assert w in message, message
    assert "# ERR" in message  # names the line


def test_numpy_errors_where_numpy_raises() -> None:
    def squeeze_bad(A):
        return np.sum(np.squeeze(A, axis=0))

    with pytest.raises(ValueError, match="cannot select an axis to squeeze"):
        autodiff(Forward, squeeze_bad, Duplicated(np.ones((2, 3)), np.ones((2, 3))))

    def norm_bad(A):
        return np.linalg.norm(A, "fro", axis=0)

    with pytest.raises(ValueError, match="Invalid norm order"):
        autodiff(Forward, norm_bad, Duplicated(np.ones((2, 3)), np.ones((2, 3))))

    def argmax_empty(x):
        return np.argmax(x[:0])

    with pytest.raises(isozyme.ShapeError, match="argmax"):
        autodiff(Forward, argmax_empty, Duplicated(np.ones(3), np.ones(3)))


def test_supported_numpy_functions_lists_the_registry() -> None:
    from isozyme.frontends.python.whole_array.registration import supported_numpy_functions

    rows = supported_numpy_functions()
    names = [n for n, _ in rows]
    assert names == sorted(set(names))
    table = dict(rows)
    for name in ["numpy.var", "numpy.std", "numpy.linalg.norm", "numpy.eye",
                 "numpy.identity", "numpy.cumsum", "numpy.cumprod", "numpy.diff",
                 "numpy.roll", "numpy.linspace", "numpy.logaddexp", "numpy.log1p",
                 "numpy.expm1", "numpy.argmax", "numpy.argmin", "numpy.any", "numpy.all",
                 "numpy.triu", "numpy.tril", "numpy.triu_indices", "numpy.hstack",
                 "numpy.vstack", "numpy.pad", "numpy.squeeze", "numpy.expand_dims",
                 "numpy.concatenate", "numpy.reshape", "numpy.matmul", "numpy.einsum",
                 "math.lgamma", "numpy.sin", "numpy.zeros", "builtins.abs",
                 "numpy.ndarray.cumsum", "numpy.ndarray.T"]:
        assert name in table, name
    assert "SVD" not in table["numpy.linalg.norm"] and "'nuc'" in table["numpy.linalg.norm"]
    assert "numpy.median" not in table and "numpy.sort" not in table


def test_hvp_through_the_new_functions() -> None:
    # forward over reverse (nested AD of the derivative IR) through var, cumsum,
    # logaddexp, norm, lgamma, roll, diff and pad, against differences of gradients
    def f(x):
        s = np.var(x) + np.sum(np.cumsum(x) ** 2) + np.sum(np.logaddexp(x, 0.3))
        s = s + np.linalg.norm(x)
        for i in range(x.shape[0]):
            s = s + math.lgamma(x[i] + 2.0)
        return s + np.sum(np.roll(x, 1) * np.diff(np.pad(x, (1, 0))))

    x, v = RNG.uniform(0.2, 1.0, 5), RNG.normal(size=5)
    hv = isozyme.hvp(f, x, v)
    h = 1e-5
    fd = (gradient(Reverse, f, x + h * v)[0] - gradient(Reverse, f, x - h * v)[0]) / (2 * h)
    np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-7)


def test_vectorized_lgamma_is_a_gammaln() -> None:
    def f(x):
        gammaln = np.vectorize(math.lgamma)
        return np.sum(gammaln(x) * x)

    x = np.array([0.5, 1.5, 3.0, 7.2, 31.0])
    (g,), v = gradient(isozyme.ReverseWithPrimal, f, x.copy())
    assert v == pytest.approx(sum(math.lgamma(p) * p for p in x), rel=1e-14)
    fd = np.array([_fd(lambda p: sum(math.lgamma(t) * t for t in p), x, e) for e in np.eye(5)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)  # fd: sum of size 2300

    def user(t):
        return t * 2.0

    def bad(x):
        return np.sum(np.vectorize(user)(x))  # ERR

    with pytest.raises(TraceError, match="np.vectorize of user"):
        gradient(Reverse, bad, x.copy())


def _dtype_program(x):
    return (np.var(x), np.std(x, axis=0), np.linalg.norm(x), np.cumsum(x),
            np.cumprod(x, axis=1), np.diff(x), np.roll(x, 1), np.triu(x), np.pad(x, 1),
            np.concatenate([x, x], axis=1), np.squeeze(x[None]), np.argmax(x), np.any(x > 1),
            np.hstack([x, x]), np.linalg.norm(x, axis=1), np.vstack([x, x[0]]))


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_result_dtypes_follow_numpy(dtype) -> None:
    # float32 stays float32, int64 sums stay int64, var/std/norm of ints are float64
    def with_scalar(x, s):
        return _dtype_program(x)

    x = (np.arange(6).reshape(2, 3) + 1).astype(dtype)
    got = autodiff(ForwardWithPrimal, with_scalar, isozyme.Const(x), Duplicated(1.0, 1.0))[1]
    for k, (g, w) in enumerate(zip(got, _dtype_program(x))):
        if isinstance(w, np.ndarray):
            assert g.dtype == w.dtype and g.shape == w.shape, k
            np.testing.assert_allclose(g, w, rtol=1e-6)
        else:
            assert g == pytest.approx(w, rel=1e-6), k


def _lgamma_of(x):
    return math.lgamma(x)


def test_lgamma_derivative_at_integers_is_digamma_in_both_modes():
    """psi(n) = -euler_gamma + H(n-1): at integers the unused reflection branch has
    sin(pi x) = 0, which must not turn the reverse-mode adjoint into NaN."""
    euler = 0.5772156649015329
    for n in range(1, 11):
        want = -euler + sum(1.0 / k for k in range(1, n))
        ((rev,),) = isozyme.autodiff(isozyme.Reverse, _lgamma_of, isozyme.Active(float(n)))
        (fwd,) = isozyme.autodiff(isozyme.Forward, _lgamma_of, isozyme.Duplicated(float(n), 1.0))
        assert rev == pytest.approx(want, rel=1e-12, abs=1e-14)
        assert fwd == pytest.approx(want, rel=1e-12, abs=1e-14)
