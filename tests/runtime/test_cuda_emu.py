"""The cuda-emu executor: the host program JIT-compiled by LLVM, kernels compiled by
g++, launches through ``iz_emu_launch``; numpy arrays in and out.

The first tests run a hand-built host program against a hand-written emulation
source (the runtime's own contract: kernel table, parameter packing, launch status,
the library cache); the others go through ``isozyme.autodiff`` under
``with isozyme.target("cuda-emu")`` and compare with numpy and finite differences."""

from __future__ import annotations

import ctypes
import shutil
import sys
import types

import numpy as np
import pytest

import isozyme as iz
from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import apply_lowering
from isozyme.compiler.targets import GpuArtefact, get_target
from isozyme.runtime import cuda_emu
from isozyme.runtime.cuda_emu import compile_emu_library, load_emu_artefact
from tests.runtime.cuda_stand_ins import FakeOutOfMemoryError, FakeStats, HostBackedDeviceArray
from tests.runtime.kernel_programs import heat, saxpy, sum_sq

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

# The emulation of kernel scale_k0(x, a, n, flag): x[i] *= a for i < n when flag.
_SOURCE = r"""
#include <cstdint>
typedef struct { double* allocated; double* aligned; int64_t offset;
                 int64_t sizes[1]; int64_t strides[1]; } iz_memref_double_1;
extern "C" void iz_emu_scale_k0(unsigned gx, unsigned gy, unsigned gz,
                                unsigned bx, unsigned by, unsigned bz, void** params) {
  iz_memref_double_1 x = *(iz_memref_double_1*)params[0];
  double a = *(double*)params[1];
  int64_t n = *(int64_t*)params[2];
  bool flag = *(bool*)params[3];
  for (unsigned b = 0; b < gx; ++b)
    for (unsigned t = 0; t < bx; ++t) {
      int64_t i = (int64_t)b * bx + t;
      if (i < n && flag) x.aligned[x.offset + i * x.strides[0]] *= a;
    }
}
typedef void (*tramp)(unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void**);
extern "C" int iz_emu_launch(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                             unsigned by, unsigned bz, unsigned shmem, void* stream,
                             void** params, void** extra) {
  ((tramp)f)(gx, gy, gz, bx, by, bz, params);
  return RC;
}
"""


def _scale(source: str):
    from tests.test_targets import launch_module

    module = launch_module()
    target = get_target("cuda-emu")
    apply_lowering(module, target.lowering_passes(("scale_k0",)), make_context())
    art = GpuArtefact("cuda-emu", module, ("scale_k0",), source, target.launch_symbol)
    compiled = load_emu_artefact(art)
    return compiled.entry("scale", ["memref<?xf64, strided<[?], offset: ?>>", "f64"], [])


def test_hand_built_host_program_runs_the_kernel(emu_cache) -> None:
    scale = _scale(_SOURCE.replace("RC", "0"))
    x = np.arange(1000.0)
    assert scale(x[1::2], 2.0) == ()
    # a time loop of 3 launches on the odd elements of a strided view
    expected = np.arange(1000.0)
    expected[1::2] *= 8.0
    np.testing.assert_array_equal(x, expected)
    assert len(list(emu_cache.glob("iz_emu_*.so"))) == 1
    assert not list(emu_cache.glob(".iz_emu_*"))  # no temporary file left


def test_failed_launch_raises(emu_cache) -> None:
    from isozyme.runtime.cuda_errors import CudaError

    scale = _scale(_SOURCE.replace("RC", "700"))
    x = np.ones(10)
    with pytest.raises(CudaError, match=r"iz_emu_launch of @scale_k0 returned 700") as e:
        scale(x, 2.0)
    assert e.value.code == 700 and isinstance(e.value, iz.IsozymeError)
    # the call stopped at the first failed launch (the time loop launches 3 times)
    assert x.sum() == 10.0 * 2.0
    # the status is per call: the next call fails again, with its own code
    with pytest.raises(CudaError, match="returned 700"):
        scale(np.ones(10), 2.0)


