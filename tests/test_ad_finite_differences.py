"""isozyme's derivatives against finite differences (like Enzyme's test_forward/test_reverse).

For every program of :mod:`ad_programs`, every test point and every activity combination
of the program's float arguments (each float argument Active/Duplicated or Const; ints
are always Const), each of the four modes is checked:

* ``Reverse`` / ``ReverseWithPrimal``: the gradient of each active argument against
  central finite differences, ``None`` for Const arguments, and the primal against
  ``f(*args)``;
* ``Forward`` / ``ForwardWithPrimal``: each active argument seeded alone with 1.0
  against finite differences, all active arguments seeded at once with random seeds
  against the seeded sum of the partials, and the primal against ``f(*args)``.

Programs with more than three float arguments are tested with all active, each single
one active, and all Const, to bound the number of compilations.

At the end, exact-value tests check derivatives whose closed forms are known.
"""

from __future__ import annotations

import itertools
import math
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ad_programs as P  # noqa: E402
from ad_programs import PROGRAMS, Program  # noqa: E402

from isozyme import (  # noqa: E402
    Active,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Reverse,
    ReverseWithPrimal,
    autodiff,
)

EPS = np.finfo(np.float64).eps
FD_REL_STEP = 1e-6

# derivative tolerances: (rtol, atol)
TOL_F64 = (1e-5, 1e-7)
TOL_F32 = (1e-3, 1e-4)
# primal tolerances: (rtol, atol)
PRIMAL_TOL_F64 = (1e-12, 1e-15)
PRIMAL_TOL_F32 = (1e-5, 1e-6)

MODES = {
    "Reverse": Reverse,
    "ReverseWithPrimal": ReverseWithPrimal,
    "Forward": Forward,
    "ForwardWithPrimal": ForwardWithPrimal,
}


# --------------------------------------------------------------------------- helpers
def is_float_arg(v: object) -> bool:
    return isinstance(v, (float, np.floating)) and not isinstance(v, bool)


def float_positions(point: tuple) -> list[int]:
    return [i for i, v in enumerate(point) if is_float_arg(v)]


def activity_combos(point: tuple) -> list[tuple[int, ...]]:
    """Active float-argument positions for every tested combination."""
    fpos = float_positions(point)
    if len(fpos) <= 3:
        return [
            tuple(p for p, on in zip(fpos, mask) if on)
            for mask in itertools.product((True, False), repeat=len(fpos))
        ]
    return [tuple(fpos)] + [(p,) for p in fpos] + [()]


def combo_label(point: tuple, active: tuple[int, ...]) -> str:
    """``A``/``C`` per float argument (active/const), ``i`` per int argument."""
    return "".join(
        ("A" if i in active else "C") if is_float_arg(v) else "i" for i, v in enumerate(point)
    )


def as_f64(point: tuple) -> list[object]:
    """The point with float32 values widened to Python floats (for finite differences)."""
    return [float(v) if is_float_arg(v) else v for v in point]


def fd_partial(fn, point: tuple, i: int, fd_relative: bool = False) -> tuple[float, float]:
    """Central finite difference of ``fn`` in argument ``i`` (in float64), and an
    estimate of its rounding noise."""
    args = as_f64(point)
    x = args[i]
    h = FD_REL_STEP * (abs(x) if fd_relative and x != 0.0 else max(1.0, abs(x)))
    xp, xm = x + h, x - h
    ap, am = list(args), list(args)
    ap[i], am[i] = xp, xm
    fp, fm = float(fn(*ap)), float(fn(*am))
    d = (fp - fm) / (xp - xm)
    noise = 8.0 * EPS * max(abs(fp), abs(fm), 1e-300) / (xp - xm)
    return d, noise


def deriv_tol(prog: Program) -> tuple[float, float]:
    rtol, atol = TOL_F32 if prog.f32 else TOL_F64
    return prog.tol.get("rtol", rtol), prog.tol.get("atol", atol)


def assert_deriv(actual, expected: float, noise: float, prog: Program, what: str) -> None:
    rtol, atol = deriv_tol(prog)
    assert actual is not None, f"{what}: got None, expected {expected!r}"
    a = float(actual)
    assert math.isfinite(a) or not math.isfinite(expected), f"{what}: got {a!r}, expected {expected!r}"
    tol = atol + noise + rtol * abs(expected)
    assert abs(a - expected) <= tol, (
        f"{what}: AD {a!r} vs finite differences {expected!r} (|diff| {abs(a - expected):.3g} > tol {tol:.3g})"
    )


def assert_primal(actual, prog: Program, point: tuple) -> None:
    expected = prog.fn(*point)
    rtol, atol = PRIMAL_TOL_F32 if prog.f32 else PRIMAL_TOL_F64
    assert actual is not None, f"primal: got None, expected {expected!r}"
    assert float(actual) == pytest.approx(float(expected), rel=rtol, abs=atol), (
        f"primal: got {actual!r}, f(*args) = {expected!r}"
    )


