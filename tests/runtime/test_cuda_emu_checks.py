"""Run-time checks inside kernels, through the public API: a failed bounds check in a
``prange`` body raises the same isozyme error, with the same message, under
``isozyme.target("cuda-emu")`` (and the cuda target's host program, run on the CPU
with stand-ins for the driver) as under the ``cpu`` target; good indices give numpy's
numbers; ``boundscheck=False`` kernels have no status buffer."""

from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest

import isozyme as iz
from isozyme.errors import OutOfBoundsError
from tests.runtime.cuda_stand_ins import HostBackedDeviceArray

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


@pytest.fixture
def checks_on():
    old = iz.config(boundscheck=True)
    yield
    iz.config(**old)


def gather(x, idx, y):
    for i in iz.prange(idx.shape[0]):
        y[i] = x[idx[i]]


def gather_sum(x, idx):
    s = 0.0
    for i in iz.prange(idx.shape[0]):
        s += x[idx[i]]
    return s


def two_loops(x, idx, jdx, y, z):
    for i in iz.prange(idx.shape[0]):
        y[i] = x[idx[i]]
    for i in iz.prange(jdx.shape[0]):
        z[i] = 2.0 * x[jdx[i]]


def rows(A, cols, y):
    # a check in a sequential loop inside the kernel, on a 2-D array
    for i in iz.prange(A.shape[0]):
        acc = 0.0
        for j in range(cols.shape[0]):
            acc += A[i, cols[j]]
        y[i] = acc


def _error(target: str, f, *args) -> str:
    """The OutOfBoundsError message of ``f(*args)`` (Const arguments) on ``target``;
    the arrays are copied, so each target starts from the same data."""
    copies = [iz.Const(a.copy() if isinstance(a, np.ndarray) else a) for a in args]
    with iz.target(target), pytest.raises(OutOfBoundsError) as err:
        iz.autodiff(iz.Forward, f, *copies)
    return str(err.value)


def test_bad_gather_index_raises_as_on_the_cpu(checks_on) -> None:
    x = np.arange(10.0)
    idx = np.array([1, 2, 3, 12, 4, 0, 9])
    message = _error("cuda-emu", gather, x, idx, np.zeros(7))
    assert message == _error("cpu", gather, x, idx, np.zeros(7))
    assert message.endswith("index 12 is out of bounds for axis 0 with size 10")
    assert "test_cuda_emu_checks.py:" in message
    # negative side: numpy's rule -n <= i < n
    idx[3] = -11
    message = _error("cuda-emu", gather, x, idx, np.zeros(7))
    assert message == _error("cpu", gather, x, idx, np.zeros(7))
    assert message.endswith("index -11 is out of bounds for axis 0 with size 10")


def test_failing_thread_stops_before_its_store(checks_on) -> None:
    x = np.arange(10.0)
    idx = np.arange(600) % 10
    idx[345] = 10
    y = np.full(600, -1.0)
    with iz.target("cuda-emu"), pytest.raises(OutOfBoundsError, match="index 10 is out"):
        iz.autodiff(iz.Forward, gather, iz.Const(x), iz.Const(idx), iz.Const(y))
    assert y[345] == -1.0  # the failing iteration wrote nothing


def test_good_indices_match_numpy(checks_on) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(50)
    idx = rng.integers(-50, 50, size=1000)
    y = np.zeros(1000)
    with iz.target("cuda-emu"):
        iz.autodiff(iz.Forward, gather, iz.Const(x), iz.Const(idx), iz.Const(y))
        _, s = iz.autodiff(iz.ForwardWithPrimal, gather_sum, iz.Const(x), iz.Const(idx))
    np.testing.assert_array_equal(y, x[idx])
    assert s == pytest.approx(float(np.sum(x[idx])), rel=1e-12)
    text = iz.ir(iz.Forward, gather, iz.Const(x), iz.Const(idx), iz.Const(y),
                 stage="gpu", target="cuda-emu")
    assert "isz_gpu.report_failure" in text and "memref<?xi64>" in text


def test_reduction_with_a_bad_index(checks_on) -> None:
    x = np.arange(10.0)
    idx = np.array([0, 5, -20, 3])
    message = _error("cuda-emu", gather_sum, x, idx)
    assert message == _error("cpu", gather_sum, x, idx)
    assert message.endswith("index -20 is out of bounds for axis 0 with size 10")


def gather_sum_sq(x, idx):
    s = 0.0
    for i in iz.prange(idx.shape[0]):
        s += x[idx[i]] * x[idx[i]]
    return s


