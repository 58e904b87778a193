"""Variables first assigned inside a traced loop and read after it, or read in a later
iteration before that iteration assigns them (issue 9 item 5): carried out of the loop
with an "assigned" flag; a read that runs before any assignment raises
UnboundVariableError (an UnboundLocalError, as in Python) when the compiled code runs."""

from __future__ import annotations

import numpy as np
import pytest

import isozyme as iz
from isozyme import Active, Const, Duplicated, Forward, ReverseWithPrimal, autodiff
from tests.finite_differences import central_gradient


def last_square(x, n):
    for i in range(n):
        last = x[i] * x[i]
    return last


def last_array(x, n):
    for i in range(n):
        y = np.sin(x) * (i + 1)
    return float(np.sum(y * y))


def while_temp(x, n):
    k = 0
    while k < n:
        t = x[k] + 1.0
        k += 1
    return t * t


def previous_iteration(x, n):
    s = 0.0
    for i in range(n):
        if i > 0:
            s += prev * x[i]  # noqa: F821 (assigned in the previous iteration)
        prev = x[i]
    return s


def int_counter(x, n):
    for i in range(n):
        j = i * 2
    return x[0] * j


def read_only_when_ran(x, n):
    for i in range(n):
        t = x[i]
    if n > 0:
        return t * 3.0
    return 0.0


PROGRAMS = [last_square, last_array, while_temp, previous_iteration, int_counter,
            read_only_when_ran]
X = np.array([0.3, -0.7, 1.1, 0.4, -0.2])


@pytest.mark.parametrize("f", PROGRAMS, ids=[f.__name__ for f in PROGRAMS])
@pytest.mark.parametrize("n", [1, 4])
def test_matches_python_and_finite_differences(f, n):
    dx = np.zeros_like(X)
    (grads, primal) = autodiff(ReverseWithPrimal, f, Active, Duplicated(X.copy(), dx), Const(n))
    assert primal == pytest.approx(f(X.copy(), n), rel=1e-12)
    fd = central_gradient(f, [X], [n])
    np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-8)
    v = np.linspace(0.5, -0.5, X.size)
    (jvp,) = autodiff(Forward, f, Duplicated(X.copy(), v), Const(n))
    assert jvp == pytest.approx(float(fd @ v), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("f", [last_square, last_array, while_temp, int_counter],
                         ids=lambda f: f.__name__)
def test_no_iteration_is_unbound_local_error(f):
    with pytest.raises(UnboundLocalError):
        f(X.copy(), 0)  # Python
    x, dx = X.copy(), np.zeros_like(X)
    with pytest.raises(iz.UnboundVariableError, match=r"local variable '\w+' referenced before "
                       r"assignment: it is first assigned inside the `(for|while)` loop .* "
                       r"the loop ran no iteration"):
        autodiff(ReverseWithPrimal, f, Active, Duplicated(x, dx), Const(0))
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(dx, 0.0)


def test_no_iteration_is_fine_when_the_read_does_not_run():
    """The check sits at the read: a read in a branch not taken raises nothing."""
    assert autodiff(ReverseWithPrimal, read_only_when_ran, Active, Duplicated(X.copy(),
                    np.zeros(5)), Const(0))[1] == 0.0
    assert autodiff(ReverseWithPrimal, previous_iteration, Active, Duplicated(X.copy(),
                    np.zeros(5)), Const(0))[1] == 0.0


def test_int_keeps_its_type_and_loop_stays_a_loop():
    texts = [iz.ir(ReverseWithPrimal, int_counter, Active, Duplicated(X, np.zeros(5)),
                   Const(n), stage="traced") for n in (2, 9)]
    assert texts[0] == texts[1]
    assert "scf.for" in texts[0]
    assert "arith.sitofp" in texts[0]  # j stays an i64 until x[0] * j


def assigned_when_positive(x, n):
    for i in range(n):
        if x[i] > 0.0:
            pos = x[i] * 2.0
    return pos


def test_assigned_in_one_branch_keeps_the_last_assigned_value():
    """Python keeps the value of the last iteration that assigned it: a branch that does
    not assign it passes it on (not a read), with its flag."""
    for x in (np.array([0.3, -0.7, 1.1, -0.4]), np.array([-0.3, -0.7, 1.1, -0.4])):
        want = assigned_when_positive(x, 4)
        dx = np.zeros_like(x)
        got = autodiff(ReverseWithPrimal, assigned_when_positive, Active, Duplicated(x, dx),
                       Const(4))[1]
        assert got == want
        np.testing.assert_array_equal(dx, [0.0, 0.0, 2.0, 0.0])
    x = np.array([-0.3, -0.7, -1.1, -0.4])
    with pytest.raises(UnboundLocalError):
        assigned_when_positive(x, 4)
    with pytest.raises(iz.UnboundVariableError, match="'pos'"):
        autodiff(ReverseWithPrimal, assigned_when_positive, Active,
                 Duplicated(x, np.zeros(4)), Const(4))


def bound_to_another_name(x, n):
    for i in range(n):
        last = x[i]
    r = last  # a read: Python raises here when the loop ran no iteration
    return x[0] * 2.0 + 0.0 * (r is None)


def put_in_a_list(x, n):
    for i in range(n):
        last = x[i]
    lst = [last, x[0]]
    return lst[1] * 2.0


@pytest.mark.parametrize("f", [bound_to_another_name, put_in_a_list], ids=lambda f: f.__name__)
def test_every_read_checks_not_only_arithmetic(f):
    with pytest.raises(UnboundLocalError):
        f(X.copy(), 0)
    with pytest.raises(iz.UnboundVariableError, match="'last'"):
        autodiff(ReverseWithPrimal, f, Active, Duplicated(X.copy(), np.zeros(5)), Const(0))
    got = autodiff(ReverseWithPrimal, f, Active, Duplicated(X.copy(), np.zeros(5)), Const(2))[1]
    assert got == pytest.approx(f(X.copy(), 2))


def reused_loop_variable(x):
    # `j` is read again by a later loop of the function, so the outer loops carry it
    # as a late variable; the r loop's body may leave it unassigned (r == 0).
    s = 0.0
    for c in range(2):
        for r in range(x.shape[0]):
            for j in range(r):
                s += x[j] * x[r] * (c + 1)
    for j in range(2, 3):
        s += x[j]
    return s


def reused_loop_variable_read_after(x):
    s = 0.0
    for c in range(2):
        for r in range(x.shape[0]):
            for j in range(r):
                s += x[j] * x[r]
    return s + j


def test_loop_variable_reused_by_a_later_loop():
    """GMM's loop nest (benchmarks/arrays.py) reuses `j` in a later loop: it traced to
    'j holds a LateTracer before the loop' (a late variable dropped by the middle loop
    was then checked as a carried one)."""
    x = np.array([0.5, -1.0, 2.0, 1.5])
    dx = np.zeros(4)
    (grads,), value = autodiff(ReverseWithPrimal, reused_loop_variable, Active,
                               Duplicated(x, dx))
    assert value == pytest.approx(reused_loop_variable(x))
    np.testing.assert_allclose(dx, central_gradient(reused_loop_variable, [x]), rtol=1e-6)


def test_loop_variable_read_after_a_loop_that_may_not_assign_it_is_refused():
    x = np.array([0.5, -1.0, 2.0, 1.5])
    with pytest.raises(iz.TraceError, match="variable 'j'.*no value after the loop"):
        autodiff(Forward, reused_loop_variable_read_after, Duplicated(x, np.ones(4)))
