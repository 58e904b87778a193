"""AD passes on hand-written IR (Enzyme-MLIR's textual interface), lowered and run.

These exercise paths Python tracing rarely reaches: derivatives of ``func.call``
(when nothing inlines the callee), Enzyme-MLIR requests written by hand, and the
reverse of ``scf.while`` with caches.
"""

import math

import pytest
from xdsl.parser import Parser

from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import lower_to_llvm
from isozyme.compiler.passes.differentiate import DifferentiatePass
from isozyme.compiler.passes.simplify_ad import SimplifyADPass
from isozyme.runtime.jit import compile_llvm_module

LOOP_FN = """
func.func private @helper(%a: f64, %b: f64) -> f64 {
  %s = math.sin %a : f64
  %m = arith.mulf %s, %b : f64
  func.return %m : f64
}
func.func private @f(%x: f64, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %one = arith.constant 1.0 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%s = %one) -> (f64) {
    %t = func.call @helper(%s, %x) : (f64, f64) -> f64
    %z = arith.constant 0.0 : f64
    %c = arith.cmpf ogt, %t, %z : f64
    %v = scf.if %c -> (f64) {
      %w = arith.mulf %t, %x : f64
      scf.yield %w : f64
    } else {
      %w2 = arith.addf %t, %x : f64
      scf.yield %w2 : f64
    }
    scf.yield %v : f64
  }
  %w = scf.while (%a = %r) : (f64) -> f64 {
    %lim = arith.constant 10.0 : f64
    %a2 = math.absf %a : f64
    %c = arith.cmpf olt, %a2, %lim : f64
    scf.condition(%c) %a : f64
  } do {
  ^bb0(%a3: f64):
    %two = arith.constant 2.0 : f64
    %b = arith.mulf %a3, %x : f64
    %b2 = arith.addf %b, %two : f64
    scf.yield %b2 : f64
  }
  func.return %w : f64
}
"""

REQUESTS = """
func.func @grad(%x: f64, %n: index, %seed: f64) -> (f64, f64) {
  %g:2 = enzyme.autodiff @f(%x, %n, %seed) {activity=[#enzyme<activity enzyme_active>, #enzyme<activity enzyme_const>], ret_activity=[#enzyme<activity enzyme_active>]} : (f64, index, f64) -> (f64, f64)
  func.return %g#0, %g#1 : f64, f64
}
func.func @tangent(%x: f64, %dx: f64, %n: index) -> (f64, f64) {
  %t:2 = enzyme.fwddiff @f(%x, %dx, %n) {activity=[#enzyme<activity enzyme_dup>, #enzyme<activity enzyme_const>], ret_activity=[#enzyme<activity enzyme_dup>]} : (f64, f64, index) -> (f64, f64)
  func.return %t#0, %t#1 : f64, f64
}
"""


def py_f(x: float, n: int) -> float:
    s = 1.0
    for _ in range(n):
        t = math.sin(s) * x
        s = t * x if t > 0 else t + x
    while abs(s) < 10.0:
        s = s * x + 2.0
    return s


@pytest.fixture(scope="module")
def compiled():
    ctx = make_context()
    module = Parser(ctx, LOOP_FN + REQUESTS).parse_module()
    DifferentiatePass().apply(ctx, module)
    text = str(module)
    assert "func.call @diffehelper" in text  # the call is differentiated, not inlined
    assert "func.call @fwddiffehelper" in text
    assert "enzyme.push" in text and "enzyme.pop" in text
    SimplifyADPass().apply(ctx, module)
    module.verify()
    lower_to_llvm(module, ctx)
    cm = compile_llvm_module(module)
    return (
        cm.entry("grad", ["f64", "index", "f64"], ["f64", "f64"]),
        cm.entry("tangent", ["f64", "f64", "index"], ["f64", "f64"]),
    )


@pytest.mark.parametrize("x", [1.3, 1.7, 2.1, 2.6])
@pytest.mark.parametrize("n", [0, 1, 3, 6])
def test_reverse_and_forward_match_finite_differences(compiled, x, n):
    grad, tangent = compiled
    h = 1e-6
    fd = (py_f(x + h, n) - py_f(x - h, n)) / (2 * h)
    primal, g = grad(x, n, 1.0)
    assert primal == pytest.approx(py_f(x, n), rel=1e-12)
    assert g == pytest.approx(fd, rel=1e-5, abs=1e-6)
    p2, t = tangent(x, 1.0, n)
    assert p2 == pytest.approx(primal, rel=1e-12)
    assert t == pytest.approx(g, rel=1e-10, abs=1e-10)