def test_reverse_mode_of_a_checked_gather(checks_on) -> None:
    # the adjoint loop is a kernel too; both report through the same status buffer
    x = np.linspace(-1.0, 1.5, 10)
    idx = np.array([1, 2, 3, -1, 3, 0])
    dx = np.zeros(10)
    with iz.target("cuda-emu"):
        iz.autodiff(iz.Reverse, gather_sum_sq, iz.Active, iz.Duplicated(x, dx),
                    iz.Const(idx))
    expected = np.zeros(10)
    np.add.at(expected, idx, 2.0 * x[idx])
    np.testing.assert_allclose(dx, expected, rtol=1e-14)
    idx[4] = -12
    messages = []
    for target in ("cpu", "cuda-emu"):
        with iz.target(target), pytest.raises(OutOfBoundsError) as err:
            iz.autodiff(iz.Reverse, gather_sum_sq, iz.Active,
                        iz.Duplicated(x, np.zeros(10)), iz.Const(idx))
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert messages[0].endswith("index -12 is out of bounds for axis 0 with size 10")


def test_second_kernel_reports_its_own_check(checks_on) -> None:
    x = np.arange(8.0)
    idx, jdx = np.array([7, 0, 1]), np.array([2, 9, 1])
    args = (x, idx, jdx, np.zeros(3), np.zeros(3))
    message = _error("cuda-emu", two_loops, *args)
    assert message == _error("cpu", two_loops, *args)
    assert message.endswith("index 9 is out of bounds for axis 0 with size 8")
    # the same two kernels with good indices
    y, z = np.zeros(3), np.zeros(3)
    jdx[1] = -8
    with iz.target("cuda-emu"):
        iz.autodiff(iz.Forward, two_loops, *(iz.Const(a) for a in (x, idx, jdx, y, z)))
    np.testing.assert_array_equal(y, x[idx])
    np.testing.assert_array_equal(z, 2.0 * x[jdx])


def test_check_in_an_inner_sequential_loop(checks_on) -> None:
    rng = np.random.default_rng(4)
    A = rng.standard_normal((300, 6))
    cols = np.array([0, 5, -1, 2])
    y = np.zeros(300)
    with iz.target("cuda-emu"):
        iz.autodiff(iz.Forward, rows, iz.Const(A), iz.Const(cols), iz.Const(y))
    np.testing.assert_allclose(y, A[:, cols].sum(axis=1), rtol=1e-13)
    cols[3] = 7
    message = _error("cuda-emu", rows, A, cols, np.zeros(300))
    assert message == _error("cpu", rows, A, cols, np.zeros(300))
    assert message.endswith("index 7 is out of bounds for axis 1 with size 6")


def test_boundscheck_false_has_no_status_buffer() -> None:
    old = iz.config(boundscheck=False)
    try:
        x = np.arange(10.0)
        idx = np.array([9, -1, 0, 4])
        y = np.zeros(4)
        text = iz.ir(iz.Forward, gather, iz.Const(x), iz.Const(idx), iz.Const(y),
                     stage="gpu", target="cuda-emu")
        with iz.target("cuda-emu"):
            iz.autodiff(iz.Forward, gather, iz.Const(x), iz.Const(idx), iz.Const(y))
    finally:
        iz.config(**old)
    assert "report_failure" not in text and "isz.check" not in text
    assert "memref<?xi64>)" not in text  # no status argument (idx is strided)
    np.testing.assert_array_equal(y, x[idx])


# -- the cuda target's host program on the CPU (fixture cuda_on_the_cpu: conftest.py) ---
def test_cuda_host_program_reads_the_status(checks_on, cuda_on_the_cpu) -> None:
    # device arrays select the cuda target: the status is a device allocation, its
    # status[0] zeroed and read back with one cuMemcpy each
    copies = ctypes.c_int.in_dll(cuda_on_the_cpu, "copies")
    x = np.arange(10.0)
    idx = np.array([1, 2, 3, 4])
    y = np.zeros(4)
    dev = [HostBackedDeviceArray(a) for a in (x, idx, y)]
    iz.autodiff(iz.Forward, gather, *(iz.Const(d) for d in dev))
    np.testing.assert_array_equal(y, x[idx])
    assert copies.value == 2  # status[0] zeroed, then read once after the launch
    from isozyme.runtime.cuda import _LIVE

    live = set(_LIVE)
    idx[2] = 11
    with pytest.raises(OutOfBoundsError) as err:
        iz.autodiff(iz.Forward, gather, *(iz.Const(d) for d in dev))
    assert str(err.value) == _error("cpu", gather, x, idx, np.zeros(4))
    assert set(_LIVE) == live  # the status buffer was freed on the failure path
