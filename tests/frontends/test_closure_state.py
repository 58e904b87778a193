"""Nested functions that read the state of a converted loop or ``if``.

The AST conversion runs a loop body or an ``if`` branch as a function of the variables
it assigns; a nested function defined outside that statement reads the enclosing
function's cells, written back only when the statement ends.  Called inside it, such a
function would see stale values, so the conversion refuses it; nested functions
defined inside the body, or called only after the statement, give Python's numbers.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import isozyme as iz
from isozyme import Const, ForwardWithPrimal, autodiff
from isozyme.errors import TraceError

X = np.array([1.0, -2.0, 3.0, 4.0])


def primal(f, *args):
    """The value isozyme computes for ``f(*args)`` (all arguments constant)."""
    return autodiff(ForwardWithPrimal, f, Const, *[Const(np.copy(a)) for a in args])[-1]


def line_of(f, text: str) -> int:
    lines, first = inspect.getsourcelines(f)
    return first + next(i for i, line in enumerate(lines) if text in line)


def refused(f, *args) -> str:
    with pytest.raises(TraceError) as info:
        primal(f, *args)
    return str(info.value)


# --------------------------------------------------------------------------- refused


def stale_for(x, y):
    s = 0.0
    def helper():
        return s
    for i in range(len(x)):
        s += x[i]
        y[i] = helper()
    return s + y[3]


def test_closure_reading_for_state_is_refused():
    msg = refused(stale_for, X, np.zeros(4))
    loop = line_of(stale_for, "for i in")
    assert (f"test_closure_state.py:{loop}: cannot trace helper() (line {loop - 2}) "
            "reading 's'") in msg
    assert f"the `for` loop at line {loop} assigns 's'" in msg
    assert "pass s as an argument" in msg


def stale_prange(x, y):
    s = 0.0
    def helper():
        return s
    for i in iz.prange(len(x)):
        s += x[i]
        y[i] = helper()
    return y


def test_closure_reading_prange_state_is_refused():
    msg = refused(stale_prange, X, np.zeros(4))
    assert "helper() (line" in msg and "the `prange` loop at line" in msg and "'s'" in msg


def stale_while(x):
    k = 0
    s = 0.0
    get = lambda: s  # noqa: E731
    while k < 4:
        s = s + x[k] * get()
        k += 1
    return s


def test_lambda_reading_while_state_is_refused():
    msg = refused(stale_while, X)
    assert "lambda get" in msg and "the `while` loop at line" in msg and "'s'" in msg


def stale_if(x):
    s = 0.0
    def helper():
        return s
    if x[0] > 0:
        s = x[1]
        t = helper()
    else:
        t = 5.0
    return t


def test_closure_reading_if_state_is_refused():
    # Python gives x[1]; the branch function would have seen s == 0.0.
    msg = refused(stale_if, X)
    assert "helper()" in msg and f"the `if` statement at line {line_of(stale_if, 'if x[0]')}" in msg


def stale_inner_loop(x):
    total = 0.0
    for j in range(2):
        s = 0.0
        def helper():
            return s
        for i in range(len(x)):
            s += x[i]
            total += helper()
    return total


def test_closure_in_outer_body_reading_inner_loop_state_is_refused():
    msg = refused(stale_inner_loop, X)
    assert f"the `for` loop at line {line_of(stale_inner_loop, 'for i in')}" in msg


def stale_writer(x):
    s = 0.0
    def add(v):
        nonlocal s
        s = s + v
    for i in range(len(x)):
        add(x[i])
        s = s * 2.0
    return s


def test_nonlocal_writer_outside_loop_is_refused():
    assert "add()" in refused(stale_writer, X)


def escaping_closure(x):
    s = 0.0
    def helper():
        return s
    fns = [helper]
    for i in range(len(x)):
        s += x[i]
    return s + fns[0]()


def test_closure_referenced_other_than_by_a_call_is_refused():
    # Not statically known not to run inside the loop: refused (conservatively).
    assert "helper()" in refused(escaping_closure, X)


# --------------------------------------------------------------------------- accepted


def called_after(x):
    s = 0.0
    def helper():
        return s
    for i in range(len(x)):
        s += x[i]
    return helper() * 2.0


def test_closure_called_only_after_the_loop_sees_the_final_value():
    assert primal(called_after, X) == pytest.approx(called_after(X)) == 12.0


def reads_unassigned(x, y):
    c = x[0] * 3.0
    s = 0.0
    def scale(v):
        return c * v
    for i in range(len(x)):
        s += scale(x[i])
        y[i] = s
    return s + y[1]


def test_closure_reading_variables_the_loop_does_not_assign_works():
    assert primal(reads_unassigned, X, np.zeros(4)) == pytest.approx(
        reads_unassigned(X, np.zeros(4)))


def defined_in_body(x, y):
    s = 0.0
    for i in range(len(x)):
        s += x[i]
        def helper():
            return s * 2.0
        y[i] = helper()
    return s + y[1] + y[3]


def test_closure_defined_in_the_body_gives_pythons_numbers():
    expected = defined_in_body(X, np.zeros(4))
    assert expected == 6.0 + (-1.0 * 2.0) + 6.0 * 2.0
    assert primal(defined_in_body, X, np.zeros(4)) == pytest.approx(expected)


def defined_in_branch(x):
    s = 0.0
    if x[0] > 0:
        s = x[1]
        f = lambda: s + 1.0  # noqa: E731
        t = f()
    else:
        t = 5.0
    return t


def test_lambda_defined_in_the_branch_gives_pythons_numbers():
    assert primal(defined_in_branch, X) == pytest.approx(defined_in_branch(X)) == -1.0


def called_in_if_test(x):
    s = 1.0
    def helper():
        return s * x[0]
    if helper() > 0:
        s = x[1]
    return s + helper()


def test_closure_called_in_the_if_test_and_after_works():
    # The test runs before a branch is taken, with the state from before the `if`.
    assert primal(called_in_if_test, X) == pytest.approx(called_in_if_test(X)) == -4.0


def default_argument(x):
    s = 0.0
    def helper(s=s):
        return s + 1.0
    for i in range(len(x)):
        s += x[i] * helper()
    return s


def test_closure_taking_the_variable_as_default_argument_works():
    # The default is evaluated where helper is defined: helper reads no loop state.
    assert primal(default_argument, X) == pytest.approx(default_argument(X)) == 6.0


def stale_while_condition(x):
    k = 0
    def more():
        return k < 4
    s = 0.0
    while more():
        s = s + x[k]
        k += 1
    return s


def test_closure_called_in_the_while_condition_is_refused():
    assert "more()" in refused(stale_while_condition, X)


def defined_after(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i]
    fns = [lambda: s * 3.0]
    return fns[0]()


def test_closure_defined_after_the_loop_works():
    assert primal(defined_after, X) == pytest.approx(defined_after(X)) == 18.0


def defined_after_in_outer_loop(x):
    fns = []
    total = 0.0
    for _ in (0, 1):  # a Python loop: runs the traced loop again after the lambda exists
        s = 0.0
        for i in range(len(x)):
            s += x[i]
            if fns:
                total += fns[0]()
        fns.append(lambda: s)
    return total


def test_closure_defined_after_the_loop_in_an_outer_loop_is_refused():
    msg = refused(defined_after_in_outer_loop, X)
    loop = line_of(defined_after_in_outer_loop, "for i in")
    assert "lambda (line" in msg and f"at line {loop}" in msg
