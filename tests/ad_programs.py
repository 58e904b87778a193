"""Scalar test programs for the finite-difference AD tests.

Every program is an ordinary top-level Python function (isozyme's frontend converts the
function's AST, so the source must be available) together with a few test points.  A
test point is a tuple of arguments: floats (``float`` or ``numpy.float32``) are the
differentiable arguments, Python ints are always passed ``Const`` (traced as ``i64``).

Test points are chosen away from the kinks of the piecewise-smooth programs (``abs``,
``min``/``max``, ``floor``, branches, while loops whose trip count depends on an active
value) by much more than the finite-difference step, so finite differences are valid.

``PROGRAMS`` lists them all; see ``tests/test_ad_finite_differences.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

f32 = np.float32


@dataclass(frozen=True)
class Program:
    """A program and its test points."""

    fn: Callable
    points: tuple[tuple, ...]
    #: float32 program: looser derivative tolerances, FD computed in float64.
    f32: bool = False
    #: per-program tolerance overrides (``rtol``/``atol`` for derivatives)
    tol: dict = field(default_factory=dict)
    #: finite-difference step ``1e-6 * |x|`` instead of ``1e-6 * max(1, |x|)`` (for
    #: points of tiny magnitude)
    fd_relative: bool = False

    @property
    def name(self) -> str:
        return self.fn.__name__


# ===================================================================== arithmetic
def arith_basic(x, y):
    return x + y * x - y / x - 3.0


def arith_rational(x, y):
    return (x * x - 3.0 * y) / (1.0 + y * y) - x / (y + 4.0)


def floordiv_float(x, y):
    # float // float is piecewise constant: zero derivative almost everywhere
    q = x // y
    return q * x + (x * x) // y + y


def unary_minus(x, y):
    z = -x
    return -(z * y) + -(-y) * -z


def mod_float(x, y):
    return (x % y) * y + x


def augmented_assign(x, y):
    z = x
    z += y
    z *= x
    z -= 2.0 * y
    z /= (1.0 + y * y)
    z **= 2
    return z


def abs_prog(x, y):
    return abs(x - y) * y + abs(x) + abs(-2.0 * y)


def min_max_prog(x, y):
    return min(x, y) * 2.0 + max(x * x, y) - min(3.0, x) * max(y, -1.0)


def ternary(x, y):
    return x * y if x > y else y * y - x


# ===================================================================== powers
def pow_small_ints(x):
    return x ** 2 + x ** 3 - 2.0 * x ** -2 + x ** 0


def pow_frac(x):
    return x ** 3.5 + x ** 0.5


def pow_xy(x, y):
    return x ** y


def pow_base_const(x):
    return 2.0 ** x + 0.5 ** (x * x)


def pow_n(x, n):
    return x ** n


def hypot2(x, y):
    return math.hypot(x, y)


def pow_int_arg(x, n):
    # x ** n with a runtime int exponent
    return x ** n + x ** (n + 1)


# ===================================================================== math module
def sin_only(x):
    return math.sin(x)


def exp_log(x):
    return math.exp(x) + math.log(x)


def math_trig(x):
    return math.sin(x) * math.cos(2.0 * x) + math.tan(x)


def math_inv_trig(x):
    return math.asin(x) + 2.0 * math.acos(x) * x + math.atan(3.0 * x)


def math_atan2(y, x):
    return math.atan2(y, x)


def math_hyperbolic(x):
    return math.sinh(x) * math.cosh(0.5 * x) + math.tanh(x)


def math_exp_log(x):
    return (math.exp(x) + math.expm1(x) * math.log(x) + math.log1p(x)
            - math.log2(x) * math.log10(x))


def math_sqrt_cbrt(x):
    return math.sqrt(x) * math.cbrt(x) + math.cbrt(-x * x)


def math_pow_hypot(x, y):
    return math.pow(x, y) + math.hypot(x, y) + math.pow(x, 2)


def math_floor_ceil(x, y):
    return math.floor(x) * y + math.ceil(y) * x * x + math.floor(x * y)


def math_log_base(x, y):
    return math.log(x, 3.0) + math.log(x * y, y)


# ===================================================================== numpy scalar functions
def np_trig(x):
    return np.sin(x) * np.cos(2.0 * x) + np.tan(x)


def np_inv_trig(x):
    return np.arcsin(x) + 2.0 * np.arccos(x) * x + np.arctan(3.0 * x)


def np_arctan2(y, x):
    return np.arctan2(y, x) * y


def np_hyperbolic(x):
    return np.sinh(x) * np.cosh(0.5 * x) + np.tanh(x)


def np_exp_log(x):
    return (np.exp(x) + np.expm1(x) * np.log(x) + np.log1p(x)
            - np.log2(x) * np.log10(x))


def np_sqrt_cbrt(x):
    return np.sqrt(x) * np.cbrt(x) + np.cbrt(-x * x)


def np_power_hypot(x, y):
    return np.power(x, y) + np.hypot(x, y) + np.power(x, 3)


def np_floor_ceil_round(x, y):
    return np.floor(x) * y + np.ceil(y) * x * x + np.round(x * y) + np.round(y) * x


# ===================================================================== helper calls
def _inner_helper(a, b):
    return a * a - b


def _middle_helper(a, b):
    return math.sin(_inner_helper(a, b)) + _inner_helper(b, a) * 2.0


def nested_helpers(x, y):
    return _middle_helper(x, y) * x + _inner_helper(y, 1.5)


def rosenbrock(x, y):
    return (1.0 - x) ** 2 + 100.0 * (y - x ** 2) ** 2


def sigmoid_softplus(x, y):
    s = 1.0 / (1.0 + math.exp(-x * y))
    return s + math.log1p(math.exp(y)) - s * s


def four_args(a, b, c, d):
    return a * b + c * math.sin(d) - a / (1.0 + d * d) + b * c * d


# ===================================================================== branches
def if_elif_else_return(x, y):
    if x < 0.0:
        return x * y
    elif x < 1.0:
        return x * x + y
    elif y >= 2.0:
        return math.exp(x) * y
    else:
        return -x * y * y


def if_early_return(x, y):
    if x > y:
        return x - y * y
    z = x * y
    if z > 1.0:
        return z * z
    return z + x


def if_assign(x, y):
    if x > 0.5:
        a = x * y
        b = y
    elif y > 0.0:
        a = x + y
        b = x * x
    else:
        a = -x
        b = 3.0
    return a * b + a


def if_without_else(x, y):
    z = y
    if x > y:
        z = z * x + 1.0
    return z * x


def compare_ops(x, y):
    r = 0.0
    if x <= y:
        r = r + x * y
    if x >= 1.0:
        r = r + x * x
    if x != y:
        r = r + y
    if x == 2.0:
        r = r + 100.0 * x
    if 0.0 < x < 3.0:
        r = r + math.sin(x)
    return r


def bool_ops(x, y):
    r = x
    if x > 0.0 and y > 0.0:
        r = r * y
    if x > 2.0 or y < -1.0:
        r = r + y * y
    if not x > y:
        r = r - x * y
    if (x < 1.0 or y > 1.0) and not (x > 5.0):
        r = r * 2.0
    return r


# ===================================================================== for loops
def for_const_bound(x):
    # Horner evaluation of 1 + 2x + 3x^2 + 4x^3 + 5x^4; range(5) has a Python bound
    s = 0.0
    for i in range(5):
        s = s * x + (5 - i)
    return s


def power_loop(x, n):
    p = 1.0
    for i in range(n):
        p = p * x
    return p


def loop_uses_index(x, y, n):
    s = 0.0
    for i in range(n):
        s += x * i + math.sin(y * i)
    return s


def loop_range_start_step(x, n):
    s = x
    for i in range(1, n, 2):
        s = s * x / i + float(i)
    return s


def nested_loops(x, y, n, m):
    s = 0.0
    for i in range(n):
        t = x
        for j in range(m):
            t = t * y + j
        s = s + t * i + x
    return s


def branch_in_loop(x, n):
    s = x
    for i in range(n):
        if s > 2.0:
            s = s * 0.5 + i
        else:
            s = s * s + 0.25
    return s


def loop_in_branch(x, y, n):
    if x > y:
        s = 1.0
        for i in range(n):
            s = s * x + y
    else:
        s = y
        for i in range(n):
            s = s + x * y
    return s


def loop_multi_carried(x, y, n):
    a = x
    b = y
    c = 0.0
    for i in range(n):
        a, b = b, a * x + b
        c = c + a * b
    return a + 2.0 * b + c


def loop_inactive_carried(x, y, n):
    # t only counts iterations (a float that does not depend on x or y)
    t = 0.0
    k = 1
    s = x
    for i in range(n):
        t = t + 1.0
        k = k * 2
        s = s * y + t
    return s * t + k


def loop_const_carried_value(x, y, n):
    # c is carried and depends only on y; with y Const it is inactive
    c = y
    s = x
    for i in range(n):
        c = c * 0.5 + 1.0
        s = s * c
    return s + c


# ===================================================================== while loops
def while_active_trip(x, k):
    # trip count depends on the active value: piecewise smooth
    while x < 100.0:
        x = x * 1.5 + k
    return x


def while_counter(x, n):
    i = 0
    s = x
    while i < n:
        s = s * x + 1.0
        i = i + 1
    return s


def while_newton_sqrt(a):
    g = a
    while abs(g * g - a) > 1e-10 * a:
        g = 0.5 * (g + a / g)
    return g


def while_in_for(x, y, n):
    s = 0.0
    for i in range(n):
        z = x + i
        while z < 10.0:
            z = z * y + 1.0
        s = s + z
    return s


def for_in_while(x, y, n):
    s = x
    count = 0
    while s < 50.0 and count < 20:
        for i in range(n):
            s = s + y * i + 0.5
        s = s * 1.1
        count = count + 1
    return s * y


def while_two_carried(x, y):
    a = x
    b = y
    while a < 20.0:
        a = a + b * 0.5 + 1.0
        b = b * 1.1
    return a * b


# ===================================================================== trace-time Python control flow
UNROLL_STEPS = 3
USE_SQUARE = True


def python_control_flow(x, y):
    s = x
    if USE_SQUARE:  # a Python bool: decided at trace time
        for i in range(UNROLL_STEPS):  # Python bound: unrolled at trace time
            if i % 2 == 0:  # Python int condition
                s = s * s * 0.5 + y
            else:
                s = s - y * i
    else:
        s = -s
    return s


def python_while_unrolled(x):
    k = 0
    s = x
    while k < 4:  # Python-valued condition: unrolled while tracing
        s = math.sin(s) + x
        k += 1
    return s


# ===================================================================== int arguments, constants
def int_arithmetic(x, n):
    return x * n + float(n // 2) * x * x + (n % 3)


def constant_result(x, y):
    return 2.5


def constant_after_cancel(x):
    return x - x + 1.0


def unused_arg(x, y, z):
    return x * y + y

# ===================================================================== more control flow
def widen_int_to_float(x, n):
    # s starts as a Python int and becomes a float inside the loop
    s = 0
    for i in range(n):
        s = s + x * i
    return s


def range_negative_step(x, n):
    s = x
    for i in range(n, 0, -1):
        s = s * x + i
    return s


def range_start_arg(x, m, n):
    s = 1.0
    for i in range(m, n):
        s = s * x + i * 0.5
    return s


def range_runtime_step(x, n, k):
    s = 1.0
    for i in range(0, n, k):
        s = s * x + i
    return s


def branch_on_index(x, n):
    s = x
    for i in range(n):
        if i % 2 == 0:
            s = s * x
        else:
            s = s + x
    return s


def ifexp_in_loop(x, n):
    s = x
    for i in range(n):
        s = s * 0.5 if s > 1.0 else s * s + x
    return s


def loop_min_max_abs(x, y, n):
    s = x
    for i in range(n):
        s = max(s * y, x) + abs(s - 2.0) * 0.1 - min(s, y)
    return s


def reassign_arg_in_loop(x, n):
    for i in range(n):
        x = x * 1.1 + math.cos(x)
    return x


def triple_loop(x, n):
    s = x
    for i in range(n):
        for j in range(n):
            for k in range(2):
                s = s * 0.9 + math.sin(s * x) * 0.1
    return s


def long_loop(x, n):
    s = x
    for i in range(n):
        s = math.sin(s) + x * 0.5
    return s


def value_outside_loop_modified_after(x, y, n):
    a = x * y
    s = 0.0
    for i in range(n):
        s = s + a * s + math.sin(a)
    a = a * 2.0
    return s + a


def loop_int_carried_from_float(x, n):
    k = 0
    s = x
    for i in range(n):
        k = k + int(s)
        s = s * 1.7
    return s * k


def deep_nest(x, y, n):
    s = x
    for i in range(n):
        if s < 3.0:
            j = 0
            while j < i:
                s = s * y + 0.1
                j = j + 1
        else:
            for k in range(2):
                s = math.sqrt(s) * y
    return s


def nested_while_active(x, y):
    while x < 30.0:
        z = x
        while z < 5.0 * x:
            z = z * y + 0.1
        x = x + z * 0.3
    return x


def if_in_while_active(x):
    while x < 50.0:
        if x < 10.0:
            x = x * x + 1.0
        else:
            x = x * 1.3
    return x


def while_or_not(x, y):
    while not (x > 20.0 or y > 20.0):
        x = x * 1.7 + y
        y = y + 0.3 * x
    return x * y


def while_counter_and_active(x, n):
    i = 0
    while i < n and x < 10.0:
        x = x * 1.5 + 0.2
        i += 1
    return x * i


def two_whiles(x):
    while x < 10.0:
        x = x * 1.3 + 0.1
    y = x
    while y > 2.0:
        y = y * 0.6
    return x * y


def while_zero_trip(x):
    while x > 100.0:
        x = x * x
    return x * 3.0


def while_body_uses_outer(x, y):
    t = math.exp(y)
    z = x
    while z < 10.0:
        z = z * t + x * y
    return z


def while_int_condition(x, n):
    s = x
    k = n
    while k > 0:
        s = s * s * 0.5 + 0.25
        k = k - 1
    return s


def cond_only_active(x):
    # x only decides the trip count: the result is piecewise constant
    c = 0
    while x < 100.0:
        x = x * 2.0
        c = c + 1
    return c * 1.0


def nested_early_return(x, y):
    if x > 0.0:
        if y > 0.0:
            return x * y
        return x - y
    else:
        if y > 1.0:
            return y * y
    return x + y * 3.0


def branch_const_value(x, y):
    if y > 0.0:
        c = 2.0
    else:
        c = 3.0
    return c * x


def branch_mixed_types(x, y):
    if x > y:
        z = 1
    else:
        z = y * 2.0
    return x * z


def _h_abs(t):
    if t > 0.0:
        return t
    return -t * 0.5


def helper_branch_in_loop(x, n):
    s = x
    for i in range(n):
        s = _h_abs(s - 1.0) + x * 0.3
    return s


def _h_loop(t, n):
    r = t
    for i in range(n):
        r = r * t * 0.5 + 0.1
    return r


def helper_loop_in_while(x, n):
    c = 0
    while x < 5.0 and c < 10:
        x = _h_loop(x, n) + 1.0
        c = c + 1
    return x


# ===================================================================== Python features
def _scaled(t, scale=2.0, *, shift=0.0):
    return t * scale + shift


def kwargs_helper(x, y):
    return _scaled(x) + _scaled(y, 3.0, shift=x * x) + _scaled(t=x, scale=y)


def local_lambda(x, y):
    g = lambda t: t * t * y  # noqa: E731
    return g(x) + g(y)


def closure_def(x, y):
    def inner(t):
        return t * x + math.sin(y * t)

    return inner(x) + inner(2.0)


RECURSION_DEPTH = 3


def _recurse(x, k):
    if k == 0:
        return x
    return _recurse(x * x * 0.5 + 1.0, k - 1)


def python_recursion(x):
    return _recurse(x, RECURSION_DEPTH)


def sum_generator(x):
    return sum(x ** i for i in range(4)) + sum([x * i for i in range(3)])


def tuple_unpack_swap(x, y):
    a, b = x, y
    a, b = b * a, a - b
    return a * b


def int_promotion(x, n):
    return x / n + n / 2 + float(n) * x + x * (n // 3) + math.sin(n) * x


def int_of_active(x):
    # int() truncates: piecewise constant
    return int(x) * 2.0 + float(int(x * 3.0))


def np_float64_args(x, y):
    return x * y + np.sin(x) / y


def select_chain(x, y):
    return (x if x > 0.0 else -x) * (y if y < x else x * y)


# ===================================================================== more functions
def minmax_more(x, y, z):
    return (max(x, y, z) + min(x * y, z, 1.0) + np.maximum(x, y) * np.minimum(y, z)
            + np.fmax(x, z) - np.fmin(y, x))


def extra_math(x):
    return (math.fabs(x) + np.abs(x) + math.copysign(2.0, x) * x + math.erf(x)
            + math.asinh(x) + math.atanh(x / 2.0) + math.acosh(x + 2.0) + np.exp2(x)
            + np.trunc(3.0 * x) * x + np.rint(4.0 * x) + np.sign(x) * x * x)


def pow_float_int_exponent(x):
    # integer-valued float exponents are fine for negative bases
    return x ** 3.0 + x ** 2.0 + math.pow(x, 4.0) + np.power(x, 2.0)


def hypot_chain(x, y, z):
    return math.hypot(x, math.hypot(y, z)) + np.hypot(x * y, z)


def hypot_extreme(x, y):
    # hypot must not overflow/underflow where sqrt(x*x + y*y) would
    return math.hypot(x, y) - 0.5 * np.hypot(y, x)


def mixed_f32_f64(x, y):
    return x * y + np.sin(x) * y


def f32_math_mix(x, y):
    return (np.log(x) * np.arctan2(y, x) + np.power(x, y) + np.hypot(x, y)
            + np.cbrt(y) * np.floor(3.0 * x) + np.cos(y) / (x + 1.0) + abs(y - x))


# ===================================================================== float32
def f32_poly_trig(x, y):
    return np.sin(x) * y + x * x * 2.0 - y / (x + 3.0)


def f32_exp_sqrt(x):
    return np.exp(0.5 * x) + np.sqrt(x * x + 1.0) * np.tanh(x)


def f32_loop(x, n):
    s = x
    for i in range(n):
        s = s * 0.9 + x * x * 0.1
    return s


PROGRAMS: list[Program] = [
    # arithmetic
    Program(arith_basic, ((1.5, 2.0), (-0.7, 3.25))),
    Program(arith_rational, ((0.3, -1.2), (2.5, 0.75))),
    Program(floordiv_float, ((3.7, 1.3), (-2.3, 0.7))),
    Program(unary_minus, ((1.25, -0.5), (-2.0, 3.0))),
    Program(mod_float, ((5.3, 1.7), (-2.4, 0.9))),
    Program(augmented_assign, ((1.2, 0.4), (-0.8, 2.1))),
    Program(abs_prog, ((1.5, 0.5), (-0.7, 2.0), (0.4, -1.3))),
    Program(min_max_prog, ((1.5, 0.5), (-0.7, 2.0), (4.0, 3.0))),
    Program(ternary, ((2.0, 1.0), (0.5, 1.5))),
    # powers
    Program(pow_small_ints, ((1.3,), (-0.8,))),
    Program(pow_frac, ((0.6,), (2.2,))),
    Program(pow_xy, ((1.7, 2.3), (0.4, -1.5), (0.0, 2.0))),
    Program(pow_base_const, ((0.3,), (-1.2,))),
    Program(pow_int_arg, ((1.1, 3), (-0.9, 4), (2.0, 0), (0.0, 0))),
    # math
    Program(sin_only, ((0.3,), (2.0,))),
    Program(exp_log, ((0.5,), (3.0,))),
    Program(math_trig, ((0.3,), (-1.1,))),
    Program(math_inv_trig, ((0.3,), (-0.6,))),
    Program(math_atan2, ((0.5, 1.5), (-1.0, -0.3))),
    Program(math_hyperbolic, ((0.4,), (-1.3,))),
    Program(math_exp_log, ((0.7,), (2.3,))),
    Program(math_sqrt_cbrt, ((0.8,), (3.1,))),
    Program(math_pow_hypot, ((1.3, 0.7), (0.5, -2.0))),
    Program(math_floor_ceil, ((1.3, 2.4), (-0.6, 0.7))),
    Program(math_log_base, ((1.3, 2.4), (5.0, 0.5))),
    # numpy
    Program(np_trig, ((0.3,), (-1.1,))),
    Program(np_inv_trig, ((0.3,), (-0.6,))),
    Program(np_arctan2, ((0.5, 1.5), (-1.0, -0.3))),
    Program(np_hyperbolic, ((0.4,), (-1.3,))),
    Program(np_exp_log, ((0.7,), (2.3,))),
    Program(np_sqrt_cbrt, ((0.8,), (3.1,))),
    Program(np_power_hypot, ((1.3, 0.7), (0.5, -2.0))),
    Program(np_floor_ceil_round, ((1.3, 2.2), (-0.6, 0.7))),
    # helpers and classic functions
    Program(nested_helpers, ((0.7, 1.2), (-1.1, 0.4))),
    Program(rosenbrock, ((1.0, 2.0), (-0.5, 0.3))),
    Program(sigmoid_softplus, ((0.4, 1.3), (-2.0, 0.1))),
    Program(four_args, ((0.5, 1.5, -0.7, 2.0), (1.2, -0.3, 0.8, -1.1))),
    # branches
    Program(if_elif_else_return, ((-0.5, 2.0), (0.5, 1.0), (1.5, 2.5), (1.5, 1.0))),
    Program(if_early_return, ((2.0, 1.0), (1.0, 1.5), (0.3, 0.5))),
    Program(if_assign, ((1.0, 2.0), (0.2, 0.7), (0.2, -0.7))),
    Program(if_without_else, ((2.0, 1.0), (0.5, 1.5))),
    Program(compare_ops, ((0.5, 1.5), (2.5, 1.0), (1.5, 1.7), (-1.0, 0.5))),
    Program(bool_ops, ((0.5, 1.5), (3.0, -2.0), (6.0, 2.0), (-1.0, -0.5))),
    # for loops
    Program(for_const_bound, ((0.7,), (-1.3,))),
    Program(power_loop, ((1.3, 5), (-0.7, 3), (2.0, 0), (1.1, 1))),
    Program(loop_uses_index, ((0.6, 0.3, 4), (-1.0, 1.2, 0))),
    Program(loop_range_start_step, ((1.4, 7), (0.8, 2))),
    Program(nested_loops, ((0.8, 0.9, 3, 4), (1.2, -0.5, 2, 0))),
    Program(branch_in_loop, ((0.7, 6), (3.0, 4), (1.2, 5))),
    Program(loop_in_branch, ((1.5, 0.5, 3), (0.5, 1.5, 4))),
    Program(loop_multi_carried, ((0.6, 0.9, 5), (1.1, -0.4, 2))),
    Program(loop_inactive_carried, ((0.6, 0.9, 4), (1.3, -0.4, 0))),
    Program(loop_const_carried_value, ((0.6, 0.9, 4), (1.3, -0.4, 2))),
    # while loops
    Program(while_active_trip, ((1.3, 0.5), (7.0, 1.0), (-0.8, 5.0))),
    Program(while_counter, ((0.9, 4), (1.3, 0))),
    Program(while_newton_sqrt, ((2.0,), (9.5,))),
    Program(while_in_for, ((1.3, 1.7, 3), (0.4, 2.1, 2))),
    Program(for_in_while, ((1.3, 0.7, 3), (10.0, 1.1, 2))),
    Program(while_two_carried, ((1.3, 0.7), (-2.0, 1.6))),
    # trace-time control flow
    Program(python_control_flow, ((0.7, 0.2), (1.3, -0.6))),
    Program(python_while_unrolled, ((0.4,), (-1.2,))),
    # ints and constants
    Program(int_arithmetic, ((0.7, 5), (-1.3, 2))),
    Program(constant_result, ((0.7, 1.5),)),
    Program(constant_after_cancel, ((0.7,), (-2.0,))),
    Program(unused_arg, ((0.7, 1.5, -0.3), (2.0, -1.0, 4.0))),
    # more control flow
    Program(widen_int_to_float, ((1.3, 4), (0.7, 0))),
    Program(range_negative_step, ((1.1, 4), (0.9, 0))),
    Program(range_start_arg, ((1.1, 2, 6), (0.8, 5, 3))),
    Program(range_runtime_step, ((1.1, 7, 2), (0.9, 10, 3))),
    Program(branch_on_index, ((0.7, 5), (1.3, 2))),
    Program(ifexp_in_loop, ((1.3, 5), (0.4, 4))),
    Program(loop_min_max_abs, ((1.3, 0.7, 4), (0.3, 1.9, 3))),
    Program(reassign_arg_in_loop, ((0.7, 5), (-0.3, 2))),
    Program(triple_loop, ((0.7, 3), (1.2, 2))),
    Program(long_loop, ((0.7, 1000),)),
    Program(value_outside_loop_modified_after, ((0.5, 0.3, 4), (-0.2, 0.9, 2))),
    Program(loop_int_carried_from_float, ((1.3, 4), (2.2, 3))),
    Program(deep_nest, ((0.5, 1.3, 5), (2.5, 0.9, 4))),
    Program(nested_while_active, ((1.3, 1.7), (2.2, 1.3))),
    Program(if_in_while_active, ((1.3,), (12.0,))),
    Program(while_or_not, ((1.3, 0.7), (0.2, 2.5))),
    Program(while_counter_and_active, ((1.3, 3), (1.3, 20))),
    Program(two_whiles, ((1.3,), (15.0,))),
    Program(while_zero_trip, ((1.3,),)),
    Program(while_body_uses_outer, ((0.5, 0.3), (1.2, 0.8))),
    Program(while_int_condition, ((0.7, 4), (1.1, 0))),
    Program(cond_only_active, ((1.3,), (7.0,))),
    Program(nested_early_return, ((1.0, 2.0), (1.0, -2.0), (-1.0, 2.0), (-1.0, 0.5))),
    Program(branch_const_value, ((1.3, 0.5), (1.3, -0.5))),
    Program(branch_mixed_types, ((1.3, 0.7), (0.3, 0.7))),
    Program(helper_branch_in_loop, ((1.3, 5), (0.2, 4))),
    Program(helper_loop_in_while, ((0.5, 3), (1.2, 2))),
    # Python features
    Program(kwargs_helper, ((0.7, 1.3), (-1.1, 0.4))),
    Program(local_lambda, ((0.7, 1.3), (-1.1, 0.4))),
    Program(closure_def, ((0.7, 1.3), (-1.1, 0.4))),
    Program(python_recursion, ((0.7,), (-0.4,))),
    Program(sum_generator, ((0.7,), (-1.2,))),
    Program(tuple_unpack_swap, ((0.7, 1.3), (-1.1, 0.4))),
    Program(int_promotion, ((0.7, 5), (-1.3, 7))),
    Program(int_of_active, ((1.3,), (-2.2,))),
    Program(select_chain, ((1.3, 0.7), (-1.3, 0.7), (0.5, 0.9))),
    Program(np_float64_args, ((np.float64(0.7), np.float64(1.3)),)),
    # more functions
    Program(minmax_more, ((0.7, 1.3, -0.4), (2.0, -1.0, 0.5))),
    Program(extra_math, ((0.7,), (-0.4,))),
    Program(pow_float_int_exponent, ((-1.3,), (1.3,))),
    Program(hypot_chain, ((0.7, 1.3, -0.4), (-2.0, 0.5, 1.5))),
    Program(hypot_extreme, ((0.3, -0.4), (3e200, 4e200), (3e-200, -4e-200)), fd_relative=True),
    # float32
    Program(f32_poly_trig, ((f32(0.5), f32(2.0)), (f32(-1.25), f32(0.75))), f32=True),
    Program(f32_exp_sqrt, ((f32(0.5),), (f32(-1.5),)), f32=True),
    Program(f32_loop, ((f32(0.5), 4), (f32(1.25), 2)), f32=True),
    Program(f32_math_mix, ((f32(0.7), f32(1.3)), (f32(2.2), f32(-0.6))), f32=True),
    Program(mixed_f32_f64, ((f32(0.7), 1.3), (f32(-1.5), 0.25)), f32=True),
]
