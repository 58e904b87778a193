"""AD of ``scf.parallel``/``scf.reduce`` on hand-written IR: the shape of the derivative
(parallel adjoint loops, reductions of adjoints, atomics only where iterations may
touch the same shadow element, indexed caches), and its numbers, run on the CPU
(``convert-parallel-to-for``) against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.parser import Parser

from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import lower_to_llvm
from isozyme.compiler.passes.differentiate import DifferentiatePass
from isozyme.compiler.pipeline import STAGE_PASSES
from isozyme.errors import UnsupportedError
from isozyme.runtime import compile_llvm_module

V = "memref<?xf64>"
VF = "memref<?xf32>"
M = "memref<?x?xf64>"
VI = "memref<?xindex>"
DUP = "#enzyme<activity enzyme_dup>"
A = "#enzyme<activity enzyme_active>"
C = "#enzyme<activity enzyme_const>"
AN = "#enzyme<activity enzyme_activenoneed>"


def parallel(ivs, lbs, ubs, steps, inits, init_types, body):
    """Generic-form ``scf.parallel`` (xDSL has no custom syntax for it)."""
    k = len(ivs)
    operands = ", ".join(lbs + ubs + steps + inits)
    types = ", ".join(["index"] * 3 * k + init_types)
    results = "(" + ", ".join(init_types) + ")"
    args = ", ".join(f"{iv}: index" for iv in ivs)
    return (
        f'"scf.parallel"({operands}) <{{operandSegmentSizes = array<i32: {k}, {k}, {k}, '
        f'{len(inits)}>}}> ({{\n  ^bb0({args}):\n{body}\n  }}) : ({types}) -> {results}'
    )


def reduce(values, types, combiners):
    """Generic-form ``scf.reduce`` with one ``arith`` combiner per value."""
    regions = ", ".join(
        f"""{{
      ^bb0(%lhs{i}: {t}, %rhs{i}: {t}):
        %red{i} = {c} %lhs{i}, %rhs{i} : {t}
        scf.reduce.return %red{i} : {t}
      }}"""
        for i, (t, c) in enumerate(zip(types, combiners))
    )
    operands = f"({', '.join(values)} : {', '.join(types)}) " if values else ""
    return f"    scf.reduce {operands}{regions}" if regions else "    scf.reduce"


def differentiated(src: str) -> tuple[str, object]:
    """(``simplified`` IR text, the lowered module)."""
    ctx = make_context()
    module = Parser(ctx, src).parse_module()
    DifferentiatePass().apply(ctx, module)
    for p in STAGE_PASSES["simplified"]():
        p.apply(ctx, module)
    module.verify()
    text = str(module)
    lower_to_llvm(module, ctx)
    return text, compile_llvm_module(module)


# s = sum_i sin(x[i+1]) * w ; y[i+1] = x[i+1] * w: one access of each buffer per
# iteration, at an index that follows i: no atomics.
SHIFTED = f"""
func.func private @f(%x: {V}, %y: {V}, %w: f64) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %n = memref.dim %x, %c0 : {V}
  %n1 = arith.subi %n, %c1 : index
  %s = {parallel(["%i"], ["%c0"], ["%n1"], ["%c1"], ["%z"], ["f64"], f'''
    %k = arith.addi %i, %c1 : index
    %a = memref.load %x[%k] : {V}
    %b = arith.mulf %a, %w : f64
    memref.store %b, %y[%k] : {V}
    %t = math.sin %a : f64
    %u = arith.mulf %t, %w : f64
''' + reduce(["%u"], ["f64"], ["arith.addf"]))}
  func.return %s : f64
}}
func.func @grad(%x: {V}, %dx: {V}, %y: {V}, %dy: {V}, %w: f64, %seed: f64) -> f64 {{
  %g = enzyme.autodiff @f(%x, %dx, %y, %dy, %w, %seed) {{activity=[{DUP}, {DUP}, {A}], ret_activity=[{AN}]}} : ({V}, {V}, {V}, {V}, f64, f64) -> f64
  func.return %g : f64
}}
func.func @tangent(%x: {V}, %dx: {V}, %y: {V}, %dy: {V}, %w: f64) -> f64 {{
  %t = enzyme.fwddiff @f(%x, %dx, %y, %dy, %w) {{activity=[{DUP}, {DUP}, {C}], ret_activity=[{"#enzyme<activity enzyme_dupnoneed>"}]}} : ({V}, {V}, {V}, {V}, f64) -> f64
  func.return %t : f64
}}
"""


def test_private_elements_need_no_atomics_and_outer_scalars_reduce():
    text, cm = differentiated(SHIFTED)
    rev = text[text.index("func.func @grad"):text.index("func.func @tangent")]
    assert "memref.atomic_rmw" not in text
    assert rev.count('"scf.parallel"') == 2  # the forward sweep's and the adjoint
    # the adjoint loop reduces dw (one result)
    assert "-> f64" in rev[rev.rindex('"scf.parallel"'):]
    grad = cm.entry("grad", [V, V, V, V, "f64", "f64"], ["f64"])
    tangent = cm.entry("tangent", [V, V, V, V, "f64"], ["f64"])
    x = np.array([0.3, -0.4, 1.1, 0.7, -0.2])
    w = 1.3
    dy = np.array([0.0, 0.5, -1.0, 2.0, 0.25])  # seeds of y's outputs

    def f(x, w):
        y = np.zeros(5)
        y[1:] = x[1:] * w
        return np.sum(np.sin(x[1:]) * w), y

    dx = np.zeros(5)
    (gw,) = grad(x, dx, np.zeros(5), dy.copy(), w, 1.0)
    # total derivative of  s + <dy, y>
    assert gw == pytest.approx(np.sum(np.sin(x[1:])) + np.sum(dy[1:] * x[1:]), rel=1e-12)
    expect = np.zeros(5)
    expect[1:] = np.cos(x[1:]) * w + dy[1:] * w
    np.testing.assert_allclose(dx, expect, rtol=1e-12)
    v = np.array([0.2, 1.0, -0.5, 0.3, 0.9])
    dyt = np.zeros(5)
    (t,) = tangent(x, v, np.zeros(5), dyt, w)
    assert t == pytest.approx(np.sum(np.cos(x[1:]) * v[1:] * w), rel=1e-12)
    np.testing.assert_allclose(dyt[1:], v[1:] * w, rtol=1e-12)


# two reads of x per iteration at different indices (a stencil): their adjoints may
# land on the same element from two iterations, so they are atomic
STENCIL = f"""
func.func private @f(%x: {V}) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %n = memref.dim %x, %c0 : {V}
  %n1 = arith.subi %n, %c1 : index
  %s = {parallel(["%i"], ["%c0"], ["%n1"], ["%c1"], ["%z"], ["f64"], f'''
    %k = arith.addi %i, %c1 : index
    %a = memref.load %x[%i] : {V}
    %b = memref.load %x[%k] : {V}
    %d = arith.subf %b, %a : f64
    %e = math.exp %d : f64
''' + reduce(["%e"], ["f64"], ["arith.addf"]))}
  func.return %s : f64
}}
func.func @grad(%x: {V}, %dx: {V}, %seed: f64) {{
  enzyme.autodiff @f(%x, %dx, %seed) {{activity=[{DUP}], ret_activity=[{AN}]}} : ({V}, {V}, f64) -> ()
  func.return
}}
"""


def test_stencil_adjoints_are_atomic_and_correct():
    text, cm = differentiated(STENCIL)
    assert text.count("memref.atomic_rmw") == 2
    assert "kind = 0 : i64" in text  # addf in MLIR's AtomicRMWKind
    grad = cm.entry("grad", [V, V, "f64"], [])
    x = np.array([0.3, -0.4, 1.1, 0.7, -0.2, 0.5])
    dx = np.zeros(6)
    grad(x, dx, 2.0)
    e = np.exp(np.diff(x))
    expect = np.zeros(6)
    expect[1:] += 2.0 * e
    expect[:-1] -= 2.0 * e
    np.testing.assert_allclose(dx, expect, rtol=1e-12)


# x[idx[i]] += v[i] * v[i] in the primal (memref.atomic_rmw addf), then a weighted
# sum of squares of x in a second parallel loop
SCATTER = f"""
func.func private @f(%v: {V}, %idx: {VI}, %x: {V}) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %n = memref.dim %v, %c0 : {V}
  %m = memref.dim %x, %c0 : {V}
  {parallel(["%i"], ["%c0"], ["%n"], ["%c1"], [], [], f'''
    %k = memref.load %idx[%i] : {VI}
    %a = memref.load %v[%i] : {V}
    %b = arith.mulf %a, %a : f64
    %old = "memref.atomic_rmw"(%b, %x, %k) <{{kind = 0 : i64}}> : (f64, {V}, index) -> f64
''' + reduce([], [], []))}
  %s = {parallel(["%j"], ["%c0"], ["%m"], ["%c1"], ["%z"], ["f64"], f'''
    %q = memref.load %x[%j] : {V}
    %q2 = arith.mulf %q, %q : f64
    %jf = arith.index_cast %j : index to i64
    %jd = arith.sitofp %jf : i64 to f64
    %q3 = arith.mulf %q2, %jd : f64
''' + reduce(["%q3"], ["f64"], ["arith.addf"]))}
  func.return %s : f64
}}
func.func @grad(%v: {V}, %dv: {V}, %idx: {VI}, %x: {V}, %dx: {V}, %seed: f64) {{
  enzyme.autodiff @f(%v, %dv, %idx, %x, %dx, %seed) {{activity=[{DUP}, {C}, {DUP}], ret_activity=[{AN}]}} : ({V}, {V}, {VI}, {V}, {V}, f64) -> ()
  func.return
}}
func.func @tangent(%v: {V}, %dv: {V}, %idx: {VI}, %x: {V}, %dx: {V}) -> f64 {{
  %t = enzyme.fwddiff @f(%v, %dv, %idx, %x, %dx) {{activity=[{DUP}, {C}, {DUP}], ret_activity=[{"#enzyme<activity enzyme_dupnoneed>"}]}} : ({V}, {V}, {VI}, {V}, {V}) -> f64
  func.return %t : f64
}}
"""


def _scatter_reference(v, idx, x0):
    x = x0.copy()
    np.add.at(x, idx, v * v)
    return x


def test_scatter_with_colliding_indices():
    text, cm = differentiated(SCATTER)
    rev = text[text.index("func.func @grad"):text.index("func.func @tangent")]
    # the primal's own accumulation only: the adjoint of the second loop's reads of
    # x[j] is plain (one access, at j), and x's adjoint is read back at idx[i], not
    # accumulated (x[k] += b keeps x[k]'s adjoint)
    assert rev.count("memref.atomic_rmw") == 1
    grad = cm.entry("grad", [V, V, VI, V, V, "f64"], [])
    tangent = cm.entry("tangent", [V, V, VI, V, V], ["f64"])
    v = np.array([0.3, -0.4, 1.1, 0.7, -0.2, 0.5])
    idx = np.array([0, 2, 2, 3, 0, 2])
    x0 = np.array([0.1, 0.2, -0.3, 0.4])
    w = np.arange(4.0)
    dv, dx = np.zeros(6), np.zeros(4)
    grad(v, dv, idx, x0.copy(), dx, 1.0)
    x = _scatter_reference(v, idx, x0)
    np.testing.assert_allclose(dx, 2 * w * x, rtol=1e-12)
    np.testing.assert_allclose(dv, 2 * w[idx] * x[idx] * 2 * v, rtol=1e-12)
    tv, tx = np.array([1.0, 0.5, -0.5, 0.2, 0.3, -1.0]), np.array([0.5, -0.1, 0.2, 0.7])
    (t,) = tangent(v, tv, idx, x0.copy(), tx.copy())
    dxt = tx.copy()
    np.add.at(dxt, idx, 2 * v * tv)
    assert t == pytest.approx(np.sum(2 * w * x * dxt), rel=1e-12)


# 2-D loop with lower bounds and steps, a value the reverse must cache (exp), f32
TWO_D = f"""
func.func private @f(%a: {M}, %w: f64) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %z = arith.constant 0.0 : f64
  %n = memref.dim %a, %c0 : {M}
  %m = memref.dim %a, %c1 : {M}
  %s = {parallel(["%i", "%j"], ["%c1", "%c0"], ["%n", "%m"], ["%c1", "%c2"], ["%z"], ["f64"], f'''
    %p = memref.load %a[%i, %j] : {M}
    %e = math.exp %p : f64
    %t = math.sin %e : f64
    %u = arith.mulf %t, %w : f64
''' + reduce(["%u"], ["f64"], ["arith.addf"]))}
  func.return %s : f64
}}
func.func @grad(%a: {M}, %da: {M}, %w: f64, %seed: f64) -> f64 {{
  %g = enzyme.autodiff @f(%a, %da, %w, %seed) {{activity=[{DUP}, {A}], ret_activity=[{AN}]}} : ({M}, {M}, f64, f64) -> f64
  func.return %g : f64
}}
"""


def test_2d_parallel_with_bounds_and_steps_caches_in_a_2d_buffer():
    text, cm = differentiated(TWO_D)
    assert "memref<?x?xf64>" in text and "isozyme.cache" in text
    assert "enzyme.push" not in text and "memref.atomic_rmw" not in text
    grad = cm.entry("grad", [M, M, "f64", "f64"], ["f64"])
    a = np.random.default_rng(3).uniform(-1, 1, (4, 5))
    da = np.zeros((4, 5))
    (gw,) = grad(a, da, 0.7, 1.0)
    sl = (slice(1, None), slice(0, None, 2))
    assert gw == pytest.approx(np.sum(np.sin(np.exp(a[sl]))), rel=1e-12)
    expect = np.zeros((4, 5))
    expect[sl] = np.cos(np.exp(a[sl])) * np.exp(a[sl]) * 0.7
    np.testing.assert_allclose(da, expect, rtol=1e-12)


F32 = f"""
func.func private @f(%x: {VF}) -> f32 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f32
  %n = memref.dim %x, %c0 : {VF}
  %s = {parallel(["%i"], ["%c0"], ["%n"], ["%c1"], ["%z"], ["f32"], f'''
    %a = memref.load %x[%i] : {VF}
    %e = math.tanh %a : f32
    %u = arith.mulf %e, %a : f32
''' + reduce(["%u"], ["f32"], ["arith.addf"]))}
  func.return %s : f32
}}
func.func @grad(%x: {VF}, %dx: {VF}, %seed: f32) {{
  enzyme.autodiff @f(%x, %dx, %seed) {{activity=[{DUP}], ret_activity=[{AN}]}} : ({VF}, {VF}, f32) -> ()
  func.return
}}
func.func @tangent(%x: {VF}, %dx: {VF}) -> f32 {{
  %t = enzyme.fwddiff @f(%x, %dx) {{activity=[{DUP}], ret_activity=[{"#enzyme<activity enzyme_dupnoneed>"}]}} : ({VF}, {VF}) -> f32
  func.return %t : f32
}}
"""


def test_float32_both_modes():
    text, cm = differentiated(F32)
    x = np.array([0.3, -0.4, 1.1, 0.7], dtype=np.float32)
    dx = np.zeros(4, dtype=np.float32)
    cm.entry("grad", [VF, VF, "f32"], [])(x, dx, np.float32(1.0))
    x64 = x.astype(np.float64)
    d = np.tanh(x64) + x64 * (1 - np.tanh(x64) ** 2)
    np.testing.assert_allclose(dx, d, rtol=1e-5)
    v = np.array([1.0, -0.5, 0.25, 2.0], dtype=np.float32)
    (t,) = cm.entry("tangent", [VF, VF], ["f32"])(x, v)
    assert t == pytest.approx(float(np.sum(d * v)), rel=1e-5)


def _mul_reduction(request: str) -> str:
    return f"""
