"""``prange`` programs through the ``cuda-emu`` target, in Forward and Reverse mode,
against finite differences and the ``cpu`` target: time loops around kernels (a heat
stencil, message passing with colliding scatters, a whole-array update beside a
``prange`` kernel), large reductions and gathers over several blocks, arrays created
in a kernel (per-thread arrays; a run-time size is refused), float64 and float32;
and the nvcc check of ``conftest.py`` itself (a bad source fails the test with nvcc's
message; every compile of the GPU targets goes through it).

``tests/test_prange_ad.py``'s cuda-emu cases run here too (imported, not copied), so
their kernels also go through the nvcc check.
"""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest

import isozyme as iz
from isozyme import Active, Const, Duplicated, Forward, ForwardWithPrimal, Reverse, prange
from tests.runtime.conftest import NvccPtxCheck
from tests.test_prange_ad import (
    test_cuda_emu_target_matches_finite_differences as test_prange_cases_under_cuda_emu,
)

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="cuda-emu needs g++")

__all__ = ["test_prange_cases_under_cuda_emu"]  # collected here, under the nvcc check


# -- programs -------------------------------------------------------------------------
def heat(u, v, steps):
    """Explicit heat steps: two kernels per step (stencil, copy back), then a reduction."""
    n = u.shape[0]
    for _ in range(steps):
        for i in prange(1, n - 1):
            v[i] = u[i] + 0.2 * (u[i - 1] - 2.0 * u[i] + u[i + 1]) + 0.01 * u[i] * u[i]
        for i in prange(1, n - 1):
            u[i] = v[i]
    s = 0.0
    for i in prange(n):
        s += u[i] * u[i] * u[i]
    return s


def message_passing(x, w, src, dst, acc, steps):
    """Graph steps: a scatter with colliding destinations, then a node update."""
    n = x.shape[0]
    for _ in range(steps):
        for i in prange(n):
            acc[i] = 0.0
        for e in prange(src.shape[0]):
            acc[dst[e]] += w[e] * np.sin(x[src[e]])
        for i in prange(n):
            x[i] = x[i] + 0.3 * np.tanh(acc[i])
    s = 0.0
    for i in prange(n):
        s += x[i] * x[i]
    return s


def mixed_steps(u, c, steps):
    """A whole-array update (slices) and a prange kernel in one time loop."""
    n = u.shape[0]
    for _ in range(steps):
        u[1:-1] = u[1:-1] + 0.1 * (u[:-2] - 2.0 * u[1:-1] + u[2:])
        for i in prange(n):
            u[i] = u[i] * (1.0 - 0.05 * c[i] * u[i])
    return np.sum(u * c)


def rows_reduction(a, v):
    """A 2-D gather reduction: per row a sequential dot product, summed by a kernel."""
    s = 0.0
    for i in prange(a.shape[0]):
        r = 0.0
        for j in range(a.shape[1]):
            r += a[i, j] * v[j]
        s += np.cos(r) * r
    return s


def gather_sum(x, idx):
    s = 0.0
    for i in prange(idx.shape[0]):
        s += np.exp(0.5 * x[idx[i]]) * x[i % x.shape[0]]
    return s


def local_array(x):
    """A small array created in the body: a per-thread array in the kernel."""
    s = 0.0
    for i in prange(x.shape[0]):
        t = np.zeros(3)
        t[0] = x[i]
        t[1] = x[i] * x[i]
        t[2] = np.sin(x[i])
        s += t[0] * t[1] + t[2] * t[1]
    return s


def row_sums(a, v):
    """A whole-array reduction inside the body (its rank-0 accumulator is allocated
    in the kernel)."""
    s = 0.0
    for i in prange(a.shape[0]):
        s += np.sum(a[i] * v) ** 2
    return s


def row_temporary(a, v):
    """A whole-array temporary of run-time size in the body."""
    s = 0.0
    for i in prange(a.shape[0]):
        r = a[i] * v
        s += np.sum(r * r) + r[0]
    return s


RNG = np.random.default_rng(17)
N = 700  # several blocks of 256 threads


