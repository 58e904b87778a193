"""The "Defining rules" examples of Enzyme.jl's getting-started guide, in isozyme's
spelling (``isozyme.rules``), with the guide's numbers and printed output.

Rules are registered once, at import, on functions of this module only (a rule is
global state: each test's function has its own name so the tests do not interfere).
Where the guide's rule agrees with the traced body, a second, deliberately wrong rule
proves that the rule, not the body, was differentiated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from isozyme import (
    Active,
    Const,
    Duplicated,
    Forward,
    Reverse,
    ReverseWithPrimal,
    autodiff,
    gradient,
    rules,
)

# --------------------------------------------------------------------------- inactive


@dataclass
class UnitaryMatrix:
    """An orthogonal matrix: its determinant is +-1 whatever the entries, so its
    derivative is zero (the guide's ``struct UnitaryMatrix``)."""

    q: np.ndarray


def _det3(a):
    """det of a 3x3 array, by cofactors (traced like any user code)."""
    return (
        a[0, 0] * (a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1])
        - a[0, 1] * (a[1, 0] * a[2, 2] - a[1, 2] * a[2, 0])
        + a[0, 2] * (a[1, 0] * a[2, 1] - a[1, 1] * a[2, 0])
    )


def det(m):
    """det of a UnitaryMatrix or of a plain 3x3 array."""
    if isinstance(m, UnitaryMatrix):
        return _det3(m.q)
    return _det3(m)


def det_noinl(m):
    """The same function, for ``inactive_noinl``."""
    if isinstance(m, UnitaryMatrix):
        return _det3(m.q)
    return _det3(m)


rules.inactive(det, UnitaryMatrix)
rules.inactive_noinl(det_noinl, UnitaryMatrix)


def loss_det(m):
    return det(m) * 3.0 + np.sum(m.q)


def loss_det_noinl(m):
    return det_noinl(m) * 3.0 + np.sum(m.q)


def _rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


A = np.array([[2.0, 1.0, 0.5], [0.3, 3.0, 1.0], [0.2, 0.4, 1.5]])


@pytest.mark.parametrize("loss", [loss_det, loss_det_noinl], ids=["inactive", "inactive_noinl"])
def test_inactive_det_of_unitary_matrix_has_zero_derivative(loss):
    q = _rotation(0.3)
    u, du = UnitaryMatrix(q.copy()), UnitaryMatrix(np.zeros((3, 3)))
    assert autodiff(Reverse, loss, Active, Duplicated(u, du)) == ((None,),)
    # only np.sum's ones reach the shadow; without the rule det would add 3 * q
    # (det(q) * inv(q).T == q for a rotation)
    np.testing.assert_array_equal(du.q, np.ones((3, 3)))
    np.testing.assert_array_equal(u.q, q)
    # forward mode: det gives no tangent either
    dq = np.arange(9.0).reshape(3, 3)
    (tangent,) = autodiff(Forward, loss, Duplicated(UnitaryMatrix(q.copy()), UnitaryMatrix(dq)))
    assert tangent == pytest.approx(dq.sum(), rel=1e-12)


@pytest.mark.parametrize("fn", [det, det_noinl], ids=["inactive", "inactive_noinl"])
def test_inactive_rule_does_not_match_a_plain_array(fn):
    # d det(A) / dA = det(A) * inv(A)^T: the rule is for UnitaryMatrix only
    expected = np.linalg.det(A) * np.linalg.inv(A).T
    (g,) = gradient(Reverse, fn, A)
    np.testing.assert_allclose(g, expected, rtol=1e-12)
    (g,) = gradient(Forward, fn, A)
    np.testing.assert_allclose(g, expected, rtol=1e-12)


def test_inactive_det_value_is_still_computed():
    q = _rotation(0.7)
    u = UnitaryMatrix(q)
    res = autodiff(
        ReverseWithPrimal, loss_det, Active, Duplicated(u, UnitaryMatrix(np.zeros((3, 3))))
    )
    assert res[1] == pytest.approx(3.0 * np.linalg.det(q) + q.sum(), rel=1e-12)


# --------------------------------------------------------------------------- easy_rule


def f_easy(x, y):
    return (x * x, math.cos(y) * x)


def f_easy_jac(x, y):
    # the guide's rule: deliberately "wrong" for d f2 / dy (true: -x sin y), so the
    # numbers below can only come from the rule
    return (
        (2 * x, rules.Constant),  # df1/dx, df1/dy
        (math.cos(y), x * math.sin(y)),  # df2/dx, df2/dy
    )


rules.easy_rule(f_easy, f_easy_jac)


def g_easy(x, y):
    return f_easy(x, y)[1]


@rules.easy_rule(lambda x, y: ((2 * x, rules.Constant), (math.cos(y), x * math.sin(y))))
def f_easy_deco(x, y):
    return (x * x, math.cos(y) * x)


def g_easy_deco(x, y):
    return f_easy_deco(x, y)[1]


def h_easy_first(x, y):
    return f_easy(x, y)[0]


GUIDE_EASY = (-0.9899924966004454, 0.2822400161197344)


@pytest.mark.parametrize("g", [g_easy, g_easy_deco], ids=["call", "decorator"])
def test_easy_rule_reverse_gives_the_guides_numbers(g):
    assert gradient(Reverse, g, 2.0, 3.0) == GUIDE_EASY
    # the traced body would give -x sin y for y
    assert gradient(Reverse, g, 2.0, 3.0)[1] != pytest.approx(-2.0 * math.sin(3.0))


