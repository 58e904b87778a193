"""Python constructs in traced code (issue 9, items 3, 5, 7 and the helper half of 4):
``break``/``continue``/``return``/``else:`` in loops on traced conditions, iteration over
arrays (``for row in X``, ``zip``, ``enumerate``, ``reversed``), ``sum`` of a generator
expression, ``functools.partial``, lambdas passed to helpers, helpers reading traced
closures.

Each program is checked against plain Python (primal, through the IR evaluator and the
compiled code), its derivatives in Forward and Reverse against central finite
differences, and its IR for loops that stay loops (an ``scf.while``/``scf.for`` whose
size does not depend on the trip count).
"""

from __future__ import annotations

import functools
import itertools
import math
import os

import numpy as np
import pytest
from xdsl.dialects import scf
from xdsl.dialects.builtin import f64, i64

from isozyme import Active, Const, Duplicated, Forward, Reverse, autodiff
from isozyme.errors import TraceError
from isozyme.frontends.python import array_memref_type, trace

from .ir_eval import evaluate

V = array_memref_type(1, f64)
M = array_memref_type(2, f64)
THIS_FILE = os.path.basename(__file__)


# --------------------------------------------------------------------------- programs


def newton_sqrt(a):
    x = a
    while True:
        fx = x * x - a
        if abs(fx) < 1e-12 * a:
            break
        x = x - fx / (2.0 * x)
    return x


def early_return(x, n):
    s = 1.0
    for i in range(n):
        s = s * x + 1.0
        if s > 10.0:
            return s * 2.0
    return s - 1.0


def with_continue(x, n):
    s = 0.0
    for i in range(n):
        s = s + x
        if s > 2.0:
            continue
        s = s * x
    return s


def for_else(x, n):
    s = 0.0
    for i in range(1, n, 2):
        s = s + x * i
        if s > 20.0:
            break
    else:
        s = -s
    return s


def nested_return(x, n):
    for i in range(n):
        j = 0
        while j < n:
            if x * i * j > 6.0:
                return x * i + j
            j += 1
    return x


def find_index(x, n):
    for i in range(n):
        if i * x > 3.0:
            return i
    return -1


def rows(X):
    s = 0.0
    for row in X:
        s = s + row[0] * row[1]
    return s


def zipped(x, y):
    s = 0.0
    for a, b in zip(x, y):
        s = s + a * b
    return s


def zipped_range(x):
    s = 0.0
    for k, a in zip(range(1, 10, 2), x):
        s = s + k * a
    return s


def reversed_array(x):
    s = 0.0
    for a in reversed(x):
        s = s * 0.5 + a
    return s


def enumerate_zip(X, y):
    s = 0.0
    for i, (row, b) in enumerate(zip(X, y)):
        s = s + i * row[1] * b
    return s


def rows_then_elements(X):
    s = 0.0
    for row in X:
        for v in row:
            s = s + v * v
    return s


def enumerated(x):
    s = 0.0
    for i, a in enumerate(x, 1):
        s = s + i * a * a
    return s


def reversed_range(x, n):
    s = 0.0
    for i in reversed(range(n)):
        s = s * 0.5 + x[i]
    return s


def dot_generator(x, y, n):
    return sum(x[i] * y[i] for i in range(n) if i != 1)


def sum_in_test(x, n):
    if sum(x[i] for i in range(n)) > 2.0:
        return sum((x[i] * x[j] for i in range(n) for j in range(i)), 1.0)
    return [x[i] * 2.0 for i in range(3)][1]  # a Python range: a Python list


def array_break(x):
    s = 0.0
    for a in x:
        if a < 0.0:
            break
        s = s + a * a
    return s


def python_iterables(x):
    s = 0.0
    for c, d in zip([1.0, 2.0], [3.0, 4.0]):
        s = s + c * d * x
    for k, c in enumerate([1.0, 2.0]):
        s = s + k * c * x
    for k in itertools.count():  # stops: the flag is a Python bool
        if k > 2:
            break
        s = s + x
    return s + sum(map(lambda v: v * x, [1.0, 2.0]))


def scaled(a, b):
    if b > 0.0:
        return a * b
    return a - b


def apply(h, x):
    return h(x) * 3.0


def partials(x, y):
    return apply(functools.partial(scaled, y), x) + apply(lambda t: t * y, x) \
        + functools.partial(scaled, 2.0, x)()


class Holder:
    def __init__(self, v):
        self.v = v

    def magnitude(self):
        if self.v > 0.0:
            return self.v * self.v
        return -self.v


def make_reader(x):
    def read():
        if x > 0.0:
            return x * 3.0
        return -x
    return read


