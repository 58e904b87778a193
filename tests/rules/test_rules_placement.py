"""isozyme.rules with arrays, and where rules apply: inside loops, branches, helpers
and parallel loops, on the emulated GPU, through nested AD, for functions isozyme
cannot trace, and after registration (the method of test_rules_modes.py: a correct
rule against central differences, a rule scaled by 3 against 3 times that)."""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import numpy as np
import pytest
import scipy.special

import isozyme as iz
from isozyme import (
    Active,
    BatchDuplicated,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Reverse,
    ReverseWithPrimal,
    autodiff,
    gradient,
    jacobian,
    rules,
)
from tests.finite_differences import central_gradient
from tests.rules.rule_kinds import (
    X,
    Y,
    KINDS,
    ARRAY_KINDS,
    RNG,
    fd,
    close,
    lanes,
    shadow_of,
    seeds_of,
    adjoint,
    record,
    register_sin_times,
    make_scalar,
    grad_fd,
)

# Only the rule scaled by 3 (``rule_kinds.SCALES`` has 1 and 3): every expected value
# below is 3 times central differences, which checks the rule's numbers and that the
# rule, not the traced body, was differentiated; the correct rule (scale 1) runs in
# test_rules_modes.py. Halves this file's time in CI.
SCALES = (3.0,)


# ------------------------------------------------------------------------------- arrays
def register_sumsin(kind, fn, scale, log):
    """Give ``fn(x, w) = sum(sin(x)) * w`` (x an array, w a float) a ``kind`` rule
    scaled by ``scale``; the general reverse rules add into ``x.dval`` ("general" in
    whole-array numpy, "loops" element by element)."""
    if kind == "loops":
        @rules.forward(fn)
        def fwd_loops(config, func, RT, x, w):
            record(log, "forward", config)
            s = 0.0
            for i in range(x.val.shape[0]):
                s += math.sin(x.val[i])
            ts = []
            for dx, dw in zip(lanes(x, rules.width(config)), lanes(w, rules.width(config))):
                t = s * dw
                if not isinstance(x, Const):
                    for i in range(x.val.shape[0]):
                        t += math.cos(x.val[i]) * dx[i] * w.val
                ts.append(scale * t)
            shadow = shadow_of(config, ts)
            if not rules.needs_primal(config):
                return shadow
            if rules.width(config) == 1:
                return Duplicated(s * w.val, shadow)
            return BatchDuplicated(s * w.val, shadow)

        @rules.augmented_primal(fn)
        def aug_loops(config, func, RT, x, w):
            record(log, "augmented", config)
            s = 0.0
            for i in range(x.val.shape[0]):
                s += math.sin(x.val[i])
            return rules.AugmentedReturn(s * w.val if rules.needs_primal(config) else None, None, s)

        @rules.reverse(fn)
        def rev_loops(config, func, dret, tape, x, w):
            record(log, "reverse", config)
            seeds = seeds_of(config, dret)
            if seeds is None:
                return (None, None)
            shadows = ()
            if isinstance(x, BatchDuplicated):
                shadows = x.dvals
            elif isinstance(x, Duplicated):
                shadows = (x.dval,)
            for dx, d in zip(shadows, seeds):
                for i in range(x.val.shape[0]):
                    dx[i] += scale * math.cos(x.val[i]) * w.val * d
            return (None, adjoint(config, w, [scale * tape * d for d in seeds]))
    elif kind == "easy":
        rules.easy_rule(fn, lambda x, w: (scale * np.cos(x) * w, scale * np.sum(np.sin(x))))
    elif kind == "general":
        @rules.forward(fn)
        def fwd(config, func, RT, x, w):
            record(log, "forward", config)
            n = rules.width(config)
            c, s = np.cos(x.val), np.sum(np.sin(x.val))
            ts = [scale * (np.sum(c * dx) * w.val + s * dw)
                  for dx, dw in zip(lanes(x, n), lanes(w, n))]
            shadow = shadow_of(config, ts)
            if not rules.needs_primal(config):
                return shadow
            if rules.width(config) == 1:
                return Duplicated(s * w.val, shadow)
            return BatchDuplicated(s * w.val, shadow)

        @rules.augmented_primal(fn)
        def aug(config, func, RT, x, w):
            record(log, "augmented", config)
            s = np.sum(np.sin(x.val))
            return rules.AugmentedReturn(s * w.val if rules.needs_primal(config) else None, None, s)

        @rules.reverse(fn)
        def rev(config, func, dret, tape, x, w):
            record(log, "reverse", config)
            seeds = seeds_of(config, dret)
            if seeds is None:
                return (None, None)
            if isinstance(x, BatchDuplicated):
                for dx, d in zip(x.dvals, seeds):
                    dx[:] += scale * np.cos(x.val) * w.val * d
            elif isinstance(x, Duplicated):
                x.dval[:] += scale * np.cos(x.val) * w.val * seeds[0]
            return (None, adjoint(config, w, [scale * tape * d for d in seeds]))
    else:
        def frule(dargs, f, x, w):
            _, dx, dw = dargs
            s = np.sum(np.sin(x))
            return s * w, scale * (np.sum(np.cos(x) * dx) * w + s * dw)

        def rrule(f, x, w):
            s = np.sum(np.sin(x))

            def pullback(dz):
                return rules.NoTangent(), scale * np.cos(x) * w * dz, scale * s * dz
            return s * w, pullback

        rules.import_frule(fn, frule)
        rules.import_rrule(fn, rrule)


