"""End-to-end tests of ``memref.subview`` and ``memref.copy``: MLIR text -> JIT -> numpy."""

from __future__ import annotations

import numpy as np
import pytest

from isozyme.compiler.lowering import LoweringError
from test_memref import M, V, compile_src, entry

# Sum of a 1-D view (the body of most tests below).
_SUM_1D = """
  %z = arith.constant 0.0 : f64
  %n = memref.dim {v}, %c0 : {t}
  %sum = scf.for %si = %c0 to %n step %c1 iter_args(%sacc = %z) -> (f64) {{
    %se = memref.load {v}[%si] : {t}
    %sa = arith.addf %sacc, %se : f64
    scf.yield %sa : f64
  }}
"""


def _sum(v: str, t: str = V) -> str:
    return _SUM_1D.format(v=v, t=t)


# ------------------------------------------------------------------ 1-D slices

INTERIOR = f"""
func.func @interior(%x: {V}) -> (f64, index) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %nx = memref.dim %x, %c0 : {V}
  %m = arith.subi %nx, %c2 : index
  %s = memref.subview %x[1] [%m] [1] : {V} to {V}
  {_sum("%s")}
  %neg = arith.constant -1.0 : f64
  memref.store %neg, %s[%c0] : {V}
  func.return %sum, %n : f64, index
}}
"""


def test_interior_slice_x_1_to_n_minus_1() -> None:
    f = entry(INTERIOR, "interior", [V], ["f64", "index"])
    for base in (np.arange(10.0), np.arange(30.0)[::-3]):
        x = base.copy()
        total, n = f(x)
        assert n == len(x) - 2
        assert total == pytest.approx(base[1:-1].sum())
        # The store through the view reached x[1] only.
        expect = base.copy()
        expect[1] = -1.0
        np.testing.assert_array_equal(x, expect)


EVERY_OTHER = f"""
func.func @evens(%x: {V}, %k: index, %v: f64) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %s = memref.subview %x[0] [%k] [2] : {V} to {V}
  {_sum("%s")}
  scf.for %i = %c0 to %n step %c1 {{
    memref.store %v, %s[%i] : {V}
  }}
  func.return %sum : f64
}}
"""


@pytest.mark.parametrize("length", [0, 1, 7, 10])
def test_every_other_x_step_2(length: int) -> None:
    f = entry(EVERY_OTHER, "evens", [V, "index", "f64"], ["f64"])
    x = np.arange(float(length))
    k = (length + 1) // 2  # len(x[::2]), computed by the caller
    (total,) = f(x, k, 9.0)
    assert total == np.arange(float(length))[::2].sum()
    expect = np.arange(float(length))
    expect[::2] = 9.0
    np.testing.assert_array_equal(x, expect)
    # Through a reversed view: x[::-1][::2].
    y = np.arange(10.0)
    f(y[::-1], 5, 0.0)  # y[9], y[7], ..., y[1]
    np.testing.assert_array_equal(y, np.where(np.arange(10) % 2 == 1, 0.0, y))
    assert y[::2].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]


# ------------------------------------------------------------------ 2-D

BLOCK = f"""
func.func @block(%A: {M}, %k: index, %s: f64) -> (f64, index, index) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %B = memref.subview %A[1, 0] [2, %k] [1, 2] : {M} to memref<2x?xf64, strided<[?, ?], offset: ?>>
  %z = arith.constant 0.0 : f64
  %m = memref.dim %B, %c0 : memref<2x?xf64, strided<[?, ?], offset: ?>>
  %n = memref.dim %B, %c1 : memref<2x?xf64, strided<[?, ?], offset: ?>>
  %sum = scf.for %i = %c0 to %m step %c1 iter_args(%acc = %z) -> (f64) {{
    %r = scf.for %j = %c0 to %n step %c1 iter_args(%acc2 = %acc) -> (f64) {{
      %e = memref.load %B[%i, %j] : memref<2x?xf64, strided<[?, ?], offset: ?>>
      %w = arith.mulf %e, %s : f64
      memref.store %w, %B[%i, %j] : memref<2x?xf64, strided<[?, ?], offset: ?>>
      %a = arith.addf %acc2, %e : f64
      scf.yield %a : f64
    }}
    scf.yield %r : f64
  }}
  func.return %sum, %m, %n : f64, index, index
}}
"""