def closure_readers(x):
    return Holder(x).magnitude() + make_reader(x)()


def objective(p1x, p1y, p2x, p2y):
    return (p1x * p1x + p1y * p1y) - (p2x * p2x + p2y * p2y)


def argmin_natural(f, grad, x0, x1):
    """GradBench's gradient descent (gd.hpp) as users write it: `while True` left by
    `return`, a `continue`, augmented assignments."""
    fx = f(x0, x1)
    g0, g1 = grad(x0, x1)
    i = 0
    eta = 1e-5
    while True:
        if math.sqrt(g0 * g0 + g1 * g1) <= 1e-5:
            return x0, x1
        if i == 10:
            eta *= 2.0
            i = 0
            continue
        n0 = x0 - eta * g0
        n1 = x1 - eta * g1
        if math.sqrt((x0 - n0) ** 2 + (x1 - n1) ** 2) <= 1e-5:
            return x0, x1
        f_new = f(n0, n1)
        if f_new < fx:
            x0, x1, fx = n0, n1, f_new
            g0, g1 = grad(x0, x1)
            i += 1
        else:
            eta /= 2.0
            i = 0


def saddle_max(p1x, p1y, p2x, p2y):
    """``max_p2 f(p1, p2)`` (GradBench saddle's inner problem) through helpers that read
    the caller's traced values only through their closures."""
    def neg(q0, q1):
        return -objective(p1x, p1y, q0, q1)

    def neg_grad(q0, q1):
        return 2.0 * q0 + 0.0 * p1x, 2.0 * q1

    q0, q1 = argmin_natural(neg, neg_grad, p2x, p2y)
    return objective(p1x, p1y, q0, q1)


def while_else(x, n):
    k = 0
    while k < n:
        x = x * 1.5
        k += 1
    else:
        x = x + 100.0
    return x


def tuple_return(x, n):
    for i in range(n):
        if x * i > 5.0:
            return x * i, i
    return x, -1


def return_in_branch(x, n, c):
    if c > 0.0:
        for i in range(n):
            x = x + 1.0
            if x > 4.0:
                return x * 10.0
        x = x - 1.0
    return x


def traced_step(x, n, step):
    s = 0.0
    for i in range(0, n, step):
        s = s + x * i
        if s > 20.0:
            break
    return s


def array_continue_else(x):
    s = 0.0
    for a in x:
        if a < 0.0:
            continue
        s = s + a
    else:
        s = s * 2.0
    return s


MORE = [
    (while_else, [f64, i64], [(1.0, 3), (1.0, 0)]),
    (tuple_return, [f64, i64], [(1.0, 10), (1.0, 3)]),
    (return_in_branch, [f64, i64, f64], [(1.0, 10, 1.0), (1.0, 2, 1.0), (1.0, 10, -1.0)]),
    (traced_step, [f64, i64, i64], [(1.0, 20, 3), (1.0, 20, -1), (1.0, -20, -3)]),
    (array_continue_else, [V], [(np.array([1.0, -2.0, 3.0]),)]),
]


@pytest.mark.parametrize("fn,types,arg_sets", MORE, ids=[c[0].__name__ for c in MORE])
def test_more_exits_match_python(fn, types, arg_sets) -> None:
    traced = trace(fn, types)
    assert loops_of(traced)
    for args in arg_sets:
        expected = fn(*args)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = evaluate(traced.module, traced.func_name, *args)
        assert tuple(got) == pytest.approx(expected, rel=1e-12), (args, got, expected)
        assert [isinstance(g, int) for g in got] == [isinstance(e, int) for e in expected]


def loops_of(traced) -> list:
    return [op for op in traced.module.walk() if isinstance(op, (scf.WhileOp, scf.ForOp))]


# --------------------------------------------------------------------------- primal

