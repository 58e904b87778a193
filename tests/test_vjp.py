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


# -- batched reverse mode ------------------------------------------------------------------
def branchy(x, a):
    s = 0.0
    for i in range(len(x)):
        if x[i] > 0.0:
            s += a * x[i] ** 2
        else:
            s += np.sin(x[i]) * a
    return s


def whiley(x, a):
    s = a
    i = 0
    while i < len(x):
        s = s * x[i] + a
        i += 1
    return s


def prange_sum(x, a):
    from isozyme import prange

    out = np.zeros(len(x))
    for i in prange(len(x)):
        out[i] = np.sin(x[i]) * a
    return out


BATCH_CASES = {
    **CASES,
    "branchy": (branchy, [X, 1.7], 1.0),
    "while": (whiley, [X, 0.9], 1.0),
    "prange": (prange_sum, [X, 1.3], rng.uniform(-1, 1, 6)),
}


def _lane_seeds(seed, width):
    """width different seeds shaped like seed (lane k: seed scaled and shifted)."""
    def one(s, k):
        if s is None:
            return None
        return s * (k + 1.0) - 0.25 * k
    if isinstance(seed, tuple):
        return tuple(tuple(one(s, k) for s in seed) for k in range(width))
    return tuple(one(seed, k) for k in range(width))


@pytest.mark.parametrize("width", [2, 3])
@pytest.mark.parametrize("name", sorted(BATCH_CASES))
def test_batched_vjp_matches_each_lane(name, width):
    from isozyme import BatchDuplicated

    f, args, seed = BATCH_CASES[name]
    seeds = _lane_seeds(seed, width)
    anns, shadows = [], []
    for a in args:
        if isinstance(a, np.ndarray):
            lanes = tuple(np.zeros_like(a) for _ in range(width))
            anns.append(BatchDuplicated(a.copy(), lanes))
            shadows.append(lanes)
        else:
            anns.append(Active(a))
            shadows.append(None)
    derivs, primal = vjp(ReverseWithPrimal, f, *anns, seeds=seeds)
    assert len(derivs) == width
    want_primal = f(*args)
    for p, w in zip(primal if isinstance(want_primal, tuple) else [primal],
                    want_primal if isinstance(want_primal, tuple) else [want_primal]):
        np.testing.assert_allclose(p, w, rtol=1e-12)
    for lane in range(width):
        for k, a in enumerate(args):
            want = fd_vjp(f, seeds[lane], args, k)
            if isinstance(a, np.ndarray):
                assert derivs[lane][k] is None
                np.testing.assert_allclose(shadows[k][lane], want, rtol=1e-6, atol=1e-7)
            else:
                assert derivs[lane][k] == pytest.approx(want, rel=1e-6, abs=1e-7)


def sum_sin(x):
    return np.sum(np.sin(x))


def test_batched_reverse_computes_each_partial_once():
    from isozyme import BatchDuplicated, ir

    x = X.copy()
    text = ir(Reverse, sum_sin, Active, BatchDuplicated(x, tuple(np.zeros(6) for _ in range(3))),
              stage="simplified")
    assert text.count("math.cos") == 1  # one partial, applied to three lanes
    lanes = tuple(np.zeros(6) for _ in range(3))
    res = autodiff(Reverse, sum_sin, Active, BatchDuplicated(x, lanes))
    assert res == (((None,), (None,), (None,)),)
    for d in lanes:  # autodiff's seed: 1.0 in every lane
        np.testing.assert_allclose(d, np.cos(x), rtol=1e-12)


def test_batched_active_scalars_get_one_derivative_per_lane():
    (derivs,) = vjp(Reverse, lambda a, b: a * a * b, Active(3.0), Active(2.0),
                    seeds=(1.0, 10.0))
    assert derivs == ((12.0, 9.0), (120.0, 90.0))


def test_batched_vjp_bad_input():
    from isozyme import BatchDuplicated

    x = X.copy()
    lanes = (np.full(6, 5.0), np.full(6, 5.0))
    with pytest.raises(AnnotationError, match="seeds\\[1\\] differs from seeds\\[0\\]"):
        vjp(Reverse, squares_loop, BatchDuplicated(x, lanes), Const(1.0),
            seeds=(np.ones(6), np.ones(6, dtype=np.float32)))
    with pytest.raises(AnnotationError, match="2 shadows, but 3 seeds"):
        vjp(Reverse, squares_loop, BatchDuplicated(x, lanes), Const(1.0),
            seeds=(np.ones(6),) * 3)
    with pytest.raises(AnnotationError, match="pass one seed per lane"):
        vjp(Reverse, squares_loop, np.ones(6), BatchDuplicated(x, lanes), Const(1.0))
    with pytest.raises(AnnotationError, match="is Duplicated, but 2 seeds"):
        vjp(Reverse, squares_loop, Duplicated(x, np.zeros(6)), Const(1.0),
            seeds=(np.ones(6),) * 2)
    with pytest.raises(AnnotationError, match="lane 1, has size 5"):
        vjp(Reverse, squares_loop, BatchDuplicated(x, lanes), Const(1.0),
            seeds=(np.ones(6), np.ones(5)))
    with pytest.raises(AnnotationError, match="non-empty tuple"):
        vjp(Reverse, squares_loop, BatchDuplicated(x, lanes), Const(1.0), seeds=[np.ones(6)])
    with pytest.raises(AnnotationError, match="immutable scalar"):
        autodiff(Reverse, lambda a: a * a, Active, BatchDuplicated(2.0, (1.0, 0.0)))
    for d in lanes:
        assert np.array_equal(d, np.full(6, 5.0))


def test_vjp_and_batched_vjp_on_cuda_emu():
    """The GPU target's kernels (run on the CPU): seed accumulation into the returned
    buffer's shadow is a kernel, lanes share one sweep."""
    from isozyme import BatchDuplicated, target

    x, dx = X.copy(), np.zeros(6)
    seed = rng.uniform(-1, 1, 4)
    with target("cuda-emu"):
        vjp(Reverse, sin_matvec, seed, Const(M), Duplicated(x, dx))
        lanes = (np.zeros(6), np.zeros(6))
        vjp(Reverse, sin_matvec, Const(M), BatchDuplicated(x, lanes), seeds=(seed, 2 * seed))
    want = M.T @ (np.cos(M @ X) * seed)
    np.testing.assert_allclose(dx, want, rtol=1e-10)
    np.testing.assert_allclose(lanes[0], want, rtol=1e-10)
    np.testing.assert_allclose(lanes[1], 2 * want, rtol=1e-10)