@pytest.mark.parametrize("g", [g_easy, g_easy_deco], ids=["call", "decorator"])
def test_easy_rule_forward_gives_the_guides_numbers(g):
    got = gradient(Forward, g, 2.0, 3.0)
    assert got == pytest.approx(GUIDE_EASY, rel=1e-15)


def test_easy_rule_constant_entry_is_a_zero_derivative():
    assert gradient(Reverse, h_easy_first, 2.0, 3.0) == (4.0, 0.0)
    assert gradient(Forward, h_easy_first, 2.0, 3.0) == (4.0, 0.0)


def test_easy_rule_primal_is_the_functions():
    assert g_easy(2.0, 3.0) == math.cos(3.0) * 2.0
    res = autodiff(ReverseWithPrimal, g_easy, Active, Active(2.0), Active(3.0))
    assert res == (GUIDE_EASY, math.cos(3.0) * 2.0)


# --------------------------------------------------------------------------- general rules


def mysin(x):
    return math.sin(x)


@rules.forward(mysin)
def mysin_forward(config, func, RT, x):
    # If we don't need the original result, let's avoid computing it (and print)
    if not rules.needs_primal(config):
        print("Avoiding computing sin!")
        return math.cos(x.val) * x.dval
    else:
        print("Still computing sin")
        return Duplicated(math.sin(x.val), math.cos(x.val) * x.dval)


def mysquare(x):
    y = mysin(x)
    return y * y


def test_forward_rule_avoids_the_primal_when_not_needed(capsys):
    assert gradient(Forward, mysin, 2.0) == (math.cos(2.0),)
    assert capsys.readouterr().out == "Avoiding computing sin!\n"


def test_forward_rule_computes_the_primal_when_needed(capsys):
    assert gradient(Forward, mysquare, 2.0) == (-0.7568024953079283,)
    # d/dx sin(x)^2 = 2 sin(x) sin'(x): the original result is still needed
    assert capsys.readouterr().out == "Still computing sin\n"


def test_forward_rule_prints_on_every_call(capsys):
    # the print is part of the compiled code, not of tracing
    for _ in range(3):
        gradient(Forward, mysin, 2.0)
    assert capsys.readouterr().out == "Avoiding computing sin!\n" * 3


def test_forward_rule_guide_sequence(capsys):
    gradient(Forward, mysin, 2.0)
    res = gradient(Forward, mysquare, 2.0)
    print(res)
    assert capsys.readouterr().out == (
        "Avoiding computing sin!\nStill computing sin\n(-0.7568024953079283,)\n"
    )


# --------------------------------------------------------------------------- ChainRules


def f_cr(x):
    return np.sin(x)


def f_cr_frule(dargs, f, x):
    _df, dx = dargs
    return np.sin(x), np.cos(x) * dx


def f_cr_rrule(f, x):
    def pullback(dy):
        return rules.NoTangent(), np.cos(x) * dy

    return np.sin(x), pullback


# the guide's `@scalar_rule f(x) (cos(x),)`, imported both ways for Float32 only
rules.import_rrule(f_cr, f_cr_rrule, np.float32)
rules.import_frule(f_cr, f_cr_frule, np.float32)


def test_chainrules_rule_float32_guide():
    x = np.float32(2.0)
    expected = float(np.cos(x))
    for mode in (Reverse, Forward):
        (d,) = gradient(mode, f_cr, x)
        assert float(d) == pytest.approx(expected, rel=1e-6)


# deliberately scaled rules: 3 cos(x), so the numbers show which code ran


def f_cr_fwd(x):
    return np.sin(x)


def f_cr_rev(x):
    return np.sin(x)


def _scaled_frule(dargs, f, x):
    _df, dx = dargs
    return np.sin(x), 3 * np.cos(x) * dx


def _scaled_rrule(f, x):
    def pullback(dy):
        return rules.NoTangent(), 3 * np.cos(x) * dy

    return np.sin(x), pullback


rules.import_frule(f_cr_fwd, _scaled_frule, np.float32)
rules.import_rrule(f_cr_rev, _scaled_rrule, np.float32)


@pytest.mark.parametrize(
    ("mode", "fn"), [(Forward, f_cr_fwd), (Reverse, f_cr_rev)], ids=["frule", "rrule"]
)
def test_chainrules_rule_applies_to_float32_only(mode, fn):
    (d32,) = gradient(mode, fn, np.float32(2.0))
    assert float(d32) == pytest.approx(3 * math.cos(2.0), rel=1e-6)
    (d64,) = gradient(mode, fn, 2.0)
    assert d64 == pytest.approx(math.cos(2.0), rel=1e-15)


def test_rules_apply_inside_a_traced_caller():
    def caller(x):
        return 2.0 * f_cr_rev(x) + f_cr_rev(x * x)

    x = np.float32(0.5)
    (d,) = gradient(Reverse, caller, x)
    expected = 2.0 * 3 * math.cos(0.5) + 3 * math.cos(0.25) * 2 * 0.5
    assert float(d) == pytest.approx(expected, rel=1e-5)


def test_const_argument_of_ruled_function():
    res = autodiff(Reverse, g_easy, Active, Const(2.0), Active(3.0))
    assert res == ((None, GUIDE_EASY[1]),)
