"""The frontend half of ``isozyme.rules``: ruled calls in the traced IR, argument
binding and type matching, cache invalidation, the functions ``PythonRule.build``
traces for hand-made requests, tapes, and array/batched easy rules against central
differences.  Rules are global: each test registers rules on functions of its own, and
most rules are deliberately scaled (x3) so that the numbers show the rule was used."""

from __future__ import annotations

import math

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import f32, f64

import isozyme as iz
from isozyme import (
    Active,
    BatchDuplicated,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Reverse,
    RuleError,
    TraceError,
    autodiff,
    gradient,
    jacobian,
    rules,
)
from isozyme.compiler.ad_rules.registry import RULE_ATTR
from isozyme.compiler.ad_rules.user_rules import RuleRequest, user_rule_of
from isozyme.dialects.enzyme import Activity
from isozyme.frontends.python import trace
from tests.finite_differences import central_gradient

X, Y = 0.7, 1.3


def fd(f, args, k, h=1e-6):
    plus, minus = list(args), list(args)
    plus[k] += h
    minus[k] -= h
    return (f(*plus) - f(*minus)) / (2 * h)


def close(a, b, rel=1e-6):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                               rtol=rel, atol=1e-9)


def scaled_sin_times(h):
    """Give ``h(x, y) = sin(x) * y`` an easy rule three times the true derivative."""
    rules.easy_rule(h, lambda x, y: (3.0 * math.cos(x) * y, 3.0 * math.sin(x)))


def ruled_calls(module):
    return [op for op in module.walk() if isinstance(op, func.CallOp)
            and RULE_ATTR in op.attributes]


# --------------------------------------------------------------------------- traced IR
def test_traced_ir_keeps_the_ruled_call():
    def h_ir(x, y):
        return math.sin(x) * y

    scaled_sin_times(h_ir)

    def f(x, y):
        return h_ir(x, y) + h_ir(y, x)

    text = iz.ir(Forward, f, Duplicated(X, 1.0), Const(Y), stage="traced")
    assert text.count("isozyme.rule") == 2
    assert "func.call @h_ir" in text
    # one private function for both calls (same signature), one rule object
    traced = trace(f, [f64, f64])
    calls = ruled_calls(traced.module)
    assert len(calls) == 2
    assert calls[0].callee == calls[1].callee
    assert user_rule_of(calls[0]) is user_rule_of(calls[1])
    # the optimized stage keeps the calls until AD
    assert "isozyme.rule" in iz.ir(Forward, f, Duplicated(X, 1.0), Const(Y), stage="optimized")


def test_ruled_function_without_traced_arguments_runs_at_trace_time():
    def h_const(x, y):
        return math.sin(x) * y

    scaled_sin_times(h_const)

    def f(x):
        return x * h_const(X, Y)  # both arguments constants: plain Python

    traced = trace(f, [f64])
    assert ruled_calls(traced.module) == []
    assert gradient(Reverse, f, 2.0) == pytest.approx((math.sin(X) * Y,), rel=1e-14)


def test_top_level_ruled_function_is_a_ruled_call():
    def h_top(x, y):
        return math.sin(x) * y

    scaled_sin_times(h_top)
    traced = trace(h_top, [f64, f64])
    assert len(ruled_calls(traced.module)) == 1
    close(gradient(Reverse, h_top, X, Y), (3 * math.cos(X) * Y, 3 * math.sin(X)))
    close(gradient(Forward, h_top, X, Y), (3 * math.cos(X) * Y, 3 * math.sin(X)))


def test_rule_on_a_table_function_wins():
    """A rule on ``math.atan`` (which the builtins table differentiates) is used instead
    of the table's derivative, and its body is the table's op."""
    def f(x):
        return math.atan(x) * 2.0

    before = gradient(Reverse, f, X)[0]
    rules.easy_rule(math.atan, lambda x: (3.0 / (1.0 + x * x),))
    try:
        close(gradient(Reverse, f, X), (6.0 / (1.0 + X * X),))
        close(gradient(Forward, f, X), (6.0 / (1.0 + X * X),))
        assert autodiff(ForwardWithPrimal, f, Duplicated(X, 1.0))[1] == \
            pytest.approx(2.0 * math.atan(X), rel=1e-14)
    finally:
        rules.registry.unregister(math.atan)
    close(gradient(Reverse, f, X), (before,))


