"""Trace-time side effects (issue 6, item 7): ``print`` prints the run-time values on every
call, calls whose value would be fixed at trace time raise a TraceError naming the file
and line, ``isinstance`` answers for the value a tracer stands for, and the truth value
of a traced array is refused as numpy refuses it."""

from __future__ import annotations

import datetime
import random
import sys
import threading
import time

import numpy as np
import pytest

import isozyme as iz
from isozyme import (
    Active,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Reverse,
    ReverseWithPrimal,
    TraceError,
)

HERE = __file__


def _fd(f, args, i, h=1e-6):
    lo, hi = list(args), list(args)
    lo[i] -= h
    hi[i] += h
    return (f(*hi) - f(*lo)) / (2 * h)


def _line_of(fn, text: str) -> int:
    """The line of this file, inside ``fn``, that contains ``text``."""
    import inspect

    lines, start = inspect.getsourcelines(fn)
    return start + next(k for k, line in enumerate(lines) if text in line)


# --------------------------------------------------------------------------- print


def prints_values(x, n):
    s = 0.0
    for i in range(n):
        s = s + x * i
        print("i", i, "s", s, sep=",")
        if s > 2.0:
            print("big:", s > 2.0)
    k = 0
    while s > 1.0:
        s = s * 0.5
        k = k + 1
        print("halve", k, end=";\n")
    print("done")
    return s * x