def make_sumsin(kind, scale, log=None):
    def sumsin(x, w):
        return np.sum(np.sin(x)) * w

    register_sumsin(kind, sumsin, scale, [] if log is None else log)
    return sumsin


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_array_argument(kind, scale):
    sumsin = make_sumsin(kind, scale)

    def f(x, w):
        z = sumsin(x, w)
        return z * z + z

    x = RNG.uniform(-1, 1, 5)
    w = 0.8
    gx = central_gradient(lambda x: f(x, w), [x])
    gw = fd(lambda w: f(x, w), (w,), 0)
    dx = np.zeros(5)
    (derivs,) = autodiff(Reverse, f, Active, Duplicated(x.copy(), dx), Active(w))
    close(dx, scale * gx)
    assert derivs[0] is None
    close(derivs[1], scale * gw)
    # forward: a seed on the array and one on the float
    sx = RNG.uniform(-1, 1, 5)
    (t,) = autodiff(Forward, f, Duplicated(x.copy(), sx), Duplicated(w, 0.5))
    close(t, scale * (float(gx @ sx) + 0.5 * gw))
    # the array alone active
    dx = np.zeros(5)
    autodiff(Reverse, f, Active, Duplicated(x.copy(), dx), Const(w))
    close(dx, scale * gx)
    # gradient of the ruled function itself
    (gx_top, gw_top) = gradient(Reverse, sumsin, x, w)
    close(gx_top, scale * np.cos(x) * w)
    close(gw_top, scale * np.sum(np.sin(x)))


@pytest.mark.parametrize("scale", SCALES)
def test_array_easy_rule_array_output_forward(scale):
    """An array in, an array out: the jac entry is the full Jacobian y.shape + x.shape;
    a float in, an array out: an entry of y's shape."""
    def sq(x):
        return x * x

    def ramp(t):
        return np.sin(t * np.arange(1.0, 4.0))

    def d_ramp(t):
        k = np.arange(1.0, 4.0)
        return (scale * np.cos(t * k) * k,)

    rules.easy_rule(sq, lambda x: (scale * np.diag(2.0 * x),))
    rules.easy_rule(ramp, d_ramp)

    def f(x, t):
        return np.sum(sq(x)) * 2.0 + np.sum(ramp(t))

    x = np.array([0.3, -0.8, 1.1])
    sx = np.array([1.0, 0.5, -2.0])
    (tx,) = autodiff(Forward, f, Duplicated(x.copy(), sx), Const(X))
    close(tx, scale * float(central_gradient(lambda x: f(x, X), [x]) @ sx))
    (tt,) = autodiff(Forward, f, Const(x), Duplicated(X, 1.0))
    close(tt, scale * fd(lambda t: f(x, t), (X,), 0))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_batch_forward_array(kind, scale):
    sumsin = make_sumsin(kind, scale)

    def f(x):
        return sumsin(x, 1.5) * 2.0

    x = RNG.uniform(-1, 1, 4)
    g = central_gradient(f, [x])
    (lanes_,) = autodiff(Forward, f, BatchDuplicated(x.copy(), iz.onehot(x, 1, 3)))
    close(lanes_, scale * g[1:3])
    (J,) = jacobian(Forward, f, x, chunk=2)
    close(J, scale * g)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_batch_reverse_array(kind, scale):
    """jacobian(Reverse, chunk=2): the reverse rule gets two seeds and, for the
    Duplicated array argument, two shadows (x.dvals)."""
    log = []
    sumsin = make_sumsin(kind, scale, log)

    def g(A):
        return np.array([sumsin(A[0], 1.0), sumsin(A[1], 2.0) * sumsin(A[0], 0.5)])

    A = RNG.uniform(-1, 1, (2, 3))
    (J,) = jacobian(Reverse, g, A, chunk=2)
    expected = np.stack([central_gradient(lambda a, k=k: g(a)[k], [A]) for k in range(2)])
    close(J, scale * expected)
    if kind in ("general", "loops"):
        assert 2 in {entry[3] for entry in log if entry[0] == "reverse"}


