"""Reverse-mode caches: indexed buffers sized from trip counts where every loop around
a cached value is counted with top-level bounds, LIFO stacks where a while loop (or a
bound computed in a loop) encloses it, and for counted (parallel) loops inside such a
loop, a buffer per iteration of it pushed on a stack.  Hand-written IR, lowered and run."""

import math
import shutil

import numpy as np
import pytest
from xdsl.dialects import memref, scf
from xdsl.dialects.builtin import MemRefType
from xdsl.parser import Parser

import isozyme as iz
from isozyme import Active, Duplicated, Reverse, prange
from isozyme.compiler.ad.tape import CACHE_ATTR
from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import lower_to_llvm
from isozyme.compiler.passes.differentiate import DifferentiatePass
from isozyme.compiler.passes.eliminate_dead_caches import EliminateDeadCachesPass
from isozyme.compiler.pipeline import STAGE_PASSES
from isozyme.dialects.enzyme import InitOp, PopOp, PushOp
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


# --- counted loops inside a loop of unknown trip count (Enzyme's cache of buffers) ------

def _parallel(ivs, lbs, ubs, steps, inits, init_types, body):
    """Generic-form ``scf.parallel`` (xDSL has no custom syntax for it)."""
    k = len(ivs)
    operands = ", ".join(lbs + ubs + steps + inits)
    types = ", ".join(["index"] * 3 * k + init_types)
    args = ", ".join(f"{iv}: index" for iv in ivs)
    return (
        f'"scf.parallel"({operands}) <{{operandSegmentSizes = array<i32: {k}, {k}, {k}, '
        f'{len(inits)}>}}> ({{\n  ^bb0({args}):\n{body}\n  }}) : ({types}) -> '
        f'({", ".join(init_types)})'
    )


_ADD_REDUCE = """scf.reduce(%w : f64) {
      ^bb0(%l: f64, %r: f64):
        %sum = arith.addf %l, %r : f64
        scf.reduce.return %sum : f64
      }"""

# while s < 3: s += 0.5 + 0.1 * (sum_i x * sin(s * (i + 1)) * sin(s * (i + 1)))**2
# The parallel loop's sin(a) and a are needed by its reverse, and the while loop's trip
# count is unknown: each while iteration caches them in a buffer of n slots and pushes it.
_PAR_BODY = """    %ii = arith.index_cast %i : index to i64
    %i1 = arith.addi %ii, %k1 : i64
    %fi = arith.sitofp %i1 : i64 to f64
    %a = arith.mulf %u, %fi : f64
    %b = math.sin %a : f64
    %v = arith.mulf %b, %x : f64
    %w = arith.mulf %v, %b : f64
    """ + _ADD_REDUCE
WHILE_PARALLEL = f"""
func.func private @f(%x: f64, %n: index) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %k1 = arith.constant 1 : i64
  %lim = arith.constant 3.0 : f64
  %zero = arith.constant 0.0 : f64
  %half = arith.constant 0.5 : f64
  %tenth = arith.constant 0.1 : f64
  %init = arith.constant 0.25 : f64
  %r = scf.while (%s = %init) : (f64) -> f64 {{
    %c = arith.cmpf olt, %s, %lim : f64
    scf.condition(%c) %s : f64
  }} do {{
  ^bb0(%u: f64):
    %t = {_parallel(["%i"], ["%c0"], ["%n"], ["%c1"], ["%zero"], ["f64"], _PAR_BODY)}
    %t2 = arith.mulf %t, %t : f64
    %t3 = arith.mulf %t2, %tenth : f64
    %d = arith.addf %t3, %half : f64
    %next = arith.addf %u, %d : f64
    scf.yield %next : f64
  }}
  func.return %r : f64
}}
"""


def py_while_parallel(x, n, lim=3.0):
    s = 0.25
    while s < lim:
        t = sum(x * math.sin(s * (i + 1)) ** 2 for i in range(n))
        s += 0.5 + 0.1 * t * t
    return s


def _differentiated(src: str):
    ctx = make_context()
    module = Parser(ctx, src).parse_module()
    DifferentiatePass().apply(ctx, module)
    module.verify()
    return ctx, module


def _in_parallel(op) -> bool:
    p = op.parent_op()
    while p is not None:
        if isinstance(p, scf.ParallelOp):
            return True
        p = p.parent_op()
    return False