SCALAR_N = [f64, i64]
CASES = [
    (newton_sqrt, [f64], [(2.0,), (9.0,), (1e6,)]),
    (early_return, SCALAR_N, [(1.5, 3), (1.5, 30), (0.5, 4), (2.0, 0)]),
    (with_continue, SCALAR_N, [(0.7, 10), (1.5, 3), (0.3, 0)]),
    (for_else, SCALAR_N, [(1.0, 4), (1.0, 30), (3.0, 12)]),
    (nested_return, SCALAR_N, [(1.0, 2), (1.0, 5), (0.5, 8)]),
    (find_index, SCALAR_N, [(0.7, 20), (0.7, 3)]),
    (rows, [M], [(np.arange(6.0).reshape(3, 2),), (np.ones((1, 2)),)]),
    (zipped, [V, V], [(np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0]))]),
    (enumerated, [V], [(np.array([1.0, -2.0, 3.0]),)]),
    (zipped_range, [V], [(np.array([1.0, -2.0, 3.0]),), (np.arange(9.0),)]),
    (reversed_array, [V], [(np.array([1.0, 2.0, 3.0]),)]),
    (enumerate_zip, [M, V], [(np.arange(6.0).reshape(3, 2), np.array([1.0, 2.0]))]),
    (rows_then_elements, [M], [(np.arange(6.0).reshape(2, 3),)]),
    (reversed_range, [V, i64], [(np.array([1.0, 2.0, 4.0, 8.0]), 4), (np.array([1.0]), 0)]),
    (dot_generator, [V, V, i64], [(np.arange(5.0), np.arange(5.0) + 1.0, 5)]),
    (sum_in_test, [V, i64], [(np.array([1.0, 2.0, 3.0]), 1), (np.array([1.0, 2.0, 3.0]), 3)]),
    (array_break, [V], [(np.array([1.0, 2.0, -3.0, 4.0]),), (np.array([1.0, 2.0]),)]),
    (python_iterables, [f64], [(2.0,)]),
    (partials, [f64, f64], [(2.0, 3.0), (2.0, -1.0)]),
    (closure_readers, [f64], [(2.0,), (-3.0,)]),
    (saddle_max, [f64] * 4, [(1.0, -0.5, 0.3, 0.2), (0.1, 0.2, -1.0, 2.0)]),
]


@pytest.mark.parametrize("fn,types,arg_sets", CASES, ids=[c[0].__name__ for c in CASES])
def test_primal_matches_python(fn, types, arg_sets) -> None:
    traced = trace(fn, types)
    for args in arg_sets:
        expected = fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
        (got,) = evaluate(traced.module, traced.func_name, *args)
        assert got == pytest.approx(expected, rel=1e-12), (args, got, expected)
        assert type(got) is type(expected) or isinstance(expected, float), (got, expected)


LOOPED = ["newton_sqrt", "early_return", "with_continue", "for_else", "nested_return",
          "find_index", "rows", "zipped", "enumerated", "reversed_range", "dot_generator",
          "sum_in_test", "array_break"]


@pytest.mark.parametrize("fn,types,arg_sets", [c for c in CASES if c[0].__name__ in LOOPED],
                         ids=LOOPED)
def test_loops_stay_loops(fn, types, arg_sets) -> None:
    """The trip count is a run-time value: the traced loop is one scf loop, and the
    function's IR has no copy of the body per iteration."""
    traced = trace(fn, types)
    assert loops_of(traced), traced.module
    ops = sum(1 for _ in traced.module.walk())
    assert ops < 200, ops


def test_ir_size_does_not_depend_on_the_trip_count() -> None:
    """A Python-bounded loop with a traced exit stays a traced loop after its first
    iteration: the same IR for 5 and for 500 iterations."""
    def bounded(x, n):
        s = 0.0
        for i in range(n):
            s = s * x + 1.0
            if s > 1e6:
                break
        return s

    small, large = trace(bounded, [f64, 5]), trace(bounded, [f64, 500])
    assert len(list(small.module.walk())) == len(list(large.module.walk()))
    assert loops_of(large)
    (got,) = evaluate(large.module, large.func_name, 1.01)
    assert got == pytest.approx(bounded(1.01, 500), rel=1e-12)


# --------------------------------------------------------------------------- derivatives


def fd(fn, args, i, h=1e-6):
    lo, hi = list(args), list(args)
    step = h * max(1.0, abs(args[i]))
    lo[i] -= step
    hi[i] += step
    return (fn(*hi) - fn(*lo)) / (2 * step)


SCALAR_AD = [
    (newton_sqrt, (2.0,)),
    (early_return, (1.5, 30)),
    (early_return, (0.5, 4)),
    (with_continue, (0.7, 10)),
    (for_else, (1.0, 30)),
    (for_else, (1.0, 4)),
    (nested_return, (1.1, 5)),
    (partials, (2.0, 3.0)),
    (closure_readers, (2.0,)),
    (python_iterables, (2.0,)),
    (saddle_max, (1.0, -0.5, 0.3, 0.2)),
]


@pytest.mark.parametrize("fn,args", SCALAR_AD,
                         ids=[f"{c[0].__name__}-{k}" for k, c in enumerate(SCALAR_AD)])
