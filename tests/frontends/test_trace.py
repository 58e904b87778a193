"""Tests of the Python frontend: tracing Python functions into ``traced`` IR.

Numerics are checked by evaluating the traced module with the reference evaluator in
``ir_eval`` and comparing with calling the Python function directly.
"""

from __future__ import annotations

import inspect
import math
import os

import numpy as np
import pytest
from xdsl.dialects import arith, func, scf
from xdsl.dialects.builtin import f32, f64, i1, i64

from isozyme.errors import TraceError
from isozyme.frontends.python import TracedFunction, trace

from .roundtrip import reparse
from .ir_eval import evaluate

THIS_FILE = os.path.basename(__file__)


# --------------------------------------------------------------------------- helpers


def run(traced: TracedFunction, *args: object) -> object:
    """Evaluate the traced function and map results back like the Python function."""
    results = evaluate(traced.module, traced.func_name, *args)
    if traced.returns_tuple:
        return tuple(results)
    if not results:
        return None
    (result,) = results
    return result


def check(fn, types, *arg_sets, rel=1e-12, abs_=1e-12) -> TracedFunction:
    """Trace ``fn`` and compare the IR's results with Python's for each argument set."""
    traced = trace(fn, types)
    reparse(traced)
    for args in arg_sets:
        expected = fn(*args)
        got = run(traced, *args)
        if isinstance(expected, tuple):
            assert isinstance(got, tuple) and len(got) == len(expected)
            for e, g in zip(expected, got):
                assert g == pytest.approx(e, rel=rel, abs=abs_, nan_ok=True), (args, e, g)
        else:
            assert got == pytest.approx(expected, rel=rel, abs=abs_, nan_ok=True), (args, expected, got)
    return traced




def ops_of(traced: TracedFunction, kind: type) -> list:
    return [op for op in traced.module.walk() if isinstance(op, kind)]


def line_of(fn, text: str) -> int:
    """The line number of the first line of ``fn`` containing ``text``."""
    lines, start = inspect.getsourcelines(fn)
    for k, line in enumerate(lines):
        if text in line:
            return start + k
    raise AssertionError(text)


def assert_trace_error(excinfo: pytest.ExceptionInfo, fn, text: str, *words: str) -> None:
    message = str(excinfo.value)
    assert f"{THIS_FILE}:{line_of(fn, text)}:" in message, message
    for w in words:
        assert w in message, message


# --------------------------------------------------------------------------- functions

SCALE = 3.0


def arith_ops(x, y):
    return x + y, x - y, x * y, x / y, -x, +x, abs(y), x ** 2, x ** 3, x ** -1, x ** 0.5, x ** y


def int_ops(a, b):
    return a + b, a - b, a * b, a // b, a % b, a / b, -a, abs(a), a ** 3, a & b, a | b, a ^ b


def float_floor_mod(x, y):
    return x // y, x % y


def compares(x, y):
    return x < y, x <= y, x > y, x >= y, x == y, x != y


def int_compares(a, b):
    return a < b, a <= b, a > b, a >= b, a == b, a != b


def mixed(x, n):
    return x * n + 1, n + 2, n / 2, 2 ** n, x ** n, float(n) + int(x), x + True


def f32_mix(x, y):
    return x * 2.0 + 1, x + y


def math_fns(x):
    return (
        math.sin(x), math.cos(x), math.tan(x), math.asin(x / 4), math.acos(x / 4),
        math.atan(x), math.atan2(x, 2.0), math.sinh(x), math.cosh(x), math.tanh(x),
        math.exp(x), math.expm1(x), math.log(x), math.log(x, 3), math.log1p(x),
        math.log2(x), math.log10(x), math.sqrt(x), math.cbrt(x), math.pow(x, 1.5),
        math.hypot(x, 2.0), math.fabs(-x), math.floor(x), math.ceil(x),
        math.copysign(x, -1.0),
    )


