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
from isozyme.compiler.passes.differentiate import DifferentiatePass
from isozyme.compiler.pipeline import STAGE_PASSES
from isozyme.runtime.jit import CompiledModule, compile_llvm_module

DUP = "#enzyme.activity<enzyme_dup>"
DUPNONEED = "#enzyme.activity<enzyme_dupnoneed>"
ACTIVE = "#enzyme<activity enzyme_active>"
ACTIVENONEED = "#enzyme<activity enzyme_activenoneed>"
CONST = "#enzyme<activity enzyme_const>"


def compile_ir(src: str) -> CompiledModule:
    """Parse ``src``, expand its requests as the pipeline does (``differentiated`` then
    the ``simplified`` stage), lower and JIT it."""
    ctx = make_context()
    module = Parser(ctx, src).parse_module()
    module.verify()
    DifferentiatePass().apply(ctx, module)
    for p in STAGE_PASSES["simplified"]():
        p.apply(ctx, module)
    lower_to_llvm(module, ctx)
    return compile_llvm_module(module)


def central_difference(f: Callable[..., float], args: Sequence[float], k: int,
                       h: float = 1e-6) -> float:
    """d f / d args[k] by central differences."""
    up, down = list(args), list(args)
    up[k] += h
    down[k] -= h
    return (f(*up) - f(*down)) / (2 * h)


def scalar_requests(name: str, n: int, t: str = "f64") -> str:
    """``@d<name>`` (forward: every argument dup, the tangent returned) and ``@r<name>``
    (reverse: every argument active, the gradient returned) of scalar function
    ``@name`` of ``n`` arguments of type ``t``."""
    xs = [f"%x{i}" for i in range(n)]
    fwd_args = ", ".join(f"%x{i}, %dx{i}" for i in range(n))
    fwd_params = ", ".join(f"%x{i}: {t}, %dx{i}: {t}" for i in range(n))
    grads = ", ".join([t] * n)
    rev_outs = ", ".join(f"%g#{i}" for i in range(n)) if n > 1 else "%g"
    return f"""
func.func @d{name}({fwd_params}) -> {t} {{
  %r = enzyme.fwddiff @{name}({fwd_args}) {{ activity=[{", ".join([DUP] * n)}], ret_activity=[{DUPNONEED}] }} : ({", ".join([t] * 2 * n)}) -> {t}
  return %r : {t}
}}
func.func @r{name}({", ".join(f"{x}: {t}" for x in xs)}, %dr: {t}) -> ({grads}) {{
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
    fwd = cm.entry(f"d{name}", [t] * 2 * n, [t])
    rev = cm.entry(f"r{name}", [t] * (n + 1), [t] * n)
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


def test_sincos_and_erfc_print_as_cuda() -> None:
    """The CUDA printer knows both ops (C's sin/cos and erfc)."""
    from isozyme.compiler.gpu import OutlineParallelLoopsPass
    from isozyme.compiler.gpu.cuda_printer import print_cuda

    src = """
func.func @k(%x: memref<?xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %v = memref.load %x[%i] : memref<?xf32>
    %s, %c = math.sincos %v : f32
    %e = math.erfc %s : f32
    %r = arith.addf %e, %c : f32
    memref.store %r, %x[%i] : memref<?xf32>
    scf.reduce
  }) : (index, index, index) -> ()
  return
}"""
    ctx = make_context()
    module = Parser(ctx, src).parse_module()
    OutlineParallelLoopsPass().apply(ctx, module)
    text = print_cuda(module)
    assert "sinf(" in text and "cosf(" in text and "erfcf(" in text