@pytest.mark.parametrize("layout", ["c", "transposed", "strided"])
def test_block_A_1_3_0_n_2(layout: str) -> None:
    f = entry(BLOCK, "block", [M, "index", "f64"], ["f64", "index", "index"])
    base = np.arange(35.0).reshape(5, 7)
    if layout == "c":
        A = base.copy()
    elif layout == "transposed":
        A = np.ascontiguousarray(base.T).T  # Fortran order, same values
    else:
        big = np.zeros((10, 14))
        big[::2, ::2] = base
        A = big[::2, ::2]
    n = A.shape[1]
    k = len(range(0, n, 2))
    expect = A.copy()
    total, m, kk = f(A, k, 10.0)
    assert (m, kk) == (2, k)
    assert total == expect[1:3, 0:n:2].sum()
    expect[1:3, 0:n:2] *= 10.0
    np.testing.assert_array_equal(A, expect)


ROW_T = V


ROW = f"""
func.func @row(%A: {M}, %i: index, %v: f64) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %ncol = memref.dim %A, %c1 : {M}
  %r = memref.subview %A[%i, 0] [1, %ncol] [1, 1] : {M} to {ROW_T}
  {_sum("%r")}
  memref.store %v, %r[%c1] : {ROW_T}
  func.return %sum : f64
}}
"""


def test_row_A_i_colon_rank_reducing() -> None:
    f = entry(ROW, "row", [M, "index", "f64"], ["f64"])
    for A in (np.arange(12.0).reshape(3, 4), np.arange(12.0).reshape(4, 3).T[::-1]):
        expect = A.copy()
        (total,) = f(A, 2, -5.0)
        assert total == expect[2, :].sum()
        expect[2, 1] = -5.0
        np.testing.assert_array_equal(A, expect)


COL = f"""
func.func @col(%A: {M}, %j: index) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %nrow = memref.dim %A, %c0 : {M}
  %r = memref.subview %A[0, %j] [%nrow, 1] [1, 1] : {M} to {V}
  {_sum("%r")}
  func.return %sum : f64
}}
"""


def test_column_A_colon_j_rank_reducing_last_dim() -> None:
    f = entry(COL, "col", [M, "index"], ["f64"])
    A = np.arange(20.0).reshape(4, 5)[:, ::-1]
    for j in range(5):
        assert f(A, j) == (A[:, j].sum(),)


NESTED = f"""
func.func @nested(%x: {V}, %k: index, %v: f64) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %nx = memref.dim %x, %c0 : {V}
  %m = arith.subi %nx, %c2 : index
  %a = memref.subview %x[2] [%m] [1] : {V} to {V}
  %b = memref.subview %a[1] [%k] [3] : {V} to {V}
  {_sum("%b")}
  scf.for %i = %c0 to %n step %c1 {{
    memref.store %v, %b[%i] : {V}
  }}
  func.return %sum : f64
}}
"""


def test_subview_of_subview_x_2_colon_1_colon_3() -> None:
    f = entry(NESTED, "nested", [V, "index", "f64"], ["f64"])
    for base in (np.arange(20.0), np.arange(40.0)[::-2]):
        x = base.copy()
        k = len(base[2:][1::3])
        (total,) = f(x, k, 0.5)
        assert total == base[2:][1::3].sum()
        expect = base.copy()
        expect[2:][1::3] = 0.5
        np.testing.assert_array_equal(x, expect)


STATIC = """
func.func @f(%A: memref<4x6xf64>) -> (f64, f64, f64) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %B = memref.subview %A[1, 2] [2, 3] [1, 1] : memref<4x6xf64> to memref<2x3xf64, strided<[6, 1], offset: 8>>
  %C = memref.subview %B[1, 0] [1, 2] [1, 2] : memref<2x3xf64, strided<[6, 1], offset: 8>> to memref<2xf64, strided<[2], offset: 14>>
  %D = memref.subview %A[3, 0] [1, 6] [1, 1] : memref<4x6xf64> to memref<6xf64, strided<[1], offset: 18>>
  %b = memref.load %B[%c1, %c2] : memref<2x3xf64, strided<[6, 1], offset: 8>>
  %c = memref.load %C[%c1] : memref<2xf64, strided<[2], offset: 14>>
  %d = memref.load %D[%c2] : memref<6xf64, strided<[1], offset: 18>>
  %m = arith.constant -1.0 : f64
  memref.store %m, %C[%c0] : memref<2xf64, strided<[2], offset: 14>>
  func.return %b, %c, %d : f64, f64, f64
}
"""


