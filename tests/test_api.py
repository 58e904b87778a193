"""API behaviour: annotations, result shapes, the compile cache, IR stages, bad input."""

import math

import numpy as np
import pytest

import isozyme as iz
from isozyme import (
    Active,
    AnnotationError,
    Const,
    Duplicated,
    DuplicatedNoNeed,
    Forward,
    ForwardWithPrimal,
    Reverse,
    ReverseWithPrimal,
    TraceError,
    UnsupportedError,
    autodiff,
)
from isozyme.api import stats


def square_plus(x, y):
    return x * x + 3.0 * y


def with_int(x, n):
    return x ** 2 * n


def untraceable_break(x):
    while x > 0.0:
        x = x - 1.0
        try:  # an exit inside `try` is not canonicalized (loop_exits.py)
            break
        finally:
            pass
    return x


def calls_str(x):
    return float(str(x))


def returns_pair(x):
    return x * 2.0, x * 3.0


def returns_int(x):
    return 3


# -- result shapes ---------------------------------------------------------------------
def test_reverse_result_has_none_for_const():
    assert autodiff(Reverse, square_plus, Active(2.0), Const(1.0)) == ((4.0, None),)
    assert autodiff(Reverse, square_plus, Const(2.0), Active(1.0)) == ((None, 3.0),)


def test_unannotated_argument_is_const():
    assert autodiff(Reverse, square_plus, Active(2.0), 1.0) == ((4.0, None),)


def test_return_activity_inferred_and_given():
    a = autodiff(Reverse, square_plus, Active(2.0), Active(1.0))
    b = autodiff(Reverse, square_plus, Active, Active(2.0), Active(1.0))
    assert a == b == ((4.0, 3.0),)


def test_const_return_gives_zero_gradient():
    assert autodiff(Reverse, square_plus, Const, Active(2.0), Active(1.0)) == ((0.0, 0.0),)
    assert autodiff(ReverseWithPrimal, square_plus, Const, Active(2.0), Active(1.0)) == (
        (0.0, 0.0), 7.0)


def test_int_argument_is_runtime_value():
    assert autodiff(Reverse, with_int, Active(3.0), 2) == ((12.0, None),)
    before = stats["traces"]
    assert autodiff(Reverse, with_int, Active(3.0), 5) == ((30.0, None),)
    assert stats["traces"] == before  # an int is a runtime i64, not baked in


def test_duplicated_no_need_forward():
    assert autodiff(Forward, square_plus, DuplicatedNoNeed(2.0, 1.0), Const(1.0)) == (4.0,)


def test_forward_tuple_return():
    assert autodiff(Forward, returns_pair, Duplicated(1.0, 1.0)) == ((2.0, 3.0),)
    assert autodiff(ForwardWithPrimal, returns_pair, Duplicated(1.0, 2.0)) == (
        (4.0, 6.0), (2.0, 3.0))


def test_float32_scalars():
    (g,) = autodiff(Reverse, square_plus, Active(np.float32(2.0)), Const(np.float32(1.0)))
    assert g[0] == pytest.approx(4.0)
    (t,) = autodiff(Forward, square_plus, Duplicated(np.float32(2.0), np.float32(1.0)), 1.0)
    assert t == pytest.approx(4.0)


# -- the compile cache -----------------------------------------------------------------
def test_second_call_does_not_trace_or_compile():
    def cubic(x):
        return x * x * x

    autodiff(Reverse, cubic, Active(2.0))
    traces, compiles = stats["traces"], stats["compiles"]
    assert autodiff(Reverse, cubic, Active(3.0)) == ((27.0,),)
    assert (stats["traces"], stats["compiles"]) == (traces, compiles)
    # another activity signature is another compilation
    autodiff(Forward, cubic, Duplicated(3.0, 1.0))
    assert stats["compiles"] == compiles + 1


