"""Bounds-checked indexing (issue 6, item 3): every traced element index and integer view
index is checked at run time; an index outside ``[-n, n)`` raises ``OutOfBoundsError``
(an ``IndexError``) naming the file, line, index and size, before any later write; the
checks of affine loop indices are hoisted out of the loops; ``isozyme.config`` and
``ISOZYME_BOUNDSCHECK=0`` turn them off."""

import inspect
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import isozyme as iz
from isozyme import (
    Active,
    Const,
    Duplicated,
    Forward,
    IsozymeError,
    OutOfBoundsError,
    Reverse,
    ReverseWithPrimal,
    autodiff,
)

HERE = os.path.abspath(__file__)


def line_of(fn, text):
    """The file line of the first source line of ``fn`` containing ``text``."""
    lines, start = inspect.getsourcelines(fn)
    for k, line in enumerate(lines):
        if text in line:
            return start + k
    raise AssertionError(f"{text!r} not in {fn.__name__}")


def expect_oob(fn, text, index, size, axis=0):
    """``pytest.raises`` for the OutOfBoundsError of ``fn``'s line holding ``text``."""
    msg = (f"{HERE}:{line_of(fn, text)}: index {index} is out of bounds for axis {axis} "
           f"with size {size}")
    return pytest.raises(OutOfBoundsError, match="^" + _re(msg) + "$")


def _re(s):
    import re

    return re.escape(s)


# --------------------------------------------------------------------------- programs


def read_at(x, i):
    return x[i] * 3.0


def write_at(x, i, v):
    x[i] = v * v
    return 0.0


def read_2d(A, i, j):
    return A[i, j] * 2.0


def row_sum(A, i):
    r = A[i]
    s = 0.0
    for j in range(len(r)):
        s += r[j]
    return s


def row_if_in_range(A, i):
    s = 0.0
    for j in range(3):
        if i < A.shape[0]:
            s += A[i][j]
    return s


def set_row(A, i, v):
    A[i] = v
    return 0.0


def set_part_of_row(A, i, v):
    A[i, 1:3] = v
    return 0.0


def write_then_read(x, i):
    x[0] = 100.0
    return x[i]


def fill(out, n, v):
    for i in range(n):
        out[i] = v * i
    return 0.0


def fill_through_index_array(out, idx, v):
    for k in range(len(idx)):
        out[idx[k]] = v
    return 0.0


def scatter_sq(x, out, n):
    for i in range(n):
        out[i] = x[i] * x[i]


def affine_reads(x, a, b):
    s = 0.0
    for i in range(a, b):
        s += x[2 * i - 3]
    return s


def affine_reads_step(x, a, b):
    s = 0.0
    for i in range(a, b, 3):
        s += x[i + 1] * x[-i]
    return s


def triangle_up(x, a, b, c):
    s = 0.0
    for i in range(a, b):
        for j in range(i + c):  # the inner loop is empty for the first few i
            s += x[j - 2] * (i + 1)
    return s


def triangle_down(x, a, b, c):
    s = 0.0
    for i in range(a, b):
        for j in range(i, c):  # ... and for the last few here
            s += x[2 * j - i] * (j + 1)
    return s


def unit_up(x, a, b):
    s = 0.0
    for i in range(a, b):
        s += x[i - 2]
    return s


def unit_down(x, a, b):
    s = 0.0
    for i in range(a, b):
        s += x[3 - i]
    return s


def rosenbrock(x):
    s = 0.0
    for i in range(len(x) - 1):
        s += (1 - x[i]) ** 2 + 100 * (x[i + 1] - x[i] ** 2) ** 2
    return s


def nested(A):
    s = 0.0
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            s += A[i, j] * A[i, -1 - j]
    return s


def python_int_index(x):
    return x[5] + x[-1]


def negative_sum(x):
    s = 0.0
    for i in range(1, len(x) + 1):
        s += x[-i] * i
    return s


# --------------------------------------------------------------------------- reads


