"""First compilations from many threads at once, and from two processes (issue 6, item 6).

Tracing and LLVM are not thread-safe, so isozyme compiles under one process-wide lock;
each signature compiles once however many threads ask for it at the same time, and calls
of code already compiled never wait for that lock.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import isozyme
from isozyme import Active, Duplicated, Reverse, ReverseWithPrimal, autodiff
from isozyme.api import _COMPILE_LOCK
from isozyme.calls import stats

N_THREADS = 8


def make_scalar(k: float):
    def f(x):
        return math.sin(k * x) * x**2 + k

    return f


def make_array(k: float):
    def g(v):
        return np.sum(np.sin(v) * v * k)

    return g


def run_threads(work) -> list:
    """Run ``work(i)`` on N_THREADS threads released together; return the results or
    raise the first exception."""
    barrier = threading.Barrier(N_THREADS)
    results: list = [None] * N_THREADS
    errors: list = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a thread did not finish"
    if errors:
        raise errors[0]
    return results


def scalar_grad(k: float, x: float) -> float:
    return k * math.cos(k * x) * x**2 + 2 * x * math.sin(k * x)


def test_same_function_from_8_threads_compiles_once():
    f = make_scalar(1.5)  # a new function object: its first call compiles
    before = stats["compiles"]
    results = run_threads(lambda i: autodiff(ReverseWithPrimal, f, Active, Active(0.1 * i + 0.2)))
    assert stats["compiles"] - before == 1
    for i, ((g,), val) in enumerate(results):
        x = 0.1 * i + 0.2
        assert val == pytest.approx(f(x), rel=1e-13)
        assert g == pytest.approx(scalar_grad(1.5, x), rel=1e-12)


def test_different_functions_from_8_threads_compile_once_each():
    scalars = [make_scalar(0.5 + i) for i in range(N_THREADS // 2)]
    arrays = [make_array(0.5 + i) for i in range(N_THREADS // 2)]
    v = np.linspace(-1.0, 1.0, 7)

    def work(i: int):
        if i % 2:
            dv = np.zeros_like(v)
            out = autodiff(ReverseWithPrimal, arrays[i // 2], Active, Duplicated(v, dv))
            return out, dv
        return autodiff(ReverseWithPrimal, scalars[i // 2], Active, Active(0.3 + i)), None

    before = stats["compiles"]
    results = run_threads(work)
    assert stats["compiles"] - before == N_THREADS
    for i, (out, dv) in enumerate(results):
        k = 0.5 + i // 2
        if i % 2:
            assert out[1] == pytest.approx(float(np.sum(np.sin(v) * v * k)), rel=1e-13)
            np.testing.assert_allclose(dv, k * (np.cos(v) * v + np.sin(v)), rtol=1e-12)
        else:
            (g,), val = out
            assert val == pytest.approx(scalars[i // 2](0.3 + i), rel=1e-13)
            assert g == pytest.approx(scalar_grad(k, 0.3 + i), rel=1e-12)


def test_each_of_8_threads_compiles_several_signatures_at_once():
    f = make_scalar(2.0)
    v = np.linspace(0.0, 1.0, 5)
    g = make_array(2.0)

    def work(i: int):
        out = []
        for j in range(3):
            out.append(autodiff(ReverseWithPrimal, f, Active, Active(0.1 * (i + j)))[1])
            out.append(autodiff(ReverseWithPrimal, g, Active, Duplicated(v, np.zeros(5)))[1])
            out.append(autodiff(isozyme.Forward, f, Duplicated(0.1 * (i + j), 1.0))[0])
        return out

    before = stats["compiles"]
    results = run_threads(work)
    assert stats["compiles"] - before == 3  # three signatures, each compiled once
    for i, out in enumerate(results):
        for j in range(3):
            x = 0.1 * (i + j)
            assert out[3 * j] == pytest.approx(f(x), rel=1e-13)
            assert out[3 * j + 1] == pytest.approx(float(np.sum(np.sin(v) * v * 2.0)))
            assert out[3 * j + 2] == pytest.approx(scalar_grad(2.0, x), rel=1e-12)


def test_compiled_calls_do_not_wait_for_the_compile_lock():
    f = make_scalar(3.0)
    autodiff(Reverse, f, Active, Active(1.0))  # compiled
    done = threading.Event()
    out: list = []

    def call() -> None:
        out.append(autodiff(Reverse, f, Active, Active(0.5)))
        done.set()

    with _COMPILE_LOCK:  # as if another thread were compiling
        t = threading.Thread(target=call)
        t.start()
        assert done.wait(timeout=60), "a call of compiled code waited for the compile lock"
    t.join()
    assert out[0][0][0] == pytest.approx(scalar_grad(3.0, 0.5), rel=1e-12)


WORKER = os.path.join(os.path.dirname(__file__), "compile_worker.py")


def test_two_processes_compiling_at_once():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(isozyme.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    procs = [
        subprocess.Popen([sys.executable, WORKER, str(seed)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for seed in (1, 2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        assert out.strip().endswith("ok"), out


def test_frontend_trace_from_8_threads():
    """``trace`` (the frontend alone) is safe to call from several threads too."""
    from xdsl.dialects.builtin import f64

    from isozyme.frontends.python import trace

    fs = [make_scalar(0.25 * (i + 1)) for i in range(N_THREADS)]
    texts = run_threads(lambda i: str(trace(fs[i], [f64]).module))
    for i, text in enumerate(texts):
        assert "math.sin" in text and "func.func @f" in text
        assert text == str(trace(fs[i], [f64]).module)  # the same as traced alone
