"""Arrays re-bound inside traced loops and branches (issue 9 item 1): the programs
users write (gradient descent, Newton, ping-pong buffers, stencils, RK4, RNNs, `if`
choosing an array) against numpy, their derivatives in both modes against central
differences for every activity combination, loops that stay loops, and the clear
errors where a re-bound array cannot be carried."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import isozyme as iz
from isozyme import Const, Duplicated, Forward, Reverse, ReverseWithPrimal, autodiff
from tests.finite_differences import central_gradient

RNG = np.random.default_rng(9)


# --------------------------------------------------------------------------- programs


def gradient_descent(w0, X, y, steps):
    w = w0
    for _ in range(steps):
        r = X @ w - y
        w = w - 0.05 * (X.T @ r)
    return np.sum(w * w)


def newton_sqrt(a, iters):
    x = np.ones_like(a)
    k = 0
    while k < iters:
        x = x - (x * x - a) / (2.0 * x)
        k += 1
    return np.sum(x)


def newton_tolerance(a):
    x = a + 1.0
    dx = np.ones_like(a)
    while np.max(np.abs(dx)) > 1e-12:
        dx = (x * x - a) / (2.0 * x)
        x = x - dx
    return np.sum(x * a)


def ping_pong(u0, steps):
    u = u0.copy()
    v = np.zeros_like(u0)
    for _ in range(steps):
        v[1:-1] = 0.25 * u[:-2] + 0.5 * u[1:-1] + 0.25 * u[2:]
        v[0] = u[0]
        v[-1] = u[-1]
        u, v = v, u
    return np.sum(u * u)


def stencil_rebind(u0, steps):
    u = u0
    for _ in range(steps):
        new = np.empty_like(u)
        new[0] = u[0]
        new[-1] = u[-1]
        new[1:-1] = u[1:-1] + 0.2 * (u[:-2] - 2.0 * u[1:-1] + u[2:])
        u = new
    return np.sum(np.sin(u))


def rk4(y0, k, steps):
    h = 0.1
    y = y0
    for _ in range(steps):
        k1 = -k * y
        k2 = -k * (y + 0.5 * h * k1)
        k3 = -k * (y + 0.5 * h * k2)
        k4 = -k * (y + h * k3)
        y = y + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return np.sum(y * y)


def rnn(W, b, h0, steps):
    h = h0
    for _ in range(steps):
        h = np.tanh(W @ h + b)
    return np.sum(h)


def choose(a, b, c):
    if c > 0.0:
        h = np.tanh(a)
    else:
        h = b * 2.0
    return np.sum(h * h)


def choose_arguments(a, b, c):
    if c > 0.0:
        h = a
    else:
        h = b
    return np.sum(h * np.arange(3.0))


def branch_in_loop(x, steps):
    h = x[:3].copy()
    for i in range(steps):
        if i % 2 == 0:
            h = np.tanh(h + x[1:4])
        else:
            h = h * 0.5
    return np.sum(h)


def nested_loops(x, outer, inner):
    w = x * 1.0
    for _ in range(outer):
        for _ in range(inner):
            w = w * 0.9 + np.sin(w)
        w = w[::-1] + 0.1
    return np.sum(w * w)


def keeps_previous(x, steps):
    w = x.copy()
    prev = np.zeros_like(x)
    for _ in range(steps):
        prev = w
        w = np.cos(w) * w
    return np.sum(prev * w)


def int_becomes_float(x, steps):
    w = np.arange(3)
    for _ in range(steps):
        w = w * x[0] + 1
    return np.sum(w)


def cheap_update(x, steps):
    w = x.copy()
    for _ in range(steps):
        w = w * 0.99 + 0.01 * x
    return np.sum(w * w)


def reads_old_after_new(x, steps):
    w = x.copy()
    acc = np.zeros_like(x)
    for _ in range(steps):
        w_new = np.sin(w) + 0.5 * w
        acc = acc + (w_new - w)  # reads the old w after the new one is computed
        w = w_new
    return np.sum(acc * w)


# (function, arrays builder, Python ints/floats after the arrays, the arrays' count)
CASES = {
    "gradient_descent": (gradient_descent,
                         lambda: [RNG.uniform(-1, 1, 3), RNG.uniform(-1, 1, (5, 3)),
                                  RNG.uniform(-1, 1, 5)], [4]),
    "newton_sqrt": (newton_sqrt, lambda: [RNG.uniform(0.5, 2.0, 4)], [5]),
    "newton_tolerance": (newton_tolerance, lambda: [RNG.uniform(0.5, 2.0, 4)], []),
    "ping_pong": (ping_pong, lambda: [RNG.uniform(-1, 1, 6)], [3]),
    "stencil_rebind": (stencil_rebind, lambda: [RNG.uniform(-1, 1, 6)], [3]),
    "rk4": (rk4, lambda: [RNG.uniform(-1, 1, 3), RNG.uniform(0.5, 1.5, 3)], [4]),
    "rnn": (rnn, lambda: [RNG.uniform(-0.5, 0.5, (3, 3)), RNG.uniform(-0.5, 0.5, 3),
                          RNG.uniform(-1, 1, 3)], [3]),
    "choose_then": (choose, lambda: [RNG.uniform(-1, 1, 4), RNG.uniform(-1, 1, 4)], [1.0]),
    "choose_else": (choose, lambda: [RNG.uniform(-1, 1, 4), RNG.uniform(-1, 1, 4)], [-1.0]),
    "choose_arguments": (choose_arguments,
                         lambda: [RNG.uniform(-1, 1, 3), RNG.uniform(-1, 1, 3)], [-1.0]),
    "branch_in_loop": (branch_in_loop, lambda: [RNG.uniform(-1, 1, 5)], [5]),
    "nested_loops": (nested_loops, lambda: [RNG.uniform(-1, 1, 4)], [3, 2]),
    "keeps_previous": (keeps_previous, lambda: [RNG.uniform(-1, 1, 4)], [3]),
    "int_becomes_float": (int_becomes_float, lambda: [RNG.uniform(-1, 1, 2)], [3]),
    "cheap_update": (cheap_update, lambda: [RNG.uniform(-1, 1, 5)], [4]),
    "reads_old_after_new": (reads_old_after_new, lambda: [RNG.uniform(-1, 1, 5)], [3]),
}


def combos(n):
    return [c for r in range(1, n + 1) for c in itertools.combinations(range(n), r)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_primal_matches_numpy(name):
    f, make, extra = CASES[name]
    arrays = make()
    want = f(*[a.copy() for a in arrays], *extra)
    work = [a.copy() for a in arrays]
    got = autodiff(ReverseWithPrimal, f, iz.Active,
                   *[Const(a) for a in work], *[Const(e) for e in extra])[1]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    for a, w in zip(arrays, work):
        np.testing.assert_array_equal(a, w)  # arguments are not written


@pytest.mark.parametrize("name", sorted(CASES))
def test_reverse_and_forward_match_finite_differences(name):
    f, make, extra = CASES[name]
    arrays = make()
    grads = [central_gradient(f, arrays, extra, k) for k in range(len(arrays))]
    for active in combos(len(arrays)):
        shadows = [np.zeros_like(a) for a in arrays]
        args = [Duplicated(a.copy(), shadows[k]) if k in active else Const(a.copy())
                for k, a in enumerate(arrays)]
        autodiff(Reverse, f, iz.Active, *args, *[Const(e) for e in extra])
        for k in active:
            np.testing.assert_allclose(shadows[k], grads[k], rtol=1e-6, atol=1e-8,
                                       err_msg=f"{name}: d/d arg {k}, active {active}")
        tangents = [RNG.uniform(-1, 1, a.shape) for a in arrays]
        args = [Duplicated(a.copy(), tangents[k]) if k in active else Const(a.copy())
                for k, a in enumerate(arrays)]
        (jvp,) = autodiff(Forward, f, *args, *[Const(e) for e in extra])
        want = sum(np.sum(grads[k] * tangents[k]) for k in active)
        assert jvp == pytest.approx(want, rel=1e-6, abs=1e-8), (name, active)


def test_exact_derivative_of_newton_sqrt():
    """Newton's iterations for sqrt(a) converge: d sum(sqrt(a)) / da = 1 / (2 sqrt(a))."""
    a = np.array([0.5, 1.0, 2.0, 4.0])
    da = np.zeros(4)
    autodiff(Reverse, newton_sqrt, iz.Active, Duplicated(a, da), Const(30))
    np.testing.assert_allclose(da, 0.5 / np.sqrt(a), rtol=1e-12)