def seed_value(prog: Program, v: float):
    return np.float32(v) if prog.f32 else float(v)


def random_seeds(key: str, n: int) -> list[float]:
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    mags = rng.uniform(0.5, 2.0, size=n)
    signs = rng.choice((-1.0, 1.0), size=n)
    return [float(m * s) for m, s in zip(mags, signs)]


# --------------------------------------------------------------------------- parametrization
def _cases():
    for prog in PROGRAMS:
        for k, point in enumerate(prog.points):
            for active in activity_combos(point):
                for mode_name in MODES:
                    yield pytest.param(
                        prog, point, active, mode_name,
                        id=f"{prog.name}-p{k}-{combo_label(point, active)}-{mode_name}",
                    )


CASES = list(_cases())


def run_reverse(prog: Program, point: tuple, active: tuple[int, ...], mode, ret=None):
    anns = [Active(v) if i in active else Const(v) for i, v in enumerate(point)]
    head = (ret,) if ret is not None else ()
    return autodiff(mode, prog.fn, *head, *anns)


def run_forward(prog: Program, point: tuple, active: tuple[int, ...], seeds: dict[int, float], mode, ret=None):
    anns = [
        Duplicated(v, seed_value(prog, seeds.get(i, 0.0))) if i in active else Const(v)
        for i, v in enumerate(point)
    ]
    head = (ret,) if ret is not None else ()
    return autodiff(mode, prog.fn, *head, *anns)


@pytest.mark.parametrize(("prog", "point", "active", "mode_name"), CASES)
def test_finite_differences(prog: Program, point: tuple, active: tuple[int, ...], mode_name: str) -> None:
    mode = MODES[mode_name]
    partials = {i: fd_partial(prog.fn, point, i, prog.fd_relative) for i in active}
    if mode.reverse:
        out = run_reverse(prog, point, active, mode)
        assert isinstance(out, tuple) and len(out) == (2 if mode.with_primal else 1), out
        grads = out[0]
        assert isinstance(grads, tuple) and len(grads) == len(point), grads
        for i, g in enumerate(grads):
            if i in active:
                d, noise = partials[i]
                assert_deriv(g, d, noise, prog, f"d/d(arg {i})")
            else:
                assert g is None, f"arg {i} is Const but got derivative {g!r}"
        if mode.with_primal:
            assert_primal(out[1], prog, point)
        return

    # forward mode: each active argument seeded alone
    primal = None
    for i in active:
        out = run_forward(prog, point, active, {i: 1.0}, mode)
        assert isinstance(out, tuple) and len(out) == (2 if mode.with_primal else 1), out
        d, noise = partials[i]
        assert_deriv(out[0], d, noise, prog, f"tangent seeded on arg {i}")
        if mode.with_primal:
            primal = out[1]
            assert_primal(primal, prog, point)
    # all active arguments seeded at once
    seeds = dict(zip(active, random_seeds(f"{prog.name}{point}{active}", len(active))))
    out = run_forward(prog, point, active, seeds, mode)
    assert isinstance(out, tuple) and len(out) == (2 if mode.with_primal else 1), out
    expected = sum(s * partials[i][0] for i, s in seeds.items())
    noise = sum(abs(s) * partials[i][1] for i, s in seeds.items())
    rtol, _ = deriv_tol(prog)
    noise += rtol * sum(abs(s * partials[i][0]) for i, s in seeds.items())
    assert_deriv(out[0], expected, noise, prog, f"tangent seeded {seeds}")
    if mode.with_primal:
        assert_primal(out[1], prog, point)


# --------------------------------------------------------------------------- return activity given explicitly
@pytest.mark.parametrize("prog", [p for p in PROGRAMS if not p.f32][::4], ids=lambda p: p.name)
def test_explicit_return_activity(prog: Program) -> None:
    """``autodiff(Reverse, f, Active, ...)`` and ``autodiff(Forward, f, Duplicated, ...)``
    give the same as the default return activity."""
    point = prog.points[0]
    active = tuple(float_positions(point))
    a = run_reverse(prog, point, active, ReverseWithPrimal, ret=Active)
    b = run_reverse(prog, point, active, ReverseWithPrimal)
    assert a == b
    seeds = dict(zip(active, random_seeds(prog.name, len(active))))
    c = run_forward(prog, point, active, seeds, ForwardWithPrimal, ret=Duplicated)
    d = run_forward(prog, point, active, seeds, ForwardWithPrimal)
    assert c == d


# --------------------------------------------------------------------------- exact values
def rev(fn, *args):
    """Reverse gradients with every float argument active."""
    return autodiff(Reverse, fn, *[Active(a) if is_float_arg(a) else Const(a) for a in args])[0]