def numpy_fns(x):
    return (
        np.sin(x), np.cos(x), np.tan(x), np.arcsin(x / 4), np.arccos(x / 4), np.arctan(x),
        np.arctan2(x, 2.0), np.sinh(x), np.cosh(x), np.tanh(x), np.exp(x), np.expm1(x),
        np.log(x), np.log1p(x), np.log2(x), np.log10(x), np.sqrt(x), np.cbrt(x),
        np.power(x, 3), np.hypot(x, 1.0), np.abs(-x), np.absolute(-x), np.floor(x),
        np.ceil(x), np.round(x), np.around(x), np.rint(x), np.maximum(x, 1.5),
        np.minimum(x, 1.5), np.square(x),
    )


def builtin_fns(x, y, n):
    return (
        abs(x - y), min(x, y), max(x, y, 2.0), min(n, 3), max([n, 1, 2]), float(n), int(x),
        round(x), pow(x, 2), pow(x, y),
    )


def square(v):
    return v * v


def norm2(a, b):
    return math.sqrt(square(a) + square(b))


def calls_helper(x, y):
    return norm2(x, y) + square(x) + square(2.0) + norm2(x, 1.0)


def branches(x):
    if x > 2.0:
        return x * 2
    elif x > 0.0:
        return x + 1
    else:
        return -x


def early_return(x, y):
    if x < 0:
        return y
    z = x * y
    if z > 10:
        return z - 10
    return z


def if_no_return(x):
    y = 1.0
    if x > 0:
        y = x * 3
        z = 2
    else:
        z = 3.5
    return y + z


def if_in_for(x, n):
    s = 0
    for i in range(n):
        if i % 3 == 0:
            s += x * i
        else:
            s -= 1
    return s


def for_range3(x, a, b):
    s = 0.0
    for i in range(a, b, 3):
        s = s + x * i
    for j in range(b, a, -2):
        s = s - j
    return s


def for_traced_step(x, a, b, c):
    s = x
    for i in range(a, b, c):
        s = s * 0.5 + i
    return s


def while_loop(x):
    k = 0
    while x > 1.0:
        x = x / 2
        k += 1
    return x, k


def python_control(x):
    s = x
    for k in range(4):
        if k % 2 == 0:
            s = s * (k + 1)
    n = 3
    while n > 0:
        s = s + n
        n -= 1
    return s


def make_closure(k):
    offset = 1.5

    def inner(x):
        return k * x * SCALE + offset

    return inner


def bool_ops(x, y):
    a = x > 0 and y > 0
    b = x > 0 or y > 0
    c = not (x > y)
    d = 0 < x < y
    e = x if x > y else y
    return a, b, c, d, e


def loop_type_promotion(x, n):
    s = 0
    for i in range(n):
        s += x
    return s


def nested_def(x, y):
    def scaled(v):
        return v * y

    g = lambda v: scaled(v) + 1  # noqa: E731
    return g(x)


def returns_none(x):
    y = x * 2  # noqa: F841


def constant_args(x, mode, f):
    if mode == "square":
        return f(x) * x
    return f(x)


def bool_arg(x, flag):
    if flag:
        return x
    return -x


# --------------------------------------------------------------------------- tests


def test_arith_ops():
    t = check(arith_ops, [f64, f64], (1.5, 2.5), (3.0, -0.75))
    assert t.returns_tuple and t.arg_types == [f64, f64]
    assert t.result_types == [f64] * 12
    assert ops_of(t, arith.MulfOp)


def test_int_ops():
    t = check(int_ops, [i64, i64], (7, 3), (-7, 3), (7, -3), (-7, -3))
    assert t.result_types[:5] == [i64] * 5
    assert t.result_types[5] == f64
    assert ops_of(t, arith.FloorDivSIOp)


def test_float_floor_mod():
    check(float_floor_mod, [f64, f64], (7.5, 2.0), (-7.5, 2.0), (7.5, -2.0))


