"""End-to-end tests of the CPU backend: MLIR text -> lower_to_llvm -> JIT -> call."""

from __future__ import annotations

import math

import llvmlite.binding as llb
import numpy as np
import pytest
from xdsl.parser import Parser

from isozyme.compiler.lowering import lower_to_llvm
from isozyme.compiler.context import make_context as _context
from isozyme.runtime import CompiledModule, compile_llvm_module




def compile_src(src: str) -> CompiledModule:
    """Parse MLIR text, lower it to the llvm dialect and JIT it."""
    module = Parser(_context(), src).parse_module()
    lower_to_llvm(module)
    return compile_llvm_module(module)


def entry(src: str, name: str, args: list[str], results: list[str]):
    return compile_src(src).entry(name, args, results)


# --------------------------------------------------------------------------- floats

ROSENBROCK = """
func.func @rosenbrock(%x: f64, %y: f64) -> f64 {
  %one = arith.constant 1.0 : f64
  %hundred = arith.constant 100.0 : f64
  %a = arith.subf %one, %x : f64
  %a2 = arith.mulf %a, %a : f64
  %x2 = arith.mulf %x, %x : f64
  %b = arith.subf %y, %x2 : f64
  %b2 = arith.mulf %b, %b : f64
  %t = arith.mulf %hundred, %b2 : f64
  %r = arith.addf %a2, %t : f64
  func.return %r : f64
}
"""


def rosenbrock(x: float, y: float) -> float:
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def test_rosenbrock() -> None:
    f = entry(ROSENBROCK, "rosenbrock", ["f64", "f64"], ["f64"])
    for x, y in [(1.0, 2.0), (0.5, -0.25), (-3.0, 7.5), (0.0, 0.0)]:
        assert f(x, y) == (rosenbrock(x, y),)


def test_accepts_numpy_and_int_scalars() -> None:
    f = entry(ROSENBROCK, "rosenbrock", ["f64", "f64"], ["f64"])
    (r,) = f(np.float64(1.0), 2)
    assert r == 100.0 and type(r) is float
    assert f(np.float32(0.5), np.int64(1)) == (rosenbrock(0.5, 1.0),)


def test_wrong_arity_raises() -> None:
    f = entry(ROSENBROCK, "rosenbrock", ["f64", "f64"], ["f64"])
    with pytest.raises(TypeError):
        f(1.0)


FLOAT_BINARY = {
    "addf": lambda a, b: a + b,
    "subf": lambda a, b: a - b,
    "mulf": lambda a, b: a * b,
    "divf": lambda a, b: a / b,
    "maximumf": max,
    "minimumf": min,
    "maxnumf": max,
    "minnumf": min,
}


@pytest.mark.parametrize("op", sorted(FLOAT_BINARY))
def test_float_binary(op: str) -> None:
    src = f"""
    func.func @f(%a: f64, %b: f64) -> f64 {{
      %r = arith.{op} %a, %b : f64
      func.return %r : f64
    }}"""
    f = entry(src, "f", ["f64", "f64"], ["f64"])
    for a, b in [(1.5, -2.25), (-3.0, 7.0), (10.0, 0.125)]:
        assert f(a, b) == (FLOAT_BINARY[op](a, b),)


def test_float_minmax_nan_semantics() -> None:
    src = """
    func.func @f(%a: f64, %b: f64) -> (f64, f64, f64, f64) {
      %0 = arith.maximumf %a, %b : f64
      %1 = arith.minimumf %a, %b : f64
      %2 = arith.maxnumf %a, %b : f64
      %3 = arith.minnumf %a, %b : f64
      func.return %0, %1, %2, %3 : f64, f64, f64, f64
    }"""
    f = entry(src, "f", ["f64", "f64"], ["f64"] * 4)
    r = f(math.nan, 1.0)
    # maximum/minimum propagate NaN; maxnum/minnum return the number.
    assert math.isnan(r[0]) and math.isnan(r[1]) and r[2] == 1.0 and r[3] == 1.0


