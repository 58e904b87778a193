"""Shared pieces of the isozyme.rules mode tests: finite differences, the helpers
general rules use, and the factories of ruled scalar functions (see
test_rules_modes.py for how the tests prove the rule was used)."""

from __future__ import annotations

import math

import numpy as np

from isozyme import (
    Active,
    BatchDuplicated,
    Const,
    Duplicated,
    rules,
)

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