def fwd(fn, args, i):
    """Forward tangent in argument ``i``."""
    anns = [Duplicated(a, 1.0) if j == i else Const(a) for j, a in enumerate(args)]
    return autodiff(Forward, fn, *anns)[0]


@pytest.mark.parametrize("x", [-2.5, -0.3, 0.0, 0.7, 1.0, 3.0])
def test_exact_sin(x):
    assert rev(P.sin_only, x)[0] == pytest.approx(math.cos(x), rel=1e-15, abs=1e-300)
    assert fwd(P.sin_only, (x,), 0) == pytest.approx(math.cos(x), rel=1e-15, abs=1e-300)


@pytest.mark.parametrize("x", [0.25, 1.0, 4.0])
def test_exact_exp_log(x):
    expected = math.exp(x) + 1.0 / x
    assert rev(P.exp_log, x)[0] == pytest.approx(expected, rel=1e-14)
    assert fwd(P.exp_log, (x,), 0) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8])
@pytest.mark.parametrize("x", [-1.3, 0.5, 2.0])
def test_exact_power_loop(x, n):
    expected = n * x ** (n - 1) if n > 0 else 0.0
    assert rev(P.power_loop, x, n)[0] == pytest.approx(expected, rel=1e-13, abs=1e-300)
    assert fwd(P.power_loop, (x, n), 0) == pytest.approx(expected, rel=1e-13, abs=1e-300)
    (grads, val) = autodiff(ReverseWithPrimal, P.power_loop, Active(x), Const(n))
    assert val == pytest.approx(x ** n, rel=1e-14)


def test_exact_rosenbrock():
    assert rev(P.rosenbrock, 1.0, 2.0) == (-400.0, 200.0)
    assert autodiff(Reverse, P.rosenbrock, Active, Active(1.0), Active(2.0)) == ((-400.0, 200.0),)
    assert fwd(P.rosenbrock, (1.0, 2.0), 0) == -400.0
    assert fwd(P.rosenbrock, (1.0, 2.0), 1) == 200.0
    assert autodiff(ForwardWithPrimal, P.rosenbrock, Duplicated(1.0, 1.0), Const(2.0)) == (-400.0, 100.0)


@pytest.mark.parametrize("x", [-1.3, 0.7, 2.0])
def test_exact_horner(x):
    expected = 2.0 + 6.0 * x + 12.0 * x ** 2 + 20.0 * x ** 3
    assert rev(P.for_const_bound, x)[0] == pytest.approx(expected, rel=1e-14)
    assert fwd(P.for_const_bound, (x,), 0) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize(("x", "y"), [(1.7, 2.3), (0.4, -1.5), (3.0, 0.5)])
def test_exact_pow_xy(x, y):
    dx, dy = rev(P.pow_xy, x, y)
    assert dx == pytest.approx(y * x ** (y - 1.0), rel=1e-13)
    assert dy == pytest.approx(x ** y * math.log(x), rel=1e-13)
    assert fwd(P.pow_xy, (x, y), 0) == pytest.approx(y * x ** (y - 1.0), rel=1e-13)
    assert fwd(P.pow_xy, (x, y), 1) == pytest.approx(x ** y * math.log(x), rel=1e-13)


@pytest.mark.parametrize(("y", "x"), [(0.5, 1.5), (-1.0, -0.3), (2.0, -4.0)])
def test_exact_atan2(y, x):
    r2 = x * x + y * y
    assert rev(P.math_atan2, y, x) == (pytest.approx(x / r2, rel=1e-14), pytest.approx(-y / r2, rel=1e-14))
    assert fwd(P.math_atan2, (y, x), 0) == pytest.approx(x / r2, rel=1e-14)
    assert fwd(P.math_atan2, (y, x), 1) == pytest.approx(-y / r2, rel=1e-14)


@pytest.mark.parametrize(("x", "y"), [(3.7, 1.3), (-2.3, 0.7)])
def test_exact_floordiv(x, y):
    # q*x + (x*x)//y + y: the floor divisions contribute nothing
    q = x // y
    assert rev(P.floordiv_float, x, y) == (q, 1.0)
    assert fwd(P.floordiv_float, (x, y), 0) == q
    assert fwd(P.floordiv_float, (x, y), 1) == 1.0


@pytest.mark.parametrize(("x", "y", "n"), [(0.6, 0.3, 4), (-1.0, 1.2, 0), (2.0, -0.7, 7)])
def test_exact_loop_uses_index(x, y, n):
    dx, dy, dn = rev(P.loop_uses_index, x, y, n)
    assert dn is None
    assert dx == pytest.approx(n * (n - 1) / 2, abs=1e-300)
    assert dy == pytest.approx(sum(i * math.cos(y * i) for i in range(n)), rel=1e-13, abs=1e-15)