def test_reverse_seed_scales_gradient(compiled):
    grad, _ = compiled
    _, g1 = grad(1.7, 3, 1.0)
    _, g2 = grad(1.7, 3, 2.5)
    assert g2 == pytest.approx(2.5 * g1, rel=1e-14)


def test_while_cache_grows_with_trip_count():
    # trip count ~ log(1e6)/log(1.01) ~ 1400: far past the initial cache capacity
    src = """
func.func private @g(%x: f64) -> f64 {
  %w = scf.while (%a = %x) : (f64) -> f64 {
    %lim = arith.constant 1.0e6 : f64
    %c = arith.cmpf olt, %a, %lim : f64
    scf.condition(%c) %a : f64
  } do {
  ^bb0(%a3: f64):
    %k = arith.constant 1.01 : f64
    %b = arith.mulf %a3, %k : f64
    %s = math.sqrt %b : f64
    %e = arith.constant 1.0e-3 : f64
    %t = arith.mulf %s, %e : f64
    %b2 = arith.addf %b, %t : f64
    scf.yield %b2 : f64
  }
  func.return %w : f64
}
func.func @grad(%x: f64, %seed: f64) -> f64 {
  %g = enzyme.autodiff @g(%x, %seed) {activity=[#enzyme<activity enzyme_active>], ret_activity=[#enzyme<activity enzyme_activenoneed>]} : (f64, f64) -> f64
  func.return %g : f64
}
"""

    def py_g(x):
        while x < 1.0e6:
            b = x * 1.01
            x = b + math.sqrt(b) * 1e-3
        return x

    ctx = make_context()
    module = Parser(ctx, src).parse_module()
    DifferentiatePass().apply(ctx, module)
    lower_to_llvm(module, ctx)
    grad = compile_llvm_module(module).entry("grad", ["f64", "f64"], ["f64"])
    x, h = 2.0, 1e-7
    fd = (py_g(x + h) - py_g(x - h)) / (2 * h)
    (g,) = grad(x, 1.0)
    assert g == pytest.approx(fd, rel=1e-5)


WRITING_CALL = """
func.func private @scale(%b: memref<?xf64>, %a: f64) {
  %c0 = arith.constant 0 : index
  %v = memref.load %b[%c0] : memref<?xf64>
  %w = arith.mulf %v, %a : f64
  memref.store %w, %b[%c0] : memref<?xf64>
  func.return
}
func.func private @reads(%b: memref<?xf64>) -> index {
  %c0 = arith.constant 0 : index
  %n = memref.dim %b, %c0 : memref<?xf64>
  func.return %n : index
}
func.func private @g(%b: memref<?xf64>, %a: f64) {
  %n = func.call @reads(%b) : (memref<?xf64>) -> index
  func.call @scale(%b, %a) : (memref<?xf64>, f64) -> ()
  func.return
}
func.func @tangent(%b: memref<?xf64>, %db: memref<?xf64>, %a: f64) {
  enzyme.fwddiff @g(%b, %db, %a) {activity=[#enzyme<activity enzyme_dup>, #enzyme<activity enzyme_const>], ret_activity=[]} : (memref<?xf64>, memref<?xf64>, f64) -> ()
  func.return
}
"""


def test_forward_refuses_a_call_that_writes_an_active_buffer_and_returns_nothing():
    # Cloning it would drop the tangent of what it writes (db would keep its old value);
    # a call that only reads the buffer (@reads) is still cloned.
    from isozyme.errors import UnsupportedError

    ctx = make_context()
    module = Parser(ctx, WRITING_CALL).parse_module()
    with pytest.raises(UnsupportedError, match="call of @scale with an active buffer"):
        DifferentiatePass().apply(ctx, module)
    ctx = make_context()
    module = Parser(ctx, WRITING_CALL.replace(
        "  func.call @scale(%b, %a) : (memref<?xf64>, f64) -> ()\n", "")).parse_module()
    DifferentiatePass().apply(ctx, module)
    assert "func.call @reads" in str(module)