def test_read_past_the_end_raises_with_file_line_index_and_size():
    x = np.arange(4.0)
    with expect_oob(read_at, "x[i]", 7, 4):
        autodiff(Reverse, read_at, Active, Duplicated(x, np.zeros(4)), Const(7))
    with expect_oob(read_at, "x[i]", 4, 4):
        autodiff(Forward, read_at, Duplicated(x, np.zeros(4)), Const(4))
    # the error is an IndexError and an IsozymeError
    with pytest.raises(IndexError):
        autodiff(Forward, read_at, Const(x), Const(4))
    with pytest.raises(IsozymeError):
        autodiff(Forward, read_at, Const(x), Const(4))


def test_in_bounds_reads_give_numpy_values_and_derivatives():
    x = np.array([0.5, -1.5, 2.0, 4.0])
    for i in (0, 3, -1, -4):
        dx = np.zeros(4)
        autodiff(Reverse, read_at, Active, Duplicated(x, dx), Const(i))
        want = np.zeros(4)
        want[i] = 3.0
        np.testing.assert_array_equal(dx, want)
        tx = np.zeros(4)
        tx[i] = 1.0
        (d,) = autodiff(Forward, read_at, Duplicated(x, tx), Const(i))
        assert d == 3.0


def test_negative_indices_wrap_and_below_minus_n_raise():
    x = np.arange(4.0)
    with expect_oob(read_at, "x[i]", -5, 4):
        autodiff(Forward, read_at, Const(x), Const(-5))
    with expect_oob(read_at, "x[i]", -1000, 4):
        autodiff(Forward, read_at, Const(x), Const(-1000))
    # a loop over negative indices -1 .. -n is in bounds
    dx = np.zeros(4)
    (_, val) = autodiff(ReverseWithPrimal, negative_sum, Active, Duplicated(x, dx))
    assert val == sum(x[-i] * i for i in range(1, 5))
    np.testing.assert_array_equal(dx, [4.0, 3.0, 2.0, 1.0])


def test_two_dimensional_index_checks_each_axis():
    A = np.arange(12.0).reshape(3, 4)
    (d,) = autodiff(Forward, read_2d, Duplicated(A, np.ones_like(A)), Const(2), Const(-1))
    assert d == 2.0
    with expect_oob(read_2d, "A[i, j]", 3, 3, axis=0):
        autodiff(Forward, read_2d, Const(A), Const(3), Const(0))
    with expect_oob(read_2d, "A[i, j]", 4, 4, axis=1):
        autodiff(Forward, read_2d, Const(A), Const(0), Const(4))
    with expect_oob(read_2d, "A[i, j]", -5, 4, axis=1):
        autodiff(Reverse, read_2d, Active, Duplicated(A, np.zeros_like(A)), Const(0), Const(-5))


def test_row_view_index_is_checked():
    A = np.arange(12.0).reshape(3, 4)
    dA = np.zeros_like(A)
    autodiff(Reverse, row_sum, Active, Duplicated(A, dA), Const(-3))
    np.testing.assert_array_equal(dA, [[1.0] * 4, [0.0] * 4, [0.0] * 4])
    with expect_oob(row_sum, "A[i]", 3, 3):
        autodiff(Reverse, row_sum, Active, Duplicated(A, np.zeros_like(A)), Const(3))
    with expect_oob(row_sum, "A[i]", -4, 3):
        autodiff(Forward, row_sum, Duplicated(A, np.zeros_like(A)), Const(-4))


def test_view_check_stays_in_its_branch():
    # The view A[i] is made once at the function's entry (views are pure), but its
    # check runs where the code indexes: a branch that is not taken checks nothing.
    A = np.arange(12.0).reshape(3, 4)
    dA = np.zeros_like(A)
    (_, val) = autodiff(ReverseWithPrimal, row_if_in_range, Active, Duplicated(A, dA), Const(7))
    assert val == 0.0 and not dA.any()
    (_, val) = autodiff(ReverseWithPrimal, row_if_in_range, Active, Duplicated(A, dA), Const(1))
    assert val == A[1, :3].sum()


