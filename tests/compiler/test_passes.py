"""Unit tests of isozyme's own passes on hand-written IR."""

from xdsl.dialects import func
from xdsl.parser import Parser

from isozyme.compiler.analysis.activity import analyze_activity
from isozyme.compiler.context import make_context
from isozyme.compiler.passes.eliminate_dead_caches import EliminateDeadCachesPass
from isozyme.compiler.passes.inline import InlinePass
from isozyme.compiler.passes.simplify_ad import SimplifyADPass
from xdsl.transforms.dead_code_elimination import DeadCodeElimination


def parse(text):
    ctx = make_context()
    return ctx, Parser(ctx, text).parse_module()


def test_simplify_ad_rewrites():
    ctx, m = parse("""
func.func @f(%x: f64, %y: f64) -> (f64, f64, f64, f64, f64, f64) {
  %one = arith.constant 1.0 : f64
  %zero = arith.constant {isozyme.ad_zero} 0.0 : f64
  %two = arith.constant 2.0 : f64
  %three = arith.constant 3.0 : f64
  %a = arith.mulf %x, %one : f64
  %b = arith.addf %zero, %y : f64
  %c = arith.mulf %x, %zero : f64
  %n1 = arith.negf %x : f64
  %d = arith.negf %n1 : f64
  %e = arith.mulf %two, %three : f64
  %s = arith.subf %x, %zero : f64
  func.return %a, %b, %c, %d, %e, %s : f64, f64, f64, f64, f64, f64
}
""")
    SimplifyADPass().apply(ctx, m)
    DeadCodeElimination().apply(ctx, m)
    text = str(m)
    assert "arith.mulf" not in text and "arith.addf" not in text
    assert "arith.negf" not in text and "arith.subf" not in text
    assert "6.000000e+00" in text
    ret = next(o for o in m.walk() if isinstance(o, func.ReturnOp))
    fn = ret.parent_op()
    x, y = fn.body.block.args
    assert ret.operands[0] is x and ret.operands[1] is y and ret.operands[3] is x
    assert ret.operands[5] is x


def test_simplify_ad_keeps_ieee_semantics_of_the_users_zeros():
    # x * 0.0 is NaN for an infinite x and -0.0 for a negative one; 0.0 - x and x + 0.0
    # differ from -x and x in the sign of a zero; 0.0 / x is NaN for x = 0: only zeros
    # the AD passes made (marked isozyme.ad_zero) may be folded
    ctx, m = parse("""
func.func @f(%x: f64) -> (f64, f64, f64, f64) {
  %zero = arith.constant 0.0 : f64
  %a = arith.mulf %x, %zero : f64
  %b = arith.subf %zero, %x : f64
  %c = arith.addf %x, %zero : f64
  %d = arith.divf %zero, %x : f64
  func.return %a, %b, %c, %d : f64, f64, f64, f64
}
""")
    SimplifyADPass().apply(ctx, m)
    text = str(m)
    for op in ("arith.mulf", "arith.subf", "arith.addf", "arith.divf"):
        assert op in text


def test_activity_analysis_through_loops_and_memory():
    _, m = parse("""
func.func @f(%x: f64, %k: f64, %buf: memref<?xf64>, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %unused = arith.mulf %k, %k : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%s = %x) -> (f64) {
    memref.store %s, %buf[%i] : memref<?xf64>
    %v = memref.load %buf[%i] : memref<?xf64>
    %t = arith.mulf %v, %k : f64
    scf.yield %t : f64
  }
  %fl = math.floor %x : f64
  %out = arith.addf %r, %fl : f64
  func.return %out : f64
}
""")
    fn = next(o for o in m.walk() if isinstance(o, func.FuncOp))
    info = analyze_activity(fn, active_args=[0], active_returns=[0])
    x, k, buf, _ = fn.body.block.args
    assert info.is_active(x) and info.is_active(buf)
    assert not info.is_active(k)  # not varied: no active input reaches it
    floor = next(o for o in fn.walk() if o.name == "math.floor")
    assert not info.is_active(floor.results[0])  # piecewise constant
    unused = next(o for o in fn.body.block.ops if o.name == "arith.mulf")
    assert not info.is_active(unused.results[0])