def test_parallel_loop_in_a_while_loop_pushes_its_cache_buffer():
    _, module = _differentiated(WHILE_PARALLEL + GRAD_XN)
    pushes = [o for o in module.walk() if isinstance(o, PushOp)]
    buffers = [p for p in pushes if isinstance(p.value.type, MemRefType)]
    assert buffers, "the parallel loop's cache buffer is pushed"
    for push in buffers:
        # pushed in the forward while body, outside every parallel loop, right after
        # its marked alloc, which comes before the forward parallel loop
        assert not _in_parallel(push)
        assert isinstance(push.parent_op(), scf.WhileOp)
        alloc = push.value.owner
        assert isinstance(alloc, memref.AllocOp) and CACHE_ATTR in alloc.attributes
        nxt = push.next_op
        while isinstance(nxt, (memref.AllocOp, PushOp)) or nxt.name.startswith("arith."):
            nxt = nxt.next_op
        assert isinstance(nxt, scf.ParallelOp)
        # stored into inside the parallel loop
        assert any(
            isinstance(u.operation, memref.StoreOp) and _in_parallel(u.operation)
            for u in push.value.uses
        )
    pops = [o for o in module.walk() if isinstance(o, PopOp)]
    for pop in pops:
        if not isinstance(pop.result.type, MemRefType):
            continue
        # popped in the reverse while body (an scf.for) before the adjoint parallel
        # loop, loaded from inside it, freed after it
        assert not _in_parallel(pop) and isinstance(pop.parent_op(), scf.ForOp)
        users = [u.operation for u in pop.result.uses]
        assert any(isinstance(u, memref.LoadOp) and _in_parallel(u) for u in users)
        (free,) = [u for u in users if isinstance(u, memref.DeallocOp)]
        adjoint = [
            o for o in pop.parent_block().ops if isinstance(o, scf.ParallelOp)
        ]
        assert adjoint and adjoint[-1].is_before_in_block(free)
    assert sum(isinstance(p.result.type, MemRefType) for p in pops) == len(buffers)


def test_parallel_loop_in_a_while_loop_matches_finite_differences():
    text, grad = compile_grad(WHILE_PARALLEL, GRAD_XN, ["f64", "index", "f64"], ["f64"])
    assert "!enzyme.Cache<memref<?xf64>>" in text
    for x, n in ((0.9, 3), (0.6, 5), (1.3, 1)):
        (g,) = grad(x, n, 1.0)
        assert g == pytest.approx(fd(lambda x: py_while_parallel(x, n), x), rel=1e-6)


def test_many_pushed_buffers_grow_the_stack():
    """Over 16 while iterations: the stack of buffer descriptors is reallocated (its
    elements are whole descriptors, 40 bytes for rank 1), the buffers survive."""
    src = WHILE_PARALLEL.replace("%lim = arith.constant 3.0", "%lim = arith.constant 40.0")
    _, grad = compile_grad(src, GRAD_XN, ["f64", "index", "f64"], ["f64"])
    x, n = 0.3, 4
    s, count = 0.25, 0
    while s < 40.0:
        t = sum(x * math.sin(s * (i + 1)) ** 2 for i in range(n))
        s, count = s + 0.5 + 0.1 * t * t, count + 1
    assert count > 40
    (g,) = grad(x, n, 1.0)
    assert g == pytest.approx(fd(lambda x: py_while_parallel(x, n, 40.0), x), rel=1e-5)


# Two counted loops (a sequential j loop around the parallel i loop) in the while body:
# the pushed buffer has one slot per (j, i) iteration.
_PAR2_BODY = """    %ii = arith.index_cast %i : index to i64
    %jj = arith.index_cast %j : index to i64
    %ij = arith.addi %ii, %jj : i64
    %i1 = arith.addi %ij, %k1 : i64
    %fi = arith.sitofp %i1 : i64 to f64
    %a = arith.mulf %q, %fi : f64
    %b = math.sin %a : f64
    %v = arith.mulf %b, %x : f64
    %w = arith.mulf %v, %b : f64
    """ + _ADD_REDUCE
WHILE_FOR_PARALLEL = f"""
func.func private @f(%x: f64, %n: index) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %k1 = arith.constant 1 : i64
  %lim = arith.constant 3.0 : f64
  %zero = arith.constant 0.0 : f64
  %half = arith.constant 0.5 : f64
  %tenth = arith.constant 0.1 : f64
  %init = arith.constant 0.25 : f64
  %r = scf.while (%s = %init) : (f64) -> f64 {{
    %c = arith.cmpf olt, %s, %lim : f64
    scf.condition(%c) %s : f64
  }} do {{
  ^bb0(%u: f64):
    %e = scf.for %j = %c0 to %c2 step %c1 iter_args(%q = %u) -> (f64) {{
      %t = {_parallel(["%i"], ["%c0"], ["%n"], ["%c1"], ["%zero"], ["f64"], _PAR2_BODY)}
      %t2 = arith.mulf %t, %t : f64
      %t3 = arith.mulf %t2, %tenth : f64
      %d = arith.addf %t3, %half : f64
      %q2 = arith.addf %q, %d : f64
      scf.yield %q2 : f64
    }}
    scf.yield %e : f64
  }}
  func.return %r : f64
}}
"""


def py_while_for_parallel(x, n):
    s = 0.25
    while s < 3.0:
        for j in range(2):
            t = sum(x * math.sin(s * (i + j + 1)) ** 2 for i in range(n))
            s += 0.5 + 0.1 * t * t
    return s


def test_counted_loops_in_a_while_loop_push_a_2d_buffer():
    text, grad = compile_grad(WHILE_FOR_PARALLEL, GRAD_XN, ["f64", "index", "f64"], ["f64"])
    assert "!enzyme.Cache<memref<?x?xf64>>" in text
    for x, n in ((0.9, 3), (0.4, 4)):
        (g,) = grad(x, n, 1.0)
        assert g == pytest.approx(fd(lambda x: py_while_for_parallel(x, n), x), rel=1e-6)


