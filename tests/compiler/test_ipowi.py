"""``math.ipowi`` (integer ** integer): its lowering, run on the JIT, and the frontend's
``int ** traced int`` against Python, with derivatives checked by finite differences."""

from __future__ import annotations

import pytest
from xdsl.parser import Parser

import isozyme as iz
from isozyme import Active, Const, Duplicated, Forward, Reverse, ReverseWithPrimal
from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import lower_to_llvm
from isozyme.runtime import compile_llvm_module

IPOWI = """
func.func @p64(%a: i64, %b: i64) -> i64 {
  %r = math.ipowi %a, %b : i64
  func.return %r : i64
}
func.func @p32(%a: i32, %b: i32) -> i32 {
  %r = math.ipowi %a, %b : i32
  func.return %r : i32
}
"""


def _wrap(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _mlir_ipowi(a: int, b: int, bits: int) -> int:
    """MLIR's semantics: Python's a ** b wrapped for b >= 0; for b < 0, 1 for a == 1,
    +-1 for a == -1, else 0 (isozyme's choice for a == 0, which MLIR leaves undefined)."""
    if b >= 0:
        return _wrap(a**b, bits)
    if a == 1:
        return 1
    if a == -1:
        return -1 if b % 2 else 1
    return 0


@pytest.fixture(scope="module")
def compiled():
    module = Parser(make_context(), IPOWI).parse_module()
    lower_to_llvm(module)
    mod = compile_llvm_module(module)
    return mod.entry("p64", ["i64", "i64"], ["i64"]), mod.entry("p32", ["i32", "i32"], ["i32"])


@pytest.mark.parametrize("a", [-3, -2, -1, 0, 1, 2, 3, 7, 10])
@pytest.mark.parametrize("b", [-5, -2, -1, 0, 1, 2, 3, 10, 31, 62, 63, 64, 100])
def test_ipowi_lowering_matches_python_and_mlir(compiled, a: int, b: int) -> None:
    p64, p32 = compiled
    assert p64(a, b) == (_mlir_ipowi(a, b, 64),)
    assert p32(a, b) == (_mlir_ipowi(a, b, 32),)


def test_ipowi_helper_is_defined_once_per_type() -> None:
    module = Parser(make_context(), IPOWI + """
    func.func @twice(%a: i64, %b: i64) -> i64 {
      %r = math.ipowi %a, %b : i64
      %s = math.ipowi %r, %b : i64
      func.return %s : i64
    }""").parse_module()
    lower_to_llvm(module)
    names = [op.sym_name.data for op in module.ops]
    assert names.count("__iz_ipowi_i64") == 1 and names.count("__iz_ipowi_i32") == 1


# ---------------------------------------------------------------- the frontend


def halvings(x, n):
    s = 0.0
    for k in range(n):  # k >= 0: 2 ** k and 3 ** k are Python ints (math.ipowi)
        s = s + x / 2**k + (3**k % 7) * x
    return s


def scaled(x, b, k):
    return x * b**k  # the sign of k is unknown at trace time: a float, as float(b) ** k


def int_result(b, n):
    t = 0
    for k in range(n):
        t = t + (-b) ** k  # int ** loop index stays an int (no rounding above 2**53)
    return t


def int_result_float(b, n):
    return float(int_result(b, n))


def _fd(f, x: float, *rest, h: float = 1e-6) -> float:
    return (f(x + h, *rest) - f(x - h, *rest)) / (2 * h)


@pytest.mark.parametrize("n", [0, 1, 5, 12])
def test_int_power_of_loop_index_forward_and_reverse(n: int) -> None:
    x = 1.7
    (grad, _), primal = iz.autodiff(ReverseWithPrimal, halvings, Active, Active(x), Const(n))
    assert primal == halvings(x, n)
    assert grad == pytest.approx(_fd(halvings, x, n), rel=1e-7, abs=1e-9)
    (tangent,) = iz.autodiff(Forward, halvings, Duplicated(x, 1.0), Const(n))
    assert tangent == pytest.approx(grad, rel=1e-12)


@pytest.mark.parametrize("b", [-3, -2, -1, 1, 2, 3, 10])
@pytest.mark.parametrize("k", [-3, -1, 0, 1, 2, 5, 40])
def test_int_power_of_traced_int_matches_python(b: int, k: int) -> None:
    x = 1.5
    want = scaled(x, b, k)  # Python: an int for k >= 0, a float for k < 0
    (grads, primal) = iz.autodiff(ReverseWithPrimal, scaled, Active, Active(x), Const(b),
                                  Const(k))
    assert primal == want
    assert grads[0] == pytest.approx(_fd(scaled, x, b, k, h=1e-7), rel=1e-6)
    (tangent,) = iz.autodiff(Forward, scaled, Duplicated(x, 1.0), Const(b), Const(k))
    assert tangent == float(b) ** k


def test_int_power_result_is_exact_above_2_53() -> None:
    out = iz.autodiff(ReverseWithPrimal, int_result_float, Const(3), Const(34))
    assert out[1] == float(int_result(3, 34))  # an int sum of 34 powers, then rounded


def test_int_power_int_result_type() -> None:
    # int ** loop index is an int, so it can index an array; int ** unknown-sign is a float
    text = iz.ir(Reverse, halvings, Active, Active(1.0), Const(3), stage="traced")
    assert "math.ipowi" in text
    text = iz.ir(Reverse, scaled, Active, Active(1.0), Const(2), Const(3), stage="traced")
    assert "math.ipowi" not in text and "math.fpowi" in text