# -- IR stages ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stage, marker",
    [
        ("traced", "enzyme.autodiff"),
        ("optimized", "enzyme.autodiff"),
        ("differentiated", "func.func private @diffesquare_plus"),
        ("simplified", "func.func @__iz_request"),
        ("llvm", "llvm.func"),
        ("llvm-ir", "define"),
        ("llvm-ir-optimized", "define"),
    ],
)
def test_ir_stage(stage, marker):
    text = iz.ir(Reverse, square_plus, Active(2.0), Active(1.0), stage=stage)
    assert marker in text
    if stage in ("differentiated", "simplified"):
        assert "enzyme.autodiff" not in text


def test_ir_forward_names_fwddiffe():
    text = iz.ir(Forward, square_plus, Duplicated(2.0, 1.0), 1.0, stage="differentiated")
    assert "@fwddiffesquare_plus" in text and "enzyme.fwddiff" not in text


def test_ir_unknown_stage():
    with pytest.raises(iz.IsozymeError, match="unknown IR stage 'nope'"):
        iz.ir(Reverse, square_plus, Active(2.0), 1.0, stage="nope")


# -- bad input ------------------------------------------------------------------------------
def test_active_on_array():
    x = np.array([1.0, 2.0])
    with pytest.raises(AnnotationError, match="Active.*array.*Duplicated"):
        Active(x)
    assert x.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("value", [1, True, "1.0", None, np.int64(3)])
def test_non_float_active(value):
    with pytest.raises(AnnotationError, match="only floats"):
        Active(value)


@pytest.mark.parametrize("shadow", [np.zeros(2), "x", 1, None])
def test_duplicated_shadow_of_another_type(shadow):
    with pytest.raises(AnnotationError, match="shadow|dx"):
        Duplicated(1.0, shadow)


def test_duplicated_array_shadow_mismatch_leaves_buffers():
    x, dx = np.ones(3), np.zeros(4)
    with pytest.raises(AnnotationError, match="shape"):
        Duplicated(x, dx)
    with pytest.raises(AnnotationError, match="aliases"):
        Duplicated(x, x)
    assert x.tolist() == [1.0] * 3 and dx.tolist() == [0.0] * 4


def test_active_in_forward_mode():
    with pytest.raises(AnnotationError, match="Active is for reverse mode"):
        autodiff(Forward, square_plus, Active(1.0), 2.0)


def test_duplicated_scalar_in_reverse_mode():
    with pytest.raises(AnnotationError, match="immutable scalar.*Active"):
        autodiff(Reverse, square_plus, Duplicated(1.0, 1.0), 2.0)


def test_active_return_in_forward_mode():
    with pytest.raises(AnnotationError, match="reverse mode"):
        autodiff(Forward, square_plus, Active, Duplicated(1.0, 1.0), 2.0)


def test_bad_mode():
    with pytest.raises(AnnotationError, match="mode"):
        autodiff("reverse", square_plus, Active(1.0), 2.0)


def test_reverse_tuple_return_is_unsupported():
    with pytest.raises(UnsupportedError, match="tuple"):
        autodiff(Reverse, returns_pair, Active(1.0))


def test_int_return_cannot_be_active():
    with pytest.raises(AnnotationError, match="cannot be Active"):
        autodiff(Reverse, returns_int, Active, Active(1.0))


def test_untraceable_break_names_file_and_line():
    with pytest.raises(TraceError) as err:
        autodiff(Reverse, untraceable_break, Active(3.0))
    msg = str(err.value)
    assert "test_api.py" in msg
    assert ":33" in msg or ":34" in msg or ":35" in msg or ":36" in msg


def test_untraceable_call_names_construct():
    with pytest.raises(TraceError) as err:
        autodiff(Reverse, calls_str, Active(3.0))
    assert "test_api.py" in str(err.value) and "str" in str(err.value)


def test_exact_math_derivatives():
    def f(x):
        return math.sin(x) * math.exp(x)

    (g,) = autodiff(Reverse, f, Active(0.7))
    assert g[0] == pytest.approx(math.cos(0.7) * math.exp(0.7) + math.sin(0.7) * math.exp(0.7), rel=1e-14)


