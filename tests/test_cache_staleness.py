"""The compile cache cannot go stale (issue 6, item 5).

Whatever a traced function read at trace time from globals, closure cells and its
helpers' globals is re-checked on every call: rebinding or mutating it gives the answer
plain Python/numpy gives, never the old compiled code's.  Large global arrays are hidden
arguments (passed on every call, not recompiled); an object freed and replaced by one at
the same address never matches.
"""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest

import isozyme
from isozyme import (Active, Const, Duplicated, Forward, ForwardWithPrimal, Reverse,
                     ReverseWithPrimal, autodiff)
from isozyme.calls import stats
from isozyme.errors import TraceError

N_ROUNDS = 200
BIG = 200  # elements of a "large" array (above isozyme.reads.HIDDEN_MIN_SIZE)


def _compiles() -> int:
    return stats["compiles"]


# --------------------------------------------------------------------------- globals
K = 1.0


def times_k(x):
    return x * K + K * K


def test_rebound_scalar_global_hundreds_of_times():
    global K
    values = [0.5, -2.0, 3.25, 7.0, -0.0]
    before = _compiles()
    for i in range(N_ROUNDS):
        K = values[i % len(values)]
        x = 0.3 + i
        (g,), val = autodiff(ReverseWithPrimal, times_k, Active, Active(x))
        assert val == x * K + K * K
        assert g == K
    # one compilation per distinct value, then cache hits
    assert _compiles() - before == len(values)


T = (1.0, 2.0)
L = [1.0, 2.0]
D = {"a": 1.0, "b": 2.0}


def reads_containers(x):
    return x * T[0] + L[1] * x * x + D["b"] * x


def reference_containers(x):
    return x * T[0] + L[1] * x * x + D["b"] * x


def test_tuples_lists_and_dicts_rebound_and_mutated_in_place():
    global T
    for i in range(N_ROUNDS):
        # at most 2 * 2 * 2 distinct states, so that most calls hit the cache
        if i % 3 == 0:
            T = (float(i % 2), 2.0)
        elif i % 3 == 1:
            L[1] = float(i % 2) + 1.0  # mutated in place
        else:
            D["b"] = float(i % 2) - 1.0  # mutated in place
        x = 1.0 + 0.01 * i
        (g,), val = autodiff(ReverseWithPrimal, reads_containers, Active, Active(x))
        assert val == reference_containers(x)
        assert g == pytest.approx(T[0] + 2 * L[1] * x + D["b"])


# --------------------------------------------------------------------------- closures
def make_scaled():
    k = 1.0

    def f(x):
        return k * x * x

    def set_k(v):
        nonlocal k
        k = v

    return f, set_k


def test_rebound_closure_cell_hundreds_of_times():
    f, set_k = make_scaled()
    for i in range(N_ROUNDS):
        k = float(i % 7) - 3.0
        set_k(k)
        x = 0.5 + 0.001 * i
        (g,), val = autodiff(ReverseWithPrimal, f, Active, Active(x))
        assert val == k * x * x
        assert g == pytest.approx(2 * k * x)
        (d, p) = autodiff(isozyme.ForwardWithPrimal, f, Duplicated(x, 1.0))
        assert p == k * x * x and d == pytest.approx(2 * k * x)


# --------------------------------------------------------------------------- helpers
H = 2.0
S = 3.0


def traced_helper(x):
    return x * H  # traced as its own function (a traced argument)


def plain_helper():
    return S * 2.0  # no traced argument: runs as plain Python at trace time


def _deeper():
    return S


def plain_chain():
    return _deeper() + 1.0  # reads S through another plain call


def uses_helpers(x):
    return traced_helper(x) + plain_helper() * x + plain_chain()


def test_helpers_globals_rebound_hundreds_of_times():
    global H, S
    for i in range(N_ROUNDS):
        if i % 2:
            H = float(i % 4)  # 1.0 or 3.0
        else:
            S = float(i % 3) + 0.5
        x = 1.5 + 0.01 * i
        (g,), val = autodiff(ReverseWithPrimal, uses_helpers, Active, Active(x))
        assert val == pytest.approx(x * H + S * 2.0 * x + S + 1.0)
        assert g == pytest.approx(H + S * 2.0)


def square(x):
    return x * x


def cube(x):
    return x * x * x


HELPER = square


def calls_global_helper(x):
    return HELPER(x) + 1.0


def test_rebound_global_helper_function():
    global HELPER
    for i in range(N_ROUNDS):
        HELPER = square if i % 2 else cube
        x = 1.0 + 0.01 * i
        (g,), val = autodiff(ReverseWithPrimal, calls_global_helper, Active, Active(x))
        assert val == pytest.approx(HELPER(x) + 1.0)
        assert g == pytest.approx(2 * x if HELPER is square else 3 * x * x)


def apply(fn, x):
    return fn(x)


def make_power(p):
    def power(x):
        return x**p

    return power