def test_static_layouts_fold_to_constants() -> None:
    f = entry(STATIC, "f", ["memref<4x6xf64>"], ["f64", "f64", "f64"])
    A = np.arange(24.0).reshape(4, 6)
    assert f(A) == (A[1:3, 2:5][1, 2], A[1:3, 2:5][1:2, ::2][0, 1], A[3, 2])
    assert A[2, 2] == -1.0 and (A != np.arange(24.0).reshape(4, 6)).sum() == 1


def test_rank_reduction_of_non_unit_dim_rejected() -> None:
    src = f"""
func.func @f(%A: {M}, %k: index) -> f64 {{
  %c0 = arith.constant 0 : index
  %r = memref.subview %A[0, 0] [2, %k] [1, 1] : {M} to {V}
  %v = memref.load %r[%c0] : {V}
  func.return %v : f64
}}
"""
    with pytest.raises(LoweringError, match="static size 1"):
        compile_src(src)


# ------------------------------------------------------------------ memref.copy

COPY = f"""
func.func @copy(%x: {V}, %y: {V}) {{
  "memref.copy"(%x, %y) : ({V}, {V}) -> ()
  func.return
}}
func.func @copy2(%A: {M}, %B: {M}) {{
  "memref.copy"(%A, %B) : ({M}, {M}) -> ()
  func.return
}}
func.func @copy0(%a: memref<f64>, %b: memref<f64>) {{
  "memref.copy"(%a, %b) : (memref<f64>, memref<f64>) -> ()
  func.return
}}
func.func @copys(%a: memref<3x2xi64>, %b: memref<3x2xi64, strided<[?, ?], offset: ?>>) {{
  "memref.copy"(%a, %b) : (memref<3x2xi64>, memref<3x2xi64, strided<[?, ?], offset: ?>>) -> ()
  func.return
}}
func.func @interior_copy(%x: {V}, %y: {V}) {{
  %c0 = arith.constant 0 : index
  %c2 = arith.constant 2 : index
  %n = memref.dim %x, %c0 : {V}
  %m = arith.subi %n, %c2 : index
  %s = memref.subview %x[1] [%m] [1] : {V} to {V}
  %t = memref.subview %y[1] [%m] [1] : {V} to {V}
  "memref.copy"(%s, %t) : ({V}, {V}) -> ()
  func.return
}}
"""


def test_memref_copy_any_layouts() -> None:
    cm = compile_src(COPY)
    copy = cm.entry("copy", [V, V], [])
    x, y = np.arange(12.0), np.zeros(24)
    copy(x[::-2], y[1::4])
    expect = np.zeros(24)
    expect[1::4] = x[::-2]
    np.testing.assert_array_equal(y, expect)
    copy(x[:0], y[:0])

    copy2 = cm.entry("copy2", [M, M], [])
    A = np.arange(12.0).reshape(3, 4)
    B = np.zeros((4, 3))
    copy2(A, B.T)
    np.testing.assert_array_equal(B, A.T)
    C = np.zeros((6, 8))
    copy2(A[::-1], C[::2, ::2])
    np.testing.assert_array_equal(C[::2, ::2], A[::-1])
    assert C[1::2].sum() == 0 and C[:, 1::2].sum() == 0

    copy0 = cm.entry("copy0", ["memref<f64>", "memref<f64>"], [])
    a, b = np.array(3.5), np.array(0.0)
    copy0(a, b)
    assert b[()] == 3.5

    t = "memref<3x2xi64, strided<[?, ?], offset: ?>>"
    copys = cm.entry("copys", ["memref<3x2xi64>", t], [])
    src = np.arange(6, dtype=np.int64).reshape(3, 2)
    dst = np.zeros((2, 3), dtype=np.int64)
    copys(src, dst.T)
    np.testing.assert_array_equal(dst, src.T)

    inner = cm.entry("interior_copy", [V, V], [])
    x, y = np.arange(6.0), np.zeros(6)
    inner(x, y)
    np.testing.assert_array_equal(y, [0, 1, 2, 3, 4, 0])