def test_inline_removes_private_callees():
    ctx, m = parse("""
func.func private @sq(%a: f64) -> f64 {
  %b = arith.mulf %a, %a : f64
  func.return %b : f64
}
func.func @f(%x: f64) -> f64 {
  %y = func.call @sq(%x) : (f64) -> f64
  %z = func.call @sq(%y) : (f64) -> f64
  func.return %z : f64
}
""")
    InlinePass().apply(ctx, m)
    text = str(m)
    assert "func.call" not in text and "@sq" not in text
    assert text.count("arith.mulf") == 2


def test_dead_caches_removed_live_ones_kept():
    ctx, m = parse("""
func.func @f(%x: f64) -> f64 {
  %dead = enzyme.init : !enzyme.Cache<f64>
  %live = enzyme.init : !enzyme.Cache<f64>
  enzyme.push %dead, %x : !enzyme.Cache<f64>, f64
  enzyme.push %live, %x : !enzyme.Cache<f64>, f64
  %p = enzyme.pop %dead : (!enzyme.Cache<f64>) -> f64
  %q = enzyme.pop %live : (!enzyme.Cache<f64>) -> f64
  enzyme.cache_free %dead : !enzyme.Cache<f64>
  enzyme.cache_free %live : !enzyme.Cache<f64>
  func.return %q : f64
}
""")
    EliminateDeadCachesPass().apply(ctx, m)
    text = str(m)
    assert text.count("enzyme.init") == 1 and text.count("enzyme.push") == 1
    assert "%live" in text and "%dead" not in text


SCATTER = """
func.func @f(%x: memref<?xf64>, %dx: memref<?xf64>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %n step %c1 {
    %j = arith.addi %i, %c1 : index
    %v = memref.load %x[%i] : memref<?xf64>
    %a = memref.load %dx[%i] : memref<?xf64>
    %a2 = arith.addf %a, %v : f64
    memref.store %a2, %dx[%i] : memref<?xf64>
    %b = memref.load %dx[%j] : memref<?xf64>
    %w = arith.mulf %v, %v : f64
    %b2 = arith.addf %b, %w : f64
    memref.store %b2, %dx[%j] : memref<?xf64>
  }
  func.return
}
"""


def test_split_accumulations_splits_scatter_loops():
    from isozyme.compiler.passes.split_accumulations import SplitAccumulationsPass

    ctx, m = parse(SCATTER)
    SplitAccumulationsPass().apply(ctx, m)
    m.verify()
    assert str(m).count("scf.for") == 2


def test_split_accumulations_keeps_loops_that_read_what_they_accumulate():
    from isozyme.compiler.passes.split_accumulations import SplitAccumulationsPass

    src = SCATTER.replace("%v = memref.load %x[%i]", "%v = memref.load %dx[%j]")
    ctx, m = parse(src)
    SplitAccumulationsPass().apply(ctx, m)
    assert str(m).count("scf.for") == 1


def test_fusion_keeps_the_temporary_of_an_in_place_stencil():
    import numpy as np

    from isozyme import Const, Forward, ir
    from tests import array_programs as P

    u = np.ones(8)
    fused = ir(Forward, P.vectorized_rosenbrock, Const(u), stage="optimized")
    # the whole chain is one loop: a full sum, so one scf.parallel with an scf.reduce
    assert fused.count("scf.for") == 0 and fused.count('"scf.parallel"') == 1, fused
    stencil = ir(Forward, P.stencil_vectorized, Const(u), Const(2), stage="optimized")
    assert stencil.count("memref.alloc") >= 1  # u[1:-1] = f(u) keeps its temporary


# ------------------------------------------------------------ linalg-fuse-elementwise

