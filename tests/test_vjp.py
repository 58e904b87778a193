"""``isozyme.vjp``: reverse mode of functions returning arrays and tuples, seeded by
the caller (the vector-Jacobian product), checked against central differences of
``seed · f(args)`` for every activity combination, and its refusals of bad seeds."""

import itertools

import numpy as np
import pytest

from isozyme import (
    Active,
    AnnotationError,
    Const,
    Duplicated,
    Reverse,
    ReverseWithPrimal,
    autodiff,
    vjp,
)


# -- programs ----------------------------------------------------------------------------
def squares_loop(x, a):
    y = np.zeros(len(x))
    for i in range(len(x)):
        y[i] = a * x[i] * x[i]
    return y


def stencil(x, a):
    return np.sin(x[2:] - 2.0 * x[1:-1] + x[:-2]) * a


def sin_matvec(A, x):
    return np.sin(A @ x)


def rosenbrock_inp(x):
    s = 0.0
    for i in range(len(x) - 1):
        s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
    return s


def rosen_and_prod(x):
    # the reference document's foo(x) = [rosenbrock_inp(x), prod(x)]
    return np.array([rosenbrock_inp(x), np.prod(x)])


def sum_and_scaled(x, a):
    return np.sum(x * x) * a, np.cos(x) * a


def scaled_rows(A, x):
    return A * x[None, :]


def _dot(seed, out) -> float:
    """seed · out over the whole (possibly tuple) return value."""
    if isinstance(out, tuple):
        return sum(_dot(s, o) for s, o in zip(seed, out) if s is not None)
    return float(np.sum(np.asarray(seed) * np.asarray(out)))


def fd_vjp(f, seed, args, k, h=1e-6):
    """Central differences of seed · f(args) with respect to argument k."""
    base = args[k]
    if not isinstance(base, np.ndarray):
        plus = list(args)
        minus = list(args)
        plus[k], minus[k] = base + h, base - h
        return (_dot(seed, f(*plus)) - _dot(seed, f(*minus))) / (2 * h)
    g = np.zeros(base.shape)
    for idx in np.ndindex(base.shape):
        plus = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        minus = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        plus[k][idx] += h
        minus[k][idx] -= h
        g[idx] = (_dot(seed, f(*plus)) - _dot(seed, f(*minus))) / (2 * h)
    return g


rng = np.random.default_rng(8)
X = rng.uniform(-1.0, 1.0, 6)
M = rng.uniform(-1.0, 1.0, (4, 6))

CASES = {
    "loop": (squares_loop, [X, 1.7], rng.uniform(-1, 1, 6)),
    "stencil": (stencil, [X, 0.6], rng.uniform(-1, 1, 4)),
    "sin_matvec": (sin_matvec, [M, X], rng.uniform(-1, 1, 4)),
    "list_of_scalars": (rosen_and_prod, [X], np.array([0.3, -2.0])),
    "tuple": (sum_and_scaled, [X, 1.3], (0.7, rng.uniform(-1, 1, 6))),
    "2d": (scaled_rows, [M, X], rng.uniform(-1, 1, (4, 6))),
}


def _annotate(args, choice):
    """Annotations for one activity combination; the shadows of Duplicated args."""
    anns, shadows = [], []
    for a, active in zip(args, choice):
        if not active:
            anns.append(Const(a))
            shadows.append(None)
        elif isinstance(a, np.ndarray):
            d = np.zeros_like(a)
            anns.append(Duplicated(a.copy(), d))
            shadows.append(d)
        else:
            anns.append(Active(a))
            shadows.append(None)
    return anns, shadows


