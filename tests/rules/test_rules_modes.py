"""isozyme.rules in every mode: easy rules, general rules (forward, augmented_primal,
reverse) and ChainRules imports, against central differences and against deliberately
wrong rules.

Every scenario is built twice by a factory: once with a correct rule (the result must
match central differences of the plain Python function) and once with a rule scaled by
3 (``SCALES``).  The callers are written so that every input reaches the result only
through the ruled function, so the wrong rule must give exactly 3 times the true
derivative: the rule, not the traced body, was differentiated (where a caller has
another path, its expected value says so).

A rule is global state: each factory call makes fresh function objects (closures) and
registers the rule on them, so tests never share a rule.  General rules append what
their ``config`` says to a Python list: rule bodies are traced, so the appends run when
the rule is traced (once per compiled derivative function).
"""

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

SCALES = (1.0, 3.0)
KINDS = ("easy", "general", "chainrules")
ARRAY_KINDS = ("easy", "general", "loops", "chainrules")
X, Y = 0.7, 1.3
RTOL, ATOL = 1e-6, 1e-8
RNG = np.random.default_rng(10)


def fd(f, args, k, h=1e-6):
    """d f(*args) / d args[k] (a float) by a central difference."""
    plus, minus = list(args), list(args)
    plus[k] += h
    minus[k] -= h
    return (f(*plus) - f(*minus)) / (2 * h)


def close(actual, expected, rtol=RTOL, atol=ATOL):
    """assert_allclose of a float, a tuple of floats or an array."""
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, rtol=rtol, atol=atol)


# ------------------------------------------------------------ helpers for general rules
def lanes(a, w):
    """The tangents (forward) of a general rule's argument, one per lane; zeros for Const."""
    if isinstance(a, BatchDuplicated):
        return tuple(a.dvals)
    if isinstance(a, Duplicated):
        return (a.dval,)
    return (0.0,) * w


def shadow_of(config, tangents):
    """A forward rule's shadow: the tangent (width 1) or the tuple of lane tangents."""
    return tangents[0] if rules.width(config) == 1 else tuple(tangents)


def seeds_of(config, dret):
    """The reverse seeds, one per lane (None when the result is inactive)."""
    if dret is Const:
        return None
    return tuple(dret.val) if rules.width(config) > 1 else (dret.val,)


def adjoint(config, arg, values):
    """A reverse rule's entry for ``arg``: its adjoints (per lane) if Active, else None."""
    if not isinstance(arg, Active):
        return None
    return values[0] if rules.width(config) == 1 else tuple(values)


def record(log, kind, config):
    """Append (rule kind, needs_primal, needs_shadow, width, overwritten) to ``log``."""
    log.append((kind, rules.needs_primal(config), rules.needs_shadow(config),
                rules.width(config), tuple(rules.overwritten(config))))


# ----------------------------------------------------------------- h(x, y) = sin(x) * y
def register_sin_times(kind, h, scale, log):
    """Give ``h(x, y) = sin(x) * y`` a rule of ``kind`` whose derivative is ``scale``
    times the true one."""
    if kind == "easy":
        rules.easy_rule(h, lambda x, y: (scale * math.cos(x) * y, scale * math.sin(x)))
    elif kind == "general":
        @rules.forward(h)
        def fwd(config, func, RT, x, y):
            record(log, "forward", config)
            w = rules.width(config)
            c, s = math.cos(x.val), math.sin(x.val)
            ts = [scale * (c * y.val * dx + s * dy) for dx, dy in zip(lanes(x, w), lanes(y, w))]
            shadow = shadow_of(config, ts)
            if not rules.needs_primal(config):
                return shadow
            if rules.width(config) == 1:
                return Duplicated(s * y.val, shadow)
            return BatchDuplicated(s * y.val, shadow)

        @rules.augmented_primal(h)
        def aug(config, func, RT, x, y):
            record(log, "augmented", config)
            s = math.sin(x.val)
            primal = s * y.val if rules.needs_primal(config) else None
            return rules.AugmentedReturn(primal, None, (math.cos(x.val), s))

        @rules.reverse(h)
        def rev(config, func, dret, tape, x, y):
            record(log, "reverse", config)
            c, s = tape
            seeds = seeds_of(config, dret)
            if seeds is None:
                return (None, None)
            return (adjoint(config, x, [scale * c * y.val * d for d in seeds]),
                    adjoint(config, y, [scale * s * d for d in seeds]))
    else:
        def frule(dargs, f, x, y):
            _, dx, dy = dargs
            return math.sin(x) * y, scale * (math.cos(x) * y * dx + math.sin(x) * dy)

        def rrule(f, x, y):
            def pullback(dz):
                return rules.NoTangent(), scale * math.cos(x) * y * dz, scale * math.sin(x) * dz
            return math.sin(x) * y, pullback

        rules.import_frule(h, frule)
        rules.import_rrule(h, rrule)