def test_library_cache(emu_cache, monkeypatch) -> None:
    src = 'extern "C" int iz_answer() { return 42; }\n'
    lib = compile_emu_library(src)
    assert lib.iz_answer() == 42
    assert compile_emu_library(src) is lib
    (path,) = emu_cache.glob("iz_emu_*.so")
    # another process (an empty in-process table) loads the cached file, no compiler run
    monkeypatch.setattr(cuda_emu, "_LOADED", {})
    monkeypatch.setattr(cuda_emu, "_build", lambda *a: pytest.fail("rebuilt"))
    assert compile_emu_library(src).iz_answer() == 42


def test_compiler_errors(emu_cache, monkeypatch) -> None:
    with pytest.raises(iz.CompileError, match="host C\\+\\+ compiler failed"):
        compile_emu_library("this is not C++")
    monkeypatch.setenv("CXX", "no-such-compiler-iz")
    with pytest.raises(iz.UnsupportedError, match="'no-such-compiler-iz' is not on PATH"):
        compile_emu_library('extern "C" int f() { return 1; }')


# -- through the public API ----------------------------------------------------------
def matvec(A, x, y):
    for i in iz.prange(A.shape[0]):
        acc = 0.0
        for j in range(A.shape[1]):
            acc += A[i, j] * x[j]
        y[i] = acc


def test_prange_primal_elementwise(no_checks) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(1000), rng.standard_normal(1000)
    expected = 2.5 * x + y
    with iz.target("cuda-emu"):
        iz.autodiff(iz.Forward, saxpy, iz.Const(2.5), iz.Const(x), iz.Const(y))
    np.testing.assert_allclose(y, expected, rtol=1e-15)


def test_prange_primal_reduction(no_checks) -> None:
    x = np.linspace(-1.0, 2.0, 777)
    with iz.target("cuda-emu"):
        _, val = iz.autodiff(iz.ForwardWithPrimal, sum_sq, iz.Const(x))
    assert val == pytest.approx(float(np.sum(x * x)), rel=1e-13)
    assert "__global__" in iz.ir(iz.ForwardWithPrimal, sum_sq, iz.Const(x), stage="cuda",
                                 target="cuda-emu")


def test_prange_time_loop_matches_numpy(no_checks) -> None:
    u = np.sin(np.linspace(0.0, 3.0, 513))
    w = u.copy()
    for _ in range(5):
        w[1:-1] = w[1:-1] + 0.25 * (w[:-2] - 2.0 * w[1:-1] + w[2:])
    with iz.target("cuda-emu"):
        iz.autodiff(iz.Forward, heat, iz.Const(u), iz.Const(np.zeros(513)), iz.Const(5))
    np.testing.assert_allclose(u, w, rtol=1e-14, atol=1e-15)


def test_prange_nested_sequential_loop(no_checks) -> None:
    rng = np.random.default_rng(1)
    A, x, y = rng.standard_normal((37, 11)), rng.standard_normal(11), np.zeros(37)
    with iz.target("cuda-emu"):
        iz.autodiff(iz.Forward, matvec, iz.Const(A), iz.Const(x), iz.Const(y))
    np.testing.assert_allclose(y, A @ x, rtol=1e-13)


def test_float32_and_no_kernels(no_checks) -> None:
    def poly(x, y):
        return x * x * y + 3.0

    with iz.target("cuda-emu"):
        assert iz.autodiff(iz.Reverse, poly, iz.Active, iz.Active(2.0), iz.Active(5.0)) \
            == ((20.0, 4.0),)
        x = np.arange(6, dtype=np.float32)
        y = np.ones(6, dtype=np.float32)
        iz.autodiff(iz.Forward, saxpy, iz.Const(np.float32(2.0)), iz.Const(x), iz.Const(y))
    np.testing.assert_array_equal(y, 2.0 * np.arange(6, dtype=np.float32) + 1.0)


# -- derivatives of parallel loops through cuda-emu, against finite differences ------
def _fd(f, x: np.ndarray, v: np.ndarray, h: float = 1e-6) -> float:
    return (f(x + h * v) - f(x - h * v)) / (2 * h)