def test_negf_and_fastmath() -> None:
    src = """
    func.func @f(%a: f64, %b: f64) -> f64 {
      %n = arith.negf %a : f64
      %r = arith.addf %n, %b fastmath<fast> : f64
      func.return %r : f64
    }"""
    cm = compile_src(src)
    assert cm.entry("f", ["f64", "f64"], ["f64"])(2.0, 5.0) == (3.0,)
    (fadd_line,) = [ln for ln in cm.llvm_ir.splitlines() if "fadd" in ln]
    assert "reassoc" in fadd_line and "contract" in fadd_line


CMPF = {
    "oeq": lambda a, b: a == b,
    "one": lambda a, b: a != b and not (math.isnan(a) or math.isnan(b)),
    "olt": lambda a, b: a < b,
    "ole": lambda a, b: a <= b,
    "ogt": lambda a, b: a > b,
    "oge": lambda a, b: a >= b,
    "ord": lambda a, b: not (math.isnan(a) or math.isnan(b)),
    "uno": lambda a, b: math.isnan(a) or math.isnan(b),
    "ueq": lambda a, b: a == b or math.isnan(a) or math.isnan(b),
    "une": lambda a, b: not (a == b),
    "ult": lambda a, b: not (a >= b),
    "ule": lambda a, b: not (a > b),
    "ugt": lambda a, b: not (a <= b),
    "uge": lambda a, b: not (a < b),
    "true": lambda a, b: True,
    "false": lambda a, b: False,
}


@pytest.mark.parametrize("pred", sorted(CMPF))
def test_cmpf(pred: str) -> None:
    src = f"""
    func.func @f(%a: f64, %b: f64) -> i1 {{
      %r = arith.cmpf {pred}, %a, %b : f64
      func.return %r : i1
    }}"""
    f = entry(src, "f", ["f64", "f64"], ["i1"])
    for a, b in [(1.0, 2.0), (2.0, 1.0), (1.0, 1.0), (math.nan, 1.0)]:
        (r,) = f(a, b)
        assert type(r) is bool
        assert r == CMPF[pred](a, b), (pred, a, b)


# ----------------------------------------------------------------------------- math

UNARY_MATH = {
    "sin": (math.sin, 0.7),
    "cos": (math.cos, 0.7),
    "tan": (math.tan, 0.7),
    "asin": (math.asin, 0.3),
    "acos": (math.acos, 0.3),
    "atan": (math.atan, 0.7),
    "sinh": (math.sinh, 0.7),
    "cosh": (math.cosh, 0.7),
    "tanh": (math.tanh, 0.7),
    "asinh": (math.asinh, 0.7),
    "acosh": (math.acosh, 1.7),
    "atanh": (math.atanh, 0.3),
    "exp": (math.exp, 0.7),
    "exp2": (lambda x: 2.0**x, 0.7),
    "expm1": (math.expm1, 1e-9),
    "log": (math.log, 2.5),
    "log1p": (math.log1p, 1e-9),
    "log2": (math.log2, 2.5),
    "log10": (math.log10, 2.5),
    "sqrt": (math.sqrt, 2.0),
    "rsqrt": (lambda x: 1.0 / math.sqrt(x), 2.0),
    "cbrt": (lambda x: float(np.cbrt(x)), -27.5),
    "absf": (abs, -2.5),
    "floor": (math.floor, -2.5),
    "ceil": (math.ceil, -2.5),
    "roundeven": (lambda x: float(np.round(x)), 2.5),
    "round": (lambda x: math.copysign(math.floor(abs(x) + 0.5), x), -2.5),
    "trunc": (math.trunc, -2.7),
    "erf": (math.erf, 0.7),
}


@pytest.mark.parametrize("name", sorted(UNARY_MATH))
def test_unary_math_f64(name: str) -> None:
    ref, x = UNARY_MATH[name]
    src = f"""
    func.func @f(%x: f64) -> f64 {{
      %r = math.{name} %x : f64
      func.return %r : f64
    }}"""
    (r,) = entry(src, "f", ["f64"], ["f64"])(x)
    assert r == pytest.approx(float(ref(x)), rel=1e-15, abs=0.0)