# --------------------------------------------------------------------------- binding, matching
def test_keyword_arguments_are_bound_to_positions():
    def h_kw(x, y):
        return math.sin(x) * y

    scaled_sin_times(h_kw)

    def f(x, y):
        return h_kw(y=y, x=x)

    close(gradient(Reverse, f, X, Y), (3 * math.cos(X) * Y, 3 * math.sin(X)))


def test_keyword_only_arguments_are_refused():
    def h_kwonly(x, *, y):
        return math.sin(x) * y

    scaled_sin_times(h_kwonly)

    def f(x, y):
        return h_kwonly(x, y=y)

    with pytest.raises(TraceError, match="h_kwonly.*keyword-only"):
        gradient(Reverse, f, X, Y)


def test_types_match_what_a_tracer_stands_for():
    """A rule for (np.float32,) applies to f32 scalars only; one for (np.ndarray,) to
    arrays only."""
    def h_t(x):
        return np.sin(x)

    rules.easy_rule(h_t, lambda x: (3.0 * np.cos(x),), np.float32)

    def f(x):
        return h_t(x) * 2.0

    close(gradient(Reverse, f, np.float32(X)), (6 * math.cos(X),), rel=1e-5)
    close(gradient(Reverse, f, X), (2 * math.cos(X),))  # f64: no rule, the body

    def h_a(x):
        return np.sum(np.sin(x))

    rules.easy_rule(h_a, lambda x: (3.0 * np.cos(x),), np.ndarray)

    def g(x):
        return h_a(x) * 2.0

    x = np.array([0.1, 0.5, -0.3])
    close(gradient(Reverse, g, x)[0], 6 * np.cos(x))
    rules.inactive(h_t, float)  # f64 calls of h_t: no derivative
    assert gradient(Reverse, f, X) == (0.0,)
    close(gradient(Reverse, f, np.float32(X)), (6 * math.cos(X),), rel=1e-5)


def test_inactive_rule_without_types_and_its_ir():
    def h_in(x):
        return x * x

    rules.inactive(h_in)

    def f(x):
        return h_in(x) + 3.0 * x

    assert gradient(Reverse, f, X) == (3.0,)
    assert gradient(Forward, f, X) == (3.0,)
    assert autodiff(ForwardWithPrimal, f, Duplicated(X, 1.0)) == (3.0, X * X + 3 * X)
    assert "isozyme.rule" in iz.ir(Reverse, f, Active, Active(X), stage="traced")


def test_registering_a_rule_invalidates_compiled_code():
    def h_late(x):
        return math.sin(x)

    def f(x):
        return h_late(x) * 2.0

    assert gradient(Reverse, f, X) == pytest.approx((2 * math.cos(X),), rel=1e-14)
    rules.easy_rule(h_late, lambda x: (3.0 * math.cos(x),))
    assert gradient(Reverse, f, X) == pytest.approx((6 * math.cos(X),), rel=1e-14)
    rules.easy_rule(h_late, lambda x: (5.0 * math.cos(x),))  # the later rule wins
    assert gradient(Forward, f, X) == pytest.approx((10 * math.cos(X),), rel=1e-14)


def test_registration_errors():
    with pytest.raises(RuleError, match="must be callable"):
        rules.inactive(3.0)
    with pytest.raises(RuleError, match="classes"):
        rules.inactive(math.sin, "float")
    with pytest.raises(RuleError, match="jac must be a function"):
        rules.easy_rule(math.sin, 2.0)


# --------------------------------------------------------------------------- missing rules
def test_a_mode_without_its_rule_names_what_is_missing():
    def h_fwd_only(x):
        return math.sin(x)

    @rules.forward(h_fwd_only)
    def _fwd(config, func, RT, x):
        t = 3.0 * math.cos(x.val) * x.dval
        return Duplicated(math.sin(x.val), t) if rules.needs_primal(config) else t

    def f(x):
        return h_fwd_only(x) * 2.0

    assert gradient(Forward, f, X) == pytest.approx((6 * math.cos(X),), rel=1e-14)
    with pytest.raises(RuleError, match=r"h_fwd_only has no augmented_primal rule.*"
                                        r"rules\.augmented_primal\([\w.<>]*h_fwd_only\)"):
        gradient(Reverse, f, X)

    def h_rev_only(x):
        return math.sin(x)

    @rules.reverse(h_rev_only)
    def _rev(config, func, dret, tape, x):
        return (dret.val,)

    def g(x):
        return h_rev_only(x) * 2.0

    with pytest.raises(RuleError, match="h_rev_only has no forward rule"):
        gradient(Forward, g, X)
    with pytest.raises(RuleError, match="h_rev_only has no augmented_primal rule"):
        gradient(Reverse, g, X)