def make_scalar(kind, scale, log=None):
    """Fresh ``h(x, y) = sin(x) * y`` with a ``kind`` rule and a caller
    ``f(x, y) = z * z + 2 z`` (z = h(x, y)): all of f's inputs go through h."""
    def h(x, y):
        return math.sin(x) * y

    register_sin_times(kind, h, scale, [] if log is None else log)

    def f(x, y):
        z = h(x, y)
        return z * z + 2.0 * z

    return h, f


def grad_fd(f, args):
    return [fd(f, args, k) for k in range(len(args))]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("acts", ["dd", "dc", "cd"])
@pytest.mark.parametrize("with_primal", [False, True])
def test_forward_scalars_every_activity(kind, scale, acts, with_primal):
    h, f = make_scalar(kind, scale)
    seeds = (0.5, 2.0)
    args = [Duplicated(v, s) if a == "d" else Const(v) for a, v, s in zip(acts, (X, Y), seeds)]
    g = grad_fd(f, (X, Y))
    expected = scale * sum(gk * s for gk, s, a in zip(g, seeds, acts) if a == "d")
    if with_primal:
        t, primal = autodiff(ForwardWithPrimal, f, *args)
        assert primal == pytest.approx(f(X, Y), rel=1e-14)
    else:
        (t,) = autodiff(Forward, f, *args)
    close(t, expected)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("acts", ["aa", "ac", "ca"])
@pytest.mark.parametrize("with_primal", [False, True])
def test_reverse_scalars_every_activity(kind, scale, acts, with_primal):
    h, f = make_scalar(kind, scale)
    args = [Active(v) if a == "a" else Const(v) for a, v in zip(acts, (X, Y))]
    g = grad_fd(f, (X, Y))
    if with_primal:
        derivs, primal = autodiff(ReverseWithPrimal, f, Active, *args)
        assert primal == pytest.approx(f(X, Y), rel=1e-14)
    else:
        (derivs,) = autodiff(Reverse, f, Active, *args)
    for a, d, gk in zip(acts, derivs, g):
        if a == "a":
            close(d, scale * gk)
        else:
            assert d is None


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", KINDS)
def test_ruled_function_at_the_top_level(kind, scale):
    h, _ = make_scalar(kind, scale)
    g = grad_fd(h, (X, Y))
    for mode in (Forward, Reverse):
        close(gradient(mode, h, X, Y), [scale * gk for gk in g])
    res = gradient(ReverseWithPrimal, h, X, Y)
    close(res.derivs, [scale * gk for gk in g])
    assert res.val == pytest.approx(math.sin(X) * Y, rel=1e-14)
    res = gradient(ForwardWithPrimal, h, X, Y)
    assert res.val == pytest.approx(math.sin(X) * Y, rel=1e-14)


def make_lin_and_sq(log):
    """``lin = 2 h(x, y)`` (its derivative does not use h's result) and ``sq = h(x, y)^2``
    (it does), h with general rules that record their configs."""
    def h(x, y):
        return math.sin(x) * y

    register_sin_times("general", h, 1.0, log)

    def lin(x, y):
        return 2.0 * h(x, y)

    def sq(x, y):
        z = h(x, y)
        return z * z

    return lin, sq