def _graph():
    src = RNG.integers(0, N, 2000)
    dst = RNG.integers(0, 50, 2000)  # 2000 edges into 50 nodes: many collisions
    return src.astype(np.int64), dst.astype(np.int64)


SRC, DST = _graph()

#: name -> (program, arguments (dtype) -> list, differentiated array arguments,
#: arguments written by the program that need a (zero) shadow)
PROGRAMS = {
    "heat": (heat, lambda t: [RNG.uniform(-1, 1, N).astype(t), np.zeros(N, t), 4],
             [0], [1]),
    "message_passing": (message_passing, lambda t: [
        RNG.uniform(-1, 1, N).astype(t), RNG.uniform(-1, 1, 2000).astype(t), SRC, DST,
        np.zeros(N, t), 3], [0, 1], [4]),
    "mixed_steps": (mixed_steps, lambda t: [RNG.uniform(-1, 1, N).astype(t),
                                            RNG.uniform(0, 1, N).astype(t), 3], [0, 1], []),
    "rows_reduction": (rows_reduction, lambda t: [RNG.uniform(-1, 1, (600, 5)).astype(t),
                                                  RNG.uniform(-1, 1, 5).astype(t)],
                       [0, 1], []),
    "local_array": (local_array, lambda t: [RNG.uniform(-1, 1, N).astype(t)], [0], []),
    "row_sums": (row_sums, lambda t: [RNG.uniform(-1, 1, (600, 4)).astype(t),
                                      RNG.uniform(-1, 1, 4).astype(t)], [0, 1], []),
    "gather_sum": (gather_sum, lambda t: [RNG.uniform(-1, 1, 300).astype(t),
                                          RNG.integers(0, 300, 900)], [0], []),
}


def _python(f, args):  # noqa: ANN001, ANN202
    """``f`` run by Python (``prange`` is ``range``) in float64 on copies."""
    return f(*[a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
               else a for a in args])


def _copies(args: list) -> list:
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def _directional_fd(f, args: list, dirs: dict, h: float = 1e-6) -> float:  # noqa: ANN001
    plus, minus = _copies(args), _copies(args)
    for k, d in dirs.items():
        plus[k] = plus[k].astype(np.float64) + h * d
        minus[k] = minus[k].astype(np.float64) - h * d
    return (_python(f, plus) - _python(f, minus)) / (2 * h)


