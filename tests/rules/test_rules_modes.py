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

import math

import numpy as np
import pytest

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
    record,
    seeds_of,
    X,
    Y,
    SCALES,
    KINDS,
    fd,
    close,
    lanes,
    shadow_of,
    adjoint,
    register_sin_times,
    make_scalar,
    grad_fd,
)

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