# ------------------------------------------------------------- loops, branches, helpers
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", KINDS)
def test_rule_inside_a_loop(kind, scale):
    h, _ = make_scalar(kind, scale)

    def f(x, y, n):
        s = 0.0
        for i in range(n):
            s += h(x * (i + 1.0), y)
        return s

    g = grad_fd(lambda x, y: f(x, y, 3), (X, Y))
    (derivs,) = autodiff(Reverse, f, Active, Active(X), Active(Y), Const(3))
    close(derivs[:2], [scale * gk for gk in g])
    (t,) = autodiff(Forward, f, Duplicated(X, 1.0), Duplicated(Y, 0.5), Const(3))
    close(t, scale * (g[0] + 0.5 * g[1]))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("x", [X, -X])
def test_rule_inside_a_branch(kind, scale, x):
    h, _ = make_scalar(kind, scale)

    def f(x, y):
        if x > 0.0:
            r = h(x, y) * 2.0
        else:
            r = h(y, x) * h(x, y)
        return r

    g = grad_fd(f, (x, Y))
    # h(y, x) * h(x, y): each term of its derivative holds one (scaled) rule derivative
    for mode in (Forward, Reverse):
        close(gradient(mode, f, x, Y), [scale * gk for gk in g])


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", KINDS)
def test_rule_inside_a_helper(kind, scale):
    h, _ = make_scalar(kind, scale)

    def helper(x, y):
        return h(x, y) * h(y, x)

    def f(x, y):
        return helper(x, y) + 2.0 * helper(y, x)

    g = grad_fd(f, (X, Y))
    for mode in (Forward, Reverse):
        close(gradient(mode, f, X, Y), [scale * gk for gk in g])


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_rule_on_rows_of_a_duplicated_matrix(kind, scale):
    """The ruled function's array argument is a row (a view) of a Duplicated matrix: its
    shadow is the row of the matrix's shadow."""
    sumsin = make_sumsin(kind, scale)

    def f(A):
        s = 0.0
        for i in range(A.shape[0]):
            s += sumsin(A[i], i + 1.0)
        return s

    A = RNG.uniform(-1, 1, (3, 4))
    g = central_gradient(f, [A])
    dA = np.zeros_like(A)
    autodiff(Reverse, f, Active, Duplicated(A.copy(), dA))
    close(dA, scale * g)
    sA = RNG.uniform(-1, 1, A.shape)
    (t,) = autodiff(Forward, f, Duplicated(A.copy(), sA))
    close(t, scale * float(np.sum(g * sA)))