def test_python_int_index_on_a_run_time_size_is_checked_when_it_runs():
    ok = np.arange(6.0)
    (_, val) = autodiff(ReverseWithPrimal, python_int_index, Active, Duplicated(ok, np.zeros(6)))
    assert val == ok[5] + ok[-1]
    with expect_oob(python_int_index, "x[5]", 5, 4):
        autodiff(Reverse, python_int_index, Active, Duplicated(np.arange(4.0), np.zeros(4)))


def test_python_int_index_on_a_static_size_fails_when_tracing():
    one = np.array([2.0])  # a size-1 dimension is static in the signature
    with expect_oob(python_int_index, "x[5]", 5, 1):
        autodiff(Reverse, python_int_index, Active, Duplicated(one, np.zeros(1)))


def test_a_brace_in_the_file_name_stays_in_the_message(tmp_path):
    import importlib.util

    folder = tmp_path / "a{0}b}"
    folder.mkdir()
    path = folder / "braced.py"
    path.write_text("def read_at(x, i):\n    return x[i]\n")
    spec = importlib.util.spec_from_file_location("braced", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(OutOfBoundsError) as info:
        autodiff(Forward, mod.read_at, Const(np.arange(3.0)), Const(5))
    assert str(info.value) == f"{path}:2: index 5 is out of bounds for axis 0 with size 3"


# --------------------------------------------------------------------------- writes


def test_row_assignments_are_checked_and_write_nothing_when_out_of_bounds():
    A = np.zeros((3, 4))
    autodiff(Forward, set_row, Const(A), Const(-3), Const(5.0))
    autodiff(Forward, set_part_of_row, Const(A), Const(2), Const(4.0))
    want = np.zeros((3, 4))
    want[0] = 5.0
    want[2, 1:3] = 4.0
    np.testing.assert_array_equal(A, want)
    with expect_oob(set_row, "A[i] = v", 3, 3):
        autodiff(Forward, set_row, Const(A), Const(3), Const(9.0))
    with expect_oob(set_part_of_row, "A[i, 1:3] = v", -4, 3):
        autodiff(Forward, set_part_of_row, Const(A), Const(-4), Const(9.0))
    np.testing.assert_array_equal(A, want)


def test_write_past_the_end_writes_nothing_outside():
    big = np.arange(8.0)
    x = big[:4]  # a view: the elements after it belong to the caller
    before = big.copy()
    with expect_oob(write_at, "x[i] = v * v", 4, 4):
        autodiff(Forward, write_at, Const(x), Const(4), Const(9.0))
    with expect_oob(write_at, "x[i] = v * v", 5, 4):
        autodiff(Reverse, write_at, Active, Duplicated(x, np.zeros(4)), Const(5), Active(9.0))
    with expect_oob(write_at, "x[i] = v * v", -5, 4):
        autodiff(Forward, write_at, Const(x), Const(-5), Const(9.0))
    np.testing.assert_array_equal(big, before)
    autodiff(Forward, write_at, Const(x), Const(-4), Const(3.0))
    assert big[0] == 9.0 and (big[1:] == before[1:]).all()


def test_failed_call_leaves_buffers_untouched_when_it_fails_before_writing():
    x = np.arange(4.0)
    dx = np.full(4, 0.5)
    with expect_oob(write_then_read, "return x[i]", 9, 4):
        autodiff(Reverse, write_then_read, Active, Duplicated(x, dx), Const(9))
    # as in numpy, the write before the bad read happened; the reverse sweep did not run
    assert x[0] == 100.0 and (dx == 0.5).all()
    out = np.zeros(5)
    dout = np.ones(5)
    before, dbefore = out.copy(), dout.copy()
    # the check is hoisted before the loop, and names the first bad index as numpy would
    with expect_oob(fill, "out[i] = v * i", 5, 5):
        autodiff(Forward, fill, Duplicated(out, dout), Const(8), Duplicated(2.0, 1.0))
    np.testing.assert_array_equal(out, before)
    np.testing.assert_array_equal(dout, dbefore)
    with expect_oob(fill, "out[i] = v * i", 5, 5):
        autodiff(Reverse, fill, Active, Duplicated(out, dout), Const(6), Active(2.0))
    np.testing.assert_array_equal(out, before)
    np.testing.assert_array_equal(dout, dbefore)


def test_loop_past_the_end_of_an_output_buffer():
    big = np.zeros(10)
    out = big[:5]
    with expect_oob(fill, "out[i] = v * i", 5, 5):
        autodiff(Forward, fill, Const(out), Const(10), Const(1.0))
    assert not big.any()
    autodiff(Forward, fill, Const(out), Const(5), Const(1.0))
    np.testing.assert_array_equal(big, [0, 1, 2, 3, 4, 0, 0, 0, 0, 0])
    # indices from an index array cannot be hoisted: the writes before the bad index
    # land, the bad one and everything after it do not
    big[:] = 0.0
    idx = np.array([1, 3, 7, 0])
    with expect_oob(fill_through_index_array, "out[idx[k]] = v", 7, 5):
        autodiff(Forward, fill_through_index_array, Const(out), Const(idx), Const(2.0))
    np.testing.assert_array_equal(big, [0, 2, 0, 2, 0, 0, 0, 0, 0, 0])


def test_reverse_mode_with_checks_matches_finite_differences():
    x = np.array([0.3, -0.8, 1.1, 0.4, -0.2])
    n = 4
    out = np.zeros(5)

    def value(xv):
        o = np.zeros(5)
        scatter_sq(xv, o, n)
        return o

    dout = np.array([1.0, -2.0, 0.5, 3.0, 7.0])
    dx = np.zeros(5)
    autodiff(Reverse, scatter_sq, Duplicated(x, dx), Duplicated(out, dout.copy()), Const(n))
    h = 1e-6
    fd = np.array([
        (value(x + h * e) - value(x - h * e)) @ dout / (2 * h) for e in np.eye(5)
    ])
    np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-8)
    tx = np.array([0.1, 0.2, -0.3, 0.4, 0.5])
    tout = np.zeros(5)
    autodiff(Forward, scatter_sq, Duplicated(x, tx), Duplicated(np.zeros(5), tout), Const(n))
    np.testing.assert_allclose(tout, (value(x + h * tx) - value(x - h * tx)) / (2 * h),
                               rtol=1e-6, atol=1e-8)
    with expect_oob(scatter_sq, "out[i] = x[i] * x[i]", 5, 5):
        autodiff(Reverse, scatter_sq, Duplicated(x, dx), Duplicated(out, dout), Const(6))


