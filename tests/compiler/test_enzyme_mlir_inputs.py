"""Ops and syntax of Enzyme-MLIR's own test inputs (``enzyme/test/MLIR/ForwardMode`` and
``ReverseMode`` of EnzymeAD/Enzyme) parse, lower and differentiate in isozyme.

Each test is written in that textual syntax (functions named after the op they test,
``#enzyme.activity<...>`` and ``#enzyme<activity ...>`` attributes, ``enzyme.fwddiff``
and ``enzyme.autodiff`` requests), expands the requests, JIT-runs them and checks the
derivatives against central finite differences of the primal.  One module (one
compilation) per subject keeps the file fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from xdsl.parser import Parser

from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import lower_to_llvm
from isozyme.runtime.jit import CompiledModule, compile_llvm_module
from isozyme.tools.ir_run import expand_requests, parse_ir, run_ir

DUP = "#enzyme.activity<enzyme_dup>"
DUPNONEED = "#enzyme.activity<enzyme_dupnoneed>"
ACTIVE = "#enzyme<activity enzyme_active>"
ACTIVENONEED = "#enzyme<activity enzyme_activenoneed>"
CONST = "#enzyme<activity enzyme_const>"


def compile_ir(src: str) -> CompiledModule:
    """Parse ``src``, expand its requests as ``isozyme run`` does
    (:func:`~isozyme.tools.ir_run.expand_requests`), lower and JIT it: one compilation
    for every entry of the module (``run_ir`` compiles per call)."""
    module = parse_ir(src)
    expand_requests(module)
    lower_to_llvm(module)
    return compile_llvm_module(module)


def central_difference(f: Callable[..., float], args: Sequence[float], k: int,
                       h: float = 1e-6) -> float:
    """d f / d args[k] by central differences."""
    up, down = list(args), list(args)
    up[k] += h
    down[k] -= h
    return (f(*up) - f(*down)) / (2 * h)


def scalar_requests(name: str, n: int, t: str = "f64") -> str:
    """``@fwd_<name>`` (forward: every argument dup, the tangent returned) and
    ``@rev_<name>`` (reverse: every argument active, the gradient returned) of scalar function
    ``@name`` of ``n`` arguments of type ``t``."""
    xs = [f"%x{i}" for i in range(n)]
    fwd_args = ", ".join(f"%x{i}, %dx{i}" for i in range(n))
    fwd_params = ", ".join(f"%x{i}: {t}, %dx{i}: {t}" for i in range(n))
    grads = ", ".join([t] * n)
    rev_outs = ", ".join(f"%g#{i}" for i in range(n)) if n > 1 else "%g"
    return f"""
func.func @fwd_{name}({fwd_params}) -> {t} {{
  %r = enzyme.fwddiff @{name}({fwd_args}) {{ activity=[{", ".join([DUP] * n)}], ret_activity=[{DUPNONEED}] }} : ({", ".join([t] * 2 * n)}) -> {t}
  return %r : {t}
}}
func.func @rev_{name}({", ".join(f"{x}: {t}" for x in xs)}, %dr: {t}) -> ({grads}) {{
  %g{":" + str(n) if n > 1 else ""} = enzyme.autodiff @{name}({", ".join(xs)}, %dr) <{{ activity=[{", ".join([ACTIVE] * n)}], ret_activity=[{ACTIVENONEED}] }}> : ({", ".join([t] * (n + 1))}) -> ({grads})
  return {rev_outs} : {grads}
}}
"""


def check_scalar(cm: CompiledModule, name: str, args: Sequence[float], t: str = "f64",
                 rel: float = 1e-6) -> None:
    """Forward (one unit tangent per argument) and reverse (seed 1) derivatives of
    ``@name`` at ``args`` equal the central differences of its primal."""
    n = len(args)
    primal = cm.entry(name, [t] * n, [t])
    fwd = cm.entry(f"fwd_{name}", [t] * 2 * n, [t])
    rev = cm.entry(f"rev_{name}", [t] * (n + 1), [t] * n)
    grad = rev(*args, 1.0)
    h = 1e-6 if t == "f64" else 1e-2
    for k in range(n):
        want = central_difference(lambda *a: primal(*a)[0], args, k, h)
        seeds = [0.0] * (2 * n)
        seeds[2 * k + 1] = 1.0
        seeds[0::2] = args
        assert fwd(*seeds)[0] == pytest.approx(want, rel=rel, abs=rel), (name, k, "fwd")
        assert grad[k] == pytest.approx(want, rel=rel, abs=rel), (name, k, "rev")


# 1. functions named like libm functions ------------------------------------------------
LIBM_NAMED = "".join(
    f"""
