"""Parallel loops on the CPU's worker pool (``isozyme.config(threads=N)``).

``outline-parallel-loops-cpu`` outlines each outermost race-free ``scf.parallel`` into a
chunk function; with enough work the compiled code calls ``__iz_parallel_for``
(``runtime/thread_pool.py``), which runs the chunks on several threads.  Checked here:
the numbers are the serial ones (exactly for elementwise loops, against finite
differences for gradients) with ``threads=2``; chunks really ran on two threads (the
pool's ``chunk_log`` test hook); ``threads=1`` compiles no dispatch and never calls the
pool; a reverse loop that accumulates into a shared shadow (atomics) stays serial and
right; a bounds-check failure inside a parallel body is reported as the serial run
reports it.
"""

from __future__ import annotations

import numpy as np
import pytest

import isozyme as iz
from isozyme import Const, Duplicated, Forward, Reverse, autodiff, prange
from isozyme.compiler.lowering.outline_parallel_loops_cpu import MIN_PARALLEL_WORK
from isozyme.errors import OutOfBoundsError
from isozyme.runtime import thread_pool

# Big enough that every loop below goes to the pool (work = trip count x body ops).
N = MIN_PARALLEL_WORK // 4


@pytest.fixture
def threads2():
    """``threads=2`` and an empty chunk log; restores the settings afterwards."""
    old = iz.config(threads=2)
    thread_pool.chunk_log = []
    try:
        yield thread_pool.chunk_log
    finally:
        thread_pool.chunk_log = None
        iz.config(**old)


def scale_into(x, y):
    y[:] = np.sin(x) * 2.0 + x
    return 0.0


def prange_2d(a, b):
    for i in prange(a.shape[0]):
        for j in prange(a.shape[1]):
            b[i, j] = a[i, j] * a[i, j] + 1.0
    return 0.0


def sum_sin(x):
    return np.sum(np.sin(x) * x)


def prange_max_and_sum(x):
    s = 0.0
    m = -np.inf
    for i in prange(len(x)):
        s += x[i] * x[i]
        m = max(m, x[i])
    return s + m


def sum_squares_2d(a):
    return np.sum(a * a)


def gather_sum(x, idx, y):
    # y[i] reads x[idx[i]]: the adjoint scatters into dx[idx[i]] (atomics, may race)
    for i in prange(len(y)):
        y[i] = x[idx[i]] * x[idx[i]]
    return 0.0


def gather(x, idx, y):
    for i in prange(len(y)):
        y[i] = x[idx[i]]
    return 0.0


def serially(run):
    """``run()`` with ``threads=1`` (what isozyme computed before the pool)."""
    old = iz.config(threads=1)
    try:
        return run()
    finally:
        iz.config(**old)


def _threads_seen(log) -> int:
    return len({tid for tid, _, _ in log})


