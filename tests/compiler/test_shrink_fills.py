"""``shrink-fills``: a fresh buffer's zero fill skips what the next loop writes (a
stencil step's ``new = np.zeros(n)`` and its adjoint); what the loop does not write, or
may read first, is still filled; the numbers stay right."""

import numpy as np
import pytest
from xdsl.parser import Parser

import isozyme as iz
from isozyme.compiler.context import make_context
from isozyme.compiler.passes.shrink_fills import ShrinkFillsPass

FILLED = """
func.func @f(%u: memref<?xf64>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %m = arith.subi %n, %c1 : index
  %new = memref.alloc(%n) : memref<?xf64>
  "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%k: index):
    memref.store %z, %new[%k] : memref<?xf64>
    scf.reduce
  }) : (index, index, index) -> ()
  scf.for %i = %c1 to %m step %c1 {
    %v = memref.load %u[%i] : memref<?xf64>
    BODY
  }
  memref.dealloc %new : memref<?xf64>
  func.return
}
"""
PLAIN = "memref.store %v, %new[%i] : memref<?xf64>"
ACCUMULATE = """%o = memref.load %new[%i] : memref<?xf64>
    %s = arith.addf %o, %v : f64
    memref.store %s, %new[%i] : memref<?xf64>"""


def _apply(body: str) -> str:
    ctx = make_context()
    m = Parser(ctx, FILLED.replace("BODY", body)).parse_module()
    ShrinkFillsPass().apply(ctx, m)
    m.verify()
    return str(m)


@pytest.mark.parametrize("body", [PLAIN, ACCUMULATE])
def test_fill_skips_what_the_next_loop_writes(body):
    out = _apply(body)
    # the full fill became two fills (below and above the loop's range)
    assert '"scf.parallel"' not in out and out.count("scf.for") == 3, out
    assert "memref.load %new" not in out  # the accumulation adds to the fill value


def test_fill_stays_when_the_loop_reads_other_elements():
    body = PLAIN.replace("%v, %new", "%w, %new").replace(
        "memref.store", "%p = memref.load %new[%c0] : memref<?xf64>\n    %w = arith.addf %p, %v : f64\n    memref.store")
    assert '"scf.parallel"' in _apply(body)


def stencil(u, steps):
    n = len(u)
    for t in range(steps):
        new = np.zeros(n)
        for i in range(1, n - 1):
            new[i] = u[i] + 0.1 * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        for i in range(1, n - 1):
            u[i] = new[i]
    s = 0.0
    for i in range(n):
        s += u[i] * u[i]
    return s


def shifted(u):
    n = len(u)
    new = np.zeros(n)
    for i in range(n - 2):
        new[n - 1 - i] = u[i] * u[i]  # writes new[2:], backwards
    s = 0.0
    for i in range(n):
        s += new[i] * (i + 1.0)
    return s


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_primal_and_gradient_unchanged(n):
    rng = np.random.default_rng(n)
    u = rng.uniform(-1.0, 1.0, n)
    for f, extra in ((stencil, (3,)), (shifted, ())):
        want = f(u.copy(), *extra)
        _, got = iz.autodiff(iz.ForwardWithPrimal, f, iz.Const, iz.Const(u.copy()), *extra)
        assert got == pytest.approx(want, rel=1e-13, abs=1e-13)
        du = np.zeros(n)
        iz.autodiff(iz.Reverse, f, iz.Active, iz.Duplicated(u.copy(), du), *extra)
        h, fd = 1e-6, np.zeros(n)
        for k in range(n):
            p, m = u.copy(), u.copy()
            p[k] += h
            m[k] -= h
            fd[k] = (f(p, *extra) - f(m, *extra)) / (2 * h)
        np.testing.assert_allclose(du, fd, rtol=1e-6, atol=1e-8, err_msg=f.__name__)
    text = iz.ir(iz.ForwardWithPrimal, stencil, iz.Const, iz.Const(u.copy()), 3,
                 stage="simplified")
    assert '"scf.parallel"' not in text  # new = np.zeros(n): filled only at the ends