def test_augmented_primal_has_no_shadows():
    def h_aug(x):
        return np.sum(x * x)

    @rules.augmented_primal(h_aug)
    def _aug(config, func, RT, x):
        x.dval  # noqa: B018 (isozyme gives shadows to reverse)
        return rules.AugmentedReturn(None, None, None)

    @rules.reverse(h_aug)
    def _rev(config, func, dret, tape, x):
        return (None,)

    def f(x):
        return h_aug(x) * 2.0

    with pytest.raises(RuleError, match="augmented_primal rule of [\\w.<>]*h_aug: .*reverse rule"):
        gradient(Reverse, f, np.array([1.0, 2.0]))


# --------------------------------------------------------------------------- tapes
def test_tape_pytree_with_python_leaves_reaches_reverse():
    seen = []

    def h_tape(x, y):
        return math.sin(x) * y

    @rules.augmented_primal(h_tape)
    def _aug(config, func, RT, x, y):
        s, c = math.sin(x.val), math.cos(x.val)
        primal = s * y.val if rules.needs_primal(config) else None
        return rules.AugmentedReturn(primal, None, {"c": c, "s": s, "k": 3.0, "tag": "sin"})

    @rules.reverse(h_tape)
    def _rev(config, func, dret, tape, x, y):
        seen.append((sorted(tape), tape["k"], tape["tag"]))
        d = dret.val
        return (tape["k"] * tape["c"] * y.val * d, tape["k"] * tape["s"] * d)

    def f(x, y):
        z = h_tape(x, y)
        return z * z

    z = math.sin(X) * Y
    close(gradient(Reverse, f, X, Y), (2 * z * 3 * math.cos(X) * Y, 2 * z * 3 * math.sin(X)))
    assert seen and all(s == (["c", "k", "s", "tag"], 3.0, "sin") for s in seen)


# --------------------------------------------------------------------------- build() itself
def _rule_of(fn, types):
    traced = trace(fn, types)
    (call,) = ruled_calls(traced.module)
    return user_rule_of(call), traced.module, call


def test_build_follows_the_conventions_for_hand_made_requests():
    def h_b(x, y):
        return math.sin(x) * y

    scaled_sin_times(h_b)

    def f(x, y):
        return h_b(x, y)

    rule, module, call = _rule_of(f, [f64, f64])
    assert rule.name == "the rules of test_build_follows_the_conventions_for_hand_made_requests.<locals>.h_b"
    assert not rule.inactive
    base = dict(arg_types=(f64, f64), result_types=(f64,), active_results=(True,),
                needs_primal=True, needs_shadow=True, width=2, overwritten=(False, False))
    fwd = rule.build(RuleRequest("forward", activities=(Activity.DUP, Activity.CONST), **base),
                     "fwdrule_test", module)
    # x, its 2 tangents, y -> primal, 2 tangents
    assert [str(t) for t in fwd.function_type.inputs.data] == ["f64"] * 4
    assert len(fwd.function_type.outputs.data) == 3
    assert fwd.sym_name.data == "fwdrule_test" and fwd.sym_visibility.data == "private"
    aug_req = RuleRequest("augmented", activities=(Activity.ACTIVE, Activity.ACTIVE),
                          **{**base, "needs_shadow": False, "width": 1})
    aug = rule.build(aug_req, "augrule_test", module)
    assert len(aug.function_type.inputs.data) == 2
    assert len(aug.function_type.outputs.data) == 1  # the primal; the easy rule's tape is empty
    rev = rule.build(RuleRequest("reverse", activities=(Activity.ACTIVE, Activity.ACTIVE),
                                 **{**base, "needs_shadow": False, "width": 1}),
                     "revrule_test", module)
    # x, y, the seed -> two adjoints
    assert len(rev.function_type.inputs.data) == 3
    assert len(rev.function_type.outputs.data) == 2
    # names of helpers the rules traced avoid the module's symbols
    names = [op.sym_name.data for op in module.body.block.ops]
    assert len(names) == len(set(names))