def test_comparisons():
    t = check(compares, [f64, f64], (1.0, 2.0), (2.0, 2.0), (3.0, 2.0))
    assert t.result_types == [i1] * 6
    check(int_compares, [i64, i64], (1, 2), (2, 2), (3, 2))


def test_mixed_types_promote():
    t = check(mixed, [f64, i64], (1.5, 3), (-2.25, 4))
    # 2 ** n with n of unknown sign is a float: Python's type depends on the sign of n
    assert [str(x) for x in t.result_types] == ["f64", "i64", "f64", "f64", "f64", "f64", "f64"]
    assert ops_of(t, arith.SIToFPOp)


def test_f32_stays_f32_with_python_float():
    t = trace(f32_mix, [f32, f64])
    assert t.result_types == [f32, f64]
    assert ops_of(t, arith.ExtFOp)
    reparse(t)
    assert run(t, 1.5, 2.0) == pytest.approx((4.0, 3.5))


def test_math_functions():
    t = check(math_fns, [f64], (0.7,), (2.3,))
    assert t.result_types[22] == i64  # math.floor returns an int, as in Python


def test_numpy_functions():
    check(numpy_fns, [f64], (0.7,), (2.5,), (1.3,))


def test_builtin_functions():
    check(builtin_fns, [f64, f64, i64], (1.7, 2.2, 5), (2.5, -0.5, 1), (-2.5, 2.0, -4))


def test_helper_calls_become_private_funcs():
    t = check(calls_helper, [f64, f64], (3.0, 4.0))
    funcs = {op.sym_name.data: op for op in ops_of(t, func.FuncOp)}
    assert set(funcs) == {"calls_helper", "norm2", "square", "norm2_1"}
    assert funcs["calls_helper"].sym_visibility is None
    for name in ("square", "norm2", "norm2_1"):
        assert funcs[name].sym_visibility.data == "private"
    callees = sorted(op.callee.root_reference.data for op in ops_of(t, func.CallOp))
    # norm2(x, y) and norm2(x, 1.0) have different signatures; square(2.0) runs in Python.
    assert callees == ["norm2", "norm2_1", "square", "square", "square", "square"]


def test_if_elif_else_returns():
    t = check(branches, [f64], (3.0,), (1.0,), (-1.0,))
    assert len(ops_of(t, scf.IfOp)) == 2


def test_early_return():
    check(early_return, [f64, f64], (-1.0, 5.0), (1.0, 2.0), (4.0, 5.0))


def test_if_statement_results():
    t = check(if_no_return, [f64], (2.0,), (-2.0,))
    (if_op,) = ops_of(t, scf.IfOp)
    assert [str(r.type) for r in if_op.results] == ["f64", "f64"]  # y, z (int -> float)


def test_if_inside_for():
    t = check(if_in_for, [f64, i64], (1.5, 7), (2.0, 0), (2.0, -3))
    assert len(ops_of(t, scf.ForOp)) == 1
    assert len(ops_of(t, scf.IfOp)) == 1


def test_for_traced_bound_is_one_loop_independent_of_trip_count():
    t = check(if_in_for, [f64, i64], (1.0, 10), (1.0, 1000))
    (loop,) = ops_of(t, scf.ForOp)
    assert len(list(t.module.walk())) < 60
    # the IR does not depend on the trip count: tracing again gives the same text
    assert str(trace(if_in_for, [f64, i64]).module) == str(t.module)


def test_for_range_with_steps():
    t = check(for_range3, [f64, i64, i64], (1.0, 0, 10), (0.5, -7, 11), (2.0, 5, 5), (2.0, 9, 1))
    assert len(ops_of(t, scf.ForOp)) == 2
    check(for_traced_step, [f64, i64, i64, i64], (1.0, 0, 10, 3), (1.0, 10, -3, -4), (1.0, 0, 5, -1))