@pytest.mark.parametrize("name", ["sin", "exp", "sqrt", "tanh", "log1p", "floor", "erf"])
def test_unary_math_f32(name: str) -> None:
    ref, x = UNARY_MATH[name]
    src = f"""
    func.func @f(%x: f32) -> f32 {{
      %r = math.{name} %x : f32
      func.return %r : f32
    }}"""
    (r,) = entry(src, "f", ["f32"], ["f32"])(np.float32(x))
    expected = float(np.float32(ref(float(np.float32(x)))))
    assert r == pytest.approx(expected, rel=1e-6)
    assert r == float(np.float32(r))  # the result is an exact f32


def test_binary_and_ternary_math() -> None:
    src = """
    func.func @f(%a: f64, %b: f64, %n: i32, %m: i64) -> (f64, f64, f64, f64, f64, f64) {
      %0 = math.atan2 %a, %b : f64
      %1 = math.powf %a, %b : f64
      %2 = math.copysign %a, %b : f64
      %3 = math.fpowi %a, %n : f64, i32
      %4 = math.fma %a, %b, %a : f64
      %5 = math.fpowi %b, %m : f64, i64
      func.return %0, %1, %2, %3, %4, %5 : f64, f64, f64, f64, f64, f64
    }"""
    f = entry(src, "f", ["f64", "f64", "i32", "i64"], ["f64"] * 6)
    a, b = 1.5, -2.5
    r = f(a, b, 3, -2)
    assert r[0] == math.atan2(a, b)
    assert r[1] == pytest.approx(a**b, rel=1e-15)
    assert r[2] == -1.5
    assert r[3] == pytest.approx(a**3, rel=1e-15)
    assert r[4] == pytest.approx(a * b + a, rel=1e-15)
    assert r[5] == pytest.approx(b**-2, rel=1e-15)
    assert f(2.0, 0.5, 0, 0)[1] == math.sqrt(2.0)
    assert math.isnan(f(-2.0, 0.5, 0, 0)[1])  # negative base, non-integer exponent


def test_math_fastmath_flags_survive() -> None:
    src = """
    func.func @f(%x: f64) -> f64 {
      %r = math.sin %x fastmath<fast> : f64
      func.return %r : f64
    }"""
    cm = compile_src(src)
    (call_line,) = [ln for ln in cm.llvm_ir.splitlines() if "call" in ln and "sin" in ln]
    assert all(flag in call_line for flag in ("reassoc", "nnan", "ninf", "nsz", "afn"))
    assert cm.entry("f", ["f64"], ["f64"])(0.5) == pytest.approx((math.sin(0.5),))


def test_integer_math() -> None:
    src = """
    func.func @f(%a: i64) -> (i64, i64, i64, i64) {
      %0 = math.absi %a : i64
      %1 = math.ctlz %a : i64
      %2 = math.cttz %a : i64
      %3 = math.ctpop %a : i64
      func.return %0, %1, %2, %3 : i64, i64, i64, i64
    }"""
    f = entry(src, "f", ["i64"], ["i64"] * 4)
    assert f(-12) == (12, 0, 2, 61)
    assert f(12) == (12, 60, 2, 2)
    assert f(0) == (0, 64, 64, 0)


# ------------------------------------------------------------------------- integers


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


INT_BINARY = {
    "addi": lambda a, b: a + b,
    "subi": lambda a, b: a - b,
    "muli": lambda a, b: a * b,
    "divsi": _trunc_div,
    "remsi": lambda a, b: a - b * _trunc_div(a, b),
    "floordivsi": lambda a, b: a // b,
    "ceildivsi": lambda a, b: -((-a) // b),
    "andi": lambda a, b: a & b,
    "ori": lambda a, b: a | b,
    "xori": lambda a, b: a ^ b,
    "maxsi": max,
    "minsi": min,
}

INT_PAIRS = [(7, 2), (-7, 2), (7, -2), (-7, -2), (6, 3), (-6, 3), (0, 5), (1, -1)]


@pytest.mark.parametrize("op", sorted(INT_BINARY))
def test_int_binary(op: str) -> None:
    src = f"""
    func.func @f(%a: i64, %b: i64) -> i64 {{
      %r = arith.{op} %a, %b : i64
      func.return %r : i64
    }}"""
    f = entry(src, "f", ["i64", "i64"], ["i64"])
    for a, b in INT_PAIRS:
        (r,) = f(a, b)
        assert type(r) is int
        assert r == INT_BINARY[op](a, b), (op, a, b)


@pytest.mark.parametrize("op", ["divsi", "remsi", "floordivsi", "ceildivsi", "maxsi"])
def test_int_binary_index_and_i32(op: str) -> None:
    src = f"""
    func.func @f(%a: index, %b: index, %c: i32, %d: i32) -> (index, i32) {{
      %r = arith.{op} %a, %b : index
      %s = arith.{op} %c, %d : i32
      func.return %r, %s : index, i32
    }}"""
    f = entry(src, "f", ["index", "index", "i32", "i32"], ["index", "i32"])
    for a, b in INT_PAIRS:
        assert f(a, b, a, b) == (INT_BINARY[op](a, b),) * 2


CMPI = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "slt": lambda a, b: a < b,
    "sle": lambda a, b: a <= b,
    "sgt": lambda a, b: a > b,
    "sge": lambda a, b: a >= b,
    "ult": lambda a, b: a % 2**64 < b % 2**64,
    "ule": lambda a, b: a % 2**64 <= b % 2**64,
    "ugt": lambda a, b: a % 2**64 > b % 2**64,
    "uge": lambda a, b: a % 2**64 >= b % 2**64,
}