def _annotated(args: list, shadows: dict) -> list:
    return [Duplicated(a, shadows[k]) if k in shadows else Const(a)
            for k, a in enumerate(args)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_program_both_modes_against_fd_and_cpu(name: str, dtype) -> None:  # noqa: ANN001
    f, make, diff, written = PROGRAMS[name]
    args = make(dtype)
    rtol, atol = (1e-6, 1e-9) if dtype == np.float64 else (3e-3, 1e-3)
    close = 1e-10 if dtype == np.float64 else 2e-4
    dirs = {k: RNG.uniform(-1, 1, args[k].shape) for k in diff}
    want = _directional_fd(f, args, dirs)

    with iz.target("cuda-emu"):
        (t,) = iz.autodiff(Forward, f, *_annotated(_copies(args), {
            **{k: np.zeros_like(args[k]) for k in written},
            **{k: d.astype(dtype) for k, d in dirs.items()}}))
    assert float(t) == pytest.approx(want, rel=rtol, abs=atol)

    grads = {}
    for target in ("cuda-emu", "cpu"):
        shadows = {k: np.zeros_like(args[k]) for k in (*diff, *written)}
        with iz.target(target):
            iz.autodiff(Reverse, f, Active, *_annotated(_copies(args), shadows))
        grads[target] = shadows
    proj = sum(float(np.sum(grads["cuda-emu"][k].astype(np.float64) * dirs[k]))
               for k in diff)
    assert proj == pytest.approx(want, rel=rtol, abs=atol)
    for k in diff:
        g, ref = grads["cuda-emu"][k], grads["cpu"][k]
        assert g.dtype == dtype
        np.testing.assert_allclose(g, ref, rtol=close, atol=close * float(np.abs(ref).max()))


def test_programs_have_kernels_in_every_mode() -> None:
    """The programs above are kernels on the GPU targets in both modes: the adjoint
    of a parallel loop is a parallel loop, so reverse mode has more kernels than the
    primal (not twice as many: a loop whose values the reverse sweep does not need,
    such as the final reduction, is dropped from its forward sweep)."""
    for name, (f, make, diff, written) in PROGRAMS.items():
        args = make(np.float64)
        primal = iz.ir(ForwardWithPrimal, f, *map(Const, args), stage="cuda",
                       target="cuda-emu")
        shadows = {k: np.zeros_like(args[k]) for k in (*diff, *written)}
        rev = iz.ir(Reverse, f, Active, *_annotated(args, shadows), stage="cuda",
                    target="cuda-emu")
        n = primal.count("__global__")
        assert n >= 1, name
        assert rev.count("__global__") > n, name


def test_colliding_scatter_adjoint_is_atomic() -> None:
    """The scatter's forward is an atomic add; the reverse of its gather of x through
    ``src`` (colliding sources) accumulates atomically too."""
    f, make, diff, written = PROGRAMS["message_passing"]
    args = make(np.float64)
    shadows = {k: np.zeros_like(args[k]) for k in (*diff, *written)}
    cuda = iz.ir(Reverse, f, Active, *_annotated(args, shadows), stage="cuda",
                 target="cuda-emu")
    assert cuda.count("atomicAdd(") >= 2


def test_a_run_time_sized_array_in_a_kernel_is_refused() -> None:
    """A kernel has no allocator: an array of run-time size created in a prange body
    is an UnsupportedError naming memref.alloc (the cpu target runs it)."""
    a, v = RNG.uniform(-1, 1, (300, 4)), RNG.uniform(-1, 1, 4)
    (t,) = iz.autodiff(Forward, row_temporary, Duplicated(a, np.ones_like(a)), Const(v))
    assert np.isfinite(t)
    with pytest.raises(iz.UnsupportedError, match=r"memref.alloc of memref<\?xf64> in a "
                       "GPU kernel with a size known only at run time"):
        with iz.target("cuda-emu"):
            iz.autodiff(Forward, row_temporary, Duplicated(a, np.ones_like(a)), Const(v))


def _reverse_grads(f, args: list, diff: list, written: list) -> dict:  # noqa: ANN001
    shadows = {k: np.zeros_like(args[k]) for k in (*diff, *written)}
    with iz.target("cuda-emu"):
        iz.autodiff(Reverse, f, Active, *_annotated(_copies(args), shadows))
    return {k: shadows[k] for k in diff}


@pytest.mark.parametrize("name", ["message_passing", "heat"])
def test_block_order_changes_no_gradient(name: str, monkeypatch) -> None:  # noqa: ANN001
    """Other block orders (ISOZYME_EMU_SEED) reorder the atomic accumulations of the
    adjoint kernels, nothing more: the gradients agree to rounding."""
    f, make, diff, written = PROGRAMS[name]
    args = make(np.float64)
    runs = []
    for seed in ("1", "987654321"):
        monkeypatch.setenv("ISOZYME_EMU_SEED", seed)
        runs.append(_reverse_grads(f, args, diff, written))
    for k in diff:
        np.testing.assert_allclose(runs[0][k], runs[1][k], rtol=1e-12,
                                   atol=1e-14 * float(np.abs(runs[0][k]).max()))


def test_empty_arrays_launch_nothing() -> None:
    """Zero-trip parallel loops launch no kernel; derivatives are zeros, as on cpu."""
    f, _, diff, written = PROGRAMS["gather_sum"]
    x = RNG.uniform(-1, 1, 4)
    grads = _reverse_grads(f, [x, np.zeros(0, np.int64)], diff, written)
    np.testing.assert_array_equal(grads[0], np.zeros(4))
    f, _, diff, written = PROGRAMS["heat"]
    grads = _reverse_grads(f, [np.array([0.5, -2.0]), np.zeros(2), 3], diff, written)
    np.testing.assert_allclose(grads[0], 3.0 * np.array([0.5, -2.0]) ** 2)  # d(sum u^3)


# -- the nvcc check of conftest.py ------------------------------------------------------
def _remove_kept_source(message: str) -> None:
    """Delete the failing source the check kept (named in its message)."""
    kept = re.search(r"source kept in (\S+\.cu)\)", message)
    assert kept is not None, message
    os.unlink(kept.group(1))


needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")


@needs_nvcc
def test_nvcc_check_fails_with_nvccs_message(tmp_path) -> None:
    check = NvccPtxCheck(shutil.which("nvcc"), tmp_path)
    good = 'extern "C" __global__ void ok_k0(double* p) { p[threadIdx.x] += 1.0; }\n'
    bad = 'extern "C" __global__ void bad_k0(double* p) { p[threadIdx.x] = undefined_v; }\n'
    assert check.error(good) is None
    assert check.compiled == 1 and (tmp_path / f"{check.key(good)}.ok").exists()
    check.check(good)  # cached: no second nvcc run
    assert check.compiled == 1
    with pytest.raises(pytest.fail.Exception, match=r"(?s)bad_k0.*undefined_v") as failed:
        check.check(bad)
    _remove_kept_source(str(failed.value))
    assert not (tmp_path / f"{check.key(bad)}.ok").exists()  # failures are not cached
    # a later process finds the success on disk
    again = NvccPtxCheck(shutil.which("nvcc"), tmp_path)
    assert again.error(good) is None and again.compiled == 0


@needs_nvcc
def test_nvcc_check_wants_an_entry_per_declared_kernel(tmp_path) -> None:
    check = NvccPtxCheck(shutil.which("nvcc"), tmp_path)
    # the declaration is inside a comment: nvcc emits no kernel of that name
    src = ('// extern "C" __global__ void ghost_k0(double* p) {\n'
           'extern "C" __global__ void real_k0(double* p) { p[0] = 1.0; }\n')
    message = check.error(src)
    assert message is not None and "no .entry for ghost_k0" in message
    _remove_kept_source(message)


def test_every_gpu_compile_goes_through_the_check(cuda_c_compiles_with_nvcc, nvcc_ptx) -> None:
    """A function compiled for cuda-emu during a test hands its CUDA C to the check
    (a function defined here: never in the compile cache)."""

    def twice(x):
        for i in prange(x.shape[0]):
            x[i] = 2.0 * x[i] + 1.0

    x = np.arange(5.0)
    with iz.target("cuda-emu"):
        iz.autodiff(Forward, twice, Const(x))
    np.testing.assert_array_equal(x, 2.0 * np.arange(5.0) + 1.0)
    assert len(cuda_c_compiles_with_nvcc) == 1
    # (the kernel is named after the host function holding the loop: the entry
    # point's, where the primal is inlined)
    assert re.search(r'extern "C" __global__ void \w+_k0\(', cuda_c_compiles_with_nvcc[0])
    if nvcc_ptx is not None:
        assert nvcc_ptx.results[nvcc_ptx.key(cuda_c_compiles_with_nvcc[0])] is None


def test_a_source_nvcc_refuses_fails_the_test(cuda_c_compiles_with_nvcc, nvcc_ptx,
                                              monkeypatch) -> None:
    """A CUDA C source that nvcc rejects (here: the printer made to emit a bad line)
    fails the test during the call that compiles it."""
    if nvcc_ptx is None:
        pytest.skip("nvcc not on PATH")
    import isozyme.compiler.targets.cuda as cuda_target  # noqa: PLC0415

    printed = cuda_target._print_cuda
    monkeypatch.setattr(cuda_target, "_print_cuda",
                        lambda k: printed(k) + "\nthis_is_not_cuda;\n")

    def thrice(x):
        for i in prange(x.shape[0]):
            x[i] = 3.0 * x[i]

    with pytest.raises(pytest.fail.Exception,
                       match=r"(?s)nvcc -ptx -arch=sm_90.*_k0.*this_is_not_cuda") as failed:
        with iz.target("cuda-emu"):
            iz.autodiff(Forward, thrice, Const(np.ones(3)))
    _remove_kept_source(str(failed.value))
