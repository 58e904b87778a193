"""End-to-end tests of memref (array) arguments: MLIR text -> lower -> JIT -> numpy."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects.builtin import MemRefType, f64
from xdsl.parser import Parser

from isozyme.compiler.lowering import lower_to_llvm
from isozyme.compiler.context import make_context as _context
from isozyme.runtime import CompiledModule, compile_llvm_module
from isozyme.runtime.jit import descriptor_struct

#: The frontend's array argument types (docs/ir.md, "Arrays (memrefs)").
V = "memref<?xf64, strided<[?], offset: ?>>"
M = "memref<?x?xf64, strided<[?, ?], offset: ?>>"




def compile_src(src: str) -> CompiledModule:
    module = Parser(_context(), src).parse_module()
    lower_to_llvm(module)
    return compile_llvm_module(module)


def entry(src: str, name: str, args: list, results: list):
    return compile_src(src).entry(name, args, results)


def _sum_src(t: str, elem: str = "f64", zero: str = "0.0") -> str:
    return f"""
func.func @sum(%x: {t}) -> {elem} {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant {zero} : {elem}
  %n = memref.dim %x, %c0 : {t}
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> ({elem}) {{
    %v = memref.load %x[%i] : {t}
    %a = arith.addf %acc, %v : {elem}
    scf.yield %a : {elem}
  }}
  func.return %r : {elem}
}}
"""


DOT = f"""
func.func @dot(%x: {V}, %y: {V}) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %n = memref.dim %x, %c0 : {V}
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (f64) {{
    %v = memref.load %x[%i] : {V}
    %w = memref.load %y[%i] : {V}
    %p = arith.mulf %v, %w : f64
    %a = arith.addf %acc, %p : f64
    scf.yield %a : f64
  }}
  func.return %r : f64
}}
"""

SCALE = f"""
func.func @scale(%x: {V}, %s: f64) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : {V}
  scf.for %i = %c0 to %n step %c1 {{
    %v = memref.load %x[%i] : {V}
    %w = arith.mulf %v, %s : f64
    memref.store %w, %x[%i] : {V}
  }}
  func.return
}}
"""

# y = A @ x, the loop bounds from memref.dim (dim 0 of A, dim 1 of A).
MATVEC = f"""
func.func @matvec(%A: {M}, %x: {V}, %y: {V}) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %m = memref.dim %A, %c0 : {M}
  %n = memref.dim %A, %c1 : {M}
  scf.for %i = %c0 to %m step %c1 {{
    %r = scf.for %j = %c0 to %n step %c1 iter_args(%acc = %z) -> (f64) {{
      %a = memref.load %A[%i, %j] : {M}
      %v = memref.load %x[%j] : {V}
      %p = arith.mulf %a, %v : f64
      %s = arith.addf %acc, %p : f64
      scf.yield %s : f64
    }}
    memref.store %r, %y[%i] : {V}
  }}
  func.return
}}
"""


# ------------------------------------------------------------------ basic 1-D

def test_sum_1d_views() -> None:
    f = entry(_sum_src(V), "sum", [V], ["f64"])
    x = np.random.default_rng(0).standard_normal(101)
    for view in (x, x[::-1], x[::3], x[7:50], x[-1::-4], x[:0]):
        (r,) = f(view)
        assert r == pytest.approx(view.sum(), rel=1e-12, abs=1e-12)


def test_dot() -> None:
    f = entry(DOT, "dot", [V, V], ["f64"])
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(1000), rng.standard_normal(2000)
    assert f(x, y[::2]) == pytest.approx((x @ y[::2],))
    assert f(x[::-1], y[:1000]) == pytest.approx((x[::-1] @ y[:1000],))


def test_memref_types_as_xdsl_types() -> None:
    t = Parser(_context(), V).parse_attribute()
    assert isinstance(t, MemRefType)
    f = compile_src(DOT).entry("dot", [t, t], [f64])
    assert f(np.ones(3), np.arange(3.0)) == (3.0,)


def test_in_place_scale_changes_callers_array() -> None:
    f = entry(SCALE, "scale", [V, "f64"], [])
    x = np.arange(10.0)
    assert f(x, 2.0) == ()
    np.testing.assert_array_equal(x, 2 * np.arange(10.0))
    # Through a strided, reversed view: only the viewed elements change.
    y = np.arange(10.0)
    f(y[::-3], 10.0)
    expect = np.arange(10.0)
    expect[::-3] *= 10
    np.testing.assert_array_equal(y, expect)


# ------------------------------------------------------------------ rank 2

@pytest.mark.parametrize("case", ["plain", "transposed", "slices"])
def test_matvec_views(case: str) -> None:
    f = entry(MATVEC, "matvec", [M, V, V], [])
    rng = np.random.default_rng(2)
    if case == "plain":
        A, x = rng.standard_normal((5, 7)), rng.standard_normal(7)
        y = np.zeros(5)
        out = y
    elif case == "transposed":
        A, x = rng.standard_normal((7, 5)).T, rng.standard_normal(14)[::2]
        y = np.zeros(5)
        out = y
    else:
        A = rng.standard_normal((12, 9))[1::2, ::-2]  # (6, 5), negative col stride
        x = rng.standard_normal(5)[::-1]
        y = np.zeros(12)
        out = y[::-2]
    f(A, x, out)
    np.testing.assert_allclose(out, A @ x, rtol=1e-12)
    if case == "slices":
        assert np.all(y[-2::-2] == 0.0)  # untouched elements


# ------------------------------------------------------------------ alloc

ALLOC = """
func.func @squares(%n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %t = memref.alloc(%n) : memref<?xf64>
  scf.for %i = %c0 to %n step %c1 {
    %ii = arith.index_cast %i : index to i64
    %fi = arith.sitofp %ii : i64 to f64
    %sq = arith.mulf %fi, %fi : f64
    memref.store %sq, %t[%i] : memref<?xf64>
  }
  %m = memref.dim %t, %c0 : memref<?xf64>
  %r = scf.for %i = %c0 to %m step %c1 iter_args(%acc = %z) -> (f64) {
    %v = memref.load %t[%i] : memref<?xf64>
    %a = arith.addf %acc, %v : f64
    scf.yield %a : f64
  }
  memref.dealloc %t : memref<?xf64>
  func.return %r : f64
}
"""


@pytest.mark.parametrize("n", [0, 1, 10, 1000])
def test_alloc_fill_dealloc(n: int) -> None:
    f = entry(ALLOC, "squares", ["index"], ["f64"])
    assert f(n) == (float(sum(i * i for i in range(n))),)


ALLOC_2D = """
func.func @f(%n: index) -> (f64, index, index, i64) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %t = memref.alloc(%n) {alignment = 64 : i64} : memref<3x?xf64>
  %u = memref.alloc() : memref<4x2xi64>
  %x = arith.constant 2.5 : f64
  %k = arith.constant 42 : i64
  memref.store %x, %t[%c2, %c1] : memref<3x?xf64>
  memref.store %k, %u[%c2, %c1] : memref<4x2xi64>
  %y = memref.load %t[%c2, %c1] : memref<3x?xf64>
  %l = memref.load %u[%c2, %c1] : memref<4x2xi64>
  %d0 = memref.dim %t, %c0 : memref<3x?xf64>
  %d1 = memref.dim %t, %c1 : memref<3x?xf64>
  memref.dealloc %t : memref<3x?xf64>
  memref.dealloc %u : memref<4x2xi64>
  func.return %y, %d0, %d1, %l : f64, index, index, i64
}
"""


def test_alloc_2d_static_and_aligned() -> None:
    f = entry(ALLOC_2D, "f", ["index"], ["f64", "index", "index", "i64"])
    assert f(5) == (2.5, 3, 5, 42)


# ------------------------------------------------------------------ element types, static shapes

def test_float32_array() -> None:
    t = "memref<?xf32, strided<[?], offset: ?>>"
    f = entry(_sum_src(t, "f32"), "sum", [t], ["f32"])
    x = np.linspace(0, 1, 64, dtype=np.float32)
    (r,) = f(x[::-1])
    assert r == pytest.approx(float(x.sum()), rel=1e-5)
    with pytest.raises(TypeError, match="float32"):
        f(x.astype(np.float64))


def test_i64_and_bool_arrays() -> None:
    src = """
