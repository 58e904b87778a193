"""Reverse-mode caches: indexed buffers sized from trip counts where every loop around
a cached value is counted with top-level bounds, LIFO stacks where a while loop (or a
bound computed in a loop) encloses it.  Hand-written IR, lowered and run."""

import math

import pytest
from xdsl.parser import Parser

from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import lower_to_llvm
from isozyme.compiler.passes.differentiate import DifferentiatePass
from isozyme.compiler.pipeline import STAGE_PASSES
from isozyme.runtime.jit import compile_llvm_module

A = "#enzyme<activity enzyme_active>"
C = "#enzyme<activity enzyme_const>"
AN = "#enzyme<activity enzyme_activenoneed>"


def compile_grad(src: str, request: str, sig: list[str], rets: list[str]):
    """(simplified IR text, compiled ``grad`` entry) of ``src`` + ``request``."""
    ctx = make_context()
    module = Parser(ctx, src + request).parse_module()
    DifferentiatePass().apply(ctx, module)
    for p in STAGE_PASSES["simplified"]():
        p.apply(ctx, module)
    module.verify()
    text = str(module)
    lower_to_llvm(module, ctx)
    return text, compile_llvm_module(module).entry("grad", sig, rets)


def fd(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


# s = sin(s) * x, n times: sin(s) and s are needed in every reverse iteration.
LOOP = """
func.func private @f(%x: f64, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %one = arith.constant 0.5 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%s = %one) -> (f64) {
    %t = math.sin %s : f64
    %m = arith.mulf %t, %x : f64
    scf.yield %m : f64
  }
  func.return %r : f64
}
"""
GRAD_XN = f"""
func.func @grad(%x: f64, %n: index, %seed: f64) -> f64 {{
  %g = enzyme.autodiff @f(%x, %n, %seed) {{activity=[{A}, {C}], ret_activity=[{AN}]}} : (f64, index, f64) -> f64
  func.return %g : f64
}}
"""


def py_loop(x, n):
    s = 0.5
    for _ in range(n):
        s = math.sin(s) * x
    return s


def test_counted_loop_cache_is_a_buffer_sized_by_the_trip_count():
    text, grad = compile_grad(LOOP, GRAD_XN, ["f64", "index", "f64"], ["f64"])
    assert "enzyme.push" not in text and "enzyme.pop" not in text
    assert "enzyme.init" not in text
    assert "isozyme.cache" in text
    assert "memref<?xf64>" in text
    assert "memref.dealloc" in text
    for n in (0, 1, 2, 7, 40):
        (g,) = grad(1.3, n, 1.0)
        assert g == pytest.approx(fd(lambda x: py_loop(x, n), 1.3), rel=1e-6, abs=1e-9)


NESTED = """
func.func private @f(%x: f64, %n: index, %m: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %init = arith.constant 0.25 : f64
  %r = scf.for %i = %c1 to %n step %c2 iter_args(%s = %init) -> (f64) {
    %r2 = scf.for %j = %c3 to %m step %c1 iter_args(%u = %s) -> (f64) {
      %t = math.sin %u : f64
      %w = arith.mulf %t, %x : f64
      %zero = arith.constant 0.0 : f64
      %c = arith.cmpf ogt, %w, %zero : f64
      %v = scf.if %c -> (f64) {
        %e = math.exp %w : f64
        %e2 = arith.mulf %e, %x : f64
        scf.yield %e2 : f64
      } else {
        %w3 = arith.addf %w, %x : f64
        scf.yield %w3 : f64
      }
      scf.yield %v : f64
    }
    scf.yield %r2 : f64
  }
  func.return %r : f64
}
"""
GRAD_XNM = f"""
func.func @grad(%x: f64, %n: index, %m: index, %seed: f64) -> f64 {{
  %g = enzyme.autodiff @f(%x, %n, %m, %seed) {{activity=[{A}, {C}, {C}], ret_activity=[{AN}]}} : (f64, index, index, f64) -> f64
  func.return %g : f64
}}
"""


def py_nested(x, n, m):
    s = 0.25
    for _ in range(1, n, 2):
        for _ in range(3, m):
            w = math.sin(s) * x
            s = math.exp(w) * x if w > 0 else w + x
    return s


def test_nested_counted_loops_get_a_2d_cache_with_branch_values_in_it():
    text, grad = compile_grad(
        NESTED, GRAD_XNM, ["f64", "index", "index", "f64"], ["f64"]
    )
    assert "enzyme.push" not in text and "enzyme.pop" not in text
    assert "memref<?x?xf64>" in text
    # the exp of the taken branch is cached in the same 2-d slots
    assert text.count("isozyme.cache") >= 2
    for x in (0.3, -0.7, 1.1):
        for n, m in ((0, 5), (1, 3), (4, 6), (7, 5), (6, 9)):
            (g,) = grad(x, n, m, 1.0)
            expect = fd(lambda x_: py_nested(x_, n, m), x)
            assert g == pytest.approx(expect, rel=1e-5, abs=1e-8), (x, n, m)


WHILE = """
func.func private @f(%x: f64) -> f64 {
  %w = scf.while (%a = %x) : (f64) -> f64 {
    %lim = arith.constant 100.0 : f64
    %c = arith.cmpf olt, %a, %lim : f64
    scf.condition(%c) %a : f64
  } do {
  ^bb0(%a3: f64):
    %s = math.sin %a3 : f64
    %t = arith.addf %s, %a3 : f64
    %k = arith.constant 1.5 : f64
    %b = arith.mulf %t, %k : f64
    scf.yield %b : f64
  }
  func.return %w : f64
}
"""
GRAD_X = f"""
func.func @grad(%x: f64, %seed: f64) -> f64 {{
  %g = enzyme.autodiff @f(%x, %seed) {{activity=[{A}], ret_activity=[{AN}]}} : (f64, f64) -> f64
  func.return %g : f64
}}
"""


def test_while_loop_keeps_a_stack():
    text, grad = compile_grad(WHILE, GRAD_X, ["f64", "f64"], ["f64"])
    assert "enzyme.push" in text and "enzyme.pop" in text
    assert "isozyme.cache" not in text

    def py(x):
        while x < 100.0:
            x = (math.sin(x) + x) * 1.5
        return x

    (g,) = grad(1.7, 1.0)
    assert g == pytest.approx(fd(py, 1.7), rel=1e-6)


# The inner loop's bound is computed in the outer loop: its values need a stack.
INNER_BOUND = """
func.func private @f(%x: f64, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %init = arith.constant 0.5 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%s = %init) -> (f64) {
    %m = arith.addi %i, %c1 : index
    %r2 = scf.for %j = %c0 to %m step %c1 iter_args(%u = %s) -> (f64) {
      %t = math.sin %u : f64
      %w = arith.mulf %t, %x : f64
      scf.yield %w : f64
    }
    scf.yield %r2 : f64
  }
  func.return %r : f64
}
"""


def test_inner_bound_computed_in_a_loop_keeps_a_stack():
    text, grad = compile_grad(INNER_BOUND, GRAD_XN, ["f64", "index", "f64"], ["f64"])
    assert "enzyme.push" in text

    def py(x, n):
        s = 0.5
        for i in range(n):
            for _ in range(i + 1):
                s = math.sin(s) * x
        return s

    for n in (0, 1, 4):
        (g,) = grad(0.9, n, 1.0)
        assert g == pytest.approx(fd(lambda x: py(x, n), 0.9), rel=1e-6, abs=1e-9)


# A value of a branch at top level: a 0-d cache slot.
TOP_IF = """
func.func private @f(%x: f64) -> f64 {
  %zero = arith.constant 0.0 : f64
  %c = arith.cmpf ogt, %x, %zero : f64
  %v = scf.if %c -> (f64) {
    %s = math.sin %x : f64
    %e = math.exp %s : f64
    scf.yield %e : f64
  } else {
    %m = arith.mulf %x, %x : f64
    scf.yield %m : f64
  }
  func.return %v : f64
}
"""


def test_branch_value_at_top_level_has_a_scalar_slot():
    text, grad = compile_grad(TOP_IF, GRAD_X, ["f64", "f64"], ["f64"])
    assert "enzyme.push" not in text

    def py(x):
        return math.exp(math.sin(x)) if x > 0 else x * x

    for x in (0.7, -1.2):
        (g,) = grad(x, 1.0)
        assert g == pytest.approx(fd(py, x), rel=1e-6)


S1 = "memref<1xf64, strided<[1], offset: ?>>"
# a view taken in a loop body and passed to a call: the reverse sweep takes the view
# again (a view is metadata over an argument), it caches no buffer
VIEW_IN_LOOP = f"""
func.func private @h(%v: {S1}, %s: f64) -> f64 {{
  %c0 = arith.constant 0 : index
  %a = memref.load %v[%c0] : {S1}
  %t = math.sin %s : f64
  %m = arith.mulf %a, %t : f64
  func.return %m : f64
}}
func.func private @f(%x: memref<?xf64>, %s0: f64) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : memref<?xf64>
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%s = %s0) -> (f64) {{
    %v = memref.subview %x[%i][1][1] : memref<?xf64> to {S1}
    %u = func.call @h(%v, %s) : ({S1}, f64) -> f64
    scf.yield %u : f64
  }}
  func.return %r : f64
}}
func.func @grad(%x: memref<?xf64>, %s: f64, %seed: f64) -> f64 {{
  %g = enzyme.autodiff @f(%x, %s, %seed) {{activity=[{C}, {A}], ret_activity=[{AN}]}} : (memref<?xf64>, f64, f64) -> f64
  func.return %g : f64
}}
"""


def test_a_view_made_in_a_loop_is_taken_again_not_cached():
    import numpy as np

    text, grad = compile_grad(VIEW_IN_LOOP, "", ["memref<?xf64>", "f64", "f64"], ["f64"])
    assert "memref<?xmemref" not in text
    x = np.array([0.5, 1.2, 0.8])

    def py(s):
        for xi in x:
            s = xi * math.sin(s)
        return s

    (g,) = grad(x, 0.7, 1.0)
    assert g == pytest.approx(fd(py, 0.7), rel=1e-7)


def test_a_buffer_allocated_in_a_loop_that_the_reverse_needs_is_refused():
    src = f"""
func.func private @h(%v: memref<1xf64>, %s: f64) -> f64 {{
  %c0 = arith.constant 0 : index
  %a = memref.load %v[%c0] : memref<1xf64>
  %t = math.sin %s : f64
  %m = arith.mulf %a, %t : f64
  func.return %m : f64
}}
func.func private @f(%s0: f64, %n: index) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%s = %s0) -> (f64) {{
    %b = memref.alloc() : memref<1xf64>
    %two = arith.constant 2.0 : f64
    memref.store %two, %b[%c0] : memref<1xf64>
    %u = func.call @h(%b, %s) : (memref<1xf64>, f64) -> f64
    memref.dealloc %b : memref<1xf64>
    scf.yield %u : f64
  }}
  func.return %r : f64
}}
func.func @grad(%s: f64, %n: index, %seed: f64) -> f64 {{
  %g = enzyme.autodiff @f(%s, %n, %seed) {{activity=[{A}, {C}], ret_activity=[{AN}]}} : (f64, index, f64) -> f64
  func.return %g : f64
}}
"""
    from isozyme.errors import UnsupportedError

    ctx = make_context()
    module = Parser(ctx, src).parse_module()
    with pytest.raises(UnsupportedError, match="would have to cache a buffer"):
        DifferentiatePass().apply(ctx, module)