def test_forward_of_a_reduction_matches_fd(no_checks) -> None:
    rng = np.random.default_rng(2)
    x, v = rng.standard_normal(300), rng.standard_normal(300)
    with iz.target("cuda-emu"):
        (d,) = iz.autodiff(iz.Forward, sum_sq, iz.Duplicated(x, v))
    assert d == pytest.approx(_fd(lambda z: float(np.sum(z * z)), x, v), rel=1e-7)


def test_reverse_of_a_reduction_matches_fd(no_checks) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(300)
    dx = np.zeros_like(x)
    with iz.target("cuda-emu"):
        iz.autodiff(iz.Reverse, sum_sq, iz.Active, iz.Duplicated(x, dx))
    for k in (0, 7, 299):
        e = np.zeros_like(x)
        e[k] = 1.0
        assert dx[k] == pytest.approx(_fd(lambda z: float(np.sum(z * z)), x, e), rel=1e-6)


def test_reverse_of_a_stencil_time_loop_matches_fd(no_checks) -> None:
    def loss(u0):
        u = u0.copy()
        heat_np(u, 4)
        return float(np.sum(u * u))

    def heat_np(u, steps):
        for _ in range(steps):
            u[1:-1] = u[1:-1] + 0.25 * (u[:-2] - 2.0 * u[1:-1] + u[2:])

    def heat_loss(u, v):
        heat(u, v, 4)
        return sum_sq(u)

    rng = np.random.default_rng(4)
    u = rng.standard_normal(64)
    u_run, du = u.copy(), np.zeros(64)
    with iz.target("cuda-emu"):
        iz.autodiff(iz.Reverse, heat_loss, iz.Active, iz.Duplicated(u_run, du),
                    iz.Duplicated(np.zeros(64), np.zeros(64)))
    for k in (0, 1, 30, 63):
        e = np.zeros(64)
        e[k] = 1.0
        assert du[k] == pytest.approx(_fd(loss, u, e), rel=1e-6, abs=1e-9)


def test_emu_seed_changes_nothing_for_a_correct_kernel(no_checks, monkeypatch) -> None:
    x = np.linspace(0.0, 1.0, 2000)
    results = []
    for seed in ("1", "2"):
        monkeypatch.setenv("ISOZYME_EMU_SEED", seed)
        y = np.ones(2000)
        with iz.target("cuda-emu"):
            iz.autodiff(iz.Forward, saxpy, iz.Const(3.0), iz.Const(x), iz.Const(y))
        results.append(y)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], 3.0 * x + 1.0)


# -- the cuda target's host program on the CPU (tests/runtime/cuda_stand_ins.py) -------
def test_cuda_host_program_on_the_cpu(no_checks, cuda_on_the_cpu) -> None:
    lib = cuda_on_the_cpu
    copies = ctypes.c_int.in_dll(lib, "copies")
    x = np.linspace(-1.0, 2.0, 1001)
    dev_x = HostBackedDeviceArray(x)
    # device arrays select the cuda target; the reduction's buffer is a device
    # allocation, initialised and read back with one copy each
    _, val = iz.autodiff(iz.ForwardWithPrimal, sum_sq, iz.Const(dev_x))
    assert val == pytest.approx(float(np.sum(x * x)), rel=1e-13)
    assert copies.value == 2 and FakeStats.allocated == 1
    y = np.ones(1001)
    iz.autodiff(iz.Forward, saxpy, iz.Const(2.0), iz.Const(dev_x), iz.Const(HostBackedDeviceArray(y)))
    np.testing.assert_allclose(y, 2.0 * x + 1.0, rtol=1e-15)
    assert copies.value == 2  # no host access: the kernel did everything
    from isozyme.runtime.cuda import _LIVE

    assert not _LIVE and FakeStats.allocated == FakeStats.freed == 1  # freed after the call