func.func @f(%x: memref<?xi64, strided<[?], offset: ?>>, %b: memref<?xi1>) -> (i64, i1) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %v = memref.load %x[%c1] : memref<?xi64, strided<[?], offset: ?>>
  %w = arith.addi %v, %v : i64
  memref.store %w, %x[%c0] : memref<?xi64, strided<[?], offset: ?>>
  %p = memref.load %b[%c0] : memref<?xi1>
  %q = memref.load %b[%c1] : memref<?xi1>
  %nq = arith.xori %p, %q : i1
  memref.store %nq, %b[%c1] : memref<?xi1>
  func.return %v, %p : i64, i1
}
"""
    f = entry(
        src, "f", ["memref<?xi64, strided<[?], offset: ?>>", "memref<?xi1>"], ["i64", "i1"]
    )
    x = np.array([0, -7, 3], dtype=np.int64)
    b = np.array([True, True])
    assert f(x, b) == (-7, True)
    assert x[0] == -14 and list(b) == [True, False]


STATIC = """
func.func @f(%x: memref<4xf64>) -> (f64, index) {
  %c0 = arith.constant 0 : index
  %c3 = arith.constant 3 : index
  %a = memref.load %x[%c0] : memref<4xf64>
  %b = memref.load %x[%c3] : memref<4xf64>
  %s = arith.addf %a, %b : f64
  memref.store %s, %x[%c0] : memref<4xf64>
  %n = memref.dim %x, %c0 : memref<4xf64>
  func.return %s, %n : f64, index
}
"""


def test_static_shape_memref() -> None:
    f = entry(STATIC, "f", ["memref<4xf64>"], ["f64", "index"])
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert f(x) == (5.0, 4)
    assert x[0] == 5.0
    with pytest.raises(ValueError, match="static size 4"):
        f(np.zeros(5))
    with pytest.raises(ValueError, match="static strides"):
        f(np.zeros(8)[::2])  # identity layout needs unit stride


def test_identity_layout_takes_row_strided_2d() -> None:
    # memref<?x?xf64>: strides [?, 1]; a row slice of a wider array fits.
    t = "memref<?x?xf64>"
    src = f"""