@pytest.mark.parametrize("pred", sorted(CMPI))
def test_cmpi(pred: str) -> None:
    src = f"""
    func.func @f(%a: i64, %b: i64) -> i1 {{
      %r = arith.cmpi {pred}, %a, %b : i64
      func.return %r : i1
    }}"""
    f = entry(src, "f", ["i64", "i64"], ["i1"])
    for a, b in [(1, 2), (2, 1), (3, 3), (-1, 1)]:
        assert f(a, b) == (CMPI[pred](a, b),), (pred, a, b)


def test_casts_and_select() -> None:
    src = """
    func.func @f(%x: f64, %i: i64, %c: i1) -> (f64, i64, f32, f64, i64, index, i64, f64) {
      %0 = arith.sitofp %i : i64 to f64
      %1 = arith.fptosi %x : f64 to i64
      %2 = arith.truncf %x : f64 to f32
      %3 = arith.extf %2 : f32 to f64
      %4 = arith.extui %c : i1 to i64
      %5 = arith.index_cast %i : i64 to index
      %6 = arith.index_cast %5 : index to i64
      %7 = arith.select %c, %x, %0 : f64
      func.return %0, %1, %2, %3, %4, %5, %6, %7 : f64, i64, f32, f64, i64, index, i64, f64
    }"""
    f = entry(
        src,
        "f",
        ["f64", "i64", "i1"],
        ["f64", "i64", "f32", "f64", "i64", "index", "i64", "f64"],
    )
    x32 = float(np.float32(-2.7))
    assert f(-2.7, -5, True) == (-5.0, -2, x32, x32, 1, -5, -5, -2.7)
    assert f(3.9, 7, False) == (7.0, 3, float(np.float32(3.9)), float(np.float32(3.9)), 0, 7, 7, 7.0)


def test_integer_width_casts() -> None:
    src = """
    func.func @f(%i: i64, %j: i32) -> (i32, i64, index, i32) {
      %0 = arith.trunci %i : i64 to i32
      %1 = arith.extsi %j : i32 to i64
      %2 = arith.index_cast %j : i32 to index
      %3 = arith.index_cast %2 : index to i32
      func.return %0, %1, %2, %3 : i32, i64, index, i32
    }"""
    f = entry(src, "f", ["i64", "i32"], ["i32", "i64", "index", "i32"])
    assert f(2**32 + 5, -3) == (5, -3, -3, -3)


# ------------------------------------------------------------------- control flow

SUM_TO_N = """
func.func @sum(%n: i64) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %ub = arith.index_cast %n : i64 to index
  %zero = arith.constant 0.0 : f64
  %r = scf.for %i = %c0 to %ub step %c1 iter_args(%acc = %zero) -> (f64) {
    %ii = arith.index_cast %i : index to i64
    %f = arith.sitofp %ii : i64 to f64
    %next = arith.addf %acc, %f : f64
    scf.yield %next : f64
  }
  func.return %r : f64
}
"""


