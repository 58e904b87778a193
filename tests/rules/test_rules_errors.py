"""Errors of isozyme.rules: rules returning the wrong structure, shape or dtype, modes
that need a missing rule, type filters that do not match, keyword arguments.

Each error is an isozyme error (``RuleError`` for what a rule returns or lacks) whose
message names the function, the kind of rule and what was expected; nothing runs, so
Duplicated primals and shadows are left untouched.  Every rule here is registered on a
function of its own (rules are global state).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import isozyme as iz
from isozyme import (
    Active,
    Const,
    Duplicated,
    Forward,
    IsozymeError,
    Reverse,
    RuleError,
    TraceError,
    UnsupportedError,
    autodiff,
    gradient,
    rules,
)

X, Y = 0.7, 1.3


def fd(f, args, k, h=1e-6):
    plus, minus = list(args), list(args)
    plus[k] += h
    minus[k] -= h
    return (f(*plus) - f(*minus)) / (2 * h)


def check_message(exc, *words):
    """Every word (a function name, a rule kind, what was expected) is in the message."""
    msg = str(exc.value)
    for w in words:
        assert re.search(w, msg), f"{w!r} not in {msg!r}"


def untouched_reverse(f, x, err=RuleError):
    """Reverse mode of ``f`` on a Duplicated array raises ``err``; x and its shadow are
    left as they were."""
    x0 = x.copy()
    dx = np.full_like(x, 7.0)
    with pytest.raises(err) as exc:
        autodiff(Reverse, f, Active, Duplicated(x, dx))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dx, np.full_like(x, 7.0))
    return exc


def untouched_forward(f, x, err=RuleError):
    x0 = x.copy()
    dx = np.full_like(x, 7.0)
    with pytest.raises(err) as exc:
        autodiff(Forward, f, Duplicated(x, dx))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dx, np.full_like(x, 7.0))
    return exc


def test_rule_error_is_an_isozyme_type_error():
    assert issubclass(RuleError, IsozymeError) and issubclass(RuleError, TypeError)
    assert iz.RuleError is RuleError


# ---------------------------------------------------------------------- wrong structure
def too_many_entries(x, y):
    return math.sin(x) * y


def too_few_entries(x, y):
    return math.sin(x) * y


def two_rows_for_one_output(x, y):
    return math.sin(x) * y


rules.easy_rule(too_many_entries, lambda x, y: (math.cos(x) * y, math.sin(x), 1.0))
rules.easy_rule(too_few_entries, lambda x, y: (math.cos(x) * y,))
rules.easy_rule(two_rows_for_one_output,
                lambda x, y: ((math.cos(x) * y, math.sin(x)), (1.0, 2.0)))


@pytest.mark.parametrize("fn", [too_many_entries, too_few_entries, two_rows_for_one_output],
                         ids=lambda f: f.__name__)
@pytest.mark.parametrize("mode", [Forward, Reverse], ids=["forward", "reverse"])
def test_easy_rule_wrong_number_of_entries(fn, mode):
    def f(v):
        return fn(v[0], v[1]) * 2.0

    exc = (untouched_forward if mode is Forward else untouched_reverse)(f, np.array([X, Y]))
    check_message(exc, fn.__name__, "easy_rule", "expected", r"\(2\)")


def fwd_two_shadows(x):
    return math.sin(x)


@rules.forward(fwd_two_shadows)
def _fwd_two_shadows(config, func, RT, x):
    t = math.cos(x.val) * x.dval
    if rules.needs_primal(config):
        return iz.Duplicated(math.sin(x.val), t)
    return (t, t)  # one output: one shadow expected, not a tuple of two


def pol_one_shadow(r, t):
    return (r * math.cos(t), r * math.sin(t))


@rules.forward(pol_one_shadow)
def _pol_one_shadow(config, func, RT, r, t):
    c, s = math.cos(t.val), math.sin(t.val)
    if rules.needs_primal(config):
        return iz.Duplicated((r.val * c, r.val * s), (r.dval * c, r.dval * s))
    return r.dval * c  # two outputs: a tuple of two shadows expected, not one


def fwd_mismatched_duplicated(x):
    return math.sin(x)


@rules.forward(fwd_mismatched_duplicated)
def _fwd_mismatched_duplicated(config, func, RT, x):
    t = math.cos(x.val) * x.dval
    return iz.Duplicated(math.sin(x.val), (t, t))


def test_forward_rule_wrong_number_of_outputs():
    """Without needs_primal (Forward of the ruled function itself) the rules return
    their bare shadows, which have the wrong structure."""
    with pytest.raises(RuleError) as exc:
        autodiff(Forward, fwd_two_shadows, Duplicated(X, 1.0))
    check_message(exc, "fwd_two_shadows", "forward rule", "expected")
    with pytest.raises(RuleError) as exc:
        autodiff(Forward, pol_one_shadow, Duplicated(X, 1.0), Const(Y))
    check_message(exc, "pol_one_shadow", "forward rule", "expected")


def test_forward_rule_duplicated_of_mismatched_structure():
    """Duplicated(primal, shadows) with shadows of another structure than the primal is
    refused where the rule builds it."""
    def f(v):
        return fwd_mismatched_duplicated(v[0]) * 2.0

    exc = untouched_forward(f, np.array([X, Y]), err=IsozymeError)
    check_message(exc, "Duplicated", "structure")


def fwd_needs_primal(x):
    return math.sin(x)


@rules.forward(fwd_needs_primal)
def _fwd_needs_primal(config, func, RT, x):
    return math.cos(x.val) * x.dval  # the shadow only, even when the primal is needed


def test_forward_rule_omitting_the_needed_primal():
    def f(v):
        z = fwd_needs_primal(v[0])
        return z * z

    exc = untouched_forward(f, np.array([X]))
    check_message(exc, "fwd_needs_primal", "forward rule", "needs_primal")


def rev_wrong_count(x, y):
    return math.sin(x) * y


@rules.augmented_primal(rev_wrong_count)
def _aug_wrong_count(config, func, RT, x, y):
    return rules.AugmentedReturn(math.sin(x.val) * y.val, None, None)


@rules.reverse(rev_wrong_count)
def _rev_wrong_count(config, func, dret, tape, x, y):
    return (math.cos(x.val) * y.val * dret.val,)  # two arguments: two entries expected


def rev_none_for_active(x, y):
    return math.sin(x) * y


@rules.augmented_primal(rev_none_for_active)
def _aug_none_for_active(config, func, RT, x, y):
    return rules.AugmentedReturn(math.sin(x.val) * y.val, None, None)


@rules.reverse(rev_none_for_active)
def _rev_none_for_active(config, func, dret, tape, x, y):
    return (None, None)


@pytest.mark.parametrize("fn", [rev_wrong_count, rev_none_for_active], ids=lambda f: f.__name__)
def test_reverse_rule_wrong_entries(fn):
    def f(v):
        return fn(v[0], v[1]) * 2.0

    exc = untouched_reverse(f, np.array([X, Y]))
    check_message(exc, fn.__name__, "reverse rule", "expected", "argument")
    with pytest.raises(RuleError):
        gradient(Reverse, fn, X, Y)


# ------------------------------------------------------------------ wrong shape / dtype
def sumsq_wrong_shape(x):
    return np.sum(x * x)


rules.easy_rule(sumsq_wrong_shape, lambda x: (2.0 * x[:2],))  # x has 4 elements


def sumsq_scalar_for_array(x):
    return np.sum(x * x)


@rules.forward(sumsq_scalar_for_array)
def _fwd_array_for_scalar(config, func, RT, x):
    t = 2.0 * x.val * x.dval  # an array where the float result's tangent is expected
    return iz.Duplicated(np.sum(x.val * x.val), t) if rules.needs_primal(config) else t


@pytest.mark.parametrize("mode", [Forward, Reverse], ids=["forward", "reverse"])
def test_easy_rule_wrong_shape(mode):
    """Array sizes are run-time values: the mismatch may be found when the compiled code
    runs (a ShapeError) or at compile time (a RuleError); either names the rule."""
    def f(x):
        return sumsq_wrong_shape(x) * 2.0

    exc = (untouched_forward if mode is Forward else untouched_reverse)(
        f, np.array([0.1, 0.2, 0.3, 0.4]), err=(RuleError, iz.ShapeError))
    check_message(exc, "sumsq_wrong_shape", "easy_rule", "2", "4")


def test_forward_rule_array_for_a_float():
    def f(x):
        return sumsq_scalar_for_array(x) * 2.0

    exc = untouched_forward(f, np.array([0.1, 0.2, 0.3]))
    check_message(exc, "sumsq_scalar_for_array", "forward rule", "expected")


def sin32_f64_tangent(x):
    return np.sin(x)


@rules.forward(sin32_f64_tangent)
def _fwd_f64_tangent(config, func, RT, x):
    t = np.cos(x.val) * x.dval * np.float64(1.0)  # f64 for an f32 result
    return iz.Duplicated(np.sin(x.val), t) if rules.needs_primal(config) else t


def sq32_f64_derivative(x):
    return x * x


rules.easy_rule(sq32_f64_derivative, lambda x: (2.0 * x * np.float64(1.0),))


def test_wrong_dtype():
    def f(v):
        return sin32_f64_tangent(v[0]) * np.float32(2.0)

    exc = untouched_forward(f, np.array([0.5, 0.25], dtype=np.float32))
    check_message(exc, "sin32_f64_tangent", "forward rule", "f64", "expected f32")

    def g(v):
        return sq32_f64_derivative(v[1]) * np.float32(2.0)

    for check in (untouched_forward, untouched_reverse):
        exc = check(g, np.array([0.5, 0.25], dtype=np.float32))
        check_message(exc, "sq32_f64_derivative", "easy_rule", "f64", "expected f32")


# ------------------------------------------------------------------------ missing rules
def only_forward(x):
    return math.sin(x)


@rules.forward(only_forward)
def _only_forward(config, func, RT, x):
    t = 3.0 * math.cos(x.val) * x.dval
    return iz.Duplicated(math.sin(x.val), t) if rules.needs_primal(config) else t


def only_augmented(x):
    return math.sin(x)


@rules.augmented_primal(only_augmented)
def _only_augmented(config, func, RT, x):
    return rules.AugmentedReturn(math.sin(x.val), None, None)


def only_reverse(x):
    return math.sin(x)


@rules.reverse(only_reverse)
def _only_reverse(config, func, dret, tape, x):
    return (math.cos(x.val) * dret.val,)


def test_reverse_mode_needs_augmented_primal_and_reverse():
    def f(v):
        return only_forward(v[0]) * 2.0

    # forward mode uses the (deliberately scaled) forward rule
    (t,) = autodiff(Forward, f, Duplicated(np.array([X]), np.array([1.0])))
    assert t == pytest.approx(6.0 * math.cos(X), rel=1e-14)
    exc = untouched_reverse(f, np.array([X]))
    check_message(exc, "only_forward", "augmented_primal", "reverse")

    def g(v):
        return only_augmented(v[0]) * 2.0

    exc = untouched_reverse(g, np.array([X]))
    check_message(exc, "only_augmented", "reverse")

    def h(v):
        return only_reverse(v[0]) * 2.0

    exc = untouched_reverse(h, np.array([X]))
    check_message(exc, "only_reverse", "augmented_primal")
    exc = untouched_forward(h, np.array([X]))
    check_message(exc, "only_reverse", "forward")


def test_missing_rule_at_the_top_level():
    with pytest.raises(RuleError) as exc:
        gradient(Reverse, only_forward, X)
    check_message(exc, "only_forward", "augmented_primal")
    with pytest.raises(RuleError) as exc:
        gradient(Forward, only_reverse, X)
    check_message(exc, "only_reverse", "forward")


# ------------------------------------------------------------------------- type filters
# deliberately wrong (x10) rules that apply to float32 arguments only
def typed_only(x, y):
    return math.sin(x) * y


@rules.forward(typed_only, np.float32, np.float32)
def _fwd_typed_only(config, func, RT, x, y):
    dx = x.dval if isinstance(x, Duplicated) else np.float32(0.0)
    dy = y.dval if isinstance(y, Duplicated) else np.float32(0.0)
    t = 10.0 * (np.cos(x.val) * y.val * dx + np.sin(x.val) * dy)
    return iz.Duplicated(np.sin(x.val) * y.val, t) if rules.needs_primal(config) else t


@rules.augmented_primal(typed_only, np.float32, np.float32)
def _aug_typed_only(config, func, RT, x, y):
    return rules.AugmentedReturn(np.sin(x.val) * y.val, None, None)


@rules.reverse(typed_only, np.float32, np.float32)
def _rev_typed_only(config, func, dret, tape, x, y):
    d = dret.val
    return (10.0 * np.cos(x.val) * y.val * d if isinstance(x, Active) else None,
            10.0 * np.sin(x.val) * d if isinstance(y, Active) else None)


def test_type_filter_that_does_not_match_gives_normal_ad():
    """float64 arguments do not match rules for float32: normal AD of the body."""
    def f(x, y):
        return typed_only(x, y) * 2.0

    g = [fd(f, (X, Y), k) for k in range(2)]
    for mode in (Forward, Reverse):
        np.testing.assert_allclose(gradient(mode, f, X, Y), g, rtol=1e-6)
    # float32 arguments match: the (x10) rule
    for mode in (Forward, Reverse):
        res = gradient(mode, f, np.float32(X), np.float32(Y))
        np.testing.assert_allclose(np.array(res, dtype=float), [10.0 * gk for gk in g], rtol=1e-4)


def test_filters_per_call_site():
    """One function, calls with float64 and float32 arguments: only the float32 call
    finds the (x10) rule."""
    def f(x, y):
        return typed_only(x, y) + typed_only(np.float32(x), np.float32(y))

    def plain(x, y):
        return math.sin(x) * y

    g = [fd(plain, (X, Y), k) for k in range(2)]
    for mode in (Forward, Reverse):
        np.testing.assert_allclose(np.array(gradient(mode, f, X, Y), dtype=float),
                                   [11.0 * gk for gk in g], rtol=1e-5)


def inactive_for_ints(n, y):
    return n * y


rules.inactive(inactive_for_ints, int, float)


def test_inactive_filter_on_int_argument():
    """An inactive rule for (int, float) calls: no derivative flows through them; a
    (float, float) call is differentiated normally."""
    def f(y, n):
        return inactive_for_ints(n, y) + y * y

    def g(y, x):
        return inactive_for_ints(x, y) + y * y

    (derivs,) = autodiff(Reverse, f, Active, Active(Y), Const(3))
    assert derivs[0] == pytest.approx(2 * Y, rel=1e-14)
    assert gradient(Forward, g, Y, X) == pytest.approx((X + 2 * Y, Y), rel=1e-14)


# -------------------------------------------------------------------- keyword arguments
def with_keywords(x, y=2.0):
    return math.sin(x) * y


rules.easy_rule(with_keywords, lambda x, y: (3.0 * math.cos(x) * y, 3.0 * math.sin(x)))


def keyword_only(x, *, y):
    return math.sin(x) * y


rules.easy_rule(keyword_only, lambda x, y: (math.cos(x) * y, math.sin(x)))


def test_keyword_arguments_bind_to_positional():
    def f(x, y):
        return with_keywords(y=y, x=x) * 2.0

    g = [fd(f, (X, Y), k) for k in range(2)]
    for mode in (Forward, Reverse):
        np.testing.assert_allclose(gradient(mode, f, X, Y), [3.0 * gk for gk in g], rtol=1e-6)


def test_keyword_only_arguments_are_refused():
    def f(v):
        return keyword_only(v[0], y=v[1])

    exc = untouched_reverse(f, np.array([X, Y]), err=TraceError)
    check_message(exc, "keyword_only", "y")


# ---------------------------------------------------------------- arrays out in reverse
def doubled(x):
    return 2.0 * x


rules.easy_rule(doubled, lambda x: (2.0 * np.eye(x.shape[0]),))


def test_reverse_of_an_array_result_is_refused():
    def f(x):
        return np.sum(doubled(x))

    exc = untouched_reverse(f, np.array([0.1, 0.2]), err=UnsupportedError)
    check_message(exc, "doubled", "forward mode")
    (t,) = autodiff(Forward, f, Duplicated(np.array([0.1, 0.2]), np.array([1.0, 0.5])))
    assert t == pytest.approx(3.0, rel=1e-14)


# ---------------------------------------------------------- shadows in augmented_primal
def reads_shadow_early(x):
    return x[0] * x[1]


@rules.augmented_primal(reads_shadow_early)
def _aug_reads_shadow(config, func, RT, x):
    x.dval[0] += 1.0  # shadows are given to the reverse rule only
    return rules.AugmentedReturn(x.val[0] * x.val[1], None, None)


@rules.reverse(reads_shadow_early)
def _rev_reads_shadow(config, func, dret, tape, x):
    x.dval[0] += x.val[1] * dret.val
    x.dval[1] += x.val[0] * dret.val
    return (None,)


def test_augmented_primal_has_no_shadows():
    def f(x):
        return reads_shadow_early(x) * 2.0

    exc = untouched_reverse(f, np.array([X, Y]))
    check_message(exc, "reads_shadow_early", "augmented_primal", "reverse")