# ---------------------------------------------------------------------------- nested AD
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", KINDS)
def test_hvp_through_a_ruled_function(kind, scale):
    h, _ = make_scalar(kind, scale)

    def f(x):
        return 2.0 * h(x[0], x[1]) + h(x[1], x[2])

    h1, _ = make_scalar(kind, 1.0)

    def f_true(x):
        return 2.0 * h1(x[0], x[1]) + h1(x[1], x[2])

    x = np.array([0.7, 1.3, -0.4])
    v = np.array([0.5, -1.0, 2.0])
    eps = 1e-5
    (gp,) = gradient(Reverse, f_true, x + eps * v)
    (gm,) = gradient(Reverse, f_true, x - eps * v)
    hvp_fd = (gp - gm) / (2 * eps)
    close(iz.hvp(f, x, v), scale * hvp_fd, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------ targets
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", ["easy", "general", "loops"])
def test_on_the_emulated_gpu(kind, scale):
    sumsin = make_sumsin(kind, scale)

    def f(A):
        s = 0.0
        for i in range(A.shape[0]):
            s += sumsin(A[i], i + 1.0)
        return s

    A = RNG.uniform(-1, 1, (3, 4))
    g = central_gradient(f, [A])
    with iz.target("cuda-emu"):
        dA = np.zeros_like(A)
        (_, primal) = autodiff(ReverseWithPrimal, f, Active, Duplicated(A.copy(), dA))
        (t,) = autodiff(Forward, f, Duplicated(A.copy(), np.ones_like(A)))
    assert primal == pytest.approx(f(A), rel=1e-12)
    close(dA, scale * g)
    close(t, scale * float(np.sum(g)))


@pytest.mark.parametrize("target", ["cpu", "cuda-emu"])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", KINDS)
def test_rule_inside_a_parallel_loop(kind, scale, target):
    """A ruled call of floats in an iz.prange body: inside the kernel on cuda-emu."""
    h, _ = make_scalar(kind, scale)

    def kernel(x, out):
        for i in iz.prange(x.shape[0]):
            out[i] = h(x[i], 2.0) * x[i]

    x = RNG.uniform(-1, 1, 5)
    d = np.array([fd(lambda v: h(v, 2.0) * v, (v,), 0) for v in x])
    with iz.target(target):
        dx, dout = np.zeros(5), np.ones(5)
        autodiff(Reverse, kernel, Duplicated(x.copy(), dx), Duplicated(np.zeros(5), dout))
        seed, tout = RNG.uniform(-1, 1, 5), np.zeros(5)
        autodiff(Forward, kernel, Duplicated(x.copy(), seed.copy()), Duplicated(np.zeros(5), tout))
    # out = h(x, 2) x: the wrong rule scales dh only, not the product's x term
    true_dh = np.array([2.0 * math.cos(v) for v in x])
    expected = d + (scale - 1.0) * true_dh * x
    close(dx, expected)
    close(tout, expected * seed)


# ------------------------------------------------------------------ untraceable primals
def test_scipy_ufunc_with_an_easy_rule():
    """scipy.special.expit cannot be traced: its primal runs as a host call, its
    derivative is the rule's."""
    expit = scipy.special.expit

    def d_expit(x):
        e = math.exp(-x)
        s = 1.0 / (1.0 + e)
        return (s * (1.0 - s),)

    rules.easy_rule(expit, d_expit)

    def f(x, y):
        return expit(x * y) * y

    g = grad_fd(lambda x, y: float(f(x, y)), (X, Y))
    for mode in (Forward, Reverse):
        close(gradient(mode, f, X, Y), g)
    res = gradient(ReverseWithPrimal, f, X, Y)
    assert res.val == pytest.approx(float(expit(X * Y) * Y), rel=1e-15)


def _erfcx_caller(x):
    return scipy.special.erfcx(x) * 2.0


def _erfcx_caller_wrong(x):
    return scipy.special.erfcx(x) * 2.0


def _d_erfcx_caller(x):
    # erfcx(x) = exp(x^2) (1 - erf(x)): d/dx = 2 x erfcx(x) - 2/sqrt(pi)
    ex = math.exp(x * x) * (1.0 - math.erf(x))
    return 2.0 * (2.0 * x * ex - 2.0 / math.sqrt(math.pi))


rules.easy_rule(_erfcx_caller, lambda x: (_d_erfcx_caller(x),))
rules.easy_rule(_erfcx_caller_wrong, lambda x: (3.0 * _d_erfcx_caller(x),))


@pytest.mark.parametrize("scale, fn", [(1.0, _erfcx_caller), (3.0, _erfcx_caller_wrong)])
def test_function_calling_scipy_with_an_easy_rule(scale, fn):
    def f(x):
        z = fn(x)
        return z * z

    x = 0.45
    g = fd(lambda x: float(f(x)), (x,), 0)
    for mode in (Forward, Reverse):
        close(gradient(mode, f, x), [scale * g])
    res = gradient(ForwardWithPrimal, f, x)
    assert res.val == pytest.approx(float(f(x)), rel=1e-14)
    dx = np.zeros(3)
    xs = np.array([0.1, 0.45, 1.2])

    def g_arr(v):
        s = 0.0
        for i in range(v.shape[0]):
            s += fn(v[i])
        return s

    autodiff(Reverse, g_arr, Active, Duplicated(xs.copy(), dx))
    close(dx, scale * central_gradient(lambda v: float(g_arr(v)), [xs]))


def _libm_erfc():
    fn = ctypes.CDLL(ctypes.util.find_library("m")).erfc
    fn.restype = ctypes.c_double
    fn.argtypes = [ctypes.c_double]
    return fn


c_erfc = _libm_erfc()
c_erfc_wrong = _libm_erfc()  # another function object for the same C function
rules.easy_rule(c_erfc, lambda x: (-2.0 / math.sqrt(math.pi) * math.exp(-x * x),))
rules.easy_rule(c_erfc_wrong, lambda x: (-6.0 / math.sqrt(math.pi) * math.exp(-x * x),))


@pytest.mark.parametrize("scale, fn", [(1.0, c_erfc), (3.0, c_erfc_wrong)],
                         ids=["erfc", "erfc_wrong"])
def test_ctypes_function_with_an_easy_rule(scale, fn):
    """The rule is on the ctypes function itself, called from traced code."""
    def f(x, y):
        return fn(x * y) * fn(y)

    g = grad_fd(f, (X, Y))
    for mode in (Forward, Reverse):
        close(gradient(mode, f, X, Y), [scale * gk for gk in g])
    res = gradient(ReverseWithPrimal, f, X, Y)
    assert res.val == pytest.approx(math.erfc(X * Y) * math.erfc(Y), rel=1e-15)


# ------------------------------------------------------------------- registration order
def test_rule_registered_after_compiling():
    """A function compiled (and run) before a rule is registered uses the rule after."""
    def h(x, y):
        return math.sin(x) * y

    def f(x, y):
        return 2.0 * h(x, y)

    g = grad_fd(f, (X, Y))
    for mode in (Forward, Reverse):
        close(gradient(mode, f, X, Y), g)
    rules.easy_rule(h, lambda x, y: (3.0 * math.cos(x) * y, 3.0 * math.sin(x)))
    for mode in (Forward, Reverse):
        close(gradient(mode, f, X, Y), [3.0 * gk for gk in g])
    log = []
    register_sin_times("general", h, 5.0, log)  # the last registered rule wins
    for mode in (Forward, Reverse):
        close(gradient(mode, f, X, Y), [5.0 * gk for gk in g])
    assert log


def c_erfc_py(x, _f=c_erfc):
    """libm's erfc behind a Python function (its body is a C call: not traceable)."""
    return _f(x)


def c_erfc_py_wrong(x, _f=c_erfc):
    return _f(x)


rules.easy_rule(c_erfc_py, lambda x: (-2.0 / math.sqrt(math.pi) * math.exp(-x * x),))
rules.easy_rule(c_erfc_py_wrong, lambda x: (-6.0 / math.sqrt(math.pi) * math.exp(-x * x),))


@pytest.mark.parametrize("scale, fn", [(1.0, c_erfc_py), (3.0, c_erfc_py_wrong)],
                         ids=["erfc", "erfc_wrong"])
def test_python_function_calling_ctypes_with_an_easy_rule(scale, fn):
    def f(x, y):
        return fn(x * y) * fn(y)

    g = grad_fd(f, (X, Y))
    for mode in (Forward, Reverse):
        close(gradient(mode, f, X, Y), [scale * gk for gk in g])
    res = gradient(ReverseWithPrimal, f, X, Y)
    assert res.val == pytest.approx(math.erfc(X * Y) * math.erfc(Y), rel=1e-15)
