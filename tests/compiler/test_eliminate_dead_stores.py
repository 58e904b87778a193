"""``eliminate-dead-stores``: the zeroing of a local adjoint buffer freed right after
the loop goes; stores something may still read stay; a stencil's gradient (whose
reverse step zeroes such a buffer) stays right and gets its gather form."""

import re

import numpy as np
import pytest
from xdsl.parser import Parser

import isozyme as iz
from tests.finite_differences import central_gradient
from isozyme.compiler.context import make_context
from isozyme.compiler.passes.eliminate_dead_stores import EliminateDeadStoresPass

# the reverse of a stencil step: take the adjoint nb[i+1], zero it, scatter it into du
ZEROED = """
func.func @f(%du: memref<?xf64>, %n: index, %m: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %nb = memref.alloc(%n) : memref<?xf64>
  scf.for %i = %c0 to %m step %c1 {
    %j = arith.addi %i, %c1 : index
    %t = memref.load %nb[%j] : memref<?xf64>
    memref.store %z, %nb[%j] : memref<?xf64>
    %a = memref.load %du[%i] : memref<?xf64>
    %s = arith.addf %a, %t : f64
    memref.store %s, %du[%i] : memref<?xf64>
  }
  AFTER
  memref.dealloc %nb : memref<?xf64>
  func.return
}
"""


def _stores_left(text: str) -> int:
    ctx = make_context()
    m = Parser(ctx, text).parse_module()
    EliminateDeadStoresPass().apply(ctx, m)
    m.verify()
    return str(m).count("memref.store")


def test_zeroing_of_a_freed_local_buffer_is_dropped():
    assert _stores_left(ZEROED.replace("AFTER", "")) == 1


@pytest.mark.parametrize("change", [
    # read after the loop
    ("AFTER", "%r = memref.load %nb[%c0] : memref<?xf64>"),
    # read of another element in the loop (a later iteration reads the zero)
    ("%t = memref.load %nb[%j]", "%t = memref.load %nb[%i]"),
    # the same element every iteration
    ("memref.store %z, %nb[%j]", "memref.store %z, %nb[%c1]"),
])
def test_stores_that_may_be_read_stay(change):
    text = ZEROED.replace(*change).replace("AFTER", "")
    assert _stores_left(text) == 2


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


@pytest.mark.parametrize("n", [3, 7])
def test_stencil_gradient_in_gather_form(n):
    rng = np.random.default_rng(n)
    u = rng.uniform(-1.0, 1.0, n)
    du = np.zeros(n)
    iz.autodiff(iz.Reverse, stencil, iz.Active, iz.Duplicated(u.copy(), du), 3)
    np.testing.assert_allclose(du, central_gradient(stencil, [u], (3,)), rtol=1e-6, atol=1e-8)
    text = iz.ir(iz.Reverse, stencil, iz.Active, iz.Duplicated(u.copy(), np.zeros(n)), 3,
                 stage="simplified")
    # the reverse step: one loop accumulating du[e] from the three neighbours
    assert any(
        re.search(rf"memref\.store %\d+, %1\[{iv}\]", body) and body.count("arith.addf %") >= 3
        for iv, body in re.findall(r"scf\.for (%\d+) = [^\n]*\n(.*?)\n      \}", text, re.S)
    ), text


LAST_STORE = """
func.func @f(%x: memref<?xf64>, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %acc = memref.alloc() : memref<f64>
  %only_written = memref.alloc() : memref<f64>
  memref.store %z, %acc[] : memref<f64>
  memref.store %z, %only_written[] : memref<f64>
  %init = memref.load %acc[] : memref<f64>
  %s = scf.for %i = %c0 to %n step %c1 iter_args(%a = %init) -> (f64) {
    %v = memref.load %x[%i] : memref<?xf64>
    %b = arith.addf %a, %v : f64
    scf.yield %b : f64
  }
  memref.store %s, %acc[] : memref<f64>
  READ
  memref.dealloc %acc : memref<f64>
  memref.dealloc %only_written : memref<f64>
  func.return %init : f64
}
"""


def test_last_store_and_write_only_buffers_go():
    ctx = make_context()
    m = Parser(ctx, LAST_STORE.replace("READ", "")).parse_module()
    EliminateDeadStoresPass().apply(ctx, m)
    m.verify()
    text = str(m)
    # the sum's store is dead (only the free follows); the write-only buffer is gone
    assert "memref.store %s" not in text and "only_written" not in text, text
    assert text.count("memref.store") == 1  # acc's zero, read by %init


def test_last_store_read_afterwards_stays():
    src = LAST_STORE.replace("READ", "%r = memref.load %acc[] : memref<f64>")
    ctx = make_context()
    m = Parser(ctx, src).parse_module()
    EliminateDeadStoresPass().apply(ctx, m)
    assert "memref.store %s" in str(m)


def rosenbrock_vec(x):
    return np.sum((1.0 - x[:-1]) ** 2 + 100.0 * (x[1:] - x[:-1] ** 2) ** 2)


def test_reverse_drops_the_unreturned_primal_sum():
    x = np.linspace(-0.9, 0.8, 6)
    dx = np.zeros(6)
    iz.autodiff(iz.Reverse, rosenbrock_vec, iz.Active, iz.Duplicated(x, dx))
    np.testing.assert_allclose(dx, central_gradient(rosenbrock_vec, [x]), rtol=1e-6, atol=1e-6)
    text = iz.ir(iz.Reverse, rosenbrock_vec, iz.Active, iz.Duplicated(x, np.zeros(6)),
                 stage="simplified")
    assert "scf.reduce(" not in text, text  # the serial sum nothing returns
    _, val = iz.autodiff(iz.ReverseWithPrimal, rosenbrock_vec, iz.Active,
                         iz.Duplicated(x, np.zeros(6)))
    assert val == pytest.approx(rosenbrock_vec(x), rel=1e-12)