def test_rosenbrock_gradient_with_checks():
    x = np.array([0.5, 1.3, -0.7, 0.2, 0.9])
    dx = np.zeros(5)
    autodiff(Reverse, rosenbrock, Active, Duplicated(x, dx))
    h = 1e-6
    fd = [(rosenbrock(x + h * e) - rosenbrock(x - h * e)) / (2 * h) for e in np.eye(5)]
    np.testing.assert_allclose(dx, fd, rtol=1e-6)
    (d,) = autodiff(Forward, rosenbrock, Duplicated(x, np.eye(5)[2]))
    assert d == pytest.approx(fd[2], rel=1e-6)


# --------------------------------------------------------------------------- hoisting


def _loops_have_no_check(ir_text):
    depth = 0
    for line in ir_text.splitlines():
        if "isz.check" in line and depth > 0:
            return False
        if "scf.for" in line or "scf.while" in line:
            depth += line.count("{")
        elif line.strip().startswith("}") and depth > 0:
            depth -= 1
    return True


def test_rosenbrock_has_no_check_inside_its_loops():
    x = np.arange(5.0)
    for mode, args in ((Reverse, (Active, Duplicated(x, np.zeros(5)))),
                       (Forward, (Duplicated(x, np.zeros(5)),))):
        text = iz.ir(mode, rosenbrock, *args, stage="simplified")
        assert "isz.check" in text  # the checks are there, before the loop
        assert _loops_have_no_check(text), text
    text = iz.ir(Reverse, nested, Active, Duplicated(np.ones((2, 3)), np.zeros((2, 3))),
                 stage="simplified")
    assert text.count("isz.check") == 3 and _loops_have_no_check(text), text


