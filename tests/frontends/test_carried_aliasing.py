"""Aliasing around arrays re-bound in traced loops and branches (issue 9 item 1): every
program here either gives numpy's answer or raises an isozyme error, never a third
thing. The carried buffer stands for the array a name held; where other code can
still reach that array (another variable, a view, a list, a closure, a
functools.partial, an attribute, a helper that writes it), a write that Python would
see through the name is refused, and an array seen elsewhere is copied rather than
overwritten in place."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest

import isozyme as iz
from isozyme import Active, Const, Duplicated, Forward, ReverseWithPrimal, autodiff
from tests.finite_differences import central_gradient

X = np.array([0.3, 0.9, 0.5, 1.2, 0.1])


# --------------------------------------------------------------------------- refused


def alias_written_after_zero_trips(x, n):
    w = x * 1.0
    v = w
    for _ in range(n):
        w = w * 2.0
    v[0] = 100.0  # with n == 0, w is v: Python's sum(w) sees this
    return np.sum(w) + np.sum(v)


def alias_written_in_loop(x, n):
    w = x * 1.0
    v = w
    for _ in range(n):
        v[0] = v[0] + 1.0  # the first iteration's w is v
        w = w * 2.0
    return np.sum(w)


def argument_written_after(x, n):
    w = x
    for _ in range(n):
        w = w * 2.0
    x[0] = 5.0
    return np.sum(w)


def view_written_after(x, n):
    w = x * 1.0
    v = w[1:3]
    for _ in range(n):
        w = w * 2.0
    v[0] = 9.0
    return np.sum(w)


def list_alias(x, n):
    w = x * 1.0
    lst = [[[w]]]
    for _ in range(n):
        w = w * 2.0
    lst[0][0][0][0] = 9.0
    return np.sum(w)


def attribute_alias(x, n):
    w = x * 1.0
    s = SimpleNamespace(a=w)
    for _ in range(n):
        s.a[0] = 3.0
        w = w * 2.0
    return np.sum(w)


def branch_alias(a, c):
    a2 = a * 1.0
    b2 = a * 2.0
    if c > 0.0:
        h = a2
    else:
        h = b2
    a2[0] = 50.0
    return np.sum(h)


def two_names_in_branch(x, c):
    if c > 0.0:
        h = a2 = np.tanh(x)
    else:
        h = a2 = x * 2.0
    a2[0] = 5.0
    return np.sum(h)


def _bump(a):
    a[0] += 1.0


def helper_writes_before_rebind(x, n):
    w = x
    for _ in range(n):
        _bump(w)
        w = w * 2.0
    return np.sum(w)


@pytest.mark.parametrize("f, extra", [
    (alias_written_after_zero_trips, 0), (alias_written_after_zero_trips, 2),
    (alias_written_in_loop, 3), (argument_written_after, 1), (view_written_after, 0),
    (list_alias, 2), (attribute_alias, 2), (branch_alias, 1.0), (branch_alias, -1.0),
    (two_names_in_branch, -1.0), (helper_writes_before_rebind, 2),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_write_python_would_see_is_refused(f, extra):
    x, dx = X.copy(), np.zeros(5)
    with pytest.raises(iz.TraceError, match="cannot trace a write into (an )?array"):
        autodiff(ReverseWithPrimal, f, Active, Duplicated(x, dx), Const(extra))
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(dx, 0.0)


# --------------------------------------------------------------------------- answered


def partial_capture(x, n):
    w = x * 1.0
    dotw = functools.partial(np.dot, w)
    for _ in range(n):
        w = w * 2.0
    return dotw(x) + np.sum(w)


def lambda_default(x, n):
    w = x * 1.0
    g = lambda v, w0=w: np.sum(w0 * v)  # noqa: E731
    for _ in range(n):
        w = w * 2.0
    return g(x) + np.sum(w)


def closure_reads_variable(x, n):
    w = x * 1.0

    def cur():
        return w

    for _ in range(n):
        w = w * 2.0
    return np.sum(cur())


def late_passed_into_inner_loop(x, m):
    s = 0.0
    for k in range(m):
        if k % 2 == 0:
            for i in range(3):
                t = x[i] * x[k]
        else:
            s = s + t  # noqa: F821 (assigned in an earlier iteration)
    return s


def short_circuit_guard(x, n):
    k = 0
    s = 0.0
    while k < n and x[k] > 0.2:  # never reads x[n]
        s = s + x[k]
        k += 1
    return s


@pytest.mark.parametrize("f, extra", [
    (partial_capture, 2), (lambda_default, 2), (closure_reads_variable, 2),
    (late_passed_into_inner_loop, 4), (short_circuit_guard, 5), (short_circuit_guard, 2),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_matches_python_and_finite_differences(f, extra):
    want = f(X.copy(), extra)
    dx = np.zeros(5)
    got = autodiff(ReverseWithPrimal, f, Active, Duplicated(X.copy(), dx), Const(extra))[1]
    assert got == pytest.approx(want, rel=1e-12)
    fd = central_gradient(f, [X], [extra])
    np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-8)
    v = np.linspace(-1, 1, 5)
    (jvp,) = autodiff(Forward, f, Duplicated(X.copy(), v), Const(extra))
    assert jvp == pytest.approx(float(fd @ v), rel=1e-6, abs=1e-8)


def int_division(x, n, m):
    return x[0] * (n // m) + x[1] * (n % m)


def division_in_branch_not_taken(x, n, m):
    if x[0] > 10.0:
        h = np.ones(n // m) * x[0]
    else:
        h = x[:3] * 2.0
    return np.sum(h)


def test_integer_division_by_zero_raises_instead_of_trapping():
    dx = np.zeros(5)
    with pytest.raises(iz.DivisionByZeroError, match="integer division or modulo by zero"):
        autodiff(ReverseWithPrimal, int_division, Active, Duplicated(X.copy(), dx), Const(6),
                 Const(0))
    assert autodiff(ReverseWithPrimal, int_division, Active, Duplicated(X.copy(), dx),
                    Const(7), Const(2))[1] == pytest.approx(int_division(X, 7, 2))
    # a division in a branch that does not run is not evaluated (no trap, no error)
    got = autodiff(ReverseWithPrimal, division_in_branch_not_taken, Active,
                   Duplicated(X.copy(), np.zeros(5)), Const(6), Const(0))[1]
    assert got == pytest.approx(division_in_branch_not_taken(X, 6, 0))
