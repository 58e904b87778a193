"""``shrink-fills``: a fresh buffer's zero fill skips what the next loop writes (a
stencil step's ``new = np.zeros(n)`` and its adjoint); what the loop does not write, or
may read first, is still filled; the numbers stay right."""

import re

import numpy as np
import pytest
from xdsl.parser import Parser

import isozyme as iz
from isozyme.compiler.context import make_context
from isozyme.compiler.passes.shrink_fills import ShrinkFillsPass
from tests.array_programs import stencil_steps

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
    for f, extra in ((stencil_steps, (3,)), (shifted, ())):
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
    text = iz.ir(iz.ForwardWithPrimal, stencil_steps, iz.Const, iz.Const(u.copy()), 3,
                 stage="simplified")
    assert '"scf.parallel"' not in text  # new = np.zeros(n): filled only at the ends


def _defined_before_use(module) -> bool:
    """Whether every operand is defined before its use (xDSL's verify() does not check
    dominance; LLVM translation fails on a use before its definition)."""
    seen = set()
    for op in module.walk():
        for region in op.regions:
            for block in region.blocks:
                seen.update(block.args)
    for op in module.walk():
        if any(v not in seen for v in op.operands):
            return False
        seen.update(op.results)
    return True


def test_shrunk_fill_follows_the_bounds_defined_after_the_fill():
    # the writer's upper bound is computed between the fill and the loop (what the
    # frontend emits for range(n - 1) with bounds checks off)
    src = FILLED.replace("  %m = arith.subi %n, %c1 : index\n", "").replace(
        "  scf.for %i", "  %m = arith.subi %n, %c1 : index\n  scf.for %i")
    ctx = make_context()
    m = Parser(ctx, src.replace("BODY", PLAIN)).parse_module()
    ShrinkFillsPass().apply(ctx, m)
    m.verify()
    out = str(m)
    assert '"scf.parallel"' not in out and out.count("scf.for") == 3, out
    assert _defined_before_use(m), out


def test_i64_writer_loop_is_left_alone():
    src = FILLED.replace("scf.for %i = %c1 to %m step %c1 {", """%c1i = arith.constant 1 : i64
  %mi = arith.index_cast %m : index to i64
  scf.for %j = %c1i to %mi step %c1i : i64 {
    %i = arith.index_cast %j : i64 to index""")
    ctx = make_context()
    m = Parser(ctx, src.replace("BODY", PLAIN)).parse_module()
    before = str(m)
    ShrinkFillsPass().apply(ctx, m)
    m.verify()
    assert str(m) == before


def first_elements(x):
    n = len(x)
    new = np.zeros(n)
    for i in range(n - 1):
        new[i] = x[i] * 2.0
    return np.sum(new * x)


def heat(u, steps):
    n = len(u)
    for t in range(steps):
        new = np.zeros(n)
        for i in range(1, n - 1):
            new[i] = u[i] + 0.1 * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        for i in range(1, n - 1):
            u[i] = new[i]
    return np.sum(u * u)


@pytest.fixture
def no_boundscheck():
    old = iz.config(boundscheck=False)
    yield
    iz.config(**old)


def _fill_loops(text: str) -> int:
    """Stores into the first fresh buffer: the writer plus two end fills once shrunk
    (the writer plus one full fill when not)."""
    buf = re.search(r"(%\d+) = memref\.alloc\(%\d+\)", text).group(1)
    return len(re.findall(rf"memref\.store %\d+, {buf}\[", text))


@pytest.mark.parametrize("n", [1, 4])
def test_without_bounds_checks(no_boundscheck, n):
    # without an isz.check between the fill and the writer, the writer's bounds are
    # computed right before it: the shrunk fill must come after them
    x = np.linspace(1.0, 2.0, n)
    for f, extra in ((first_elements, ()), (heat, (2,))):
        want = f(x.copy(), *extra)
        _, got = iz.autodiff(iz.ForwardWithPrimal, f, iz.Const, iz.Const(x.copy()), *extra)
        assert got == pytest.approx(want, rel=1e-13, abs=1e-13), f.__name__
        dx = np.zeros(n)
        _, primal = iz.autodiff(iz.ReverseWithPrimal, f, iz.Active,
                                iz.Duplicated(x.copy(), dx), *extra)
        assert primal == pytest.approx(want, rel=1e-13, abs=1e-13), f.__name__
        h, fd = 1e-6, np.zeros(n)
        for k in range(n):
            p, m = x.copy(), x.copy()
            p[k] += h
            m[k] -= h
            fd[k] = (f(p, *extra) - f(m, *extra)) / (2 * h)
        np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-8, err_msg=f.__name__)
        if n > 1:  # (a length-1 array is traced with a static shape)
            text = iz.ir(iz.ForwardWithPrimal, f, iz.Const, iz.Const(x.copy()), *extra,
                         stage="simplified")
            assert _fill_loops(text) == 3, text  # the pass fired