func.func @f(%A: {t}, %i: index, %j: index) -> f64 {{
  %v = memref.load %A[%i, %j] : {t}
  func.return %v : f64
}}
"""
    f = entry(src, "f", [t, "index", "index"], ["f64"])
    A = np.arange(30.0).reshape(5, 6)
    assert f(A[1:4, 2:5], 2, 1) == (A[3, 3],)
    with pytest.raises(ValueError, match="static strides"):
        f(A.T, 0, 1)


def test_dynamic_dim_index_and_rank0() -> None:
    src = f"""
func.func @f(%A: {M}, %k: index, %s: memref<f64>) -> (index, f64) {{
  %d = memref.dim %A, %k : {M}
  %v = memref.load %s[] : memref<f64>
  %w = arith.addf %v, %v : f64
  memref.store %w, %s[] : memref<f64>
  func.return %d, %v : index, f64
}}
"""
    f = entry(src, "f", [M, "index", "memref<f64>"], ["index", "f64"])
    A = np.zeros((3, 8))[:, ::2]
    s = np.array(1.5)
    assert f(A, 0, s) == (3, 1.5)
    assert f(A, 1, s) == (4, 3.0)
    assert s[()] == 6.0


# ------------------------------------------------------------------ control flow, calls, casts

def test_memref_through_branches_calls_and_casts() -> None:
    # scf.if yielding a memref (a memref block argument after scf-to-cf), a private
    # function taking and returning one (func.call results), memref.cast both ways.
    src = f"""