def test_config_needs_primal_false_when_the_result_is_unused():
    """Forward and Reverse of 2 h(x, y) never need h's result: the rule the compiled code
    calls is traced with needs_primal false (the guide's "Avoiding computing sin!" inside
    a caller); width is 1; scalars are never overwritten."""
    log = []
    lin, _ = make_lin_and_sq(log)
    (t,) = autodiff(Forward, lin, Duplicated(X, 1.0), Const(Y))
    close(t, fd(lin, (X, Y), 0))
    assert ("forward", False, True, 1, (False, False, False)) in log, log
    log.clear()
    (d,) = autodiff(Reverse, lin, Active, Active(X), Active(Y))
    close(d, grad_fd(lin, (X, Y)))
    assert {entry[0] for entry in log} == {"augmented", "reverse"}
    assert all(entry[3] == 1 and entry[4] == (False, False, False) for entry in log)
    assert any(entry[0] == "augmented" and entry[1] is False for entry in log), log


def test_config_needs_primal_true_when_the_result_is_used():
    log = []
    lin, sq = make_lin_and_sq(log)
    autodiff(ForwardWithPrimal, lin, Duplicated(X, 1.0), Const(Y))
    assert set(log) == {("forward", True, True, 1, (False, False, False))}
    log.clear()
    (t,) = autodiff(Forward, sq, Duplicated(X, 1.0), Const(Y))
    assert set(log) == {("forward", True, True, 1, (False, False, False))}
    close(t, fd(sq, (X, Y), 0))
    log.clear()
    d, primal = autodiff(ReverseWithPrimal, sq, Active, Active(X), Active(Y))
    aug = [entry for entry in log if entry[0] == "augmented"]
    assert aug and all(entry[1] is True for entry in aug)
    assert all(entry[2] is False for entry in aug)  # an Active float result: no shadow
    close(d, grad_fd(sq, (X, Y)))
    assert primal == pytest.approx(sq(X, Y), rel=1e-14)


@pytest.mark.parametrize("scale", SCALES)
def test_easy_rule_constant_entry(scale):
    """rules.Constant: no derivative through that argument, whatever the body does."""
    def h(x, y):
        return math.sin(x) * y

    rules.easy_rule(h, lambda x, y: (scale * math.cos(x) * y, rules.Constant))

    def f(x, y):
        return 2.0 * h(x, y) + y

    for mode in (Forward, Reverse):
        close(gradient(mode, f, X, Y), [2.0 * scale * math.cos(X) * Y, 1.0])
    (d,) = autodiff(Reverse, f, Active, Const(X), Active(Y))
    assert d[0] is None
    close(d[1], 1.0)


def duplicated_or_shadow(config, primal, shadow):
    """A helper of a forward rule building its return value."""
    return Duplicated(primal, shadow) if rules.needs_primal(config) else shadow


def test_rule_body_calls_a_helper_returning_duplicated():
    """Rule bodies are traced like user code: a helper they call may build the
    Duplicated they return."""
    def h(x):
        return math.sin(x)

    @rules.forward(h)
    def fwd(config, func, RT, x):
        return duplicated_or_shadow(config, math.sin(x.val), 3.0 * math.cos(x.val) * x.dval)

    def f(x):
        y = h(x)
        return y * y

    close(gradient(Forward, f, X), [3.0 * fd(f, (X,), 0)])


# --------------------------------------------------------------------------- batch mode
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", KINDS)
def test_batch_forward_scalars(kind, scale):
    log = []
    h, f = make_scalar(kind, scale, log)
    g = grad_fd(f, (X, Y))
    (lanes_,) = autodiff(Forward, f, BatchDuplicated(X, (1.0, 0.0)), BatchDuplicated(Y, (0.0, 1.0)))
    close(lanes_, [scale * g[0], scale * g[1]])
    lanes_, primal = autodiff(ForwardWithPrimal, f, BatchDuplicated(X, (1.0, 0.0)),
                              BatchDuplicated(Y, (0.0, 1.0)))
    close(lanes_, [scale * g[0], scale * g[1]])
    assert primal == pytest.approx(f(X, Y), rel=1e-14)
    # the ruled function itself: its rule returns BatchDuplicated(primal, shadows)
    lanes_, primal = autodiff(ForwardWithPrimal, h, BatchDuplicated(X, (1.0, 0.5)), Const(Y))
    close(lanes_, [scale * math.cos(X) * Y, 0.5 * scale * math.cos(X) * Y])
    assert primal == pytest.approx(math.sin(X) * Y, rel=1e-14)
    if kind == "general":
        assert {entry[3] for entry in log} == {2}