SCALE = 2.0


def scaled(x):
    return SCALE * x * x


def test_rebinding_a_global_retraces():
    global SCALE
    assert autodiff(Reverse, scaled, Active(1.0)) == ((4.0,),)
    SCALE = 3.0
    try:
        assert autodiff(Reverse, scaled, Active(1.0)) == ((6.0,),)
    finally:
        SCALE = 2.0


def test_closure_values_are_part_of_the_key():
    def make(k):
        def f(x):
            return k * x
        return f

    assert autodiff(Reverse, make(2.0), Active(1.0)) == ((2.0,),)
    assert autodiff(Reverse, make(5.0), Active(1.0)) == ((5.0,),)


def test_swapped_function_and_return_activity():
    with pytest.raises(AnnotationError, match="where the function belongs"):
        autodiff(Reverse, Active, square_plus, Active(3.0))


def halve(x, n):
    for i in range(n):
        x = x * 0.5
    return x


def test_dead_caches_are_eliminated():
    text = iz.ir(Reverse, halve, Active(3.0), 4, stage="simplified")
    assert "enzyme.push" not in text and "enzyme.init" not in text
    assert autodiff(Reverse, halve, Active(3.0), 4) == ((0.0625, None),)


# -- gradient_ leaves dx as it was when it fails -------------------------------------


def sum_of_squares(x):
    return np.sum(x * x)


def hashes_a_tracer(x):
    return x[0] * hash(x[1])


def reads_past_the_end(x):
    return x[len(x) + 3] * 2.0


def mismatched_slices(x):
    return np.sum(x[:3] * x[1:])


def _dx_and_x():
    return np.arange(5.0) + 0.25, np.linspace(1.0, 2.0, 5)


def test_gradient_inplace_overwrites_dx():
    dx, x = _dx_and_x()
    (out,) = iz.gradient_(Reverse, dx, sum_of_squares, x)
    assert out is dx
    np.testing.assert_array_equal(dx, 2 * x)


@pytest.mark.parametrize(
    "f, error",
    [
        (hashes_a_tracer, TraceError),  # fails while tracing
        (reads_past_the_end, IndexError),  # fails in the compiled code, after dx = 0
        (mismatched_slices, ValueError),  # a run-time broadcasting error (ShapeError)
    ],
)
def test_gradient_inplace_failure_leaves_dx(f, error):
    dx, x = _dx_and_x()
    dx0, x0 = dx.copy(), x.copy()
    for _ in range(2):  # the first call compiles, the second finds the cached code
        with pytest.raises(error):
            iz.gradient_(Reverse, dx, f, x)
        np.testing.assert_array_equal(dx, dx0)
        np.testing.assert_array_equal(x, x0)


def test_gradient_inplace_error_after_accumulating_restores_dx(monkeypatch):
    # An error raised after the compiled code has written into dx: dx is restored.
    dx, x = _dx_and_x()
    dx0 = dx.copy()

    def fails_after_writing(mode, f, ret, shadow):
        shadow.dval[...] = 7.0
        raise RuntimeError("boom")

    monkeypatch.setattr(iz.api, "autodiff", fails_after_writing)
    with pytest.raises(RuntimeError, match="boom"):
        iz.gradient_(Reverse, dx, sum_of_squares, x)
    np.testing.assert_array_equal(dx, dx0)


@pytest.mark.parametrize("bad", ["shape", "dtype", "readonly"])
def test_gradient_inplace_bad_dx_is_refused_untouched(bad):
    dx, x = _dx_and_x()
    if bad == "shape":
        dx = np.arange(4.0)
    elif bad == "dtype":
        dx = np.arange(5)
    else:
        dx.setflags(write=False)
    dx0 = dx.copy()
    with pytest.raises(iz.IsozymeError):
        iz.gradient_(Reverse, dx, sum_of_squares, x)
    np.testing.assert_array_equal(dx, dx0)
