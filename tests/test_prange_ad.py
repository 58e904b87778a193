"""Derivatives of ``isozyme.prange`` loops (``scf.parallel``) in both modes, against
finite differences of the same functions run by Python (``prange`` is ``range``
there): gathers, scatters with colliding indices, stencils, reductions, nested and
2-D loops, values the reverse sweep must cache, float32 and float64; the reverse IR's
atomics (only where iterations may collide); refusals."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import isozyme as iz
from isozyme import Active, Const, Duplicated, Forward, Reverse, UnsupportedError, autodiff, prange
from tests.test_arrays_ad import fd_gradient

RNG = np.random.default_rng(7)


def gather(x, idx, w):
    s = 0.0
    for i in prange(len(idx)):
        s += w * np.sin(x[idx[i]]) * x[idx[i]]
    return s


def scatter(x, idx):
    y = np.zeros(5)
    for i in prange(len(idx)):
        y[idx[i]] += x[i] * x[i]
    t = 0.0
    for j in range(5):
        t += (j + 1.0) * y[j] * y[j]
    return t


def stencil(x):
    y = np.zeros(len(x))
    for i in prange(1, len(x) - 1):
        y[i] = x[i - 1] - 2.0 * x[i] + x[i + 1] * x[i]
    s = 0.0
    for j in range(len(x)):
        s += y[j] * y[j]
    return s


def elementwise(x):
    y = np.zeros(len(x))
    for i in prange(len(x)):
        y[i] = np.sin(x[i]) * x[i]
    s = 0.0
    for j in range(len(x)):
        s += y[j] * np.cos(y[j])
    return s


def cached_in_body(x):
    # exp(t) is neither recomputable nor read from memory: an indexed cache
    s = 0.0
    for i in prange(len(x)):
        t = np.exp(np.sin(x[i]))
        s += np.log(t * t + 1.0)
    return s


def store_then_load(x):
    y = np.zeros(len(x))
    s = 0.0
    for i in prange(len(x)):
        y[i] = x[i] * x[i]
        s += y[i] * np.sin(y[i])
    return s


def inner_sequential_loop(a, v):
    s = 0.0
    for i in prange(a.shape[0]):
        r = 0.0
        for j in range(a.shape[1]):
            r += a[i, j] * v[j]
        s += np.tanh(r)
    return s


def nested_prange(a):
    out = np.zeros(a.shape)
    for i in prange(a.shape[0]):
        for j in prange(a.shape[1]):
            out[i, j] = a[i, j] * np.exp(a[i, j]) + a[j % a.shape[0], i % a.shape[1]]
    s = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += out[i, j] * out[i, j]
    return s


def conditional(x, w):
    s = 0.0
    for i in prange(len(x)):
        if x[i] > 0.0:
            s += w * np.exp(x[i])
        else:
            s += x[i] * x[i] * w
    return s


idx5 = np.array([0, 3, 3, 1, 4, 0, 3], dtype=np.int64)

# (function, arguments, which arguments are differentiated arrays, tolerance)
CASES = {
    "gather": (gather, lambda: [RNG.uniform(-1, 1, 5), idx5, 1.3], [0]),
    "scatter_colliding": (scatter, lambda: [RNG.uniform(-1, 1, 7), idx5], [0]),
    "stencil": (stencil, lambda: [RNG.uniform(-1, 1, 8)], [0]),
    "elementwise": (elementwise, lambda: [RNG.uniform(-1, 1, 6)], [0]),
    "cached_in_body": (cached_in_body, lambda: [RNG.uniform(-1, 1, 6)], [0]),
    "store_then_load": (store_then_load, lambda: [RNG.uniform(-1, 1, 5)], [0]),
    "inner_sequential_loop": (
        inner_sequential_loop,
        lambda: [RNG.uniform(-1, 1, (3, 4)), RNG.uniform(-1, 1, 4)],
        [0, 1],
    ),
    "nested_prange": (nested_prange, lambda: [RNG.uniform(-1, 1, (3, 3))], [0]),
    "conditional": (conditional, lambda: [RNG.uniform(-1, 1, 7), 0.8], [0]),
}


def _annotated(args, diff, shadows):
    out = []
    for k, a in enumerate(args):
        if k in diff:
            out.append(Duplicated(a, shadows[k]))
        elif isinstance(a, float):
            out.append(Const(a))
        else:
            out.append(Const(a))
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_reverse_matches_finite_differences(name, dtype):
    f, make, diff = CASES[name]
    args = [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
            for a in make()]
    shadows = {k: np.zeros_like(args[k]) for k in diff}
    autodiff(Reverse, f, Active, *_annotated(args, diff, shadows))
    args64 = [a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
              else a for a in args]
    rtol, atol = (1e-6, 1e-8) if dtype == np.float64 else (2e-3, 2e-4)
    for k in diff:
        assert shadows[k].dtype == dtype
        np.testing.assert_allclose(
            shadows[k], fd_gradient(f, args64, k), rtol=rtol, atol=atol
        )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_finite_differences(name, dtype):
    f, make, diff = CASES[name]
    args = [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
            for a in make()]
    args64 = [a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
              else a for a in args]
    dirs = {k: RNG.uniform(-1, 1, args[k].shape).astype(dtype) for k in diff}
    (t,) = autodiff(Forward, f, *_annotated(args, diff, dirs))
    expect = sum(np.sum(fd_gradient(f, args64, k) * dirs[k]) for k in diff)
    rtol, atol = (1e-6, 1e-8) if dtype == np.float64 else (2e-3, 2e-4)
    assert float(t) == pytest.approx(float(expect), rel=rtol, abs=atol)


@pytest.mark.skipif(shutil.which("g++") is None, reason="cuda-emu needs g++")
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_emu_target_matches_finite_differences(name, mode):
    """The derivative loops go through the GPU target (kernels outlined from the
    parallel loops, atomics, reductions, caches as kernel arguments), run by cuda-emu."""
    f, make, diff = CASES[name]
    args = make()
    expect = {k: fd_gradient(f, args, k) for k in diff}
    with iz.target("cuda-emu"):
        if mode == "reverse":
            shadows = {k: np.zeros_like(args[k]) for k in diff}
            autodiff(Reverse, f, Active, *_annotated(args, diff, shadows))
            for k in diff:
                np.testing.assert_allclose(shadows[k], expect[k], rtol=1e-6, atol=1e-8)
        else:
            dirs = {k: RNG.uniform(-1, 1, args[k].shape) for k in diff}
            (t,) = autodiff(Forward, f, *_annotated(args, diff, dirs))
            total = sum(np.sum(expect[k] * dirs[k]) for k in diff)
            assert float(t) == pytest.approx(float(total), rel=1e-6, abs=1e-8)


def test_active_scalar_read_in_the_body_gets_a_reduction_of_its_adjoint():
    x = RNG.uniform(-1, 1, 7)
    (grads,) = autodiff(Reverse, conditional, Active, Const(x), Active(0.8))
    h = 1e-6
    expect = (conditional(x, 0.8 + h) - conditional(x, 0.8 - h)) / (2 * h)
    assert grads[1] == pytest.approx(expect, rel=1e-7)
    text = iz.ir(Reverse, conditional, Active, Const(x), Active(0.8))
    assert text.count('"scf.parallel"') == 2  # the primal loop and the adjoint loop
    assert text.count("scf.reduce(") >= 2


def _reverse_ir(f, args, diff):
    shadows = {k: np.zeros_like(args[k]) for k in diff}
    return iz.ir(Reverse, f, Active, *_annotated(args, diff, shadows))


def test_scatter_through_an_index_array_accumulates_atomically():
    text = _reverse_ir(gather, [RNG.uniform(-1, 1, 5), idx5, 1.3], [0])
    assert "memref.atomic_rmw" in text


def test_elementwise_adjoint_is_a_plain_store():
    text = _reverse_ir(elementwise, [RNG.uniform(-1, 1, 6)], [0])
    assert "memref.atomic_rmw" not in text
    # the primal loop, its adjoint, and the zero fill of a local shadow (emit_fill is an
    # scf.parallel so that GPU targets run it as a kernel)
    assert text.count('"scf.parallel"') == 3


def test_stencil_reads_of_neighbours_accumulate_atomically():
    text = _reverse_ir(stencil, [RNG.uniform(-1, 1, 8)], [0])
    assert "memref.atomic_rmw" in text


def test_values_from_the_parallel_body_are_cached_in_an_indexed_buffer():
    text = _reverse_ir(cached_in_body, [RNG.uniform(-1, 1, 6)], [0])
    assert "isozyme.cache" in text
    assert "enzyme.push" not in text


def mul_reduction(x):
    p = 1.0
    for i in prange(len(x)):
        p *= x[i]
    return p


def max_reduction(x):
    m = -1.0e300
    for i in prange(len(x)):
        m = max(m, x[i] * x[i])
    return m


@pytest.mark.parametrize("f", [mul_reduction, max_reduction])
def test_product_and_max_reductions_are_refused_in_both_modes(f):
    x = RNG.uniform(0.5, 1.5, 4)
    with pytest.raises(UnsupportedError, match="reduction combined by"):
        autodiff(Reverse, f, Active, Duplicated(x, np.zeros(4)))
    with pytest.raises(UnsupportedError, match="reduction combined by"):
        autodiff(Forward, f, Duplicated(x, np.ones(4)))


def while_in_body(x):
    s = 0.0
    for i in prange(len(x)):
        t = x[i]
        while t < 10.0:
            t = t * 1.5 + np.sin(t)
        s += t
    return s


def test_a_stack_cache_inside_a_parallel_loop_is_refused():
    x = RNG.uniform(1.0, 2.0, 4)
    with pytest.raises(UnsupportedError, match="a parallel loop cannot hold"):
        autodiff(Reverse, while_in_body, Active, Duplicated(x, np.zeros(4)))