def test_build_f32_request_types():
    def h_32(x):
        return np.sin(x)

    rules.easy_rule(h_32, lambda x: (np.cos(x),))

    def f(x):
        return h_32(x)

    rule, module, _ = _rule_of(f, [f32])
    req = RuleRequest("forward", (f32,), (f32,), (Activity.DUP,), (True,), needs_primal=False,
                      needs_shadow=True, width=1, overwritten=(False,))
    fn = rule.build(req, "fwd32", module)
    assert [str(t) for t in fn.function_type.outputs.data] == ["f32"]


# --------------------------------------------------------------------------- array easy rules
def elementwise_sin(x):
    return np.sin(x)


# the full Jacobian (array in, array out: shape y.shape + x.shape), scaled by 3
rules.easy_rule(elementwise_sin, lambda x: (3.0 * np.diag(np.cos(x)),))


def test_array_in_array_out_easy_rule_against_finite_differences():
    def f(x):
        return elementwise_sin(x) * 2.0

    x = np.array([0.3, -0.8, 1.1])
    J = 3.0 * np.diag(2.0 * np.cos(x))
    (Jf,) = jacobian(Forward, f, x)
    close(Jf, J)
    (Jc,) = jacobian(Forward, f, x, chunk=2)  # batched forward, per lane
    close(Jc, J)

    def loss(x):
        return np.sum(elementwise_sin(x) * np.array([1.0, 2.0, 3.0]))

    (g,) = gradient(Forward, loss, x)
    close(g, 3.0 * central_gradient(loss, [x]))
    # reverse mode of a ruled call returning an array is refused by AD (user_rules.py)
    with pytest.raises(iz.UnsupportedError, match="returns an array"):
        gradient(Reverse, loss, x)


def sumsq(x):
    return np.sum(x * x)


rules.easy_rule(sumsq, lambda x: (6.0 * x,))  # gradient of x's shape, scaled by 3


def test_array_argument_scalar_result_reverse_adds_into_the_shadow():
    def loss(x):
        return sumsq(x) * 2.0

    x = np.array([0.3, -0.8, 1.1])
    dx = np.ones(3)
    assert autodiff(Reverse, loss, Active, Duplicated(x.copy(), dx)) == ((None,),)
    close(dx, 1.0 + 3.0 * central_gradient(loss, [x]))  # added, not overwritten
    (lanes,) = autodiff(Forward, loss, BatchDuplicated(x.copy(), (np.eye(3)[0], np.eye(3)[2])))
    close(lanes, 3.0 * central_gradient(loss, [x])[[0, 2]])


def scale_by(x, a):
    return x * a


rules.easy_rule(scale_by, lambda x, a: (3.0 * a * np.eye(2), 3.0 * x))


def test_array_and_scalar_arguments_batched():
    def f(x, a):
        return np.sum(scale_by(x, a) * np.array([1.0, -2.0]))

    x = np.array([0.4, 0.9])
    gx = central_gradient(lambda x: f(x, X), [x])
    (d,) = autodiff(Forward, f, BatchDuplicated(x.copy(), (np.array([1.0, 0.0]),
                                                          np.array([0.0, 1.0]))),
                    Const(X))
    close(d, 3.0 * gx)
    (da,) = autodiff(Forward, f, Const(x), Duplicated(X, 1.0))
    close(da, 3.0 * fd(lambda a: f(x, a), [X], 0))
    # both at once, two lanes: d/dx . e0 and d/dx . e1 + d/da
    (d2,) = autodiff(Forward, f, BatchDuplicated(x.copy(), (np.array([1.0, 0.0]),
                                                           np.array([0.0, 1.0]))),
                     BatchDuplicated(X, (0.0, 1.0)))
    close(d2, 3.0 * (gx + np.array([0.0, fd(lambda a: f(x, a), [X], 0)])))



# --------------------------------------------------------------------------- activity
def test_constant_jacobian_entries_are_no_activity_edges():
    """h's second result does not depend on x by the rule (Constant): a function of it
    has no derivative with respect to x, and the rule's object says so."""
    def h_c(x, y):
        return (x * y, x + y)

    rules.easy_rule(h_c, lambda x, y: ((y, x), (rules.Constant, 1.0)))

    def f(x, y):
        return h_c(x, y)[1] * 2.0

    rule, _, _ = _rule_of(f, [f64, f64])
    assert [rule.depends(a, r) for r in (0, 1) for a in (0, 1)] == [True, True, False, True]
    assert gradient(Reverse, f, X, Y) == (0.0, 2.0)
    assert gradient(Forward, f, X, Y) == (0.0, 2.0)