def test_cuda_results_are_device_arrays_owning_their_memory(no_checks, cuda_on_the_cpu) -> None:
    import gc

    from isozyme.runtime.cuda import _LIVE

    def double(x):
        y = np.zeros_like(x)
        for i in iz.prange(x.shape[0]):
            y[i] = 2.0 * x[i]
        return y

    x = np.arange(9.0)
    _, y = iz.autodiff(iz.ForwardWithPrimal, double, iz.Const(HostBackedDeviceArray(x)))
    assert type(y).__name__ == "NDArray"  # the (fake) cupy.ndarray
    np.testing.assert_array_equal(np.asarray(y), 2.0 * x)
    assert len(_LIVE) == 2  # the result and the (zero) tangent, until collected
    del y
    gc.collect()
    assert len(_LIVE) == 1


def doubled_into(x, y):
    t = np.zeros_like(x)
    for i in iz.prange(x.shape[0]):
        t[i] = 2.0 * x[i]
    for i in iz.prange(x.shape[0]):
        y[i] = t[i]


def test_failed_device_allocation_is_reraised_and_stops_the_call(
    no_checks, cuda_on_the_cpu
) -> None:
    from isozyme.runtime.cuda import _LIVE

    x, y = np.arange(5.0), np.zeros(5)
    args = (iz.Const(HostBackedDeviceArray(x)), iz.Const(HostBackedDeviceArray(y)))
    FakeStats.fail_after = 0
    with pytest.raises(FakeOutOfMemoryError, match="out of memory allocating 40 bytes") as e:
        iz.autodiff(iz.Forward, doubled_into, *args)
    # the host program tested the pointer and stopped: no kernel wrote y
    assert isinstance(e.value.__context__, iz.UnsupportedError)
    assert "device allocation failed (40 bytes)" in str(e.value.__context__)
    np.testing.assert_array_equal(y, 0.0)
    assert not _LIVE
    # the process is usable: the same compiled call runs once memory is there
    FakeStats.fail_after = None
    iz.autodiff(iz.Forward, doubled_into, *args)
    np.testing.assert_array_equal(y, 2.0 * x)
    assert not _LIVE


def test_failed_second_allocation_frees_the_first(no_checks, cuda_on_the_cpu) -> None:
    import gc

    from isozyme.runtime.cuda import _LIVE

    def double(x):
        t = np.zeros_like(x)
        for i in iz.prange(x.shape[0]):
            t[i] = 2.0 * x[i]
        return t

    x = HostBackedDeviceArray(np.arange(4.0))
    FakeStats.fail_after = 1  # the result's allocation succeeds, the tangent's fails
    with pytest.raises(FakeOutOfMemoryError):
        iz.autodiff(iz.ForwardWithPrimal, double,
                    iz.Duplicated(x, HostBackedDeviceArray(np.ones(4))))
    gc.collect()
    assert not _LIVE and FakeStats.allocated == FakeStats.freed == 1


def test_launches_use_the_current_stream_and_device(no_checks, cuda_on_the_cpu) -> None:
    from isozyme.runtime import cuda

    last_stream = ctypes.c_void_p.in_dll(cuda_on_the_cpu, "last_stream")
    x, y = np.ones(8), np.zeros(8)
    iz.autodiff(iz.Forward, saxpy, iz.Const(2.0), iz.Const(HostBackedDeviceArray(x)),
                iz.Const(HostBackedDeviceArray(y)))
    assert last_stream.value is None and FakeStats.devices == [0]  # the legacy stream
    FakeStats.stream = types.SimpleNamespace(ptr=0x5000)  # a non-default CuPy stream
    iz.autodiff(iz.Forward, saxpy, iz.Const(2.0), iz.Const(HostBackedDeviceArray(x)),
                iz.Const(HostBackedDeviceArray(y)))
    assert last_stream.value == 0x5000
    np.testing.assert_array_equal(y, 4.0)  # y += 2 x, twice
    assert cuda._CALL.stream == 0  # outside a call

    class OnDevice1(HostBackedDeviceArray):
        device = types.SimpleNamespace(id=1)

    loads = []
    kernels = cuda.kernel_module
    cuda_on_the_cpu_loader = lambda source: loads.append(source) or kernels(source)  # noqa: E731
    cuda.kernel_module = cuda_on_the_cpu_loader
    try:
        iz.autodiff(iz.Forward, saxpy, iz.Const(2.0), iz.Const(OnDevice1(x)),
                    iz.Const(OnDevice1(y)))
    finally:
        cuda.kernel_module = kernels
    # device 1 made current for the call; its own compiled program and kernels
    assert FakeStats.devices[-1] == 1 and len(loads) == 1
    np.testing.assert_array_equal(y, 6.0)