@pytest.mark.parametrize("name", sorted(CASES))
def test_vjp_matches_finite_differences_for_every_activity(name):
    f, args, seed = CASES[name]
    for choice in itertools.product([True, False], repeat=len(args)):
        anns, shadows = _annotate(args, choice)
        (derivs,) = vjp(Reverse, f, seed, *anns)
        assert len(derivs) == len(args)
        for k, (a, active) in enumerate(zip(args, choice)):
            if not active:
                assert derivs[k] is None
                continue
            want = fd_vjp(f, seed, args, k)
            if isinstance(a, np.ndarray):
                assert derivs[k] is None
                np.testing.assert_allclose(shadows[k], want, rtol=1e-6, atol=1e-7)
            else:
                assert derivs[k] == pytest.approx(want, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reverse_with_primal_returns_the_value(name):
    f, args, seed = CASES[name]
    anns, _ = _annotate(args, [True] * len(args))
    derivs, primal = vjp(ReverseWithPrimal, f, seed, *anns)
    want = f(*args)
    if isinstance(want, tuple):
        assert isinstance(primal, tuple) and len(primal) == len(want)
        for p, w in zip(primal, want):
            np.testing.assert_allclose(p, w, rtol=1e-12)
    else:
        np.testing.assert_allclose(primal, want, rtol=1e-12)
    (derivs_only,) = vjp(Reverse, f, seed, *_annotate(args, [True] * len(args))[0])
    for d, e in zip(derivs, derivs_only):
        assert d == pytest.approx(e) if d is not None else e is None


def test_shadow_accumulates_and_seed_is_not_written():
    x, dx = X.copy(), np.ones(6)
    seed = rng.uniform(-1, 1, 6)
    kept = seed.copy()
    vjp(Reverse, squares_loop, seed, Duplicated(x, dx), Const(2.0))
    np.testing.assert_allclose(dx, 1.0 + 4.0 * x * seed, rtol=1e-12)
    assert np.array_equal(seed, kept)


def test_seed_may_be_a_strided_view_or_read_only():
    x, dx = X.copy(), np.zeros(6)
    big = rng.uniform(-1, 1, 12)
    seed = big[::2]
    kept = big.copy()
    vjp(Reverse, squares_loop, seed, Duplicated(x, dx), Const(1.0))
    np.testing.assert_allclose(dx, 2.0 * x * seed, rtol=1e-12)
    assert np.array_equal(big, kept)
    ro = seed.copy()
    ro.setflags(write=False)
    dx[:] = 0.0
    vjp(Reverse, squares_loop, ro, Duplicated(x, dx), Const(1.0))
    np.testing.assert_allclose(dx, 2.0 * x * seed, rtol=1e-12)


def test_none_seed_leaves_a_tuple_element_undifferentiated():
    x, dx = X.copy(), np.zeros(6)
    (derivs,) = vjp(Reverse, sum_and_scaled, (None, np.ones(6)), Duplicated(x, dx), Active(2.0))
    np.testing.assert_allclose(dx, -2.0 * np.sin(x), rtol=1e-12)
    assert derivs[1] == pytest.approx(np.sum(np.cos(x)))
    derivs, primal = vjp(ReverseWithPrimal, sum_and_scaled, (1.0, None), Duplicated(x, dx), Active(2.0))
    assert derivs[1] == pytest.approx(np.sum(x * x))
    assert primal[0] == pytest.approx(2.0 * np.sum(x * x))


def test_float_return_seed_scales_the_gradient():
    x, dx = X.copy(), np.zeros(6)
    vjp(Reverse, rosenbrock_inp, 3.0, Duplicated(x, dx))
    np.testing.assert_allclose(dx, 3.0 * fd_vjp(rosenbrock_inp, 1.0, [X], 0), rtol=1e-6)


def sin_times(x):
    return np.sin(x) * x


def test_float32_program():
    x = X.astype(np.float32)
    dx = np.zeros_like(x)
    seed = np.linspace(-1, 1, 6).astype(np.float32)
    vjp(Reverse, sin_times, seed, Duplicated(x, dx))
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, (np.cos(x) * x + np.sin(x)) * seed, rtol=1e-5)
    with pytest.raises(AnnotationError, match="dtype float32 and rank 1.*dtype float64"):
        vjp(Reverse, sin_times, seed.astype(np.float64), Duplicated(x, dx))


def test_autodiff_keeps_its_behaviour():
    # float returns: the unit seed, as before
    assert autodiff(Reverse, lambda x, y: (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2,
                    Active, Active(1.0), Active(2.0)) == ((-400.0, 200.0),)
    # array and tuple returns need a seed: vjp
    with pytest.raises(AnnotationError, match="returns an array"):
        autodiff(Reverse, sin_matvec, Active, Const(M), Duplicated(X.copy(), np.zeros(6)))
    with pytest.raises(Exception, match="returning a tuple"):
        autodiff(Reverse, sum_and_scaled, Active, Duplicated(X.copy(), np.zeros(6)), Active(1.0))


BAD_SEEDS = [
    (np.ones(6, dtype=np.float32), "dtype float64 and rank 1.*dtype float32"),
    (np.ones((6, 1)), "rank 1.*rank 2"),
    (1.0, "must be an array.*got a float"),
    ((np.ones(6),), "structure.*one value.*a tuple of 1"),
    ("seed", "a seed must be a float, an array"),
    (np.ones(7), "bad seed: the seed of return value 0 has size 7 in dimension 0, but the "
                 "returned array has size 6"),
]


@pytest.mark.parametrize("seed,message", BAD_SEEDS)
def test_bad_seed_is_refused_before_anything_is_written(seed, message):
    x, dx = X.copy(), np.full(6, 5.0)
    with pytest.raises(AnnotationError, match=message):
        vjp(Reverse, squares_loop, seed, Duplicated(x, dx), Active(2.0))
    assert np.array_equal(dx, np.full(6, 5.0))
    assert np.array_equal(x, X)


def test_bad_seed_of_a_tuple_or_float_return():
    x, dx = X.copy(), np.full(6, 5.0)
    with pytest.raises(AnnotationError, match="structure.*a tuple of 2.*one value"):
        vjp(Reverse, sum_and_scaled, np.ones(6), Duplicated(x, dx), Active(2.0))
    with pytest.raises(AnnotationError, match="structure.*a tuple of 2.*a tuple of 3"):
        vjp(Reverse, sum_and_scaled, (1.0, np.ones(6), 1.0), Duplicated(x, dx), Active(2.0))
    with pytest.raises(AnnotationError, match="return value 0 must be a float"):
        vjp(Reverse, sum_and_scaled, (np.ones(6), np.ones(6)), Duplicated(x, dx), Active(2.0))
    with pytest.raises(AnnotationError, match="return value 1 has size 5"):
        vjp(Reverse, sum_and_scaled, (1.0, np.ones(5)), Duplicated(x, dx), Active(2.0))
    with pytest.raises(AnnotationError, match="must be a float like the returned value"):
        vjp(Reverse, rosenbrock_inp, np.ones(1), Duplicated(x, dx))
    assert np.array_equal(dx, np.full(6, 5.0))


def test_vjp_needs_reverse_mode_and_a_seed():
    from isozyme import Forward

    with pytest.raises(AnnotationError, match="vjp is reverse mode"):
        vjp(Forward, squares_loop, np.ones(6), Duplicated(X.copy(), np.zeros(6)), 1.0)
    with pytest.raises(AnnotationError, match="needs a seed"):
        vjp(Reverse, squares_loop)
    with pytest.raises(AnnotationError, match="not the return activity Active"):
        vjp(Reverse, squares_loop, Active, Duplicated(X.copy(), np.zeros(6)), 1.0)