@pytest.mark.parametrize("a", [0.5, 2.0, 9.5, 100.0])
def test_exact_newton_sqrt(a):
    assert rev(P.while_newton_sqrt, a)[0] == pytest.approx(0.5 / math.sqrt(a), rel=1e-6)
    assert fwd(P.while_newton_sqrt, (a,), 0) == pytest.approx(0.5 / math.sqrt(a), rel=1e-6)


def test_exact_constant_and_unused():
    assert rev(P.constant_result, 0.7, 1.5) == (0.0, 0.0)
    assert fwd(P.constant_result, (0.7, 1.5), 0) == 0.0
    assert rev(P.constant_after_cancel, 0.7) == (0.0,)
    assert rev(P.unused_arg, 0.7, 1.5, -0.3) == (1.5, 1.7, 0.0)
    assert fwd(P.unused_arg, (0.7, 1.5, -0.3), 2) == 0.0


@pytest.mark.parametrize(("x", "y"), [(1.5, 0.5), (-0.7, 2.0), (0.4, -1.3)])
def test_exact_abs(x, y):
    # abs(x - y) * y + abs(x) + abs(-2y)
    s = math.copysign(1.0, x - y)
    dx = s * y + math.copysign(1.0, x)
    dy = -s * y + abs(x - y) + 2.0 * math.copysign(1.0, y)
    assert rev(P.abs_prog, x, y) == (pytest.approx(dx, rel=1e-15), pytest.approx(dy, rel=1e-15))


@pytest.mark.parametrize(("x", "k"), [(1.3, 0.5), (7.0, 1.0), (-0.8, 5.0)])
def test_exact_while_active_trip(x, k):
    # x_{j+1} = 1.5 x_j + k, m iterations: dx = 1.5**m, dk = sum_{j<m} 1.5**j
    m, v = 0, x
    while v < 100.0:
        v = v * 1.5 + k
        m += 1
    dx, dk = rev(P.while_active_trip, x, k)
    assert dx == pytest.approx(1.5 ** m, rel=1e-14)
    assert dk == pytest.approx(sum(1.5 ** j for j in range(m)), rel=1e-14)
    assert fwd(P.while_active_trip, (x, k), 0) == pytest.approx(1.5 ** m, rel=1e-14)


@pytest.mark.parametrize(("x", "y"), [(0.3, -0.4), (3e200, 4e200), (3e-200, -4e-200)])
def test_exact_hypot(x, y):
    # d hypot(x, y) = (x, y) / hypot(x, y), also where x*x + y*y over/underflows
    r = math.hypot(x, y)
    (dx, dy), val = autodiff(ReverseWithPrimal, P.hypot2, Active(x), Active(y))
    assert val == pytest.approx(r, rel=1e-15)
    assert (dx, dy) == (pytest.approx(x / r, rel=1e-15), pytest.approx(y / r, rel=1e-15))
    tx, val = autodiff(ForwardWithPrimal, P.hypot2, Duplicated(x, 1.0), Const(y))
    assert val == pytest.approx(r, rel=1e-15)
    assert tx == pytest.approx(x / r, rel=1e-15)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_exact_pow_runtime_int_at_zero(n):
    # d/dx x**n at x = 0 is 1 for n == 1 and 0 otherwise (x**0 == 1 everywhere)
    expected = 1.0 if n == 1 else 0.0
    assert rev(P.pow_n, 0.0, n) == (expected, None)
    assert fwd(P.pow_n, (0.0, n), 0) == expected


@pytest.mark.parametrize("y", [0.5, 2.0, 3.5])
def test_exact_pow_exponent_derivative_at_zero_base(y):
    # 0.0 ** y == 0 for all y > 0, so d/dy is 0 there
    assert autodiff(Reverse, P.pow_xy, Const(0.0), Active(y)) == ((None, 0.0),)
    assert fwd(P.pow_xy, (0.0, y), 1) == 0.0


@pytest.mark.parametrize(
    ("x", "n"), [(0.5, 10), (0.5, 2**31), (-1.0, 2**32 + 1), (2.0, -(2**31) - 3)]
)
def test_exact_pow_runtime_int_large_exponent(x, n):
    # x ** n with a runtime int exponent beyond the i32 range (Python ints are i64)
    expected_val = x ** n
    expected_d = n * x ** (n - 1)
    (dx, dn), val = autodiff(ReverseWithPrimal, P.pow_n, Active(x), Const(n))
    assert val == expected_val
    assert dx == pytest.approx(expected_d, rel=1e-15, abs=1e-300)
    tx, val = autodiff(ForwardWithPrimal, P.pow_n, Duplicated(x, 1.0), Const(n))
    assert val == expected_val
    assert tx == pytest.approx(expected_d, rel=1e-15, abs=1e-300)
