"""Accumulations in a ``prange`` body that iterations may apply to one element are
atomic: several ``+=`` into one array at different index functions of the loop
variable (``y[i]`` and ``y[i + 1]``, an unrolled window ``y[i + k]``, rows ``A[i, :]``
and ``A[i + 1, :]``, two views of one array), ``+=`` in a helper function called from
the body (with or without a ``prange`` of its own), a whole-array ``y += v``; only
``y[i] += ...`` alone (one index tuple per array, injective in the loop variables) is
a plain read-modify-write. Numbers equal Python's sequential loop on the cpu and
through cuda-emu, derivatives match finite differences in both modes. Also: a traced
zero step of ``range``/``prange`` is a ``ValueError`` (no SIGFPE), and a variable
rejected as a reduction is reported with the reason."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import isozyme as iz
from isozyme import Active, Const, Duplicated, Forward, ForwardWithPrimal, Reverse, prange
from isozyme.errors import ShapeError, TraceError
from tests.test_arrays_ad import fd_gradient

needs_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="cuda-emu needs g++")
TARGETS = ["cpu", pytest.param("cuda-emu", marks=needs_cxx)]
RNG = np.random.default_rng(11)

# --------------------------------------------------------------------------- programs


def shifted_pair(a, y):
    for i in prange(len(a)):
        y[i] += a[i]
        y[i + 1] += 2.0 * a[i]  # iteration i + 1 also updates y[i + 1]


def window(w, x, y):
    for i in prange(len(x)):
        for k in range(3):  # unrolled when traced: y[i], y[i + 1], y[i + 2]
            y[i + k] += w[k] * x[i]


def two_rows(x, a):
    for i in prange(len(x)):
        a[i, :] += x[i]
        a[i + 1, :] -= 0.5 * x[i]


def aliased_views(x, y):
    z = y[1:]
    for i in prange(len(x)):
        y[i] += x[i]
        z[i] += 3.0 * x[i]  # z[i] is y[i + 1]


def own_element(x, y):
    for i in prange(len(x)):
        y[i] += x[i]
        y[i] -= 0.25 * x[i]  # the same element again: no other iteration touches it


def add_at(y, k, v):
    y[k] += v


def helper_scatter(x, idx, y):
    for i in prange(len(x)):
        add_at(y, idx[i], x[i])


def helper_own_element(x, y):
    for i in prange(len(x)):
        y[i] += x[i]  # plain alone, but the helper's update of y may hit y[i]
        add_at(y, 0, x[i])


def add_row(y, x, i):
    for j in prange(len(y)):
        y[j] += x[i]  # distinct per j, but every caller iteration updates every y[j]


def helper_inner_prange(x, y):
    for i in prange(len(x)):
        add_row(y, x, i)


def whole_array(x, y):
    for i in prange(len(x)):
        y += x[i]
        y -= 0.5


def sequential_helper(x, idx, y):
    for i in range(len(x)):
        add_at(y, idx[i], x[i])


IDX = np.array([0, 2, 2, 1, 0, 2])

# (function, arguments, index of the updated array, number of colliding updates)
RACY = {
    "shifted_pair": (shifted_pair, lambda: [np.arange(1.0, 6.0), np.zeros(6)], 1, 2),
    "window": (window, lambda: [np.array([0.5, 1.0, 2.0]), np.arange(1.0, 5.0),
                                np.zeros(6)], 2, 3),
    "two_rows": (two_rows, lambda: [np.arange(1.0, 4.0), np.zeros((4, 2))], 1, 2),
    "aliased_views": (aliased_views, lambda: [np.arange(1.0, 4.0), np.zeros(4)], 1, 2),
    "helper_scatter": (helper_scatter, lambda: [np.arange(1.0, 7.0), IDX, np.zeros(3)],
                       2, 1),
    "helper_own_element": (helper_own_element,
                           lambda: [np.arange(1.0, 5.0), np.zeros(4)], 1, 2),
    "helper_inner_prange": (helper_inner_prange,
                            lambda: [np.arange(1.0, 5.0), np.zeros(3)], 1, 1),
    "whole_array": (whole_array, lambda: [np.arange(1.0, 5.0), np.zeros(3)], 1, 2),
}


def _ir(f, args, stage="traced", **kw) -> str:
    return iz.ir(ForwardWithPrimal, f, Const, *(Const(a) for a in args), stage=stage, **kw)


# --------------------------------------------------------------------------- IR


@pytest.mark.parametrize("name", sorted(RACY))
def test_updates_that_may_collide_are_atomic(name: str) -> None:
    f, make, _, colliding = RACY[name]
    text = _ir(f, make())
    assert text.count('"memref.atomic_rmw"') >= colliding
    # no plain whole-view update left: a slice or whole-array accumulation that may
    # collide is an element loop of atomics
    assert "linalg.generic" not in text or name not in ("two_rows", "whole_array")


@pytest.mark.parametrize("name", ["shifted_pair", "window", "aliased_views",
                                  "helper_scatter", "helper_inner_prange"])
def test_cuda_kernels_add_atomically(name: str) -> None:
    f, make, _, _ = RACY[name]
    src = _ir(f, make(), stage="cuda", target="cuda")
    assert "atomicAdd" in src


def test_only_one_index_tuple_per_array_injective_in_the_loop_is_plain() -> None:
    text = _ir(own_element, [np.arange(1.0, 4.0), np.zeros(3)])
    assert '"memref.atomic_rmw"' not in text
    src = _ir(own_element, [np.arange(1.0, 4.0), np.zeros(3)], stage="cuda", target="cuda")
    assert "atomicAdd" not in src


def test_a_helper_called_outside_parallel_loops_stays_plain() -> None:
    args = [np.arange(1.0, 7.0), IDX, np.zeros(3)]
    assert '"memref.atomic_rmw"' not in _ir(sequential_helper, args)
    # the same helper traced for a parallel caller in the same program is atomic
    def both(x, idx, y):
        sequential_helper(x, idx, y)
        helper_scatter(x, idx, y)

    assert _ir(both, args).count('"memref.atomic_rmw"') == 1


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", sorted(RACY) + ["own_element"])
def test_numbers_equal_the_sequential_loop(name: str, target: str) -> None:
    f, make, k, _ = RACY.get(name, (own_element, lambda: [np.arange(1.0, 4.0),
                                                          np.zeros(3)], 1, 0))
    want = make()
    f(*want)  # plain Python: prange is range
    got = make()
    with iz.target(target):
        iz.autodiff(ForwardWithPrimal, f, Const, *(Const(a) for a in got))
    np.testing.assert_allclose(got[k], want[k], rtol=1e-14)
    assert np.any(got[k] != 0.0)


# --------------------------------------------------------------------------- derivatives


def shifted_energy(x, a):
    y = np.zeros(len(x) + 1)
    for i in prange(len(x)):
        y[i] += a[i] * x[i]
        y[i + 1] += x[i] * x[i]
    s = 0.0
    for j in range(len(y)):
        s += (j + 1.0) * y[j] * y[j]
    return s


def window_energy(x, w):
    y = np.zeros(len(x) + 2)
    for i in prange(len(x)):
        for k in range(3):
            y[i + k] += w[k] * np.sin(x[i])
    s = 0.0
    for j in range(len(y)):
        s += y[j] * y[j] * (j + 1.0)
    return s


def helper_energy(x, idx):
    y = np.zeros(3)
    for i in prange(len(x)):
        add_at(y, idx[i], x[i] * x[i])
    s = 0.0
    for j in range(3):
        s += (j + 2.0) * y[j] * y[j]
    return s


ENERGIES = {
    "shifted": (shifted_energy, lambda: [RNG.uniform(-1, 1, 5), RNG.uniform(-1, 1, 5)]),
    "window": (window_energy, lambda: [RNG.uniform(-1, 1, 5), np.array([0.5, -1.0, 2.0])]),
    "helper": (helper_energy, lambda: [RNG.uniform(-1, 1, 6), IDX]),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", sorted(ENERGIES))
def test_derivatives_match_finite_differences(name: str, mode: str, target: str) -> None:
    f, make = ENERGIES[name]
    args = make()
    want = fd_gradient(f, args, 0)
    rest = [Const(a) for a in args[1:]]
    with iz.target(target):
        if mode == "reverse":
            dx = np.zeros_like(args[0])
            iz.autodiff(Reverse, f, Active, Duplicated(args[0], dx), *rest)
            np.testing.assert_allclose(dx, want, rtol=1e-6, atol=1e-8)
        else:
            d = RNG.uniform(-1, 1, args[0].shape)
            (t,) = iz.autodiff(Forward, f, Duplicated(args[0], d), *rest)
            assert float(t) == pytest.approx(float(np.sum(want * d)), rel=1e-6, abs=1e-8)


# --------------------------------------------------------------------------- zero step


def prange_step(x, y, s):
    for i in prange(0, len(x), s):
        y[i] = x[i]
    return y


def range_step(x, y, s):
    for i in range(0, len(x), s):
        y[i] = x[i]
    return y


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("f", [prange_step, range_step])
def test_a_traced_zero_step_is_a_value_error(f, target: str) -> None:
    x, y = np.arange(1.0, 5.0), np.zeros(4)
    with iz.target(target):
        with pytest.raises(ValueError, match="range\\(\\) arg 3 must not be zero") as e:
            iz.autodiff(ForwardWithPrimal, f, Const, Const(x), Const(y), Const(0))
        assert isinstance(e.value, ShapeError)
        assert not y.any()  # stopped before the loop
        (_, out) = iz.autodiff(ForwardWithPrimal, f, Const, Const(x), Const(y), Const(2))
    np.testing.assert_array_equal(out, [1.0, 0.0, 3.0, 0.0])


# --------------------------------------------------------------------------- messages


def _first_line(f) -> int:
    return f.__code__.co_firstlineno


def mixed_in_branches(x):
    s = 0.0
    for i in prange(len(x)):
        if x[i] > 0:
            s += x[i]
        else:
            s *= 2.0
    return s


def negated(x):
    s = 0.0
    for i in prange(len(x)):
        s += x[i]
        s = -s
    return s


def reads_itself(x):
    s = 0.0
    for i in prange(len(x)):
        s = s + x[i] + s
    return s


@pytest.mark.parametrize("f, reason", [
    (mixed_in_branches, r"updated as a sum \(`\+=`, `-=`\) at line {4} and as a product "
                        r"\(`\*=`\) at line {6}; a reduction has one operator"),
    (negated, r"line {4} reads or assigns it other than by a reduction update"),
    (reads_itself, r"its update at line {3} combines it with an expression that reads "
                   r"'s' itself"),
])
def test_a_rejected_reduction_names_the_reason(f, reason: str) -> None:
    line = _first_line(f)
    lines = {k: line + k for k in range(8)}
    with pytest.raises(TraceError) as e:
        _ir(f, [np.arange(1.0, 4.0)])
    text = str(e.value)
    assert "variable 's'" in text and "not a reduction of the `prange` loop" in text
    assert "read before that assignment" not in text
    import re

    assert re.search(reason.format(*[lines[k] for k in range(8)]), text), text


# --------------------------------------------------------------------------- private arrays


def body_local(x, y):
    for i in prange(len(x)):
        t = np.zeros(2)
        t += x[i]  # an array of this iteration: no other iteration updates it
        t[1] += 1.0
        y[i] += t[0] * t[1]


def test_arrays_allocated_in_the_body_are_updated_plainly() -> None:
    args = [np.arange(1.0, 4.0), np.zeros(3)]
    assert '"memref.atomic_rmw"' not in _ir(body_local, args)
    want = [np.arange(1.0, 4.0), np.zeros(3)]
    body_local(*want)
    iz.autodiff(ForwardWithPrimal, body_local, Const, *(Const(a) for a in args))
    np.testing.assert_array_equal(args[1], want[1])