@pytest.mark.parametrize("fn", [affine_reads, affine_reads_step])
def test_hoisted_checks_fail_exactly_when_an_iteration_would(fn):
    x = np.arange(1.0, 7.0)  # n = 6
    n = len(x)
    step = 3 if fn is affine_reads_step else 1
    text = iz.ir(Forward, fn, Const(x), Const(0), Const(1), stage="simplified")
    assert _loops_have_no_check(text), text

    def indices(a, b):
        for i in range(a, b, step):
            yield from ((2 * i - 3,) if step == 1 else (i + 1, -i))

    for a in range(-4, 8):
        for b in range(-3, 10):
            bad = [k for k in indices(a, b) if not -n <= k < n]
            if bad:
                with pytest.raises(OutOfBoundsError, match="with size 6$"):
                    autodiff(Forward, fn, Const(x), Const(a), Const(b))
            else:
                (_, val) = autodiff(iz.ForwardWithPrimal, fn, Const(x), Const(a), Const(b))
                want = sum(x[k] for k in indices(a, b)) if step == 1 else sum(
                    x[i + 1] * x[-i] for i in range(a, b, step))
                assert val == pytest.approx(want)


@pytest.mark.parametrize("fn", [unit_up, unit_down])
def test_hoisted_check_names_the_first_bad_index_as_numpy_would(fn):
    x = np.arange(1.0, 6.0)  # n = 5
    n = len(x)
    text = iz.ir(Forward, fn, Const(x), Const(0), Const(1), stage="simplified")
    assert _loops_have_no_check(text), text
    for a in range(-9, 9):
        for b in range(-9, 12):
            ks = [i - 2 if fn is unit_up else 3 - i for i in range(a, b)]
            bad = [k for k in ks if not -n <= k < n]
            if bad:
                with expect_oob(fn, "s += x[", bad[0], n):
                    autodiff(Forward, fn, Const(x), Const(a), Const(b))
            else:
                (_, val) = autodiff(iz.ForwardWithPrimal, fn, Const(x), Const(a), Const(b))
                assert val == sum(x[k] for k in ks)


@pytest.mark.parametrize("fn", [triangle_up, triangle_down])
def test_triangular_loop_nests_are_checked_once_and_exactly(fn):
    x = np.arange(1.0, 6.0)  # n = 5
    n = len(x)
    text = iz.ir(Forward, fn, Const(x), Const(0), Const(1), Const(2), stage="simplified")
    assert _loops_have_no_check(text), text

    def terms(a, b, c):
        for i in range(a, b):
            if fn is triangle_up:
                yield from ((j - 2, i + 1) for j in range(i + c))
            else:
                yield from ((2 * j - i, j + 1) for j in range(i, c))

    for a in range(-2, 5):
        for b in range(-1, 7):
            for c in range(-3, 6):
                ts = list(terms(a, b, c))
                if any(not -n <= k < n for k, _ in ts):
                    with pytest.raises(OutOfBoundsError, match="with size 5$"):
                        autodiff(Forward, fn, Const(x), Const(a), Const(b), Const(c))
                else:
                    (_, val) = autodiff(iz.ForwardWithPrimal, fn, Const(x), Const(a),
                                        Const(b), Const(c))
                    assert val == sum(x[k] * w for k, w in ts), (a, b, c)