func.func private @pick(%a: {V}, %b: {V}, %c: i1) -> {V} {{
  %r = scf.if %c -> ({V}) {{
    scf.yield %a : {V}
  }} else {{
    scf.yield %b : {V}
  }}
  func.return %r : {V}
}}
func.func @f(%a: {V}, %b: {V}, %c: i1) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %p = func.call @pick(%a, %b, %c) : ({V}, {V}, i1) -> {V}
  %n = memref.dim %p, %c0 : {V}
  %t = memref.alloc(%n) : memref<?xf64>
  %tc = "memref.cast"(%t) : (memref<?xf64>) -> {V}
  %z = arith.constant 0.0 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (f64) {{
    %v = memref.load %p[%i] : {V}
    memref.store %v, %tc[%i] : {V}
    %a2 = arith.addf %acc, %v : f64
    scf.yield %a2 : f64
  }}
  %back = "memref.cast"(%tc) : ({V}) -> memref<?xf64>
  %last = memref.load %back[%c0] : memref<?xf64>
  %s = arith.addf %r, %last : f64
  memref.dealloc %back : memref<?xf64>
  func.return %s : f64
}}
"""
    f = entry(src, "f", [V, V, "i1"], ["f64"])
    a, b = np.arange(1.0, 5.0), np.arange(10.0, 13.0)[::-1]
    assert f(a, b, True) == (a.sum() + a[0],)
    assert f(a, b, False) == (b.sum() + b[0],)


def test_many_calls_do_not_leak_or_crash() -> None:
    f = entry(ALLOC, "squares", ["index"], ["f64"])
    for _ in range(2000):
        f(100)


# ------------------------------------------------------------------ argument checking

def test_wrong_dtype_rank_and_kind_raise() -> None:
    f = entry(DOT, "dot", [V, V], ["f64"])
    x = np.ones(3)
    with pytest.raises(TypeError, match=r"argument 1 .*dtype float64.*float32"):
        f(x, np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError, match=r"argument 0 .*dtype float64.*int64"):
        f(np.ones(3, dtype=np.int64), x)
    with pytest.raises(ValueError, match=r"argument 0 .*1 dimension"):
        f(np.ones((3, 1)), x)
    with pytest.raises(TypeError, match="numpy array"):
        f([1.0, 2.0, 3.0], x)
    with pytest.raises(TypeError, match=r"argument 1 .*dtype"):
        f(x, np.ones(3, dtype=">f8"))  # byte-swapped


def test_strides_not_multiple_of_itemsize_raise() -> None:
    f = entry(_sum_src(V), "sum", [V], ["f64"])
    raw = np.zeros(104, dtype=np.uint8)
    odd = np.lib.stride_tricks.as_strided(raw.view(np.float64), shape=(3,), strides=(12,))
    with pytest.raises(ValueError, match="not multiples of the item size 8"):
        f(odd)


def test_array_interface_objects_are_viewed_not_copied() -> None:
    class Wrapper:
        def __init__(self, a: np.ndarray) -> None:
            self._a = a

        @property
        def __array_interface__(self) -> dict:
            return self._a.__array_interface__

    f = entry(SCALE, "scale", [V, "f64"], [])
    x = np.arange(6.0)
    f(Wrapper(x[::-2]), -1.0)
    np.testing.assert_array_equal(x, [0, -1, 2, -3, 4, -5])
    # ndarray subclasses take the slow path but work the same.
    m = np.arange(4.0).view(np.recarray)
    f(m, 3.0)
    np.testing.assert_array_equal(np.asarray(m), [0, 3, 6, 9])


def test_descriptor_struct_layout() -> None:
    d2 = descriptor_struct(2)
    assert descriptor_struct(2) is d2
    assert [name for name, _ in d2._fields_] == [
        "allocated", "aligned", "offset", "sizes", "strides"
    ]
    import ctypes

    assert ctypes.sizeof(d2) == 8 * (3 + 2 * 2)
    assert ctypes.sizeof(descriptor_struct(0)) == 24