def make_vector(kind, scale, log=None):
    """``vecf(x) = [h(x0, x1), h(x1, x2) * h(x2, x0)]`` with a ``kind`` rule on h."""
    h, _ = make_scalar(kind, scale, log)

    def vecf(x):
        return np.array([h(x[0], x[1]), h(x[1], x[2]) * h(x[2], x[0])])

    return vecf


def fd_jacobian(f, x, h=1e-6):
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", [Forward, Reverse], ids=["forward", "reverse"])
def test_jacobian_chunk_2(kind, scale, mode):
    log = []
    vecf = make_vector(kind, scale, log)
    x = np.array([0.7, 1.3, -0.4])
    (J,) = jacobian(mode, vecf, x, chunk=2)
    close(J, scale * fd_jacobian(vecf, x))
    if kind == "general":
        assert 2 in {entry[3] for entry in log}


# ----------------------------------------------------------------------- tuples and f32
def make_polar(kind, scale):
    """Fresh ``pol(r, t) = (r cos t, r sin t)`` with a ``kind`` rule, and a caller."""
    def pol(r, t):
        return (r * math.cos(t), r * math.sin(t))

    if kind == "easy":
        rules.easy_rule(pol, lambda r, t: (
            (scale * math.cos(t), -scale * r * math.sin(t)),
            (scale * math.sin(t), scale * r * math.cos(t)),
        ))
    elif kind == "general":
        @rules.forward(pol)
        def fwd(config, func, RT, r, t):
            w = rules.width(config)
            c, s = math.cos(t.val), math.sin(t.val)
            ts = [(scale * (c * dr - r.val * s * dt), scale * (s * dr + r.val * c * dt))
                  for dr, dt in zip(lanes(r, w), lanes(t, w))]
            shadow = shadow_of(config, ts)
            if not rules.needs_primal(config):
                return shadow
            if rules.width(config) == 1:
                return Duplicated((r.val * c, r.val * s), shadow)
            return BatchDuplicated((r.val * c, r.val * s), shadow)

        @rules.augmented_primal(pol)
        def aug(config, func, RT, r, t):
            c, s = math.cos(t.val), math.sin(t.val)
            primal = (r.val * c, r.val * s) if rules.needs_primal(config) else None
            return rules.AugmentedReturn(primal, None, (c, s))

        @rules.reverse(pol)
        def rev(config, func, dret, tape, r, t):
            c, s = tape
            if dret is Const:
                return (None, None)
            w = rules.width(config)
            per_lane = [dret.val] if w == 1 else [tuple(d[k] for d in dret.val) for k in range(w)]
            # per_lane[k] = (seed of output 0, seed of output 1) in lane k
            dr = [scale * (c * a + s * b) for a, b in per_lane]
            dt = [scale * (-r.val * s * a + r.val * c * b) for a, b in per_lane]
            return (adjoint(config, r, dr), adjoint(config, t, dt))
    else:
        def frule(dargs, f, r, t):
            _, dr, dt = dargs
            c, s = math.cos(t), math.sin(t)
            return (r * c, r * s), (scale * (c * dr - r * s * dt), scale * (s * dr + r * c * dt))

        def rrule(f, r, t):
            c, s = math.cos(t), math.sin(t)

            def pullback(dy):
                a, b = dy
                return (rules.NoTangent(), scale * (c * a + s * b),
                        scale * (-r * s * a + r * c * b))
            return (r * c, r * s), pullback

        rules.import_frule(pol, frule)
        rules.import_rrule(pol, rrule)

    def f(r, t):
        a, b = pol(r, t)
        return a * b + 3.0 * a

    return pol, f


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", KINDS)
def test_tuple_returning_function(kind, scale):
    pol, f = make_polar(kind, scale)
    g = grad_fd(f, (X, Y))
    # f = a b + 3 a is not linear in (a, b): the wrong rule gives scale * (b da + a db + 3 da)
    for mode in (Forward, Reverse):
        close(gradient(mode, f, X, Y), [scale * gk for gk in g])
    (lanes_,) = autodiff(Forward, f, BatchDuplicated(X, (1.0, 0.0)), BatchDuplicated(Y, (0.0, 1.0)))
    close(lanes_, [scale * gk for gk in g])
    # the tuple-returning function itself, both outputs' tangents
    (t,) = autodiff(Forward, pol, Duplicated(X, 1.0), Const(Y))
    close(t, (scale * math.cos(Y), scale * math.sin(Y)))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", ["easy", "general"])