def test_scalar_derivatives_match_finite_differences(fn, args) -> None:
    ann = [Const(a) if isinstance(a, int) else a for a in args]
    floats = [k for k, a in enumerate(args) if isinstance(a, float)]
    reverse = autodiff(Reverse, fn, Active,
                       *[Active(a) if k in floats else a for k, a in enumerate(ann)])[0]
    for k in floats:
        expected = fd(fn, args, k)
        (forward,) = autodiff(Forward, fn, *[Duplicated(a, 1.0) if j == k else
                                             (Const(a) if j in floats else a)
                                             for j, a in enumerate(ann)])
        assert forward == pytest.approx(expected, rel=1e-5, abs=1e-7)
        assert reverse[k] == pytest.approx(expected, rel=1e-5, abs=1e-7)


ARRAY_AD = [
    (rows, (np.arange(6.0).reshape(3, 2),)),
    (zipped, (np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0]))),
    (enumerated, (np.array([1.0, -2.0, 3.0]),)),
    (reversed_range, (np.array([1.0, 2.0, 4.0, 8.0]), 4)),
    (dot_generator, (np.arange(5.0), np.arange(5.0) + 1.0, 5)),
    (sum_in_test, (np.array([1.0, 2.0, 3.0]), 3)),
    (rows_then_elements, (np.arange(6.0).reshape(2, 3),)),
    (reversed_array, (np.array([1.0, 2.0, 3.0]),)),
    (array_break, (np.array([1.0, 2.0, -3.0, 4.0]),)),
]


@pytest.mark.parametrize("fn,args", ARRAY_AD, ids=[c[0].__name__ for c in ARRAY_AD])
def test_array_derivatives_match_finite_differences(fn, args) -> None:
    x = args[0]
    rest = [Const(a) if isinstance(a, (int, np.ndarray)) else a for a in args[1:]]
    expected = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        def along(t, idx=idx):
            y = x.copy()
            y[idx] = t
            return fn(y, *args[1:])
        expected[idx] = fd(along, (float(x[idx]),), 0)
    dx = np.zeros_like(x)
    autodiff(Reverse, fn, Active, Duplicated(x.copy(), dx), *rest)
    np.testing.assert_allclose(dx, expected, rtol=1e-5, atol=1e-7)
    seed = np.linspace(0.5, 1.5, x.size).reshape(x.shape)
    (tangent,) = autodiff(Forward, fn, Duplicated(x.copy(), seed), *rest)
    assert tangent == pytest.approx(float(np.sum(expected * seed)), rel=1e-5, abs=1e-7)


# --------------------------------------------------------------------------- errors


def exit_in_try(x):
    while x > 1.0:
        x = x / 2
        try:
            if x < 3.0:
                break
        finally:
            pass
    return x


def zip_with_list(x):
    s = 0.0
    for a, b in zip(x, [1.0, 2.0]):
        s = s + a * b
    return s


def line_of(fn, text: str) -> int:
    import inspect  # noqa: PLC0415

    lines, start = inspect.getsourcelines(fn)
    return start + next(k for k, line in enumerate(lines) if text in line)


def test_exit_inside_try_names_the_loop() -> None:
    with pytest.raises(TraceError) as e:
        trace(exit_in_try, [f64])
    assert f"{THIS_FILE}:{line_of(exit_in_try, 'while x > 1.0')}:" in str(e.value)
    assert "`while` loop with `break`" in str(e.value)


def test_zip_of_array_and_list_is_refused() -> None:
    with pytest.raises(TraceError) as e:
        trace(zip_with_list, [V])
    assert "zip() of an array and a Python iterable" in str(e.value)
    assert f"{THIS_FILE}:{line_of(zip_with_list, 'for a, b')}:" in str(e.value)


SQUARE, BROKEN = (lambda a: a * a if a > 0.0 else -a), (lambda a: a + 1.0 if a > 0.0 else str(a))


def test_two_lambdas_on_one_line() -> None:
    traced = trace(SQUARE, [f64])
    assert evaluate(traced.module, traced.func_name, 3.0) == (9.0,)
    assert evaluate(traced.module, traced.func_name, -3.0) == (3.0,)
    with pytest.raises(TraceError, match="a call to str"):
        trace(BROKEN, [f64])


# --------------------------------------------------------------------------- assert


def asserted(x, n):
    assert n > 0, "n must be positive"
    assert x > 0.0
    return x * n


def shape_asserted(x):
    assert x.shape[0] == 3, "needs {3} items"
    return x[0] * x[1]