def test_call_from_a_fresh_thread(no_checks, cuda_on_the_cpu) -> None:
    import threading

    x, y = np.arange(6.0), np.zeros(6)
    iz.autodiff(iz.Forward, doubled_into, iz.Const(HostBackedDeviceArray(x)),
                iz.Const(HostBackedDeviceArray(y)))
    errors: list[BaseException] = []
    outs = [np.zeros(6) for _ in range(4)]

    def work(out: np.ndarray) -> None:
        try:
            iz.autodiff(iz.Forward, doubled_into, iz.Const(HostBackedDeviceArray(x)),
                        iz.Const(HostBackedDeviceArray(out)))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(o,)) for o in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for o in outs:
        np.testing.assert_array_equal(o, 2.0 * x)
    assert FakeStats.devices.count(0) == 5  # the device made current in every thread


WEIGHTS = np.arange(100.0)  # large enough to be a hidden argument, not baked


def weighted_copy(x, y):
    z = x * WEIGHTS
    for i in iz.prange(x.shape[0]):
        y[i] = z[i]


def test_cuda_hidden_global_array_goes_to_the_device(no_checks, cuda_on_the_cpu) -> None:
    x, y = np.full(100, 2.0), np.zeros(100)
    iz.autodiff(iz.Forward, weighted_copy, iz.Const(HostBackedDeviceArray(x)),
                iz.Const(HostBackedDeviceArray(y)))
    np.testing.assert_array_equal(y, 2.0 * WEIGHTS)
    # the global was copied for the call (fake cupy.asarray), so a host pointer never
    # reached the "device" code: the copy's memory is gone, the global unchanged
    np.testing.assert_array_equal(WEIGHTS, np.arange(100.0))


def gather_loss(x, idx, w):
    s = 0.0
    for i in iz.prange(idx.shape[0]):
        v = x[idx[i]]
        s += w[i] * v * v
    return s


def scatter_add(x, idx, out):
    for i in iz.prange(idx.shape[0]):
        out[idx[i]] += x[i] * x[i]


@pytest.mark.parametrize("dtype, rel", [(np.float64, 1e-7), (np.float32, 2e-2)])
def test_gather_with_colliding_indices_both_modes(no_checks, dtype, rel) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal(50).astype(dtype)
    idx = rng.integers(0, 10, 600)  # many iterations read the same 10 elements
    w = rng.standard_normal(600).astype(dtype)

    def loss(z):
        return float(np.sum(w.astype(np.float64) * z[idx].astype(np.float64) ** 2))

    x64 = x.astype(np.float64)
    dx = np.zeros_like(x)
    with iz.target("cuda-emu"):
        iz.autodiff(iz.Reverse, gather_loss, iz.Active, iz.Duplicated(x, dx), iz.Const(idx),
                    iz.Const(w))
        v = rng.standard_normal(50).astype(dtype)
        (d,) = iz.autodiff(iz.Forward, gather_loss, iz.Duplicated(x, v), iz.Const(idx),
                           iz.Const(w))
    exact = np.zeros(50)
    np.add.at(exact, idx, 2.0 * w.astype(np.float64) * x64[idx])
    np.testing.assert_allclose(dx, exact, rtol=rel, atol=rel * 1e-3)
    assert d == pytest.approx(_fd(loss, x64, v.astype(np.float64)), rel=rel)


