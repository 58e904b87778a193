"""Ctrl-C while a parallel loop runs on the CPU worker pool: KeyboardInterrupt after the
native call returns, every chunk finished, the process alive (the dispatcher is a ctypes
callback: an exception leaving it was dropped, and returning early freed what the
workers read)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = textwrap.dedent("""
    import os, signal, threading
    import numpy as np
    import isozyme as iz

    def heavy(x, y):
        s = 0.0
        for i in iz.prange(x.shape[0]):
            t = x[i]
            for k in range(200):
                t = np.sin(t) * 1.0000001 + 0.5
            y[i] = t
            s += t
        return s

    iz.config(threads=2)
    x = np.random.default_rng(0).uniform(-1, 1, 200000)
    y0 = np.zeros_like(x)
    full = iz.autodiff(iz.ForwardWithPrimal, heavy, iz.Const(x), iz.Const(y0))
    threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    y = np.zeros_like(x)
    try:
        for _ in range(200):  # until the Ctrl-C lands in a call
            iz.autodiff(iz.ForwardWithPrimal, heavy, iz.Const(x), iz.Const(y))
        print("no interrupt")
    except KeyboardInterrupt:
        print("KeyboardInterrupt")
    again = iz.autodiff(iz.ForwardWithPrimal, heavy, iz.Const(x), iz.Const(y))
    print("same after:", again == full, np.array_equal(y, y0))
""")


def test_ctrl_c_during_a_parallel_loop(tmp_path):
    script = tmp_path / "interrupt.py"
    script.write_text(PROGRAM)
    env = dict(os.environ, PYTHONPATH=str(ROOT), ISOZYME_DISK_CACHE="0")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["KeyboardInterrupt", "same after: True True"]
    assert "Exception ignored" not in out.stderr
