"""Host calls: compiled code calling a Python function (isozyme.host_calls and
isozyme.frontends.python.host_calls.host_call), the primal path of rules for functions
isozyme cannot trace.

Converted code refuses to call into isozyme modules, so each test function reaches
``host_call`` through a wrapper marked ``runs_on_traced_values`` (functions.py calls it
with the tracers).  The wrappers read only globals the compile cache can compare
(functions, classes): a ctypes pointer is bound as a default argument.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import threading

import numpy as np
import pytest
from xdsl.dialects.builtin import Float32Type, Float64Type, IntegerType

import isozyme as iz
from isozyme.errors import HostCallError, TraceError, UnsupportedError
from isozyme.frontends.python.host_calls import host_call

_LIBM = ctypes.CDLL(ctypes.util.find_library("m"))
_ERFC = _LIBM.erfc
_ERFC.restype = ctypes.c_double
_ERFC.argtypes = [ctypes.c_double]


def c_erfc(x, _erfc=_ERFC):
    """libm's erfc through ctypes: a C function isozyme cannot trace."""
    return _erfc(x)


def erfc(x):
    return host_call(c_erfc, [x], [Float64Type()])[0]


def log(x):
    return host_call(math.log, [x], [Float64Type()])[0]


def ldexp_and_triple(x, n):
    return math.ldexp(x, n), 3 * n


def mixed(x, n):
    r, m = host_call(ldexp_and_triple, [x, n], [Float64Type(), IntegerType(64)])
    return r, m


SEEN_F32: list[object] = []


def erfc_f32(x):
    SEEN_F32.append(x)
    return np.float32(math.erfc(x))


def erfc32(x):
    return host_call(erfc_f32, [x], [Float32Type()])[0]


def collatz_step(n):
    return n // 2 if n % 2 == 0 else 3 * n + 1


def collatz(n):
    return host_call(collatz_step, [n], [IntegerType(64)])[0]


def two_values(x):
    return x


def wrong_count(x):
    return host_call(two_values, [x], [Float64Type(), Float64Type()])


CALLS: list[float] = []


def counted(x):
    CALLS.append(x)
    return 2.0 * x


def twice(x):
    return host_call(counted, [x], [Float64Type()])[0]


def pair(x):
    # the two results must stay paired per thread
    return x, -x


def paired(x):
    return host_call(pair, [x], [Float64Type(), Float64Type()])


def seven():
    return 7.0


def constant_args(x):
    # Python and numpy numbers as arguments; a host function without arguments
    r = host_call(ldexp_and_triple, [x, 2], [Float64Type(), IntegerType(64)])[0]
    return r + host_call(seven, [], [Float64Type()])[0] + host_call(
        erfc_f32, [np.float32(0.5)], [Float32Type()])[0]


def not_a_number(x):
    return "text"


def text_result(x):
    return host_call(not_a_number, [x], [Float64Type()])[0]


def bool_arg(x):
    return host_call(math.log, [x > 0.0], [Float64Type()])[0]


def i32_result(x):
    return host_call(math.floor, [x], [IntegerType(32)])[0]


for _w in (erfc, log, mixed, erfc32, collatz, wrong_count, twice, paired, constant_args,
           text_result, bool_arg, i32_result):
    _w.runs_on_traced_values = True  # type: ignore[attr-defined]


def primal(f, *args):
    """The value of ``f(*args)`` from the compiled code (every argument Const)."""
    return iz.autodiff(iz.ForwardWithPrimal, f, *(iz.Const(a) for a in args))[1]


# -- values --------------------------------------------------------------------------
def f_erfc(x):
    return erfc(x) * 2.0 + 1.0


def test_c_function_value_matches_python():
    for x in (0.0, 0.5, -1.25, 3.0):
        assert primal(f_erfc, x) == math.erfc(x) * 2.0 + 1.0


def f_erfc_loop(v):
    s = 0.0
    for i in range(v.shape[0]):
        s += erfc(v[i])
    return s


def test_host_call_in_a_loop():
    v = np.linspace(-2.0, 2.0, 7)
    expected = 0.0
    for x in v:
        expected += math.erfc(x)
    assert primal(f_erfc_loop, v) == pytest.approx(expected, rel=1e-15)


def f_mixed(x, n):
    r, m = mixed(x, n)
    return r + m


def test_several_arguments_and_results_f64_i64():
    assert primal(f_mixed, 0.75, 5) == math.ldexp(0.75, 5) + 15
    assert primal(f_mixed, -1.5, -3) == math.ldexp(-1.5, -3) - 9


def test_constant_arguments_and_no_arguments():
    assert primal(lambda x: constant_args(x), 1.5) == 6.0 + 7.0 + float(np.float32(math.erfc(0.5)))


def f_erfc32(x):
    return erfc32(x) * np.float32(3.0)


def test_float32_argument_and_result():
    SEEN_F32.clear()
    x = np.float32(0.3)
    got = primal(f_erfc32, x)
    assert isinstance(SEEN_F32[-1], np.float32) and SEEN_F32[-1] == x
    # computed in float32 (the float32 product differs from the float64 one here)
    assert got == np.float32(math.erfc(x)) * np.float32(3.0)
    assert got != math.erfc(x) * 3.0


def f_collatz(n):
    k = 0
    while n != 1:
        n = collatz(n)
        k += 1
    return k


def test_int64_only():
    assert primal(f_collatz, 27) == 111  # Collatz: 27 reaches 1 in 111 steps
    assert primal(f_collatz, 6) == 8