func.func private @f(%x: {V}) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %o = arith.constant 1.0 : f64
  %n = memref.dim %x, %c0 : {V}
  %s = {parallel(["%i"], ["%c0"], ["%n"], ["%c1"], ["%o"], ["f64"], f'''
    %a = memref.load %x[%i] : {V}
''' + reduce(["%a"], ["f64"], ["arith.mulf"]))}
  func.return %s : f64
}}
{request}
"""


@pytest.mark.parametrize(
    "request_",
    [
        f"""func.func @g(%x: {V}, %dx: {V}, %seed: f64) {{
  enzyme.autodiff @f(%x, %dx, %seed) {{activity=[{DUP}], ret_activity=[{AN}]}} : ({V}, {V}, f64) -> ()
  func.return
}}""",
        f"""func.func @g(%x: {V}, %dx: {V}) -> f64 {{
  %t = enzyme.fwddiff @f(%x, %dx) {{activity=[{DUP}], ret_activity=[{"#enzyme<activity enzyme_dupnoneed>"}]}} : ({V}, {V}) -> f64
  func.return %t : f64
}}""",
    ],
    ids=["reverse", "forward"],
)
def test_product_reduction_is_refused_naming_it(request_):
    ctx = make_context()
    module = Parser(ctx, _mul_reduction(request_)).parse_module()
    with pytest.raises(UnsupportedError, match="reduction combined by arith.mulf"):
        DifferentiatePass().apply(ctx, module)


def test_atomic_other_than_addf_on_an_active_buffer_is_refused():
    src = f"""
func.func private @f(%x: {V}, %y: {V}) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : {V}
  {parallel(["%i"], ["%c0"], ["%n"], ["%c1"], [], [], f'''
    %a = memref.load %x[%i] : {V}
    %old = "memref.atomic_rmw"(%a, %y, %c0) <{{kind = 12 : i64}}> : (f64, {V}, index) -> f64
''' + reduce([], [], []))}
  %r = memref.load %y[%c0] : {V}
  func.return %r : f64
}}
func.func @g(%x: {V}, %dx: {V}, %y: {V}, %dy: {V}, %seed: f64) {{
  enzyme.autodiff @f(%x, %dx, %y, %dy, %seed) {{activity=[{DUP}, {DUP}], ret_activity=[{AN}]}} : ({V}, {V}, {V}, {V}, f64) -> ()
  func.return
}}
"""
    ctx = make_context()
    module = Parser(ctx, src).parse_module()
    with pytest.raises(UnsupportedError, match="memref.atomic_rmw of kind 12"):
        DifferentiatePass().apply(ctx, module)