def _expected_prints(x, n):
    """What prints_values prints when run as plain Python."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        prints_values(x, n)
    return buf.getvalue()


@pytest.mark.parametrize("x, n", [(1.5, 3), (0.25, 5), (2.0, 0)])
def test_print_runs_on_every_call_reverse(capsys, x, n):
    for _ in range(3):  # compiled once, printed on every call
        (grads, primal) = iz.autodiff(ReverseWithPrimal, prints_values, Active, Active(x),
                                      Const(n))
        assert capsys.readouterr().out == _expected_prints(x, n)
        assert primal == _quiet(prints_values, x, n)
        assert grads[0] == pytest.approx(_fd(lambda v: _quiet(prints_values, v, n), [x], 0),
                                         rel=1e-6, abs=1e-8)


def _quiet(f, *args):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return f(*args)


@pytest.mark.parametrize("mode", [Forward, ForwardWithPrimal])
def test_print_in_forward_mode_prints_the_primal_once(capsys, mode):
    x, n = 1.5, 3
    out = iz.autodiff(mode, prints_values, Duplicated(x, 1.0), Const(n))
    assert capsys.readouterr().out == _expected_prints(x, n)
    assert out[0] == pytest.approx(_fd(lambda v: _quiet(prints_values, v, n), [x], 0),
                                   rel=1e-6)


def prints_types(x, v32, i, flag):
    print(x, v32[0], i, flag, i > 2, x > 1.0, "text", 3, None, (1, 2))
    return x * 2.0


def test_print_shows_each_type_as_python_does(capsys):
    v32 = np.array([0.1, 2.5], dtype=np.float32)
    iz.autodiff(Reverse, prints_types, Active, Active(0.1), Const(v32), Const(7), Const(True))
    assert capsys.readouterr().out == _quiet_print(0.1, v32[0], 7, True, True, False, "text",
                                                   3, None, (1, 2))


def _quiet_print(*args):
    return " ".join(map(str, args)) + "\n"


def prints_only_text(x):
    print("called")
    return x * x


def test_print_without_traced_values_prints_on_every_call(capsys):
    for _ in range(3):
        iz.autodiff(Reverse, prints_only_text, Active, Active(2.0))
        assert capsys.readouterr().out == "called\n"


def prints_to_stderr(x):
    print("x =", x, file=sys.stderr, flush=True)
    return x


def test_print_file_and_flush(capsys):
    iz.autodiff(Reverse, prints_to_stderr, Active, Active(0.5))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "x = 0.5\n"


def test_print_to_sys_stderr_follows_a_replaced_stream(capsys, monkeypatch):
    import io

    iz.autodiff(Reverse, prints_to_stderr, Active, Active(0.25))  # compiled here
    assert capsys.readouterr().err == "x = 0.25\n"
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)  # `file=sys.stderr` is looked up on each call
    iz.autodiff(Reverse, prints_to_stderr, Active, Active(0.75))
    assert buf.getvalue() == "x = 0.75\n"


def prints_elements(x):
    s = 0.0
    for i in range(len(x)):
        print("x[", i, "] =", x[i])
        s = s + x[i] ** 2
    return s


def test_print_does_not_change_array_gradients(capsys):
    x = np.array([1.0, -2.0, 0.5])
    expected = "".join(f"x[ {i} ] = {v}\n" for i, v in enumerate(x))
    dx = np.zeros(3)
    iz.autodiff(Reverse, prints_elements, Active, Duplicated(x, dx))
    assert capsys.readouterr().out == expected  # the forward sweep only, once
    np.testing.assert_allclose(dx, 2 * x)
    g = iz.gradient(Forward, prints_elements, x)  # one batch sweep of width 3
    assert capsys.readouterr().out == expected
    np.testing.assert_allclose(g[0], 2 * x)
    g = iz.gradient(Forward, prints_elements, x, chunk=1)  # one forward call per element
    assert capsys.readouterr().out == expected * 3
    np.testing.assert_allclose(g[0], 2 * x)


def _make_printer(k):
    def printer(x):
        print("thread", k, "value", x, "twice", x * 2.0)
        return x

    return printer


def test_print_from_threads_keeps_lines_whole(capsys):
    # One compiled function per thread (a runner's argument buffers are not shared).
    printers = [_make_printer(k) for k in range(8)]
    for p in printers:
        iz.autodiff(Reverse, p, Active, Active(0.0))  # compile first
    capsys.readouterr()
    errors = []

    def work(k):
        try:
            for j in range(50):
                iz.autodiff(Reverse, printers[k], Active, Active(float(j)))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    lines = capsys.readouterr().out.splitlines()
    expected = [f"thread {k} value {float(j)} twice {2.0 * j}" for k in range(8) for j in range(50)]
    assert sorted(lines) == sorted(expected)
    for k in range(8):  # each thread's lines in its own order
        mine = [line for line in lines if line.startswith(f"thread {k} ")]
        assert mine == [line for line in expected if line.startswith(f"thread {k} ")]


def prints_arrays(x, A, k):
    y = x * 2.0
    print("x:", x, "y:", y, "A:", A, "column:", A[:, 1], "k:", k, "mask:", x > 1.0)
    print(np.sum(A), A.T)
    return np.sum(y * y) + np.sum(A * A)


@pytest.mark.parametrize("n, m", [(3, 2), (1, 1), (0, 2)])
def test_print_of_arrays_prints_them_as_numpy_does(capsys, n, m):
    x = np.linspace(-1.0, 2.5, n)
    A = np.arange(float(m * 3)).reshape(m, 3) - 1.5
    k = np.arange(4)
    expected = _quiet_capture(prints_arrays, x, A, k)
    dx, dA = np.zeros_like(x), np.zeros_like(A)
    iz.autodiff(Reverse, prints_arrays, Active, Duplicated(x, dx), Duplicated(A, dA), Const(k))
    assert capsys.readouterr().out == expected
    np.testing.assert_allclose(dx, 8 * x)
    np.testing.assert_allclose(dA, 2 * A)
    tx = np.ones_like(x)
    (t,) = iz.autodiff(Forward, prints_arrays, Duplicated(x, tx), Const(A), Const(k))
    assert capsys.readouterr().out == expected
    assert t == pytest.approx(np.sum(8 * x))


def prints_f32(v):
    print(v, v[0])
    return np.sum(v)


def test_print_of_a_float32_array(capsys):
    v = np.array([0.1, 1e-8, 3.0], dtype=np.float32)
    iz.gradient(Reverse, prints_f32, v)
    assert capsys.readouterr().out == _quiet_capture(prints_f32, v)


def _quiet_capture(f, *args):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        f(*args)
    return buf.getvalue()


def prints_a_tuple(x, y):
    print((x, y))
    return x + y


def test_print_of_a_container_of_tracers_is_refused():
    with pytest.raises(TraceError, match="print of a tuple holding traced values") as e:
        iz.autodiff(Reverse, prints_a_tuple, Active, Active(1.0), Active(2.0))
    assert f"{HERE}:{_line_of(prints_a_tuple, 'print((x, y))')}" in str(e.value)


# ------------------------------------------------------------ refused side effects


def hashes(x):
    return x * hash(x)


def ids(x):
    return x * id(x)


def hashes_a_constant(x):
    return x * (hash(7) + 1)  # plain values: fine at trace time


def opens(x):
    with open(HERE) as f:
        return x * len(f.read())


def asks(x):
    return x * float(input())


def random_module(x):
    return x * random.random()


def random_uniform(x):
    return x + random.uniform(0.0, 1.0)


_RNG = random.Random(0)


def random_instance(x):
    return x * _RNG.gauss(0.0, 1.0)


def np_random_module(x):
    return x * np.random.rand()


def np_random_normal(x):
    return x + np.random.normal(0.0, 1.0)


_GEN = np.random.default_rng(0)


def np_generator(x):
    return x * _GEN.normal()


def np_default_rng(x):
    return x * np.random.default_rng(0).random()


def clock(x):
    return x * time.time()


def perf(x):
    return x * time.perf_counter()


def now(x):
    return x * datetime.datetime.now().second


@pytest.mark.parametrize(
    "f, construct, text",
    [
        (hashes, "`hash` of a traced value", "hash(x)"),
        (ids, "`id` of a traced value", "id(x)"),
        (opens, "`open()` in traced code", "open(HERE)"),
        (asks, "`input()` in traced code", "input()"),
        (random_module, "`random.random()` in traced code", "random.random()"),
        (random_uniform, "`random.uniform()` in traced code", "random.uniform"),
        (random_instance, "`.gauss()` in traced code", "_RNG.gauss"),
        (np_random_module, "`np.random.rand()` in traced code", "np.random.rand()"),
        (np_random_normal, "`np.random.normal()` in traced code", "np.random.normal"),
        (np_generator, "`Generator.normal()` in traced code", "_GEN.normal()"),
        (np_default_rng, "`np.random.default_rng()` in traced code", "default_rng(0)"),
        (clock, "`time.time()` in traced code", "time.time()"),
        (perf, "`time.perf_counter()` in traced code", "time.perf_counter()"),
        (now, "`datetime.datetime.now()` in traced code", "datetime.now()"),
    ],
)
@pytest.mark.parametrize("mode", [Reverse, Forward])
def test_trace_time_values_are_refused(f, construct, text, mode):
    args = (Active, Active(1.5)) if mode is Reverse else (Duplicated(1.5, 1.0),)
    state = (random.getstate(), np.random.get_state()[1].copy())
    with pytest.raises(TraceError) as e:
        iz.autodiff(mode, f, *args)
    message = str(e.value)
    assert f"{HERE}:{_line_of(f, text)}: cannot trace {construct}" in message
    if "random" in construct or "time" in construct or "now" in construct:
        assert "fixed at trace time" in message
    if "random" in construct:
        assert "pass random numbers as an argument" in message
    # nothing was drawn from the global generators
    assert random.getstate() == state[0]
    np.testing.assert_array_equal(np.random.get_state()[1], state[1])


def test_hash_of_plain_values_is_allowed():
    (grads,) = iz.autodiff(Reverse, hashes_a_constant, Active, Active(1.5))
    assert grads[0] == hash(7) + 1


# --------------------------------------------------------------------- isinstance


def branch_on_array(x):
    if isinstance(x, np.ndarray):
        return np.sum(x * x)
    return 0.0


def branch_on_float(x, n):
    a = 2.0 if isinstance(x, (float, np.floating)) else 0.0
    b = 3.0 if isinstance(n, int) else 0.0
    c = 5.0 if isinstance(x, (int, np.integer)) else 0.0
    d = 7.0 if isinstance(n, float) else 0.0
    e = 11.0 if isinstance(x, (list, tuple, str)) else 0.0
    return x * (a + b + c + d + e)


def branch_on_element_types(v32, flags, x):
    a = 1.0 if isinstance(v32[0], np.float32) else 0.0
    b = 10.0 if isinstance(v32[0], float) else 0.0  # np.float32 is not a float
    c = 100.0 if isinstance(flags[0] > 0, (bool, np.bool_)) else 0.0
    d = 1000.0 if isinstance(x, object) else 0.0
    return x * (a + b + c + d)


def test_isinstance_ndarray_for_traced_arrays():
    x = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(iz.gradient(Reverse, branch_on_array, x)[0], 2 * x)
    np.testing.assert_allclose(iz.gradient(Forward, branch_on_array, x)[0], 2 * x)


@pytest.mark.parametrize("mode", [Reverse, Forward])
def test_isinstance_scalars_answers_as_python(mode):
    want = _fd(lambda v: branch_on_float(v, 3), [1.25], 0)  # 2 + 3 with plain values
    if mode is Reverse:
        (grads,) = iz.autodiff(Reverse, branch_on_float, Active, Active(1.25), Const(3))
        got = grads[0]
    else:
        (got,) = iz.autodiff(Forward, branch_on_float, Duplicated(1.25, 1.0), Const(3))
    assert got == pytest.approx(want, rel=1e-8) and got == 5.0


def test_isinstance_element_types():
    v32 = np.array([0.5], dtype=np.float32)
    flags = np.array([1.0])
    (grads,) = iz.autodiff(Reverse, branch_on_element_types, Active, Const(v32), Const(flags),
                           Active(2.0))
    assert grads[2] == branch_on_element_types(v32, flags, 2.0) / 2.0 == 1101.0


def branch_on_type(x, v, n, flag):
    a = 1.0 if type(x) is float else 0.0
    b = 10.0 if type(v) is np.ndarray else 0.0
    c = 100.0 if type(n) is int else 0.0
    d = 1000.0 if type(flag) is bool else 0.0
    e = 10000.0 if type(x > 0.0) is bool else 0.0
    return x * (a + b + c + d + e)


@pytest.mark.parametrize("mode", [Reverse, Forward])
def test_type_of_a_tracer_is_the_type_of_its_value(mode):
    v = np.ones(2)
    want = branch_on_type(2.0, v, 3, True) / 2.0
    assert want == 11111.0
    if mode is Reverse:
        (grads,) = iz.autodiff(Reverse, branch_on_type, Active, Active(2.0), Const(v), Const(3),
                               Const(True))
        assert grads[0] == want
    else:
        (t,) = iz.autodiff(Forward, branch_on_type, Duplicated(2.0, 1.0), Const(v), Const(3),
                           Const(True))
        assert t == want


# ------------------------------------------------------------------- truth values


def if_array(x):
    if x:
        return 1.0
    return 2.0


def while_array(x):
    s = 0.0
    while x:
        s = s + 1.0
    return s


def and_array(x, y):
    return 1.0 if (y > 0.0 and x) else 0.0


def not_array(x):
    return 1.0 if not x else 0.0


def bool_array(x):
    return float(bool(x))


@pytest.mark.parametrize(
    "f, text", [(if_array, "if x:"), (while_array, "while x:"), (and_array, "and x"),
                (not_array, "not x"), (bool_array, "bool(x)")],
)
def test_truth_value_of_an_array_is_refused(f, text):
    x = np.array([1.0, 2.0])
    args = [Duplicated(x, np.zeros(2))]
    if f is and_array:
        args.append(Active(1.0))
    with pytest.raises(TraceError) as e:
        iz.autodiff(Reverse, f, Active, *args)
    message = str(e.value)
    assert f"{HERE}:{_line_of(f, text)}: cannot trace the truth value of a traced array" in message
    assert "The truth value of an array with more than one element is ambiguous" in message
    assert "AttributeError" not in message


def one_element(x, v):
    a = np.zeros(1)
    a[0] = v
    if a:  # numpy: the truth value of its one element
        return x * 2.0
    return x * 3.0


@pytest.mark.parametrize("v", [0.0, 1.5, -2.0])
def test_truth_value_of_a_one_element_array_is_its_element(v):
    (grads,) = iz.autodiff(Reverse, one_element, Active, Active(1.0), Const(v))
    assert grads[0] == one_element(1.0, v)


def formats_a_tracer(x):
    print(f"x = {x:.3f}")
    return x


def test_formatting_a_tracer_as_text_is_refused():
    with pytest.raises(TraceError) as e:
        iz.autodiff(Reverse, formats_a_tracer, Active, Active(1.0))
    line = _line_of(formats_a_tracer, "print(f")
    assert f"{HERE}:{line}: cannot trace formatting a traced value" in str(e.value)
    assert "print('x =', x)" in str(e.value)