def test_scatter_add_with_colliding_indices_reverse(no_checks) -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal(400)
    idx = rng.integers(0, 7, 400)
    out, dout = np.zeros(7), rng.standard_normal(7)  # dout: the seed of out
    dx = np.zeros(400)
    with iz.target("cuda-emu"):
        iz.autodiff(iz.Reverse, scatter_add, iz.Duplicated(x, dx), iz.Const(idx),
                    iz.Duplicated(out, dout.copy()))
    expected_out = np.zeros(7)
    np.add.at(expected_out, idx, x * x)
    np.testing.assert_allclose(out, expected_out, rtol=1e-13)
    np.testing.assert_allclose(dx, 2.0 * x * dout[idx], rtol=1e-13)


# -- gradient / gradient_ on device arrays (a fake array library over host memory) ---
class DeviceLike(HostBackedDeviceArray):
    """A device array of the fake library ``iz_fake_xp`` (as ``cupy.ndarray`` is
    CuPy's): no ``flags.writeable``, no ``__array_interface__``; what gradient uses."""

    def __init__(self, a: np.ndarray, readonly: bool = False) -> None:
        super().__init__(a)
        self.dtype, self.size = a.dtype, a.size
        ptr = self.__cuda_array_interface__["data"][0]
        self.__cuda_array_interface__["data"] = (ptr, readonly)

    def reshape(self, *shape: int) -> "DeviceLike":
        return DeviceLike(self.host.reshape(*shape))

    def __getitem__(self, key: object) -> "DeviceLike":
        return DeviceLike(self.host[key])

    def __setitem__(self, key: object, value: object) -> None:
        self.host[key] = value.host if isinstance(value, DeviceLike) else value

    def copy(self) -> "DeviceLike":
        return DeviceLike(self.host.copy())


DeviceLike.__module__ = "iz_fake_xp"


@pytest.fixture
def fake_xp(cuda_on_the_cpu, monkeypatch):
    xp = types.ModuleType("iz_fake_xp")
    xp.zeros_like = lambda a: DeviceLike(np.zeros_like(a.host))
    xp.empty = lambda shape, dtype: DeviceLike(np.empty(shape, dtype))
    # what jacobian/gradient(Forward) use of CuPy's API: unit seeds and assembly
    xp.zeros = lambda shape, dtype=np.float64: DeviceLike(np.zeros(shape, dtype))
    xp.arange = np.arange  # (index arrays; CuPy's live on the device)
    xp.asarray = lambda a, dtype=None: (
        a if isinstance(a, DeviceLike) else DeviceLike(np.asarray(a, dtype=dtype)))
    xp.stack = lambda arrays, axis=0: DeviceLike(np.stack([a.host for a in arrays], axis))
    monkeypatch.setitem(sys.modules, "iz_fake_xp", xp)
    return xp


@pytest.mark.parametrize("mode", [iz.Reverse, iz.Forward, iz.ReverseWithPrimal])
def test_gradient_of_device_arrays(no_checks, fake_xp, mode) -> None:
    x = np.linspace(-1.0, 1.0, 7)
    out = iz.gradient(mode, sum_sq, DeviceLike(x))
    (g,) = out[0] if mode.with_primal else out
    # the gradient is a device array of the argument's library, never np.asarray-ed
    assert type(g) is DeviceLike
    np.testing.assert_allclose(g.host, 2.0 * x, rtol=1e-14)
    if mode.with_primal:
        assert out[1] == pytest.approx(float(np.sum(x * x)), rel=1e-14)


def test_gradient_in_place_on_device_arrays(no_checks, fake_xp) -> None:
    x = np.linspace(-1.0, 1.0, 7)
    dx = DeviceLike(np.full(7, 5.0))
    (out,) = iz.gradient_(iz.Reverse, dx, sum_sq, DeviceLike(x))
    assert out is dx
    np.testing.assert_allclose(dx.host, 2.0 * x, rtol=1e-14)  # overwritten, not added
    # a read-only device array (its __cuda_array_interface__ says so) is refused
    frozen = DeviceLike(np.zeros(7), readonly=True)
    with pytest.raises(iz.ReadOnlyError, match="dx is read-only"):
        iz.gradient_(iz.Reverse, frozen, sum_sq, DeviceLike(x))
    np.testing.assert_array_equal(frozen.host, 0.0)