def test_for_loop_promotes_carried_int_to_float():
    t = check(loop_type_promotion, [f64, i64], (1.25, 4), (1.0, 0))
    (loop,) = ops_of(t, scf.ForOp)
    assert [str(r.type) for r in loop.results] == ["f64"]


def test_while_traced_condition():
    t = check(while_loop, [f64], (100.0,), (0.5,))
    (w,) = ops_of(t, scf.WhileOp)
    assert [str(r.type) for r in w.results] == ["f64", "i64"]
    # `before` forwards its block arguments unchanged
    cond = w.before_region.block.last_op
    assert isinstance(cond, scf.ConditionOp)
    assert list(cond.args) == list(w.before_region.block.args)


def test_python_control_flow_runs_at_trace_time():
    t = check(python_control, [f64], (1.5,))
    assert not ops_of(t, scf.ForOp) and not ops_of(t, scf.IfOp) and not ops_of(t, scf.WhileOp)


def test_closures_and_globals():
    check(make_closure(2.0), [f64], (1.5,))


def test_boolean_operators_and_ifexp():
    t = check(bool_ops, [f64, f64], (1.0, 2.0), (-1.0, 2.0), (3.0, -2.0), (-1.0, -2.0))
    assert t.result_types == [i1, i1, i1, i1, f64]
    assert ops_of(t, arith.AndIOp) and ops_of(t, arith.OrIOp) and ops_of(t, arith.XOrIOp)


def test_nested_def_and_lambda_are_inlined():
    t = check(nested_def, [f64, f64], (2.0, 3.0))
    assert not ops_of(t, func.CallOp)


def test_lambda_entry_point():
    t = check(lambda x, y: x * y if x > y else math.exp(y), [f64, f64], (2.0, 1.0), (1.0, 2.0))
    assert t.func_name == "lambda"


def test_returns_none_and_scalar():
    t = trace(returns_none, [f64])
    assert t.result_types == [] and not t.returns_tuple
    t = check(square, [f64], (3.0,))
    assert t.result_types == [f64] and not t.returns_tuple


def test_constant_arguments_are_baked_in():
    t = check(lambda x: constant_args(x, "square", math.sin), [f64], (0.5,))
    t = trace(constant_args, [f64, "square", math.sin], name="const args")
    assert t.func_name == "const_args" and t.arg_types == [f64]
    assert run(t, 0.5) == pytest.approx(math.sin(0.5) * 0.5)
    t = trace(bool_arg, [f64, i1])
    assert run(t, 2.0, True) == 2.0 and run(t, 2.0, False) == -2.0


def test_python_number_results_are_constants():
    t = trace(lambda x: (1, 2.5, x), [f64])
    assert t.result_types == [i64, f64, f64]


# --------------------------------------------------------------------------- errors


def while_break(x):
    while x > 1.0:
        x = x / 2
        try:  # an exit inside `try` is not canonicalized (loop_exits.py)
            if x < 3.0:
                break
        finally:
            pass
    return x


def filters(x):
    return sum([v for v in (x, 2.0 * x) if v > 0])  # a comprehension filter


def calls_factorial(x):
    return math.factorial(x)


def calls_str(x):
    return str(x)


def one_branch(x):
    if x > 0:
        y = x * 2
    return y + 1


def recursive(x, n):
    if n > 0:
        return recursive(x, n - 1) * x
    return x


def test_error_while_with_break():
    with pytest.raises(TraceError) as e:
        trace(while_break, [f64])
    assert_trace_error(e, while_break, "while x > 1.0", "`while` loop with `break`")


def test_error_traced_value_as_bool():
    with pytest.raises(TraceError) as e:
        trace(filters, [f64])
    assert_trace_error(e, filters, "if v > 0", "Python bool")


@pytest.mark.parametrize("fn,text,name", [(calls_factorial, "math.factorial", "math.factorial"),
                                          (calls_str, "str(x)", "str")])
def test_error_unknown_c_function(fn, text, name):
    with pytest.raises(TraceError) as e:
        trace(fn, [f64])
    assert_trace_error(e, fn, "return " + text, f"a call to {name}")