def test_scf_for_runtime_bound() -> None:
    f = entry(SUM_TO_N, "sum", ["i64"], ["f64"])
    for n in (0, 1, 10, 1000):
        assert f(n) == (float(n * (n - 1) // 2),)
    assert f(-3) == (0.0,)


def test_nested_for() -> None:
    src = """
    func.func @f(%n: index, %m: index) -> i64 {
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %z = arith.constant 0 : i64
      %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (i64) {
        %inner = scf.for %j = %c0 to %m step %c1 iter_args(%a2 = %acc) -> (i64) {
          %p = arith.muli %i, %j : index
          %pi = arith.index_cast %p : index to i64
          %s = arith.addi %a2, %pi : i64
          scf.yield %s : i64
        }
        scf.yield %inner : i64
      }
      func.return %r : i64
    }"""
    f = entry(src, "f", ["index", "index"], ["i64"])
    assert f(7, 5) == (sum(i * j for i in range(7) for j in range(5)),)


def test_for_with_step() -> None:
    src = """
    func.func @f(%lb: index, %ub: index, %st: index) -> index {
      %z = arith.constant 0 : index
      %r = scf.for %i = %lb to %ub step %st iter_args(%acc = %z) -> (index) {
        %s = arith.addi %acc, %i : index
        scf.yield %s : index
      }
      func.return %r : index
    }"""
    f = entry(src, "f", ["index"] * 3, ["index"])
    assert f(3, 20, 4) == (sum(range(3, 20, 4)),)


def test_scf_if_with_results() -> None:
    src = """
    func.func @f(%x: f64) -> (f64, i64) {
      %zero = arith.constant 0.0 : f64
      %c = arith.cmpf olt, %x, %zero : f64
      %r:2 = scf.if %c -> (f64, i64) {
        %n = arith.negf %x : f64
        %m = arith.constant -1 : i64
        scf.yield %n, %m : f64, i64
      } else {
        %p = arith.constant 1 : i64
        scf.yield %x, %p : f64, i64
      }
      func.return %r#0, %r#1 : f64, i64
    }"""
    f = entry(src, "f", ["f64"], ["f64", "i64"])
    assert f(-2.5) == (2.5, -1)
    assert f(3.0) == (3.0, 1)


def test_scf_if_without_else() -> None:
    src = """
    func.func @f(%x: i64, %c: i1) -> i64 {
      %r = scf.if %c -> (i64) {
        %y = arith.addi %x, %x : i64
        scf.yield %y : i64
      } else {
        scf.yield %x : i64
      }
      scf.if %c {
        %unused = arith.addi %x, %x : i64
      }
      func.return %r : i64
    }"""
    f = entry(src, "f", ["i64", "i1"], ["i64"])
    assert f(4, True) == (8,)
    assert f(4, 0) == (4,)


WHILE_COUNT = """
func.func @count(%x0: f64, %threshold: f64) -> (i64, f64) {
  %c0 = arith.constant 0 : i64
  %c1 = arith.constant 1 : i64
  %two = arith.constant 2.0 : f64
  %r:2 = scf.while (%k = %c0, %x = %x0) : (i64, f64) -> (i64, f64) {
    %go = arith.cmpf ole, %x, %threshold : f64
    scf.condition(%go) %k, %x : i64, f64
  } do {
  ^bb0(%k1: i64, %x1: f64):
    %k2 = arith.addi %k1, %c1 : i64
    %x2 = arith.mulf %x1, %two : f64
    scf.yield %k2, %x2 : i64, f64
  }
  func.return %r#0, %r#1 : i64, f64
}
"""


def test_scf_while() -> None:
    f = entry(WHILE_COUNT, "count", ["f64", "f64"], ["i64", "f64"])

    def ref(x: float, t: float) -> tuple[int, float]:
        k = 0
        while x <= t:
            k, x = k + 1, x * 2.0
        return k, x

    for x, t in [(1.0, 1000.0), (5.0, 1.0), (0.1, 0.1), (1e-3, 1e6)]:
        assert f(x, t) == ref(x, t)


def test_nested_while_in_for() -> None:
    src = """
    func.func @f(%n: index) -> i64 {
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %z = arith.constant 0 : i64
      %one = arith.constant 1 : i64
      %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (i64) {
        %ii = arith.index_cast %i : index to i64
        %w = scf.while (%k = %z) : (i64) -> i64 {
          %go = arith.cmpi slt, %k, %ii : i64
          scf.condition(%go) %k : i64
        } do {
        ^bb0(%k1: i64):
          %k2 = arith.addi %k1, %one : i64
          scf.yield %k2 : i64
        }
        %s = arith.addi %acc, %w : i64
        scf.yield %s : i64
      }
      func.return %r : i64
    }"""
    assert entry(src, "f", ["index"], ["i64"])(10) == (45,)


# ---------------------------------------------------------------- calls, results

CALLS = """
func.func private @divmod(%a: i64, %b: i64) -> (i64, i64) {
  %q = arith.floordivsi %a, %b : i64
  %m = arith.muli %q, %b : i64
  %r = arith.subi %a, %m : i64
  func.return %q, %r : i64, i64
}
func.func private @square(%x: f64) -> f64 {
  %r = arith.mulf %x, %x : f64
  func.return %r : f64
}
func.func @main(%a: i64, %b: i64, %x: f64) -> (i64, i64, f64) {
  %q, %r = func.call @divmod(%a, %b) : (i64, i64) -> (i64, i64)
  %s = func.call @square(%x) : (f64) -> f64
  func.return %q, %r, %s : i64, i64, f64
}
func.func @noresult(%x: f64) {
  func.return
}
"""


def test_calls_and_multiple_results() -> None:
    cm = compile_src(CALLS)
    f = cm.entry("main", ["i64", "i64", "f64"], ["i64", "i64", "f64"])
    for a, b in INT_PAIRS:
        assert f(a, b, 1.5) == (a // b, a % b, 2.25)
    assert cm.entry("noresult", ["f64"], [])(1.0) == ()
    # Private functions get no entry point.
    with pytest.raises(KeyError, match="square"):
        cm.entry("square", ["f64"], ["f64"])


def test_same_symbols_in_two_modules_do_not_clash() -> None:
    a = entry(SUM_TO_N, "sum", ["i64"], ["f64"])
    other = SUM_TO_N.replace("arith.addf %acc, %f", "arith.subf %acc, %f")
    b = entry(other, "sum", ["i64"], ["f64"])
    assert a(5) == (10.0,) and b(5) == (-10.0,)
    assert a(5) == (10.0,)


# --------------------------------------------------------------------------- types


def test_f32_arguments_and_results() -> None:
    src = """
    func.func @f(%a: f32, %b: f64, %c: f32) -> (f32, f64, f32) {
      %s = arith.addf %a, %c : f32
      %e = arith.extf %s : f32 to f64
      %t = arith.mulf %e, %b : f64
      %u = arith.truncf %t : f64 to f32
      func.return %s, %t, %u : f32, f64, f32
    }"""
    f = entry(src, "f", ["f32", "f64", "f32"], ["f32", "f64", "f32"])
    a, c = np.float32(0.1), np.float32(0.2)
    s = np.float32(a + c)
    r = f(a, 3.0, c)
    assert r == (float(s), float(s) * 3.0, float(np.float32(float(s) * 3.0)))
    assert all(type(v) is float for v in r)


def test_i1_arguments_and_results() -> None:
    src = """
    func.func @f(%a: i1, %b: i1, %x: i64) -> (i1, i1, i64) {
      %and = arith.andi %a, %b : i1
      %xor = arith.xori %a, %b : i1
      %y = arith.select %a, %x, %x : i64
      func.return %and, %xor, %y : i1, i1, i64
    }"""
    f = entry(src, "f", ["i1", "i1", "i64"], ["i1", "i1", "i64"])
    for a in (False, True):
        for b in (False, True):
            assert f(a, b, 3) == (a and b, a != b, 3)
    assert f(np.bool_(True), 1, 0) == (True, False, 0)
    assert all(type(v) is bool for v in f(True, True, 1)[:2])


# -------------------------------------------------------------------------- caches

CACHE = """
func.func @cache(%n: index) -> (f64, f64) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  %w = arith.constant 1.5 : f64
  %cache = enzyme.init : !enzyme.Cache<f64>
  %icache = enzyme.init : !enzyme.Cache<i64>
  %fwd = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %zero) -> (f64) {
    %ii = arith.index_cast %i : index to i64
    %f = arith.sitofp %ii : i64 to f64
    %v = arith.mulf %f, %w : f64
    enzyme.push %cache, %v : !enzyme.Cache<f64>, f64
    enzyme.push %icache, %ii : !enzyme.Cache<i64>, i64
    %a = arith.addf %acc, %v : f64
    scf.yield %a : f64
  }
  %rev = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %zero) -> (f64) {
    %v = enzyme.pop %cache : (!enzyme.Cache<f64>) -> f64
    %k = enzyme.pop %icache : (!enzyme.Cache<i64>) -> i64
    %kf = arith.sitofp %k : i64 to f64
    %t = arith.mulf %v, %kf : f64
    %a = arith.addf %acc, %t : f64
    scf.yield %a : f64
  }
  enzyme.cache_free %cache : !enzyme.Cache<f64>
  enzyme.cache_free %icache : !enzyme.Cache<i64>
  func.return %fwd, %rev : f64, f64
}
"""


@pytest.mark.parametrize("n", [0, 1, 10, 17, 100000])
def test_cache_push_pop(n: int) -> None:
    f = entry(CACHE, "cache", ["index"], ["f64", "f64"])
    fwd, rev = f(n)
    assert fwd == pytest.approx(sum(i * 1.5 for i in range(n)), rel=1e-14)
    assert rev == pytest.approx(sum(i * 1.5 * i for i in range(n)), rel=1e-14)


def test_cache_lifo_order() -> None:
    src = """
    func.func @f(%n: index) -> f64 {
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %zero = arith.constant 0.0 : f64
      %ten = arith.constant 10.0 : f64
      %cache = enzyme.init : !enzyme.Cache<f32>
      scf.for %i = %c0 to %n step %c1 {
        %ii = arith.index_cast %i : index to i64
        %f = arith.sitofp %ii : i64 to f32
        enzyme.push %cache, %f : !enzyme.Cache<f32>, f32
      }
      %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %zero) -> (f64) {
        %v = enzyme.pop %cache : (!enzyme.Cache<f32>) -> f32
        %d = arith.extf %v : f32 to f64
        %a = arith.mulf %acc, %ten : f64
        %b = arith.addf %a, %d : f64
        scf.yield %b : f64
      }
      enzyme.cache_free %cache : !enzyme.Cache<f32>
      func.return %r : f64
    }"""
    # Popping 4, 3, 2, 1, 0 gives the decimal digits 43210.
    assert entry(src, "f", ["index"], ["f64"])(5) == (43210.0,)


# ------------------------------------------------------------------------- LLVM IR


def test_optimized_ir_differs_and_is_valid() -> None:
    cm = compile_src(CACHE + SUM_TO_N)
    assert cm.llvm_ir != cm.llvm_ir_optimized
    for text in (cm.llvm_ir, cm.llvm_ir_optimized):
        llb.parse_assembly(text).verify()
    # The cache helpers and private functions were inlined away.
    assert "__iz_cache_push_f64" in cm.llvm_ir
    assert "define internal void @__iz_cache_push" not in cm.llvm_ir_optimized
    assert "realloc" in cm.llvm_ir_optimized


def test_unknown_entry_raises() -> None:
    cm = compile_src(ROSENBROCK)
    with pytest.raises(KeyError, match="no entry point for 'nope'"):
        cm.entry("nope", [], [])
    with pytest.raises(TypeError, match="cannot cross"):
        cm.entry("rosenbrock", ["f16", "f64"], ["f64"])


def test_constants_of_every_type() -> None:
    src = """
    func.func @f() -> (i1, i1, index, f32, i32, f64) {
      %t = arith.constant true
      %f = arith.constant false
      %n = arith.constant -5 : index
      %x = arith.constant 0.1 : f32
      %i = arith.constant -7 : i32
      %d = arith.constant -0.0 : f64
      func.return %t, %f, %n, %x, %i, %d : i1, i1, index, f32, i32, f64
    }"""
    r = entry(src, "f", [], ["i1", "i1", "index", "f32", "i32", "f64"])()
    assert r == (True, False, -5, float(np.float32(0.1)), -7, 0.0)
    assert math.copysign(1.0, r[5]) == -1.0
