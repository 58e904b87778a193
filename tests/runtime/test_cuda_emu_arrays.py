"""Whole-array numpy code through the ``cuda-emu`` target, in Forward and Reverse mode.

Whole-array code lowers to ``scf.parallel`` (``convert-linalg-to-parallel-loops``), so
on the GPU targets it becomes kernels: these tests run the array programs of
``tests/array_programs.py`` under ``with isozyme.target("cuda-emu")`` with the
finite-difference harness of ``tests/test_arrays_ad.py`` (its programs, argument
builders, finite differences and tolerances, imported; every array argument
Duplicated at once, so one compilation per program and mode), and check the
derivatives against finite differences and against the ``cpu`` target's numbers. A second set runs some of
the same programs on arrays of several blocks (more than 256 elements), where the
emulator's shuffled block order would expose an order-dependent kernel, in float64
and float32, against directional finite differences. Every CUDA C source these tests
compile also compiles with ``nvcc -ptx -arch=sm_90`` (``conftest.py``).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import isozyme as iz
from isozyme import Active, Const, Duplicated, ForwardWithPrimal, Reverse, ReverseWithPrimal
from tests import array_programs as P
from tests import test_arrays_ad as H

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="cuda-emu needs g++")

#: The whole-array programs of the harness (numpy expressions, reductions, dot and @,
#: max/min, broadcasting, slices and stencils, a time loop of slice updates, views and
#: transposes, einsum, GMM), in both modes: all of them but ``gmm_einsum`` (``gmm``
#: with its contractions as einsums: ``gmm`` and ``einsum`` cover it, and its 16
#: compilations would cost a quarter of this file's time).
WHOLE_ARRAY = (
    "elementwise", "ufuncs", "power_ops", "broadcast_row", "broadcast_newaxis",
    "reduce_axis0", "reduce_axis1_keepdims", "mean_and_prod", "max_min", "dot_vec",
    "matvec", "matmat", "outer", "transpose", "einsum", "where", "clip", "maximum",
    "logsumexp", "logsumexp_rows", "diag", "stack_concat", "array_from_scalars",
    "reshape", "scalar_times_array", "gmm", "mixed_loop_and_array",
    "in_place_whole_array", "float32_whole_array", "transposed_view_input",
    "rows_in_loop", "vectorized_rosenbrock", "stencil_vectorized", "slice_assign",
    "strided_slices",
)

def _f64(args: list) -> list:
    return [a.astype(np.float64) if isinstance(a, np.ndarray) else a for a in args]


def _all_duplicated(args: list, shadows: dict) -> list:
    """Every array argument Duplicated with its shadow (one compilation gives every
    array's derivative: each distinct kernel source costs a g++ and an nvcc run)."""
    return [Duplicated(a, shadows[k]) if k in shadows else Const(a)
            for k, a in enumerate(args)]


def _reverse(target: str, f, args: list, mode=Reverse):  # noqa: ANN001, ANN202
    """The shadows of every array argument after a reverse call on ``target``, and
    the call's result."""
    shadows = {k: np.zeros_like(args[k]) for k in H.array_positions(args)}
    with iz.target(target):
        res = iz.autodiff(mode, f, Active, *_all_duplicated(H.copies(args), shadows))
    return shadows, res


def _forward(target: str, f, args: list, seeds: dict):  # noqa: ANN001, ANN202
    """The tangent and primal of a ForwardWithPrimal call on ``target`` along
    ``seeds`` (one per array argument)."""
    shadows = {k: s.copy() for k, s in seeds.items()}
    with iz.target(target):
        return iz.autodiff(ForwardWithPrimal, f, *_all_duplicated(H.copies(args), shadows))


@pytest.mark.parametrize("name", WHOLE_ARRAY)
def test_reverse_under_cuda_emu_matches_fd_and_cpu(name: str) -> None:
    f, make = H.CASES[name]
    args = make()
    rtol, atol = H.tolerance(args)
    close = 1e-5 if rtol > 1e-6 else 1e-12  # float32 / float64: emu vs cpu
    got, res = _reverse("cuda-emu", f, args, ReverseWithPrimal)
    assert res[0] == (None,) * len(args)
    assert res[1] == pytest.approx(f(*H.copies(args)), rel=rtol)
    cpu, _ = _reverse("cpu", f, args)
    for k in H.array_positions(args):
        assert got[k].dtype == args[k].dtype
        np.testing.assert_allclose(got[k], H.fd_gradient(f, _f64(args), k),
                                   rtol=rtol, atol=atol)
        np.testing.assert_allclose(got[k], cpu[k], rtol=close, atol=close * 1e-2)


@pytest.mark.parametrize("name", WHOLE_ARRAY)
def test_forward_under_cuda_emu_matches_fd_and_cpu(name: str) -> None:
    f, make = H.CASES[name]
    args = make()
    rtol, atol = H.tolerance(args)
    close = 1e-5 if rtol > 1e-6 else 1e-12
    rng = np.random.default_rng(11)
    seeds = {k: rng.uniform(-1, 1, args[k].shape).astype(args[k].dtype)
             for k in H.array_positions(args)}
    want = sum(float(np.sum(H.fd_gradient(f, _f64(args), k) * s)) for k, s in seeds.items())
    t, primal = _forward("cuda-emu", f, args, seeds)
    assert t == pytest.approx(want, rel=rtol, abs=atol * 10)
    assert primal == pytest.approx(f(*H.copies(args)), rel=rtol)
    t_cpu, primal_cpu = _forward("cpu", f, args, seeds)
    assert t == pytest.approx(t_cpu, rel=close, abs=close * 1e-2)
    assert primal == pytest.approx(primal_cpu, rel=close, abs=close * 1e-2)


@pytest.mark.parametrize("name", WHOLE_ARRAY)
def test_whole_array_primal_becomes_kernels(name: str) -> None:
    """The primal's whole-array code is outlined into kernels (so the numbers above
    come from emulated kernels, not from the host program). ForwardWithPrimal of
    Const arguments: the primal alone (Forward would drop it as dead)."""
    f, make = H.CASES[name]
    args = make()
    anns = [Duplicated(a, np.zeros_like(a)) if name in H.ALL_DUPLICATED
            and isinstance(a, np.ndarray) else Const(a) for a in args]
    cuda = iz.ir(ForwardWithPrimal, f, *anns, stage="cuda", target="cuda-emu")
    assert "__global__" in cuda


# -- several blocks: arrays longer than a block of 256 threads ----------------------
def _blocks(n: int, rng: np.random.Generator, dtype) -> np.ndarray:  # noqa: ANN001
    return rng.uniform(-1, 1, n).astype(dtype)


#: (program, argument builder (rng, dtype) -> args, array arguments to differentiate)
MULTI_BLOCK = {
    "mixed_loop_and_array": (P.mixed_loop_and_array,
                             lambda r, t: [_blocks(1000, r, t)], [0]),
    "stencil_vectorized": (P.stencil_vectorized,
                           lambda r, t: [_blocks(700, r, t), 3], [0]),
    "matvec": (P.matvec, lambda r, t: [_blocks(300 * 7, r, t).reshape(300, 7),
                                       _blocks(7, r, t)], [0, 1]),
    "transposed_view_input": (P.matvec, lambda r, t: [
        _blocks(7 * 300, r, t).reshape(7, 300).T, _blocks(7, r, t)], [0, 1]),
    "reduce_axis0": (P.reduce_axis0,
                     lambda r, t: [_blocks(3 * 600, r, t).reshape(3, 600)], [0]),
    "logsumexp_rows": (P.logsumexp_rows,
                       lambda r, t: [_blocks(400 * 3, r, t).reshape(400, 3)], [0]),
    "slice_assign": (P.slice_assign, lambda r, t: [_blocks(500, r, t),
                                                   _blocks(300, r, t)], [0, 1]),
    "in_place_whole_array": (P.in_place_whole_array, lambda r, t: [
        _blocks(600, r, t), _blocks(600, r, t)], [0, 1]),
}


def _directional_fd(f, args: list, dirs: dict, h: float = 1e-6) -> float:  # noqa: ANN001
    """Central difference of ``f`` (in float64) along ``dirs`` (argument -> direction)."""
    plus, minus = H.copies(_f64(args)), H.copies(_f64(args))
    for k, d in dirs.items():
        plus[k] = plus[k] + h * d
        minus[k] = minus[k] - h * d
    return (f(*plus) - f(*minus)) / (2 * h)


def _annotate_all(args: list, diff: list, shadows: dict, name: str) -> list:
    return [Duplicated(a, shadows[k]) if k in diff
            else Duplicated(a, np.zeros_like(a)) if name in H.ALL_DUPLICATED
            and isinstance(a, np.ndarray) else Const(a)
            for k, a in enumerate(args)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(MULTI_BLOCK))
def test_several_blocks_both_modes(name: str, dtype) -> None:  # noqa: ANN001
    f, make, diff = MULTI_BLOCK[name]
    rng = np.random.default_rng(5)
    args = make(rng, dtype)
    assert max(args[k].size for k in diff) > 256
    rtol = 1e-6 if dtype == np.float64 else 3e-3
    close = 1e-11 if dtype == np.float64 else 1e-4
    dirs = {k: rng.uniform(-1, 1, args[k].shape) for k in diff}
    want = _directional_fd(f, args, dirs)
    scale = max(1.0, *(float(np.abs(d).sum()) for d in dirs.values())) * 1e-9
    # forward: one tangent along every direction at once
    with iz.target("cuda-emu"):
        (t,) = iz.autodiff(iz.Forward, f, *_annotate_all(
            H.copies(args), diff, {k: d.astype(dtype) for k, d in dirs.items()}, name))
    assert float(t) == pytest.approx(want, rel=rtol, abs=scale if dtype == np.float64 else 1e-3)
    # reverse: the gradient's projection on the directions, and the cpu's gradient
    grads = {}
    for target in ("cuda-emu", "cpu"):
        shadows = {k: np.zeros_like(args[k]) for k in diff}
        with iz.target(target):
            iz.autodiff(Reverse, f, Active, *_annotate_all(H.copies(args), diff, shadows, name))
        grads[target] = shadows
    proj = sum(float(np.sum(grads["cuda-emu"][k].astype(np.float64) * dirs[k])) for k in diff)
    assert proj == pytest.approx(want, rel=rtol, abs=scale if dtype == np.float64 else 1e-3)
    for k in diff:
        assert grads["cuda-emu"][k].dtype == dtype
        np.testing.assert_allclose(grads["cuda-emu"][k], grads["cpu"][k], rtol=close,
                                   atol=close * float(np.abs(grads["cpu"][k]).max()))