# --------------------------------------------------------------------------- off switch


def test_config_turns_checks_off_and_back_on():
    x = np.arange(4.0)
    assert iz.config()["boundscheck"] is True
    assert "isz.check" in iz.ir(Forward, read_at, Const(x), Const(1), stage="traced")
    autodiff(Forward, read_at, Const(x), Const(1))  # compiled with checks
    old = iz.config(boundscheck=False)
    try:
        assert old["boundscheck"] is True  # (config() returns every setting)
        assert "isz.check" not in iz.ir(Forward, read_at, Const(x), Const(1), stage="llvm")
        assert autodiff(iz.ForwardWithPrimal, read_at, Const(x), Const(2))[1] == 6.0
    finally:
        iz.config(**old)
    # back on: the cached unchecked code is not reused
    with expect_oob(read_at, "x[i]", 4, 4):
        autodiff(Forward, read_at, Const(x), Const(4))
    with pytest.raises(TypeError):
        iz.config(boundscheck="no")


@pytest.mark.parametrize("value, checked", [("0", False), ("1", True)])
def test_environment_variable(value, checked):
    code = (
        "import numpy as np, isozyme as iz\n"
        "from tests.test_bounds_checks import read_at\n"
        "x = np.arange(4.0)\n"
        "print(iz.config()['boundscheck'])\n"
        "print('isz.check' in iz.ir(iz.Forward, read_at, iz.Const(x), iz.Const(1), stage='llvm'))\n"
        "print(iz.autodiff(iz.ForwardWithPrimal, read_at, iz.Const(x), iz.Const(3))[1])\n"
    )
    env = dict(os.environ, ISOZYME_BOUNDSCHECK=value)
    root = os.path.dirname(os.path.dirname(HERE))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(checked), str(checked), "9.0"]


# --------------------------------------------------------------------------- threads


def test_threads_calling_one_function_get_their_own_errors():
    x = np.arange(50.0)
    autodiff(Forward, read_at, Const(x), Const(0))  # compile once
    errors = []

    def worker(k):
        for r in range(200):
            i = (k * 7 + r) % 80
            try:
                (_, val) = autodiff(iz.ForwardWithPrimal, read_at, Const(x), Const(i))
                if i >= 50 or val != 3.0 * i:
                    errors.append(("value", i, val))
            except OutOfBoundsError as e:
                if i < 50 or f"index {i} is" not in str(e):
                    errors.append(("error", i, str(e)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]


def prange_stencil(x, y, a, b):
    for i in iz.prange(a, b):
        y[i] = x[i - 1] + 2.0 * x[i + 1]


def test_prange_checks_leave_the_parallel_loop_and_fail_exactly_when_an_iteration_would():
    # hoist-checks treats a one-dimensional scf.parallel as an scf.for: on a GPU target
    # the kernel then carries no check at all
    x = np.arange(1.0, 7.0)  # n = 6
    n = len(x)
    text = iz.ir(Forward, prange_stencil, Const(x), Const(np.zeros(n)), Const(1), Const(5),
                 stage="optimized")
    body = text[text.index("scf.parallel"):]
    assert "isz.check" in text[:text.index("scf.parallel")] and "isz.check" not in body, text
    for a in range(-3, 8):
        for b in range(-3, 9):
            idx = [k for i in range(a, b) for k in (i, i - 1, i + 1)]
            y = np.zeros(n)
            if any(not -n <= k < n for k in idx):
                with pytest.raises(OutOfBoundsError, match="with size 6$"):
                    autodiff(Forward, prange_stencil, Const(x), Const(y), Const(a), Const(b))
                assert not y.any()  # checked before the loop: nothing was written
            else:
                autodiff(Forward, prange_stencil, Const(x), Const(y), Const(a), Const(b))
                want = np.zeros(n)
                for i in range(a, b):
                    want[i] = x[i - 1] + 2.0 * x[i + 1]
                np.testing.assert_array_equal(y, want)