def test_loops_stay_loops():
    """The traced IR does not depend on the trip count: one scf.for, no unrolled copies."""
    u = RNG.uniform(-1, 1, 6)
    texts = [iz.ir(Reverse, stencil_rebind, iz.Active, Duplicated(u, np.zeros(6)), Const(n),
                   stage="traced") for n in (2, 7)]
    assert texts[0] == texts[1]
    assert texts[0].count("scf.for") == 1


def test_private_initial_array_is_the_buffer():
    """`u = u0.copy()` is private: carried in place, no copy before the loop."""
    text = iz.ir(Reverse, ping_pong, iz.Active, Duplicated(np.ones(6), np.zeros(6)), Const(3),
                 stage="traced")
    top_level = [line for line in text.splitlines()
                 if line.startswith("    %") and "memref.alloc(" in line and "<?xf64>" in line]
    assert len(top_level) == 3  # u, v and u * u after the loop: no buffer copies


def _body_of_main_loop(text):
    """The lines of the traced IR's last top-level scf.for (the program's loop)."""
    lines = text.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("    scf.for"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i] == "    }")
    return lines[start:end]


def _copies(lines):
    """The linalg.generic ops that only copy (their body yields their first argument)."""
    return sum(1 for a, b, c in zip(lines, lines[1:], lines[2:])
               if "linalg.generic" in a and b.strip().startswith("^bb0(")
               and c.strip() == f"linalg.yield {b.strip()[5:].split(':')[0]} : f64")