def test_float32(kind, scale):
    def h32(x, y):
        return np.sin(x) * y

    if kind == "easy":
        rules.easy_rule(h32, lambda x, y: (scale * np.cos(x) * y, scale * np.sin(x)))
    else:
        @rules.forward(h32, np.float32, np.float32)
        def fwd(config, func, RT, x, y):
            c, s = np.cos(x.val), np.sin(x.val)
            t = scale * (c * y.val * lanes(x, 1)[0] + s * lanes(y, 1)[0])
            shadow = shadow_of(config, [t])
            if not rules.needs_primal(config):
                return shadow
            if rules.width(config) == 1:
                return Duplicated(s * y.val, shadow)
            return BatchDuplicated(s * y.val, shadow)

        @rules.augmented_primal(h32, np.float32, np.float32)
        def aug(config, func, RT, x, y):
            primal = np.sin(x.val) * y.val if rules.needs_primal(config) else None
            return rules.AugmentedReturn(primal, None, None)

        @rules.reverse(h32, np.float32, np.float32)
        def rev(config, func, dret, tape, x, y):
            d = dret.val
            return (adjoint(config, x, [scale * np.cos(x.val) * y.val * d]),
                    adjoint(config, y, [scale * np.sin(x.val) * d]))

    def f(x, y):
        z = h32(x, y)
        return z * z + np.float32(2.0) * z

    x32, y32 = np.float32(X), np.float32(Y)
    g = grad_fd(lambda x, y: (math.sin(x) * y) ** 2 + 2.0 * math.sin(x) * y, (X, Y))
    for mode in (Forward, Reverse):
        res = gradient(mode, f, x32, y32)
        close(res, [scale * gk for gk in g], rtol=1e-5, atol=1e-6)


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


# -------------------------------------------------------------------------- overwritten
def make_product(scale, log):
    """``prod01(x) = x[0] * x[1]`` with general rules that keep x[0], x[1] on the tape
    only when ``overwritten`` says x may change before the reverse rule runs."""
    def prod01(x):
        return x[0] * x[1]

    @rules.forward(prod01)
    def fwd(config, func, RT, x):
        record(log, "forward", config)
        w = rules.width(config)
        ts = [scale * (dx[0] * x.val[1] + x.val[0] * dx[1]) for dx in lanes(x, w)]
        shadow = shadow_of(config, ts)
        if not rules.needs_primal(config):
            return shadow
        if rules.width(config) == 1:
            return Duplicated(x.val[0] * x.val[1], shadow)
        return BatchDuplicated(x.val[0] * x.val[1], shadow)

    @rules.augmented_primal(prod01)
    def aug(config, func, RT, x):
        record(log, "augmented", config)
        tape = (x.val[0], x.val[1]) if rules.overwritten(config)[1] else None
        primal = x.val[0] * x.val[1] if rules.needs_primal(config) else None
        return rules.AugmentedReturn(primal, None, tape)

    @rules.reverse(prod01)
    def rev(config, func, dret, tape, x):
        record(log, "reverse", config)
        a, b = tape if tape is not None else (x.val[0], x.val[1])
        seeds = seeds_of(config, dret)
        if seeds is not None and isinstance(x, Duplicated):
            x.dval[0] += scale * b * seeds[0]
            x.dval[1] += scale * a * seeds[0]
        return (None,)

    return prod01


@pytest.mark.parametrize("scale", SCALES)
def test_overwritten(scale):
    log = []
    prod01 = make_product(scale, log)

    def overwrites(x):
        r = prod01(x)
        x[0] = 5.0 * x[1]
        return r

    def keeps(x):
        return prod01(x) * 2.0

    x = np.array([0.7, 1.3, -0.4])
    for f, flag in ((overwrites, True), (keeps, False)):
        log.clear()
        g = central_gradient(lambda x: f(x.copy()), [x])
        dx = np.zeros(3)
        autodiff(Reverse, f, Active, Duplicated(x.copy(), dx))
        close(dx, scale * g)
        assert log and all(entry[4] == (False, flag) for entry in log
                           if entry[0] in ("augmented", "reverse")), (f.__name__, log)


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