def test_primal_elementwise_runs_on_two_threads_and_is_exact(threads2) -> None:
    x = np.linspace(-1.0, 1.0, N)
    y = np.zeros(N)
    autodiff(Forward, scale_into, Const, Const(x), Duplicated(y, np.zeros(N)))
    np.testing.assert_array_equal(y, np.sin(x) * 2.0 + x)
    assert _threads_seen(threads2) == 2
    # the chunks cover the range once, in two contiguous pieces
    assert sorted((lo, hi) for _, lo, hi in threads2) == [(0, N // 2), (N // 2, N)]


def test_forward_and_reverse_elementwise_match_serial_and_fd(threads2) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N)
    dx = rng.standard_normal(N)
    ybar = rng.standard_normal(N)

    def tangent():
        dy = np.zeros(N)
        autodiff(Forward, scale_into, Const, Duplicated(x, dx), Duplicated(np.zeros(N), dy))
        return dy

    def gradient():
        gx = np.zeros(N)
        autodiff(Reverse, scale_into, Const, Duplicated(x, gx),
                 Duplicated(np.zeros(N), ybar.copy()))
        return gx

    dy_serial, gx_serial = serially(tangent), serially(gradient)
    threads2.clear()
    np.testing.assert_array_equal(tangent(), dy_serial)
    assert _threads_seen(threads2) == 2
    threads2.clear()
    gx = gradient()
    np.testing.assert_array_equal(gx, gx_serial)
    assert _threads_seen(threads2) == 2
    # central finite differences of <ybar, y(x)> along a direction
    v = rng.standard_normal(N)
    h = 1e-6

    def loss(z):
        out = np.zeros(N)
        autodiff(Forward, scale_into, Const, Const(z), Duplicated(out, np.zeros(N)))
        return float(ybar @ out)

    fd = (loss(x + h * v) - loss(x - h * v)) / (2 * h)
    assert fd == pytest.approx(float(gx @ v), rel=1e-6)


def test_two_dimensional_loop_splits_the_first_dimension(threads2) -> None:
    a = np.random.default_rng(1).standard_normal((400, N // 400))
    b = np.zeros_like(a)
    autodiff(Forward, prange_2d, Const, Const(a), Duplicated(b, np.zeros_like(b)))
    np.testing.assert_array_equal(b, a * a + 1.0)
    assert _threads_seen(threads2) == 2
    assert sorted((lo, hi) for _, lo, hi in threads2) == [(0, 200), (200, 400)]
    ga = np.zeros_like(a)
    autodiff(Reverse, prange_2d, Const, Duplicated(a, ga), Duplicated(b, np.ones_like(b)))
    np.testing.assert_array_equal(ga, 2.0 * a)


def test_race_prone_reverse_accumulation_stays_serial_and_right(threads2) -> None:
    rng = np.random.default_rng(2)
    m = 64
    x = rng.standard_normal(m)
    idx = rng.integers(0, m, N)  # many iterations accumulate into the same dx[k]
    y = np.zeros(N)
    autodiff(Forward, gather_sum, Const, Const(x), Const(idx), Duplicated(y, np.zeros(N)))
    np.testing.assert_array_equal(y, x[idx] ** 2)
    assert _threads_seen(threads2) == 2  # the primal loop is race-free: parallel
    stages = iz.ir_stages(Reverse, gather_sum, Const, Duplicated(x, np.zeros(m)), Const(idx),
                          Duplicated(y, np.ones(N)), stages=("simplified", "llvm"))
    # two parallel loops (the forward sweep and the adjoint, which accumulates with
    # atomics); only the forward sweep is outlined for the pool
    assert stages["simplified"].count("scf.parallel") == 2
    assert "memref.atomic_rmw" in stages["simplified"]
    assert stages["llvm"].count("llvm.func internal @__iz_pardispatch_") == 1
    threads2.clear()
    gx = np.zeros(m)
    autodiff(Reverse, gather_sum, Const, Duplicated(x, gx), Const(idx),
             Duplicated(y, np.ones(N)))
    np.testing.assert_allclose(gx, np.bincount(idx, weights=2.0 * x[idx], minlength=m),
                               rtol=1e-12)
    assert len(threads2) == 2  # the forward sweep's two chunks; the adjoint: serial


def test_reductions_run_in_chunks_combined_in_order(threads2) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(N)
    want = serially(lambda: autodiff(iz.ForwardWithPrimal, sum_sin, Const, Const(x))[1])
    got = autodiff(iz.ForwardWithPrimal, sum_sin, Const, Const(x))[1]
    assert _threads_seen(threads2) == 2
    # two partial sums added in chunk order: the serial sum up to rounding
    assert got == pytest.approx(want, rel=1e-12)
    assert got == pytest.approx(float(np.sum(np.sin(x) * x)), rel=1e-12)
    # the gradient: its forward sweep's sum and its adjoint loop both go to the pool
    threads2.clear()
    (g,) = iz.gradient(Reverse, sum_sin, x)
    np.testing.assert_allclose(g, np.sin(x) + x * np.cos(x), rtol=1e-13, atol=1e-15)
    assert len(threads2) == 4
    v = rng.standard_normal(N)
    h = 1e-6
    fd = (sum_sin(x + h * v) - sum_sin(x - h * v)) / (2 * h)
    assert fd == pytest.approx(float(g @ v), rel=1e-6)
    # a 2-D sum: chunks of rows, each row's inner loop reduced from the identity
    threads2.clear()
    a = x.reshape(200, -1)
    got = autodiff(iz.ForwardWithPrimal, sum_squares_2d, Const, Const(a))[1]
    assert sorted((lo, hi) for _, lo, hi in threads2) == [(0, 100), (100, 200)]
    assert got == pytest.approx(float(np.sum(a * a)), rel=1e-12)
    (ga,) = iz.gradient(Reverse, sum_squares_2d, a)
    np.testing.assert_array_equal(ga, 2.0 * a)
    # a max and a sum in one prange loop (identities -inf and -0.0)
    threads2.clear()
    got = autodiff(iz.ForwardWithPrimal, prange_max_and_sum, Const, Const(x))[1]
    assert _threads_seen(threads2) == 2
    assert got == pytest.approx(float(x @ x + x.max()), rel=1e-12)


def test_calls_from_two_python_threads_at_once(threads2) -> None:
    # one call has the workers; a loop of the other runs on its own thread meanwhile
    import threading  # noqa: PLC0415

    rng = np.random.default_rng(4)
    xs = [rng.standard_normal(N) for _ in range(2)]
    outs = [np.zeros(N) for _ in range(2)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(20):
                outs[k][:] = 0.0
                autodiff(Forward, scale_into, Const, Const(xs[k]),
                         Duplicated(outs[k], np.zeros(N)))
                np.testing.assert_array_equal(outs[k], np.sin(xs[k]) * 2.0 + xs[k])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    autodiff(Forward, scale_into, Const, Const(xs[0]), Duplicated(outs[0], np.zeros(N)))
    ts = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []


def test_threads_1_compiles_no_dispatch_and_never_calls_the_pool() -> None:
    old = iz.config(threads=1)
    thread_pool.chunk_log = []
    try:
        x = np.linspace(0.0, 1.0, N)
        y = np.zeros(N)
        args = (Forward, scale_into, Const, Const(x), Duplicated(y, np.zeros(N)))
        llvm = iz.ir(*args, stage="llvm")
        assert "__iz_parallel_for" not in llvm and "__iz_par" not in llvm
        autodiff(*args)
        np.testing.assert_array_equal(y, np.sin(x) * 2.0 + x)
        assert thread_pool.chunk_log == []
    finally:
        thread_pool.chunk_log = None
        iz.config(**old)


def test_small_loops_run_serially_without_the_pool(threads2) -> None:
    x = np.linspace(0.0, 1.0, 1000)
    y = np.zeros(1000)
    args = (Forward, scale_into, Const, Const(x), Duplicated(y, np.zeros(1000)))
    assert "__iz_parallel_for" in iz.ir(*args, stage="llvm")
    autodiff(*args)
    np.testing.assert_array_equal(y, np.sin(x) * 2.0 + x)
    assert threads2 == []


def test_bounds_check_in_a_parallel_body_is_reported_as_serially(threads2) -> None:
    x = np.arange(N, dtype=np.float64)
    idx = np.arange(N)
    # bad indices in both chunks: the serial run stops at the first, i = 10
    idx[N // 2 + 5] = N + 7
    idx[10] = N + 3
    y = np.zeros(N)
    with pytest.raises(OutOfBoundsError, match=rf"index {N + 3} .*size {N}"):
        autodiff(Forward, gather, Const, Const(x), Const(idx), Duplicated(y, np.zeros(N)))
    assert _threads_seen(threads2) == 2
    # a good call afterwards runs (the per-chunk status records start clean)
    idx[10], idx[N // 2 + 5] = 10, N // 2 + 5
    autodiff(Forward, gather, Const, Const(x), Const(idx), Duplicated(y, np.zeros(N)))
    np.testing.assert_array_equal(y, x)


def test_pool_works_in_a_forked_child(threads2) -> None:
    import os  # noqa: PLC0415

    x = np.linspace(-1.0, 1.0, N)
    y = np.zeros(N)
    args = (Forward, scale_into, Const, Const(x), Duplicated(y, np.zeros(N)))
    autodiff(*args)  # the parent's workers exist now
    pid = os.fork()
    if pid == 0:  # the child: its pool starts afresh instead of waiting on dead threads
        try:
            y[:] = 0.0
            autodiff(*args)
            os._exit(0 if np.array_equal(y, np.sin(x) * 2.0 + x) else 1)
        finally:
            os._exit(2)
    import signal  # noqa: PLC0415
    import time  # noqa: PLC0415

    deadline = time.monotonic() + 60.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:  # hung on workers that do not exist
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's parallel loop hung")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0


def test_code_loaded_from_the_disk_cache_dispatches(tmp_path) -> None:
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    code = (
        "import numpy as np, isozyme as iz\n"
        "from isozyme.runtime import thread_pool as tp\n"
        "from tests.test_parallel_loops import N, scale_into\n"
        "x = np.linspace(-1.0, 1.0, N); y = np.zeros(N)\n"
        "tp.chunk_log = []\n"
        "iz.autodiff(iz.Forward, scale_into, iz.Const, iz.Const(x),"
        " iz.Duplicated(y, np.zeros(N)))\n"
        "print(np.array_equal(y, np.sin(x) * 2.0 + x), len({t for t, _, _ in tp.chunk_log}))\n"
    )
    env = dict(os.environ, ISOZYME_CACHE_DIR=str(tmp_path), ISOZYME_THREADS="2",
               ISOZYME_DISK_CACHE="1", ISOZYME_TIMINGS="1")
    root = Path(__file__).resolve().parents[1]
    for compiled in (True, False):  # compiles and stores, then loads the object code
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split() == ["True", "2"]
        assert ("llvm/optimize" in out.stderr) is compiled, out.stderr[-2000:]


def test_threads_setting_is_validated() -> None:
    with pytest.raises(ValueError, match="threads must be a positive int"):
        iz.config(threads=0)
    assert iz.config()["threads"] >= 1