def test_new_array_computed_in_the_buffer_without_a_copy():
    """Double buffering: `w = w * 0.99 + 0.01 * x` writes w's buffer directly (the op
    reads each element before writing it), no temporary and no copy per iteration; after
    fusion the body is one parallel loop."""
    x = np.ones(4)
    args = (Reverse, cheap_update, iz.Active, Duplicated(x, np.zeros(4)), Const(3))
    body = _body_of_main_loop(iz.ir(*args, stage="traced"))
    assert _copies(body) == 0
    assert sum("memref.alloc" in line for line in body) == 2  # w * 0.99 and 0.01 * x
    optimized = _body_of_main_loop(iz.ir(*args, stage="optimized"))
    assert not any("memref.alloc" in line for line in optimized)
    assert sum("scf.parallel" in line for line in optimized) == 1


def test_old_value_read_after_the_new_one_keeps_the_copy():
    x = np.ones(4)
    body = _body_of_main_loop(iz.ir(Reverse, reads_old_after_new, iz.Active,
                                    Duplicated(x, np.zeros(4)), Const(3), stage="traced"))
    assert _copies(body) == 1  # w's (w_new - w reads the old w); acc's is computed in place


# --------------------------------------------------------------------------- errors


def writes_argument_through_name(x, n):
    w = x
    for _ in range(n):
        w[0] = 1.0  # in Python this writes x in the first iteration
        w = w * 2.0
    return np.sum(w)


def writes_after_branch(x, y, c):
    if c > 0.0:
        h = x
    else:
        h = y
    h[0] = 0.0  # in Python this writes x or y
    return np.sum(h)


def changes_shape(x, n):
    w = x
    for _ in range(n):
        w = w[1:] * 2.0
    return np.sum(w)


def changes_rank(x, n):
    w = x
    for _ in range(n):
        w = np.outer(w, w)
    return np.sum(w)


def branch_shapes_differ(x, c):
    if c > 0.0:
        h = x * 2.0
    else:
        h = x[1:]
    return np.sum(h)


def number_then_array(x, n):
    s = 0.0
    for _ in range(n):
        s = x * 2.0
    return np.sum(s)


@pytest.mark.parametrize("fn, extra, match", [
    (writes_argument_through_name, [3], r"write into array 'w', which is re-bound inside a "
                                        r"`for` loop .*w = w.copy\(\)"),
    (writes_after_branch, [np.ones(3), 1.0], r"write into array 'h', which is re-bound inside "
                                             r"an `if`"),
    (changes_rank, [2], r"array variable 'w' re-bound inside .* another rank"),
    (number_then_array, [2], r"variable 's' in a `for` loop .* number before the loop and an "
                             r"array"),
])
def test_refused_with_trace_error(fn, extra, match):
    x = np.array([1.0, 2.0, 3.0])
    dx = np.zeros(3)
    extra_args = [Duplicated(e, np.zeros_like(e)) if isinstance(e, np.ndarray) else Const(e)
                  for e in extra]
    with pytest.raises(iz.TraceError, match=match):
        autodiff(Reverse, fn, iz.Active, Duplicated(x, dx), *extra_args)
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(dx, 0.0)


@pytest.mark.parametrize("fn, extra, match", [
    (changes_shape, 2, r"array variable 'w' changes shape inside a `for` loop"),
    (branch_shapes_differ, -1.0, r"array variable 'h' changes shape inside an `if`"),
])
def test_shape_change_is_a_shape_error_at_run_time(fn, extra, match):
    x = np.array([1.0, 2.0, 3.0])
    dx = np.zeros(3)
    with pytest.raises(iz.ShapeError, match=match):
        autodiff(Reverse, fn, iz.Active, Duplicated(x, dx), Const(extra))
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(dx, 0.0)
    # the same shapes through the loop or branch are fine
    other = 0 if fn is changes_shape else 1.0
    out = autodiff(ReverseWithPrimal, fn, iz.Active, Duplicated(x, dx), Const(other))[1]
    assert out == pytest.approx(fn(x.copy(), other))
