"""The reverse sweep reloads a local table (a buffer allocated at the top of the
function, with a shadow, not written after it is filled) instead of caching every
read of it: GMM's ``qdiag[c, r] = exp(icf[c, r])`` read once per point."""

import math

import numpy as np
import pytest

import isozyme as iz
from tests.finite_differences import central_gradient


def table_then_loop(w, x):
    k = w.shape[0]
    q = np.zeros(k)
    for c in range(k):
        q[c] = math.exp(w[c])
    s = 0.0
    for i in range(x.shape[0]):
        for c in range(k):
            t = q[c] * x[i] - w[c]
            s += t * t
    return s


def table_rewritten(w, x):
    k = w.shape[0]
    q = np.zeros(k)
    for c in range(k):
        q[c] = math.exp(w[c])
    s = 0.0
    for i in range(x.shape[0]):
        for c in range(k):
            t = q[c] * x[i] - w[c]
            s += t * t
            q[c] = q[c] * 0.5 + 0.1 * t  # written after the reads: must be cached
    return s


@pytest.mark.parametrize("f, caches_table", [(table_then_loop, False),
                                             (table_rewritten, True)])
def test_table_reads_reloaded_only_when_final(f, caches_table):
    rng = np.random.default_rng(0)
    w, x = rng.uniform(-0.5, 0.5, 3), rng.uniform(-1.0, 1.0, 4)
    dw = np.zeros(3)
    iz.autodiff(iz.Reverse, f, iz.Active, iz.Duplicated(w, dw), iz.Const(x))
    np.testing.assert_allclose(dw, central_gradient(f, [w], (x,)), rtol=1e-6, atol=1e-8)
    text = iz.ir(iz.Reverse, f, iz.Active, iz.Duplicated(w, np.zeros(3)), iz.Const(x),
                 stage="simplified")
    # a cache of q's reads has one slot per (i, c): a rank-2 cache
    per_read = [line for line in text.splitlines()
                if "isozyme.cache" in line and "memref<?x?xf64>" in line]
    assert bool(per_read) == caches_table, text