def test_parallel_loop_under_a_loop_of_unknown_count_inside_a_parallel_is_refused():
    from isozyme.errors import UnsupportedError

    inner = _parallel(["%i"], ["%c0"], ["%n"], ["%c1"], ["%zero"], ["f64"], _PAR_BODY)
    body = f"""    %rw = scf.while (%s = %init) : (f64) -> f64 {{
      %c = arith.cmpf olt, %s, %lim : f64
      scf.condition(%c) %s : f64
    }} do {{
    ^bb0(%u: f64):
      %t = {inner}
      %next = arith.addf %u, %half : f64
      %n2 = arith.addf %next, %t : f64
      scf.yield %n2 : f64
    }}
    %ow = arith.mulf %rw, %x : f64
    scf.reduce(%ow : f64) {{
      ^bb0(%ol: f64, %or: f64):
        %osum = arith.addf %ol, %or : f64
        scf.reduce.return %osum : f64
      }}"""
    src = f"""
func.func private @f(%x: f64, %n: index) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %k1 = arith.constant 1 : i64
  %lim = arith.constant 3.0 : f64
  %zero = arith.constant 0.0 : f64
  %half = arith.constant 0.5 : f64
  %init = arith.constant 0.25 : f64
  %o = {_parallel(["%p"], ["%c0"], ["%n"], ["%c1"], ["%zero"], ["f64"], body)}
  func.return %o : f64
}}
"""
    ctx = make_context()
    module = Parser(ctx, src + GRAD_XN).parse_module()
    with pytest.raises(UnsupportedError, match="a parallel loop cannot hold"):
        DifferentiatePass().apply(ctx, module)


def test_a_dead_stack_of_cache_buffers_is_eliminated():
    src = """
func.func @f(%n: index, %v: f64) {
  %c0 = arith.constant 0 : index
  %st = enzyme.init : !enzyme.Cache<memref<?xf64>>
  %b = memref.alloc(%n) {isozyme.cache} : memref<?xf64>
  enzyme.push %st, %b : !enzyme.Cache<memref<?xf64>>, memref<?xf64>
  memref.store %v, %b[%c0] : memref<?xf64>
  %p = enzyme.pop %st : (!enzyme.Cache<memref<?xf64>>) -> memref<?xf64>
  %l = memref.load %p[%c0] : memref<?xf64>
  memref.dealloc %p : memref<?xf64>
  enzyme.cache_free %st : !enzyme.Cache<memref<?xf64>>
  func.return
}
"""
    ctx = make_context()
    module = Parser(ctx, src).parse_module()
    EliminateDeadCachesPass().apply(ctx, module)
    assert [o.name for o in module.body.block.first_op.body.block.ops] == [
        "arith.constant", "func.return"
    ]
    # a used load keeps everything
    used = src.replace(
        "func.return\n", "func.call @g(%l) : (f64) -> ()\n  func.return\n"
    ).replace("func.func @f", "func.func private @g(f64)\nfunc.func @f")
    module = Parser(ctx, used).parse_module()
    EliminateDeadCachesPass().apply(ctx, module)
    assert sum(isinstance(o, (InitOp, PushOp, PopOp)) for o in module.walk()) == 3


def _smooth_until(x, w):
    """A whole-array update and a prange loop in a while loop (through the frontend)."""
    s = 0.0
    t = 0.0
    y = np.zeros(len(x))
    while t < 2.5:
        for i in prange(len(x)):
            y[i] = np.sin(x[i] * w) * x[i]
        x[1:] = x[1:] + 0.5 * y[:-1] * y[1:]
        s += np.sum(y)
        t += w
    return s


@pytest.mark.parametrize(
    "target",
    [
        "cpu",
        pytest.param(
            "cuda-emu",
            marks=pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++"),
        ),
    ],
)
def test_prange_and_whole_array_loops_in_a_while_loop_through_the_api(target):
    """The cache buffers stay host allocations pushed by the host program; on cuda-emu
    the kernels store into and load from them."""
    x = np.linspace(0.1, 0.9, 5)
    w = 0.7
    args = (Duplicated(x.copy(), np.zeros(5)), Active(w))
    text = iz.ir_stages(Reverse, _smooth_until, Active, *args, stages=["simplified"])
    assert "enzyme.push" in text["simplified"]
    assert "!enzyme.Cache<memref<?xf64>>" in text["simplified"]
    dx = np.zeros(5)
    with iz.target(target):
        (_, dw), = iz.autodiff(
            Reverse, _smooth_until, Active, Duplicated(x.copy(), dx), Active(w)
        )
    for k in range(5):
        def fk(v, k=k):
            xx = x.copy()
            xx[k] = v
            return _smooth_until(xx, w)
        assert dx[k] == pytest.approx(fd(fk, x[k]), rel=1e-6, abs=1e-9)
    assert dw == pytest.approx(fd(lambda v: _smooth_until(x.copy(), v), w), rel=1e-6)