func.func @{name}(%x: f64) -> f64 {{
  %res = math.{name} %x : f64
  return %res : f64
}}
{scalar_requests(name, 1)}"""
    for name in ("sinh", "atan", "log1p", "tan", "erf")
)


def test_functions_named_like_libm_functions() -> None:
    """``@sinh`` computing ``math.sinh`` (Enzyme-MLIR's naming) no longer clashes with
    the libm function the lowering calls; primal and derivatives are right."""
    cm = compile_ir(LIBM_NAMED)
    for name, x in (("sinh", 0.7), ("atan", 0.7), ("log1p", 0.3), ("tan", 0.4),
                    ("erf", 0.6)):
        (y,) = cm.entry(name, ["f64"], ["f64"])(x)
        assert y == pytest.approx(getattr(math, name)(x), rel=1e-15)
        check_scalar(cm, name, [x])
    # the same through isozyme run's runner
    (t,) = run_ir(LIBM_NAMED, "fwd_sinh", [0.7, 1.0]).results
    assert t == pytest.approx(math.cosh(0.7), rel=1e-15)


# 2. math.sincos, math.erfc, math.fma ---------------------------------------------------
MATH_OPS = f"""
func.func @sincos(%x: f64) -> f64 {{
  %s, %c = math.sincos %x : f64
  %p = arith.mulf %s, %c : f64
  %r = arith.addf %p, %s : f64
  return %r : f64
}}
{scalar_requests("sincos", 1)}
func.func @sincos_cos_only(%x: f64) -> f64 {{
  %s, %c = math.sincos %x fastmath<fast> : f64
  return %c : f64
}}
{scalar_requests("sincos_cos_only", 1)}
func.func @erfc(%x: f64) -> f64 {{
  %res = math.erfc %x : f64
  return %res : f64
}}
{scalar_requests("erfc", 1)}
func.func @erfc32(%x: f32) -> f32 {{
  %res = math.erfc %x : f32
  return %res : f32
}}
{scalar_requests("erfc32", 1, "f32")}
func.func @fma(%x: f64, %y: f64, %z: f64) -> f64 {{
  %res = math.fma %x, %y, %z : f64
  return %res : f64
}}
{scalar_requests("fma", 3)}
"""


def test_sincos_erfc_fma() -> None:
    cm = compile_ir(MATH_OPS)
    (y,) = cm.entry("sincos", ["f64"], ["f64"])(0.7)
    assert y == pytest.approx(math.sin(0.7) * math.cos(0.7) + math.sin(0.7), rel=1e-15)
    (y,) = cm.entry("erfc", ["f64"], ["f64"])(2.5)
    assert y == pytest.approx(math.erfc(2.5), rel=1e-14)
    check_scalar(cm, "sincos", [0.7])
    check_scalar(cm, "sincos_cos_only", [0.7])
    check_scalar(cm, "erfc", [0.5])
    check_scalar(cm, "erfc32", [0.5], "f32", rel=1e-3)
    check_scalar(cm, "fma", [1.5, -2.0, 0.25])


GPU_KERNEL = """
func.func @k(%x: memref<?xf64>, %y: memref<?xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : memref<?xf64>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %v = memref.load %x[%i] : memref<?xf64>
    %r = memref.alloca_scope -> f64 {
      %s, %c = math.sincos %v : f64
      %e = math.erfc %s : f64
      %t = arith.addf %e, %c : f64
      memref.alloca_scope.return %t : f64
    }
    memref.store %r, %y[%i] : memref<?xf64>
  }
  return
}"""


def test_new_ops_in_gpu_kernels() -> None:
    """``math.sincos``, ``math.erfc`` and ``memref.alloca_scope`` in an ``scf.parallel``
    body: the CUDA printer prints them (C's sin/cos/erfc, a C block); on the cuda-emu
    target (g++) the kernel computes the right numbers."""
    import shutil

    from isozyme.compiler.gpu import OutlineParallelLoopsPass
    from isozyme.compiler.gpu.cuda_printer import print_cuda
    from isozyme.compiler.targets import get_target
    from isozyme.runtime import load_artefact

    ctx = make_context()
    module = Parser(ctx, GPU_KERNEL).parse_module()
    OutlineParallelLoopsPass().apply(ctx, module)
    text = print_cuda(module)
    assert "sin(" in text and "cos(" in text and "erfc(" in text
    if shutil.which("g++") is None:
        pytest.skip("cuda-emu needs g++")
    module = Parser(ctx, GPU_KERNEL).parse_module()
    artefact = get_target("cuda-emu").compile(module, ctx, upto="llvm-ir-optimized")
    kernel = load_artefact(artefact).entry("k", ["memref<?xf64>"] * 2, [])
    x, y = np.linspace(0.1, 0.9, 5), np.zeros(5)
    kernel(x, y)
    want = [math.erfc(math.sin(v)) + math.cos(v) for v in x]
    assert y == pytest.approx(want, rel=1e-14)


# 3. MLIR's custom syntax of scf.parallel, scf.if, memref.cast, memref.alloca_scope ------
MATVEC_TYPES = ["memref<?x?xf64>", "memref<?xf64>", "memref<?xf64>"]
MATVEC = f"""
func.func @matvec(%a: memref<?x?xf64>, %x: memref<?xf64>, %y: memref<?xf64>) {{
  %zero = arith.constant 0.000000e+00 : f64
  %c1 = arith.constant 1 : index
  %c0 = arith.constant 0 : index
  %n = memref.dim %a, %c0 : memref<?x?xf64>
  %m = memref.dim %a, %c1 : memref<?x?xf64>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {{
    %s = scf.for %j = %c0 to %m step %c1 iter_args(%acc = %zero) -> (f64) {{
      %aij = memref.load %a[%i, %j] : memref<?x?xf64>
      %xj = memref.load %x[%j] : memref<?xf64>
      %p = arith.mulf %aij, %xj : f64
      %acc2 = arith.addf %acc, %p : f64
      scf.yield %acc2 : f64
    }}
    memref.store %s, %y[%i] : memref<?xf64>
  }}
  return
}}
func.func @dmatvec(%a: memref<?x?xf64>, %x: memref<?xf64>, %y: memref<?xf64>,
                   %da: memref<?x?xf64>, %dx: memref<?xf64>, %dy: memref<?xf64>) {{
  enzyme.fwddiff @matvec(%a, %da, %x, %dx, %y, %dy) <{{ activity=[{DUP}, {DUP}, {DUP}], ret_activity=[] }}> : (memref<?x?xf64>, memref<?x?xf64>, memref<?xf64>, memref<?xf64>, memref<?xf64>, memref<?xf64>) -> ()
  return
}}
func.func @rmatvec(%a: memref<?x?xf64>, %x: memref<?xf64>, %y: memref<?xf64>,
                   %da: memref<?x?xf64>, %dx: memref<?xf64>, %dy: memref<?xf64>) {{
  enzyme.autodiff @matvec(%a, %da, %x, %dx, %y, %dy) <{{ activity=[{DUP}, {DUP}, {DUP}], ret_activity=[] }}> : (memref<?x?xf64>, memref<?x?xf64>, memref<?xf64>, memref<?xf64>, memref<?xf64>, memref<?xf64>) -> ()
  return
}}
"""


def array_derivatives(primal: Callable[..., None], inputs: Sequence[np.ndarray],
                      out: np.ndarray, h: float = 1e-6) -> list[np.ndarray]:
    """By central differences: d out / d inputs[k] of ``primal(*inputs, out)`` (which
    writes ``out``), as arrays of shape ``out.shape + inputs[k].shape``."""
    result = []
    for k, x in enumerate(inputs):
        jac = np.zeros(out.shape + x.shape)
        for idx in np.ndindex(x.shape):
            outs = []
            for sign in (1, -1):
                args = [a.copy() for a in inputs]
                args[k][idx] += sign * h
                o = np.zeros_like(out)
                primal(*args, o)
                outs.append(o)
            jac[(...,) + idx] = (outs[0] - outs[1]) / (2 * h)
        result.append(jac)
    return result


def test_scf_parallel_custom_syntax() -> None:
    """Enzyme-MLIR's ForwardMode/parallel.mlir shape: a matrix-vector product in an
    ``scf.parallel`` written in MLIR's syntax (implicit ``scf.reduce``)."""
    cm = compile_ir(MATVEC)
    primal = cm.entry("matvec", MATVEC_TYPES, [])
    rng = np.random.default_rng(0)
    a, x = rng.standard_normal((3, 2)), rng.standard_normal(2)
    y = np.zeros(3)
    primal(a, x, y)
    assert np.allclose(y, a @ x, rtol=1e-15)
    ja, jx = array_derivatives(primal, [a, x], y)
    da, dx = rng.standard_normal((3, 2)), rng.standard_normal(2)
    dy = np.zeros(3)
    cm.entry("dmatvec", MATVEC_TYPES * 2, [])(a, x, np.zeros(3), da, dx, dy)
    want = np.einsum("ikl,kl->i", ja, da) + jx @ dx
    assert np.allclose(dy, want, rtol=1e-7, atol=1e-9)
    seed = rng.standard_normal(3)
    ga, gx = np.zeros((3, 2)), np.zeros(2)
    cm.entry("rmatvec", MATVEC_TYPES * 2, [])(a, x, np.zeros(3), ga, gx, seed.copy())
    assert np.allclose(ga, np.einsum("i,ikl->kl", seed, ja), rtol=1e-7, atol=1e-9)
    assert np.allclose(gx, seed @ jx, rtol=1e-7, atol=1e-9)


CAST_IF = f"""
func.func @cast_if(%x: memref<?xf64>, %c: i1) -> f32 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %w = memref.cast %x : memref<?xf64> to memref<2xf64>
  %v = memref.load %w[%c0] : memref<2xf64>
  %u = memref.load %w[%c1] : memref<2xf64>
  %q = scf.if %c -> f64 {{
    %s = arith.mulf %v, %u : f64
    scf.yield %s : f64
  }} else {{
    %s = math.sin %v : f64
    scf.yield %s : f64
  }}
  %r = arith.truncf %q : f64 to f32
  return %r : f32
}}
func.func @dcast_if(%x: memref<?xf64>, %dx: memref<?xf64>, %c: i1) -> f32 {{
  %r = enzyme.fwddiff @cast_if(%x, %dx, %c) {{ activity=[{DUP}, {CONST}], ret_activity=[{DUPNONEED}] }} : (memref<?xf64>, memref<?xf64>, i1) -> f32
  return %r : f32
}}
func.func @rcast_if(%x: memref<?xf64>, %dx: memref<?xf64>, %c: i1, %dr: f32) {{
  enzyme.autodiff @cast_if(%x, %dx, %c, %dr) {{ activity=[{DUP}, {CONST}], ret_activity=[{ACTIVENONEED}] }} : (memref<?xf64>, memref<?xf64>, i1, f32) -> ()
  return
}}
"""


def test_memref_cast_and_scf_if_with_bare_result_type() -> None:
    """``memref.cast %x : T to T'`` and ``scf.if %c -> f32 {`` (no parentheses) parse;
    the derivative flows through the cast's view of the shadow and either branch."""
    cm = compile_ir(CAST_IF)
    m = "memref<?xf64>"
    primal = cm.entry("cast_if", [m, "i1"], ["f32"])
    forward = cm.entry("dcast_if", [m, m, "i1"], ["f32"])
    reverse = cm.entry("rcast_if", [m, m, "i1", "f32"], [])
    x = np.array([0.6, -1.3])
    for branch in (True, False):
        (y,) = primal(x, branch)
        assert y == pytest.approx(x[0] * x[1] if branch else math.sin(x[0]), rel=1e-6)
        grad = [
            central_difference(lambda a, b: primal(np.array([a, b]), branch)[0], x, k, 1e-3)
            for k in range(2)
        ]
        for k in range(2):
            (t,) = forward(x, np.eye(2)[k], branch)
            assert t == pytest.approx(grad[k], rel=1e-3, abs=1e-6)
        gx = np.zeros(2)
        reverse(x, gx, branch, 1.0)
        assert gx == pytest.approx(grad, rel=1e-3, abs=1e-6)


# memref.alloca and memref.alloca_scope --------------------------------------------------
ALLOCA = f"""
func.func @alloca_square(%x : f64) -> f64 {{
  %buf = memref.alloca() : memref<f64>
  memref.store %x, %buf[] : memref<f64>
  %y = memref.load %buf[] : memref<f64>
  %z = arith.mulf %y, %y : f64
  return %z : f64
}}
{scalar_requests("alloca_square", 1)}
func.func @scope_loop(%x : f64) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  %one = arith.constant 1.0 : f64
  %out = scf.for %i = %c0 to %c3 step %c1 iter_args(%acc = %one) -> (f64) {{
    %r = memref.alloca_scope -> (f64) {{
      %buf = memref.alloca(%c3) : memref<?xf64>
      memref.store %acc, %buf[%i] : memref<?xf64>
      %y = memref.load %buf[%i] : memref<?xf64>
      %s = math.sin %y : f64
      %p = arith.mulf %s, %x : f64
      memref.alloca_scope.return %p : f64
    }}
    scf.yield %r : f64
  }}
  return %out : f64
}}
{scalar_requests("scope_loop", 1)}
func.func private @scope_overwrite(%x: memref<f32>) {{
  memref.alloca_scope {{
    %val = memref.load %x[] : memref<f32>
    %cos = math.cos %val : f32
    memref.store %cos, %x[] : memref<f32>
  }}
  return
}}
func.func @dscope_overwrite(%x: memref<f32>, %dx: memref<f32>) {{
  enzyme.autodiff @scope_overwrite(%x, %dx) {{ activity = [{DUP}], ret_activity = [] }} : (memref<f32>, memref<f32>) -> ()
  return
}}
func.func @fscope_overwrite(%x: memref<f32>, %dx: memref<f32>) {{
  enzyme.fwddiff @scope_overwrite(%x, %dx) {{ activity = [{DUP}], ret_activity = [] }} : (memref<f32>, memref<f32>) -> ()
  return
}}
"""


def test_alloca_and_alloca_scope() -> None:
    """``memref.alloca`` gets a shadow alloca (its derivative was silently 0), lowers to
    ``llvm.alloca``; ``memref.alloca_scope`` (with results, in a loop, and without,
    overwriting its argument as Enzyme-MLIR's alloca_scope.mlir) is differentiated
    structurally and inlined by the lowering."""
    cm = compile_ir(ALLOCA)
    (y,) = cm.entry("alloca_square", ["f64"], ["f64"])(1.5)
    assert y == 2.25
    check_scalar(cm, "alloca_square", [1.5])
    y = 1.0
    for _ in range(3):
        y = math.sin(y) * 0.8
    assert cm.entry("scope_loop", ["f64"], ["f64"])(0.8)[0] == pytest.approx(y, rel=1e-15)
    check_scalar(cm, "scope_loop", [0.8])
    m = "memref<f32>"
    x, dx = np.array(0.5, np.float32), np.array(1.0, np.float32)
    cm.entry("dscope_overwrite", [m, m], [])(x, dx)
    assert x == np.float32(math.cos(0.5))  # the primal ran
    assert dx == pytest.approx(-math.sin(0.5), rel=1e-6)  # d cos(x) / dx, x overwritten
    x, dx = np.array(0.5, np.float32), np.array(1.0, np.float32)
    cm.entry("fscope_overwrite", [m, m], [])(x, dx)
    assert dx == pytest.approx(-math.sin(0.5), rel=1e-6)


# 4. scf.execute_region and cf.switch reach the llvm dialect ---------------------------
EXECUTE_SWITCH = f"""
func.func @square(%x : f64, %c : i32) -> f64 {{
  %c2 = arith.constant 2.000000e+00 : f64
  %c10 = arith.constant 10.000000e+00 : f64
  %r:2 = scf.execute_region -> (f64, f64) {{
    cf.switch %c : i32, [
      default: ^bb5,
      104: ^bb3,
      113: ^bb4(%c10 : f64)
    ]
  ^bb4(%z : f64):
    %x2 = arith.mulf %x, %x : f64
    scf.yield %x2, %z : f64, f64
  ^bb3:
    %x3 = arith.addf %x, %x : f64
    scf.yield %x3, %c2 : f64, f64
  ^bb5:
    cf.br ^bb4(%x : f64)
  }}
  %res = arith.mulf %r#0, %r#1 : f64
  return %res : f64
}}
func.func @dsquare(%x : f64, %dx : f64, %c : i32) -> f64 {{
  %r = enzyme.fwddiff @square(%x, %dx, %c) {{ activity=[{DUP}, {CONST}], ret_activity=[{DUPNONEED}] }} : (f64, f64, i32) -> (f64)
  return %r : f64
}}
func.func @index_switch(%x : f64, %c : index) -> f64 {{
  %r = scf.index_switch %c -> f64
  case 2 {{
    %y = arith.mulf %x, %x : f64
    scf.yield %y : f64
  }}
  default {{
    scf.yield %x : f64
  }}
  return %r : f64
}}
"""


def test_execute_region_and_switch_lower() -> None:
    """Enzyme-MLIR's ForwardMode/executeop.mlir shape: the primal (an
    ``scf.execute_region`` of several blocks around a ``cf.switch``) is lowered and
    runs every case; its forward derivative matches finite differences."""
    cm = compile_ir(EXECUTE_SWITCH)
    square = cm.entry("square", ["f64", "i32"], ["f64"])
    tangent = cm.entry("dsquare", ["f64", "f64", "i32"], ["f64"])
    x = 1.5
    for c, want in ((104, 2 * x * 2), (113, x * x * 10), (7, x * x * x)):
        assert square(x, c)[0] == want
        fd = central_difference(lambda v: square(v, c)[0], [x], 0)
        assert tangent(x, 1.0, c)[0] == pytest.approx(fd, rel=1e-7)
    switch = cm.entry("index_switch", ["f64", "index"], ["f64"])
    assert [switch(x, c)[0] for c in (2, 3)] == [x * x, x]