def test_error_function_without_source():
    namespace: dict = {}
    exec("def made(x):\n    return x * 2\n", namespace)
    with pytest.raises(TraceError) as e:
        trace(namespace["made"], [f64])
    assert "<string>:1:" in str(e.value) and "source code" in str(e.value)


def test_error_variable_defined_in_one_branch():
    with pytest.raises(TraceError) as e:
        trace(one_branch, [f64])
    assert_trace_error(e, one_branch, "return y + 1", "'y'", "only one branch",
                       f"line {line_of(one_branch, 'if x > 0')}")


def test_error_recursion_with_traced_arguments():
    with pytest.raises(TraceError) as e:
        trace(recursive, [f64, i64])
    assert "recursive call of recursive()" in str(e.value)
    # with a Python-valued depth the recursion runs at trace time
    t = trace(recursive, [f64, 3])
    assert run(t, 2.0) == 16.0


# --------------------------------------------------------------------------- more cases


def apply_twice(g, v):
    return g(g(v))


def closure_over_tracer(x, y):
    return apply_twice(lambda t: t * y, x)


def while_becomes_traced(x):
    k = 0
    while k < 3 or x > 1:
        x = x / 2
        k += 1
    return x, k


class Affine:
    def __init__(self, a):
        self.a = a

    def scale(self, x):
        return self.a * x

    def __call__(self, x):
        return self.scale(x) + 1


AFFINE = Affine(3.0)


def methods_and_callables(x):
    return AFFINE.scale(x) + AFFINE(x)


def comprehension(x):
    return sum(x * k for k in range(3)) + sum([x, x]) + max([x * k for k in range(1, 3)])


def loop_first_assigned(x, n):
    for i in range(n):
        z = x * i
    return z


def list_escapes_loop(x, n):
    acc = []
    for i in range(n):
        acc.append(x * i)
    return acc[0]


def helper_tuple(a, b):
    return a + b, a - b, "tag"


def uses_helper_tuple(x, y, n):
    s, d, tag = helper_tuple(x, y)
    return s * d, helper_tuple(n, 1)[0]


def test_helper_closing_over_traced_value_is_inlined():
    t = check(closure_over_tracer, [f64, f64], (2.0, 3.0))
    assert [op.sym_name.data for op in ops_of(t, func.FuncOp)] == ["closure_over_tracer"]


def test_while_condition_becomes_traced_midway():
    t = check(while_becomes_traced, [f64], (10.0,), (0.5,))
    assert len(ops_of(t, scf.WhileOp)) == 1


def test_methods_callable_objects_and_comprehensions():
    check(methods_and_callables, [f64], (2.0,))
    check(comprehension, [f64], (2.0,), (-1.0,))


def test_helper_returning_tuple_with_constants():
    t = check(uses_helper_tuple, [f64, f64, i64], (2.0, 0.5, 4))
    assert {op.sym_name.data for op in ops_of(t, func.FuncOp)} == {
        "uses_helper_tuple", "helper_tuple", "helper_tuple_1"}


def test_loop_variable_used_after_traced_loop_is_carried_and_checked():
    """A variable first assigned in a traced loop and read after it is carried out of
    the loop with an "assigned" flag, checked (isz.check of kind unbound) where it is
    read: Python's UnboundLocalError when the loop ran no iteration."""
    t = trace(loop_first_assigned, [f64, i64])
    (loop,) = ops_of(t, scf.ForOp)
    assert len(loop.results) == 2  # z and its flag
    text = str(t.module)
    assert 'kind = "unbound"' in text and "local variable 'z' referenced before" in text


def test_error_value_escaping_loop_through_list():
    with pytest.raises(TraceError) as e:
        trace(list_escapes_loop, [f64, i64])
    assert_trace_error(e, list_escapes_loop, "return acc[0]", "outside the loop or branch")