def f_twice(x):
    return x * twice(x)


def test_ad_treats_the_host_call_as_opaque():
    # no derivative flows through a host call (a rule supplies it): d/dx x*c = c
    d, p = iz.autodiff(iz.ForwardWithPrimal, f_twice, iz.Duplicated(1.5, 1.0))
    assert p == 1.5 * 3.0 and d == 3.0
    ((g,), p) = iz.autodiff(iz.ReverseWithPrimal, f_twice, iz.Active, iz.Active(1.5))
    assert p == 1.5 * 3.0 and g == 3.0


def f_twice_loop(v):
    s = 0.0
    for i in range(v.shape[0]):
        s += v[i] * twice(v[i])
    return s


def test_reverse_mode_calls_once_per_forward_iteration():
    v = np.array([1.0, 2.0, 3.0])
    dv = np.zeros(3)
    CALLS.clear()
    iz.autodiff(iz.Reverse, f_twice_loop, iz.Active, iz.Duplicated(v, dv))
    assert CALLS == [1.0, 2.0, 3.0]  # the forward sweep only, never the reverse sweep
    assert dv.tolist() == [2.0, 4.0, 6.0]


# -- errors --------------------------------------------------------------------------
def f_log(x):
    return log(x) + 1.0


def test_exception_becomes_an_isozyme_error_and_the_next_call_works():
    assert primal(f_log, 2.0) == math.log(2.0) + 1.0
    with pytest.raises(HostCallError, match=r"math\.log raised ValueError: math domain error") as e:
        primal(f_log, -2.0)
    assert isinstance(e.value.__cause__, ValueError)
    assert "test_host_calls.py:" in str(e.value)  # the call site of the host call
    assert primal(f_log, 3.0) == math.log(3.0) + 1.0


def interrupt(x):
    raise KeyboardInterrupt


def interrupted(x):
    return host_call(interrupt, [x], [Float64Type()])[0]


interrupted.runs_on_traced_values = True  # type: ignore[attr-defined]


def f_interrupted(x):
    return interrupted(x)


def test_keyboard_interrupt_is_raised_as_it_is():
    with pytest.raises(KeyboardInterrupt):
        primal(f_interrupted, 1.0)
    assert primal(f_log, 1.0) == 1.0


def f_wrong_count(x):
    a, b = wrong_count(x)
    return a + b


def test_wrong_number_of_results_is_an_isozyme_error():
    with pytest.raises(HostCallError, match=r"two_values raised TypeError: returned 1 "
                                            r"values, expected 2"):
        primal(f_wrong_count, 1.0)


def f_array_arg(v):
    return log(v)


def test_array_argument_is_refused_naming_the_function():
    with pytest.raises(TraceError, match=r"host call of math\.log with an array argument"
                                         r".*host calls take scalars"):
        primal(f_array_arg, np.ones(3))


def test_a_result_that_is_not_a_number_is_an_isozyme_error():
    with pytest.raises(HostCallError, match=r"not_a_number raised TypeError: returned a "
                                            r"str where a number was expected"):
        primal(lambda x: text_result(x), 1.0)


@pytest.mark.parametrize("wrapper, what", [(bool_arg, "with a bool argument"),
                                           (i32_result, "returning i32")])
def test_bool_argument_and_i32_result_are_refused(wrapper, what):
    with pytest.raises(TraceError, match=rf"host call of math\.\w+ {what}"):
        primal(lambda x: wrapper(x), 1.0)


# -- threads -------------------------------------------------------------------------
def f_paired(x):
    a, b = paired(x)
    return a * 1000.0 + b


def test_threads_calling_at_once_keep_their_results():
    primal(f_paired, 1.0)  # compile once
    n_threads, n_calls = 8, 200
    barrier = threading.Barrier(n_threads)
    bad: list[tuple[float, float]] = []

    def work(k: int) -> None:
        barrier.wait()
        for j in range(n_calls):
            x = float(k * n_calls + j)
            got = primal(f_paired, x)
            if got != x * 1000.0 - x:
                bad.append((x, got))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not bad


def test_threads_failing_at_once_each_get_their_own_exception():
    primal(f_log, 1.0)
    n_threads = 8
    barrier = threading.Barrier(n_threads)
    got: dict[int, str] = {}

    def work(k: int) -> None:
        barrier.wait()
        try:
            primal(f_log, -float(k + 1) if k % 2 else float(k + 1))
            got[k] = "ok"
        except HostCallError as e:
            got[k] = str(e.__cause__)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == {k: ("math domain error" if k % 2 else "ok") for k in range(n_threads)}


# -- GPU targets ---------------------------------------------------------------------
def f_prange(v):
    s = 0.0
    for i in iz.prange(v.shape[0]):
        s += erfc(v[i])
    return s


@pytest.mark.parametrize("target", ["cuda", "cuda-emu"])
def test_gpu_kernel_refuses_a_host_call_naming_the_function(target):
    with pytest.raises(UnsupportedError, match=r"Python function (tests\.)?test_host_calls\.c_erfc "
                                               r"inside a GPU kernel"):
        iz.ir(iz.ForwardWithPrimal, f_prange, iz.Const(np.ones(4)), stage="gpu",
              target=target)


def test_cuda_emu_runs_a_host_call_outside_kernels():
    v = np.linspace(-1.0, 1.0, 5)
    with iz.target("cuda-emu"):
        got = primal(f_erfc_loop, v)
    assert got == pytest.approx(sum(math.erfc(x) for x in v), rel=1e-15)