def test_assert_on_traced_values_is_a_run_time_check() -> None:
    from isozyme.errors import AssertionFailedError  # noqa: PLC0415

    assert autodiff(Reverse, asserted, Active, Active(2.0), Const(3)) == ((3.0, None),)
    with pytest.raises(AssertionError) as e:
        autodiff(Reverse, asserted, Active, Active(2.0), Const(0))
    assert isinstance(e.value, AssertionFailedError)
    assert f"{THIS_FILE}:{line_of(asserted, 'n must be')}: n must be positive" in str(e.value)
    with pytest.raises(AssertionFailedError, match=f":{line_of(asserted, 'x > 0.0')}: "
                                                   "assertion failed"):
        autodiff(Reverse, asserted, Active, Active(-2.0), Const(3))
    dx = np.zeros(3)
    autodiff(Reverse, shape_asserted, Active, Duplicated(np.array([1.0, 2.0, 3.0]), dx))
    np.testing.assert_array_equal(dx, [2.0, 1.0, 0.0])
    with pytest.raises(AssertionFailedError, match=r"needs \{3\} items"):
        autodiff(Reverse, shape_asserted, Active, Duplicated(np.ones(4), np.zeros(4)))


def test_assert_on_python_values_asserts_at_trace_time() -> None:
    def python_assert(x):
        assert x is not None, "traced"
        return x

    def failing(x):
        assert 1 > 2, "never"
        return x

    trace(python_assert, [f64])
    with pytest.raises(AssertionError, match="never"):
        trace(failing, [f64])


# --------------------------------------------------------------------------- global arrays

GLOBAL_ROWS = np.random.default_rng(9).random((300, 2))  # large: a hidden argument


def global_rows(c):
    s = 0.0
    for i, p in enumerate(GLOBAL_ROWS):
        s = s + (p[0] - c[0]) ** 2 * i + p[1] * c[1]
    return s


def test_iterating_a_large_global_array_is_a_loop() -> None:
    import isozyme  # noqa: PLC0415

    global GLOBAL_ROWS
    c = np.array([0.3, 0.7])
    ir_300 = isozyme.ir(Reverse, global_rows, Duplicated(c, np.zeros(2)), stage="optimized")
    assert "scf.for" in ir_300 or "scf.while" in ir_300
    idx = np.arange(GLOBAL_ROWS.shape[0])
    (g,) = isozyme.gradient(Reverse, global_rows, c)
    expected = [np.sum(2.0 * (c[0] - GLOBAL_ROWS[:, 0]) * idx), GLOBAL_ROWS[:, 1].sum()]
    np.testing.assert_allclose(g, expected, rtol=1e-12)
    saved = GLOBAL_ROWS
    try:
        GLOBAL_ROWS = np.random.default_rng(10).random((3000, 2))
        ir_3000 = isozyme.ir(Reverse, global_rows, Duplicated(c, np.zeros(2)),
                             stage="optimized")
        assert len(ir_300.splitlines()) == len(ir_3000.splitlines())
    finally:
        GLOBAL_ROWS = saved


def returns_array(x, n):
    for i in range(n):
        if x[i] > 2.0:
            return x
    return x


def python_loop_returns_array(x, k):
    for i in range(3):
        if i == k:
            return x
    return None


def test_array_returned_from_a_traced_loop_is_refused() -> None:
    with pytest.raises(TraceError) as e:
        trace(returns_array, [V, i64])
    assert f"{THIS_FILE}:{line_of(returns_array, 'return x')}:" in str(e.value)
    assert "`return` of an array inside a loop on a traced condition" in str(e.value)


def test_python_loop_returns_any_value() -> None:
    """A loop on Python values returns an array (or None) as Python does."""
    traced = trace(python_loop_returns_array, [V, 1])
    assert not loops_of(traced)
    assert not loops_of(trace(python_loop_returns_array, [V, 5]))  # returns None


def endless(x):
    for k in itertools.count():
        if x * k > 3.0:
            break
        x = x + 1.0
    return x


def test_traced_break_over_an_endless_iterator_is_refused() -> None:
    with pytest.raises(TraceError) as e:
        trace(endless, [f64])
    assert f"{THIS_FILE}:{line_of(endless, 'itertools.count()')}:" in str(e.value)
    assert "`for` loop over a count" in str(e.value)


def traced_generator(x, n):
    def gen():
        for i in range(n):
            yield x[i]
    return sum(gen())


def test_generator_on_traced_values_names_the_generator() -> None:
    with pytest.raises(TraceError) as e:
        trace(traced_generator, [V, i64])
    assert f"{THIS_FILE}:{line_of(traced_generator, 'for i in range(n)')}:" in str(e.value)
    assert "a generator function (`yield`)" in str(e.value)


def test_call_with_a_keyword_named_f():
    # converted_call's own first parameter must not take a keyword argument named f
    def g(x):
        d = dict(f=x * 2.0)
        return d["f"] * x

    assert autodiff(Reverse, g, Active, Active(1.5)) == ((6.0,),)
