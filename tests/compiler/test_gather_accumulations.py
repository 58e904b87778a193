"""``gather-accumulations``: sibling scatter loops (``dx[i] += a``, ``dx[i+1] += b``)
become one loop in gather form plus end loops; gradients stay right at every size,
including sizes where the loops share no element."""

import re

import numpy as np
import pytest
from xdsl.parser import Parser

import isozyme as iz
from tests.finite_differences import central_gradient
from isozyme.compiler.context import make_context
from isozyme.compiler.passes.gather_accumulations import GatherAccumulationsPass

# what split-accumulations leaves of a Rosenbrock-like reverse loop: two loops over the
# same range, one accumulating into dx[i], one into dx[i+1] (the second one walking
# backwards: idx = (n - 2 - i) + 1)
SPLIT = """
func.func @f(%x: memref<?xf64>, %dx: memref<?xf64>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %m = arith.subi %n, %c1 : index
  %last = arith.subi %n, %c2 : index
  scf.for %i = %c0 to %m step %c1 {
    %v = memref.load %x[%i] : memref<?xf64>
    %a = memref.load %dx[%i] : memref<?xf64>
    %a2 = arith.addf %a, %v : f64
    memref.store %a2, %dx[%i] : memref<?xf64>
  }
  scf.for %i = %c0 to %m step %c1 {
    %r = arith.subi %last, %i : index
    %r64 = arith.index_cast %r : index to i64
    %one = arith.constant 1 : i64
    %j64 = arith.addi %r64, %one : i64
    %j = arith.index_cast %j64 : i64 to index
    %v = memref.load %x[%r] : memref<?xf64>
    %w = arith.mulf %v, %v : f64
    %b = memref.load %dx[%j] : memref<?xf64>
    %b2 = arith.addf %b, %w : f64
    memref.store %b2, %dx[%j] : memref<?xf64>
  }
  func.return
}
"""


def _apply(text: str) -> str:
    ctx = make_context()
    m = Parser(ctx, text).parse_module()
    GatherAccumulationsPass().apply(ctx, m)
    m.verify()
    return str(m)


def test_two_scatter_loops_become_one_gather_loop_and_ends():
    out = _apply(SPLIT)
    # the fused loop and a loop below and above the common range for each original
    assert out.count("scf.for") == 5, out
    fused = re.search(r"scf\.for (%\w+) = .*?\n(.*?)\n    \}", out, re.S)
    assert fused is not None
    iv, body = fused.group(1), fused.group(2)
    # one read and one write of dx[e], both contributions added in between
    assert body.count(f"%dx[{iv}]") == 2 and body.count("memref.store") == 1, body
    assert body.count("arith.addf") == 2, body


def test_loop_reading_what_it_accumulates_stays():
    src = SPLIT.replace("%v = memref.load %x[%i]", "%v = memref.load %dx[%c0]")
    assert _apply(src).count("scf.for") == 2


# the same two scatter loops over an i64 induction variable (valid MLIR; the fused
# loop's range arithmetic is index, so such loops are left alone)
SPLIT_I64 = """
func.func @f(%x: memref<?xf64>, %dx: memref<?xf64>, %n: i64) {
  %c0 = arith.constant 0 : i64
  %c1 = arith.constant 1 : i64
  %m = arith.subi %n, %c1 : i64
  scf.for %i = %c0 to %m step %c1 : i64 {
    %ii = arith.index_cast %i : i64 to index
    %v = memref.load %x[%ii] : memref<?xf64>
    %a = memref.load %dx[%ii] : memref<?xf64>
    %a2 = arith.addf %a, %v : f64
    memref.store %a2, %dx[%ii] : memref<?xf64>
  }
  scf.for %i = %c0 to %m step %c1 : i64 {
    %j = arith.addi %i, %c1 : i64
    %jj = arith.index_cast %j : i64 to index
    %v = memref.load %x[%jj] : memref<?xf64>
    %b = memref.load %dx[%jj] : memref<?xf64>
    %b2 = arith.addf %b, %v : f64
    memref.store %b2, %dx[%jj] : memref<?xf64>
  }
  func.return
}
"""


def test_i64_induction_variable_loops_stay():
    ctx = make_context()
    before = str(Parser(ctx, SPLIT_I64).parse_module())
    assert _apply(SPLIT_I64) == before  # _apply verifies the result


def rosenbrock(x):
    s = 0.0
    for i in range(len(x) - 1):
        s += (1.0 - x[i]) ** 2 + 100.0 * (x[i + 1] - x[i] ** 2) ** 2
    return s


def laplacian_energy(x):
    s = 0.0
    for i in range(1, len(x) - 1):
        s += (x[i - 1] - 2.0 * x[i] + x[i + 1]) ** 2 * (1.0 + 0.1 * x[i])
    return s


def test_reverse_loops_are_in_gather_form():
    x = np.linspace(-1.0, 1.0, 6)
    text = iz.ir(iz.Reverse, laplacian_energy, iz.Active, iz.Duplicated(x, np.zeros(6)),
                 stage="simplified")
    # one loop accumulates into the shadow (%1) at its own induction variable, with the
    # three contributions of x[i-1], x[i], x[i+1] added to one load
    gathers = [
        body for iv, body in re.findall(r"scf\.for (%\d+) = [^\n]*\n(.*?)\n    \}", text, re.S)
        if "memref.store" in body and re.search(rf"memref\.store %\d+, %1\[{iv}\]", body)
    ]
    assert len(gathers) == 1, text
    assert gathers[0].count("arith.addf %") >= 3


@pytest.mark.parametrize("n", [2, 3, 4, 11])
def test_gradients_against_finite_differences(n):
    rng = np.random.default_rng(n)
    for f in (rosenbrock, laplacian_energy):
        x = rng.uniform(-1.0, 1.0, n)
        dx = np.zeros(n)
        iz.autodiff(iz.Reverse, f, iz.Active, iz.Duplicated(x.copy(), dx))
        np.testing.assert_allclose(dx, central_gradient(f, [x]), rtol=1e-6, atol=1e-7, err_msg=f.__name__)
