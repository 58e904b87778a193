"""The cuda target on a real GPU: CuPy arrays in, kernels compiled by CuPy, the host
program launching them with cuLaunchKernel, device allocations, CuPy arrays out.

Every test is skipped without CuPy or without a CUDA device;
run them on the GPU machine with ``python -m pytest -q tests/runtime/test_cuda_device.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import isozyme as iz
from isozyme.runtime.cuda import unavailable
from tests.runtime.kernel_programs import heat, saxpy, sum_sq

_WHY = unavailable()
pytestmark = [
    pytest.mark.skipif(_WHY is not None, reason=f"needs CuPy and a CUDA device: {_WHY}"),
    pytest.mark.usefixtures("no_checks"),
]

if _WHY is None:
    import cupy as cp


def double(x):
    y = np.zeros_like(x)
    for i in iz.prange(x.shape[0]):
        y[i] = 2.0 * x[i]
    return y


def test_cupy_arrays_select_cuda_and_run_the_kernel() -> None:
    x = cp.linspace(0.0, 1.0, 100_003)
    y = cp.ones(100_003)
    iz.autodiff(iz.Forward, saxpy, iz.Const(3.0), iz.Const(x), iz.Const(y))
    np.testing.assert_allclose(cp.asnumpy(y), 3.0 * cp.asnumpy(x) + 1.0, rtol=1e-15)
    text = iz.ir(iz.Forward, saxpy, iz.Const(3.0), iz.Const(x), iz.Const(y), stage="llvm")
    assert "@cuLaunchKernel" in text  # the arguments chose the cuda target


def test_float32_strided_view() -> None:
    base = cp.arange(40, dtype=cp.float32)
    y = cp.zeros(20, dtype=cp.float32)
    iz.autodiff(iz.Forward, saxpy, iz.Const(np.float32(2.0)), iz.Const(base[::2]), iz.Const(y))
    np.testing.assert_array_equal(cp.asnumpy(y), 2.0 * np.arange(0, 40, 2, dtype=np.float32))


def test_reduction_reads_the_result_from_the_device() -> None:
    x = cp.linspace(-1.0, 2.0, 1_000_001)
    _, val = iz.autodiff(iz.ForwardWithPrimal, sum_sq, iz.Const(x))
    assert val == pytest.approx(float(cp.sum(x * x)), rel=1e-12)


def test_time_loop_of_kernels() -> None:
    n = 4097
    u0 = np.sin(np.linspace(0.0, 3.0, n))
    w = u0.copy()
    for _ in range(20):
        w[1:-1] = w[1:-1] + 0.25 * (w[:-2] - 2.0 * w[1:-1] + w[2:])
    u = cp.asarray(u0)
    iz.autodiff(iz.Forward, heat, iz.Const(u), iz.Const(cp.zeros(n)), iz.Const(20))
    np.testing.assert_allclose(cp.asnumpy(u), w, rtol=1e-13, atol=1e-14)


def test_returned_arrays_are_cupy_arrays() -> None:
    x = cp.arange(7.0)
    _, y = iz.autodiff(iz.ForwardWithPrimal, double, iz.Const(x))
    assert isinstance(y, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(y), 2.0 * np.arange(7.0))
    del y  # freed into CuPy's pool when collected


def test_mixing_host_and_device_arrays() -> None:
    with pytest.raises(iz.AnnotationError, match="mixes host arrays"):
        iz.autodiff(iz.Forward, saxpy, iz.Const(1.0), iz.Const(np.ones(3)), iz.Const(cp.ones(3)))


def test_compiled_once_per_signature() -> None:
    from isozyme.calls import stats

    x, y = cp.ones(64), cp.zeros(64)
    iz.autodiff(iz.Forward, saxpy, iz.Const(1.0), iz.Const(x), iz.Const(y))
    before = stats["compiles"]
    for _ in range(3):
        iz.autodiff(iz.Forward, saxpy, iz.Const(1.0), iz.Const(x), iz.Const(y))
    assert stats["compiles"] == before
    np.testing.assert_array_equal(cp.asnumpy(y), 4.0 * np.ones(64))


# -- derivatives on the device (need AD of scf.parallel and device-aware annotations) --
def _fd(f, x: np.ndarray, v: np.ndarray, h: float = 1e-6) -> float:
    return (f(x + h * v) - f(x - h * v)) / (2 * h)


def test_forward_derivative_of_a_reduction() -> None:
    rng = np.random.default_rng(0)
    x, v = rng.standard_normal(5000), rng.standard_normal(5000)
    (d,) = iz.autodiff(iz.Forward, sum_sq, iz.Duplicated(cp.asarray(x), cp.asarray(v)))
    assert d == pytest.approx(_fd(lambda z: float(np.sum(z * z)), x, v), rel=1e-7)


def test_reverse_gradient_of_a_reduction() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(5000)
    dx = cp.zeros(5000)
    iz.autodiff(iz.Reverse, sum_sq, iz.Active, iz.Duplicated(cp.asarray(x), dx))
    np.testing.assert_allclose(cp.asnumpy(dx), 2.0 * x, rtol=1e-14)


def test_reverse_of_a_stencil_time_loop() -> None:
    def heat_loss(u, v):
        heat(u, v, 4)
        return sum_sq(u)

    def loss(u0: np.ndarray) -> float:
        u = u0.copy()
        for _ in range(4):
            u[1:-1] = u[1:-1] + 0.25 * (u[:-2] - 2.0 * u[1:-1] + u[2:])
        return float(np.sum(u * u))

    rng = np.random.default_rng(2)
    u = rng.standard_normal(256)
    du = cp.zeros(256)
    iz.autodiff(iz.Reverse, heat_loss, iz.Active, iz.Duplicated(cp.asarray(u), du),
                iz.Duplicated(cp.zeros(256), cp.zeros(256)))
    got = cp.asnumpy(du)
    for k in (0, 1, 100, 255):
        e = np.zeros(256)
        e[k] = 1.0
        assert got[k] == pytest.approx(_fd(loss, u, e), rel=1e-6, abs=1e-9)


def test_gradient_of_cupy_arrays() -> None:
    x = cp.linspace(0.0, 1.0, 1000)
    (g,) = iz.gradient(iz.Reverse, sum_sq, x)
    assert isinstance(g, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(g), 2.0 * cp.asnumpy(x), rtol=1e-14)


# -- robustness: colliding scatters, gradient(_), threads, streams, out of memory ----
def scatter_add(x, idx, out):
    for i in iz.prange(idx.shape[0]):
        out[idx[i]] += x[i] * x[i]


def test_colliding_scatter_both_modes() -> None:
    rng = np.random.default_rng(7)
    x, v = rng.standard_normal(4000), rng.standard_normal(4000)
    idx = rng.integers(0, 7, 4000)  # thousands of atomic updates of 7 elements
    out, dout = cp.zeros(7), cp.asarray(rng.standard_normal(7))
    dx = cp.zeros(4000)
    iz.autodiff(iz.Reverse, scatter_add, iz.Duplicated(cp.asarray(x), dx),
                iz.Const(cp.asarray(idx)), iz.Duplicated(out, dout.copy()))
    expected = np.zeros(7)
    np.add.at(expected, idx, x * x)
    np.testing.assert_allclose(cp.asnumpy(out), expected, rtol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(dx), 2.0 * x * cp.asnumpy(dout)[idx], rtol=1e-13)
    out, dout = cp.zeros(7), cp.zeros(7)
    iz.autodiff(iz.Forward, scatter_add, iz.Duplicated(cp.asarray(x), cp.asarray(v)),
                iz.Const(cp.asarray(idx)), iz.Duplicated(out, dout))
    tangent = np.zeros(7)
    np.add.at(tangent, idx, 2.0 * x * v)
    np.testing.assert_allclose(cp.asnumpy(out), expected, rtol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(dout), tangent, rtol=1e-12)


@pytest.mark.parametrize("mode", [iz.Reverse, iz.Forward, iz.ReverseWithPrimal])
def test_gradient_modes_on_cupy_arrays(mode) -> None:
    x = cp.linspace(-1.0, 1.0, 9)
    out = iz.gradient(mode, sum_sq, x)
    (g,) = out[0] if mode.with_primal else out
    assert isinstance(g, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(g), 2.0 * cp.asnumpy(x), rtol=1e-14)


def test_gradient_in_place_on_cupy_arrays() -> None:
    x, dx = cp.linspace(-1.0, 1.0, 1000), cp.full(1000, 5.0)
    (out,) = iz.gradient_(iz.Reverse, dx, sum_sq, x)
    assert out is dx
    np.testing.assert_allclose(cp.asnumpy(dx), 2.0 * cp.asnumpy(x), rtol=1e-14)


def test_call_from_a_fresh_thread() -> None:
    import threading

    x = cp.arange(1000.0)
    outs = [cp.zeros(1000) for _ in range(4)]
    errors: list[BaseException] = []

    def work(y) -> None:
        try:
            iz.autodiff(iz.Forward, saxpy, iz.Const(2.0), iz.Const(x), iz.Const(y))
            s = iz.autodiff(iz.ForwardWithPrimal, sum_sq, iz.Const(y))[1]
            assert s == pytest.approx(float(np.sum((2.0 * np.arange(1000.0)) ** 2)))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(y,)) for y in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for y in outs:
        np.testing.assert_array_equal(cp.asnumpy(y), 2.0 * np.arange(1000.0))


def test_call_under_a_non_default_stream() -> None:
    n = 1 << 20
    with cp.cuda.Stream(non_blocking=True) as stream:
        x = cp.arange(n, dtype=cp.float64)  # queued on the stream, not synchronized
        y = cp.ones(n)
        iz.autodiff(iz.Forward, saxpy, iz.Const(2.0), iz.Const(x), iz.Const(y))
        y += 1.0  # after the kernel, on the same stream
        s = iz.autodiff(iz.ForwardWithPrimal, sum_sq, iz.Const(x))[1]  # a device read
        stream.synchronize()
    ref = np.arange(n, dtype=np.float64)
    np.testing.assert_array_equal(cp.asnumpy(y), 2.0 * ref + 2.0)
    assert s == pytest.approx(float(np.sum(ref * ref)), rel=1e-12)


def test_out_of_memory_leaves_the_process_usable() -> None:
    pool = cp.get_default_memory_pool()
    x = cp.ones(1 << 20)
    iz.autodiff(iz.ForwardWithPrimal, double, iz.Const(x))  # compiled before the limit
    cp.cuda.Device().synchronize()
    pool.free_all_blocks()  # no cached block the result could reuse
    used = pool.used_bytes()
    pool.set_limit(size=used + (1 << 16))  # no room for an 8 MB result
    try:
        with pytest.raises(cp.cuda.memory.OutOfMemoryError):
            iz.autodiff(iz.ForwardWithPrimal, double, iz.Const(x))
        assert pool.used_bytes() == used  # the failed call's allocations were freed
    finally:
        pool.set_limit(size=0)
    _, y = iz.autodiff(iz.ForwardWithPrimal, double, iz.Const(x))
    np.testing.assert_array_equal(cp.asnumpy(y), 2.0)