# %t = 2 * %o, then C reads %t and writes %o. In IN_PLACE_REDUCTION C is a reduction
# (o[i] += t[i] * B[i, j]): fused, iterations j > 0 would re-read o[i] while it is being
# accumulated. In IN_PLACE_ELEMENTWISE C is all-parallel (o[i] = t[i] + 1), which reads
# each o[i] once, before writing it: fused in place.
IN_PLACE_REDUCTION = """
func.func @f(%o: memref<4xf64>, %B: memref<4x3xf64>) {
  %t = memref.alloc() : memref<4xf64>
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins(%o : memref<4xf64>) outs(%t : memref<4xf64>) {
  ^bb0(%a: f64, %b: f64):
    %c = arith.constant 2.0 : f64
    %m = arith.mulf %a, %c : f64
    linalg.yield %m : f64
  }
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%B, %t : memref<4x3xf64>, memref<4xf64>) outs(%o : memref<4xf64>) {
  ^bb0(%b: f64, %a: f64, %acc: f64):
    %m = arith.mulf %a, %b : f64
    %s = arith.addf %acc, %m : f64
    linalg.yield %s : f64
  }
  memref.dealloc %t : memref<4xf64>
  func.return
}
"""

IN_PLACE_ELEMENTWISE = """
func.func @f(%o: memref<4xf64>, %x: memref<4xf64>) {
  %t = memref.alloc() : memref<4xf64>
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins(%o : memref<4xf64>) outs(%t : memref<4xf64>) {
  ^bb0(%a: f64, %b: f64):
    %c = arith.constant 2.0 : f64
    %m = arith.mulf %a, %c : f64
    linalg.yield %m : f64
  }
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins(%t, %x : memref<4xf64>, memref<4xf64>) outs(%o : memref<4xf64>) {
  ^bb0(%a: f64, %v: f64, %old: f64):
    %s = arith.addf %a, %v : f64
    linalg.yield %s : f64
  }
  memref.dealloc %t : memref<4xf64>
  func.return
}
"""


def _fused(src):
    from isozyme.compiler.passes.fuse_elementwise import FuseElementwisePass

    ctx, m = parse(src)
    FuseElementwisePass().apply(ctx, m)
    m.verify()  # the fused op has one indexing map per operand
    generics = [op for op in m.walk() if op.name == "linalg.generic"]
    for g in generics:
        assert len(g.indexing_maps) == len(g.inputs) + len(g.outputs), g
    return m, generics


def _run(m, arrays):
    from isozyme.compiler.lowering import lower_to_llvm
    from isozyme.compiler.passes.convert_linalg_to_parallel_loops import (
        ConvertLinalgToParallelLoopsPass,
    )
    from isozyme.runtime.jit import compile_llvm_module
    from xdsl.transforms.lower_affine import LowerAffinePass

    ConvertLinalgToParallelLoopsPass().apply(make_context(), m)
    LowerAffinePass().apply(make_context(), m)
    lower_to_llvm(m)
    types = [f"memref<{'x'.join(map(str, a.shape))}xf64>" for a in arrays]
    compile_llvm_module(m).entry("f", types, [])(*arrays)


def test_fusion_refuses_a_reduction_writing_what_its_producer_reads():
    import numpy as np

    m, generics = _fused(IN_PLACE_REDUCTION)
    assert len(generics) == 2 and "memref.alloc" in str(m)  # %t kept
    o, B = np.array([1.0, -2.0, 3.0, 0.5]), np.arange(12.0).reshape(4, 3) / 7
    want = o + (2 * o) * B.sum(axis=1)
    _run(m, [o, B])
    np.testing.assert_allclose(o, want, rtol=1e-14)


def test_fusion_of_an_elementwise_consumer_writing_what_its_producer_reads():
    import numpy as np

    m, generics = _fused(IN_PLACE_ELEMENTWISE)
    assert len(generics) == 1 and "memref.alloc" not in str(m)
    (g,) = generics
    assert list(g.outputs) == [g.inputs[0]]  # reads o, writes o: in place
    o, x = np.array([1.0, -2.0, 3.0, 0.5]), np.array([0.25, 4.0, -1.0, 2.0])
    want = 2 * o + x
    _run(m, [o, x])
    np.testing.assert_allclose(o, want, rtol=1e-15)


def test_fused_traced_module_verifies():
    """A fused chain (sin(x) * y + x summed) keeps one indexing map per operand."""
    import numpy as np

    from isozyme import Active, Const, Duplicated, Reverse, ir

    def f(x, y):
        return np.sum(np.sin(x) * y + x)

    traced = ir(Reverse, f, Active, Duplicated(np.ones(4), np.zeros(4)),
                Const(np.ones(4)), stage="traced")
    n_before = traced.count("linalg.generic")
    _, generics = _fused(traced)
    assert len(generics) < n_before
