"""The tape a gradient allocates and frees per call reuses the previous call's pages
(isozyme.runtime.heap): no page faults per call once warm."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import resource, numpy as np, isozyme as iz

    def stencil(u, steps):
        n = len(u)
        for t in range(steps):
            new = np.zeros(n)
            for i in range(1, n - 1):
                new[i] = u[i] + 0.1 * (u[i - 1] - 2.0 * u[i] + u[i + 1]) * u[i]
            for i in range(1, n - 1):
                u[i] = new[i]
        s = 0.0
        for i in range(n):
            s += u[i] * u[i]
        return s

    u = np.linspace(0.0, 0.5, 5000)
    du = np.zeros_like(u)
    def grad():
        iz.autodiff(iz.Reverse, stencil, iz.Active, iz.Duplicated(u.copy(), du), 100)
    grad(); grad()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        grad()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5)
""")


def _faults_per_call(script, env_value: str) -> float:
    import os

    env = dict(os.environ, ISOZYME_KEEP_FREED_MEMORY=env_value, ISOZYME_THREADS="1")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, check=True, timeout=120)
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_warm_gradient_calls_take_no_page_faults(tmp_path):
    script = tmp_path / "tape.py"  # isozyme reads the function's source from a file
    script.write_text(SCRIPT)
    # the tape: 100 steps x 5000 doubles (4 MB) cached for the reverse sweep
    kept = _faults_per_call(script, "1")
    assert kept < 50, kept
    # and the test can fail: glibc's defaults map and unmap the tape every call
    assert _faults_per_call(script, "0") > 500