def test_function_argument_freed_and_replaced_at_the_same_address():
    """A new function object often reuses the address of a freed one: the cache key
    holds the object itself, so the old compiled code never runs for the new one."""
    for i in range(N_ROUNDS // 10):
        p = i % 4 + 1
        fn = make_power(p)
        x = 1.1
        (g,) = autodiff(Reverse, apply, Active, Const(fn), Active(x))
        assert g[1] == pytest.approx(p * x ** (p - 1))
        del fn
        gc.collect()


# --------------------------------------------------------------------------- arrays
W = np.arange(3.0)


def dot_w(v):
    return np.sum(v * W)


def test_small_global_array_rebound_and_mutated_in_place():
    global W
    v = np.linspace(0.5, 1.5, 3)
    before = _compiles()
    for i in range(N_ROUNDS):
        if i % 2:
            W = np.full(3, float(i % 4))  # a new object, often at the freed one's address
        else:
            W[1] = 5.0 if i % 4 else -1.0  # in place
        dv = np.zeros(3)
        (_,), val = autodiff(ReverseWithPrimal, dot_w, Active, Duplicated(v, dv))
        assert val == pytest.approx(float(np.sum(v * W)))
        np.testing.assert_allclose(dv, W)
    assert _compiles() - before <= 6  # by content: equal contents hit the cache


WB = np.linspace(0.0, 1.0, BIG)
AB = np.ones((BIG // 10, 10))


def dot_big(v):
    return np.sum(v * WB)


def matvec_big(v):
    return np.sum((AB @ v) ** 2)


def test_large_global_array_is_a_hidden_argument():
    global WB
    v = np.linspace(-1.0, 1.0, BIG)
    before = _compiles()
    for i in range(N_ROUNDS):
        if i % 2:
            WB = np.full(BIG, float(i % 7))  # rebound, same shape
        else:
            WB *= 0.5  # in place
            WB[i % BIG] += 1.0
        dv = np.zeros(BIG)
        (_,), val = autodiff(ReverseWithPrimal, dot_big, Active, Duplicated(v, dv))
        assert val == pytest.approx(float(np.sum(v * WB)))
        np.testing.assert_allclose(dv, WB)
    assert _compiles() - before == 1  # passed at call time: never recompiled
    ir = isozyme.ir(Reverse, dot_big, Active, Duplicated(v, np.zeros(BIG)), stage="traced")
    assert ir.count("arith.constant") < 20  # not baked element by element


def test_large_global_array_new_shape_and_forward_mode():
    global WB
    for n in (BIG, BIG + 5, BIG, 3 * BIG):
        WB = np.linspace(1.0, 2.0, n)
        v = np.ones(n)
        (d,) = autodiff(Forward, dot_big, Duplicated(v, np.ones(n)))
        assert d == pytest.approx(float(np.sum(WB)))


def test_large_global_matrix_in_place_with_matmul():
    v = np.linspace(0.1, 1.0, 10)
    for i in range(20):
        AB[:] = np.arange(AB.size, dtype=float).reshape(AB.shape) * (i % 3 - 1)
        dv = np.zeros(10)
        (_,), val = autodiff(ReverseWithPrimal, matvec_big, Active, Duplicated(v, dv))
        assert val == pytest.approx(float(np.sum((AB @ v) ** 2)))
        np.testing.assert_allclose(dv, 2 * AB.T @ (AB @ v), rtol=1e-12)


WL = np.linspace(0.0, 1.0, BIG)


def reads_elements_in_python(x):
    # W[3] and the mean are computed by plain numpy at trace time and baked: the cache
    # must compare the array's contents
    return x * WL[3] + WL.mean()


def test_large_global_array_read_in_plain_python_is_compared_by_content():
    for i in range(50):
        WL[3] = float(i % 6)
        (g,), val = autodiff(ReverseWithPrimal, reads_elements_in_python, Active, Active(2.0))
        assert val == pytest.approx(2.0 * WL[3] + WL.mean())
        assert g == WL[3]


class Config:
    def __init__(self) -> None:
        self.scale = 2.0


CFG = Config()


def reads_object(x):
    return x * CFG.scale


def test_plain_object_attribute_mutated_in_place():
    for i in range(50):
        CFG.scale = float(i % 4)
        (g,), val = autodiff(ReverseWithPrimal, reads_object, Active, Active(3.0))
        assert val == 3.0 * CFG.scale and g == CFG.scale


OPAQUE = iter([1.0, 2.0])


def reads_iterator(x):
    return x * 2.0 if OPAQUE is not None else x


def test_global_that_cannot_be_compared_is_refused():
    with pytest.raises(TraceError, match="global 'OPAQUE'"):
        autodiff(Reverse, reads_iterator, Active, Active(1.0))


def shadowed_builtin(x):
    return abs(x)


def ten_times(x):
    return x * 10.0


def test_builtin_shadowed_by_a_new_global():
    (g,) = autodiff(Reverse, shadowed_builtin, Active, Active(-2.0))
    assert g == (-1.0,)
    globals()["abs"] = ten_times  # a global named abs now shadows the builtin
    try:
        (g,) = autodiff(Reverse, shadowed_builtin, Active, Active(-2.0))
        assert g == (10.0,)
    finally:
        del globals()["abs"]
    (g,) = autodiff(Reverse, shadowed_builtin, Active, Active(-2.0))
    assert g == (-1.0,)


def test_freed_global_array_whose_address_is_reused():
    """The old cache key held ``id(W)``: a new array at the freed one's address ran the
    old code.  Free W, make a new one until it lands at the same address, compare."""
    global W
    v = np.ones(3)
    reused = 0
    for i in range(50):
        W = np.full(3, 1.0)
        old = id(W)
        assert autodiff(ReverseWithPrimal, dot_w, Active, Duplicated(v, np.zeros(3)))[1] == 3.0
        W = None
        W = np.full(3, float(i + 2))
        reused += id(W) == old
        assert autodiff(ReverseWithPrimal, dot_w, Active, Duplicated(v, np.zeros(3)))[1] == 3.0 * (i + 2)
    assert reused > 0  # the situation this test is about did happen
    W = np.arange(3.0)


class Scale:
    """An unhashable object passed as a Const argument (compared by its attributes)."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, k: float) -> None:
        self.k = k


def scaled(s, x):
    return s.k * x


def test_unhashable_const_argument_mutated_and_replaced():
    s = Scale(2.0)
    for i in range(40):
        if i % 2:
            s.k = float(i % 3)
        else:
            s = Scale(float(i % 5))
        derivs, val = autodiff(ReverseWithPrimal, scaled, Active, Const(s), Active(1.5))
        assert val == s.k * 1.5 and derivs == (None, s.k)


def weighted_helper(v):
    return np.sum(v * WH)  # a large global read inside a helper traced on its own


WH = np.linspace(0.0, 1.0, BIG)


def calls_weighted_helper(v, n):
    s = 0.0
    for i in range(n):  # a traced loop: the hidden array is used inside its body
        s = s + weighted_helper(v) * (i + 1)
    if n > 2:  # and inside a traced branch
        s = s + np.sum(WH * v)
    return s


def test_large_global_array_in_a_helper_a_loop_and_a_branch():
    v = np.linspace(-1.0, 1.0, BIG)
    before = _compiles()
    for i in range(20):
        WH[:] = np.linspace(0.0, 1.0, BIG) * (i + 1)
        n = i % 4
        dv = np.zeros(BIG)
        derivs, val = autodiff(ReverseWithPrimal, calls_weighted_helper, Active,
                               Duplicated(v, dv), n)
        factor = n * (n + 1) / 2 + (1.0 if n > 2 else 0.0)
        assert val == pytest.approx(factor * float(np.sum(v * WH)))
        np.testing.assert_allclose(dv, factor * WH, rtol=1e-12)
    assert _compiles() - before == 1  # n is a traced int: one signature


Z = 0.0


def times_z(x):
    # the sign of Z decides at trace time (x * -0.0 itself is folded to +0.0 by the
    # optimizer, a separate issue)
    return x * math.copysign(2.0, Z) if Z == Z else x + Z


def test_signed_zero_and_nan_globals():
    """-0.0 == 0.0 and nan != nan: the cache compares their bits."""
    global Z
    before = _compiles()
    for i in range(40):
        Z = (0.0, -0.0, float("nan"))[i % 3]
        (g,), val = autodiff(ReverseWithPrimal, times_z, Active, Active(2.0))
        if i % 3 == 2:
            assert np.isnan(val) and g == 1.0
        else:
            assert val == math.copysign(4.0, Z) and g == math.copysign(2.0, Z)
    assert _compiles() - before == 3  # a new nan object still hits the cache


def test_argument_that_does_not_fit_a_large_global_array():
    global WB
    WB = np.linspace(0.0, 1.0, BIG)
    autodiff(Reverse, dot_big, Active, Duplicated(np.ones(BIG), np.zeros(BIG)))
    v, dv = np.ones(BIG - 7), np.zeros(BIG - 7)
    with pytest.raises(isozyme.ShapeError, match="dimension 0"):
        autodiff(Reverse, dot_big, Active, Duplicated(v, dv))
    assert not dv.any() and (v == 1.0).all()  # nothing written


ALIAS_W = np.arange(100.0)
ALIAS_V = ALIAS_W


def _reads_w(x):
    return np.sum(ALIAS_W * x)


def _reads_v(x):
    return np.sum(ALIAS_V * x)


def reads_both_names(x):
    return _reads_w(x) + _reads_v(x)


def test_a_large_global_array_read_under_two_names_is_passed_not_compared():
    from isozyme.calls import stats

    x = np.ones(100)
    autodiff(ForwardWithPrimal, reads_both_names, Const(x))
    traces = stats["traces"]
    for i in range(5):
        ALIAS_W[0] = float(i)  # in place: both names see it, nothing recompiles
        got = autodiff(ForwardWithPrimal, reads_both_names, Const(x))[1]
        assert got == pytest.approx(2 * np.sum(ALIAS_W))
    assert stats["traces"] == traces
