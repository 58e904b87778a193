"""Memref results at the C entry point: the runtime returns numpy arrays that own the
memory the compiled function allocated (``docs/ir.md``, ABI)."""

from __future__ import annotations

import gc
import os
import weakref

import numpy as np
import pytest

from isozyme.runtime.jit import _MallocBlock
from test_memref import V, compile_src, entry

IOTA = """
func.func @iota(%n: index) -> memref<?xf64> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %t = memref.alloc(%n) : memref<?xf64>
  scf.for %i = %c0 to %n step %c1 {
    %ii = arith.index_cast %i : index to i64
    %fi = arith.sitofp %ii : i64 to f64
    memref.store %fi, %t[%i] : memref<?xf64>
  }
  func.return %t : memref<?xf64>
}
"""


def _owner(a: np.ndarray) -> object:
    """The object owning a result array's memory (through the base chain)."""
    base = a
    while isinstance(base, np.ndarray):
        base = base.base
    return base.owner  # type: ignore[union-attr]


def test_single_1d_result() -> None:
    f = entry(IOTA, "iota", ["index"], ["memref<?xf64>"])
    (a,) = f(7)
    assert isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == (7,)
    np.testing.assert_array_equal(a, np.arange(7.0))
    assert a.flags.writeable and a.flags.c_contiguous
    a[3] = 42.0
    assert a[3] == 42.0
    assert isinstance(_owner(a), _MallocBlock)


def test_zero_size_result() -> None:
    f = entry(IOTA, "iota", ["index"], ["memref<?xf64>"])
    (a,) = f(0)
    assert a.shape == (0,) and a.dtype == np.float64


def test_memory_freed_when_array_collected() -> None:
    f = entry(IOTA, "iota", ["index"], ["memref<?xf64>"])
    (a,) = f(100)
    view = a[::3]
    block = weakref.ref(_owner(a))
    del a
    gc.collect()
    assert block() is not None  # the view keeps it alive
    np.testing.assert_array_equal(view, np.arange(100.0)[::3])
    del view
    gc.collect()
    assert block() is None


def test_result_type_as_xdsl_type() -> None:
    from xdsl.dialects.builtin import IndexType, MemRefType, f64

    cm = compile_src(IOTA)
    (a,) = cm.entry("iota", [IndexType()], [MemRefType(f64, [-1])])(3)
    np.testing.assert_array_equal(a, [0.0, 1.0, 2.0])


MIXED = f"""
func.func @mixed(%x: {V}) -> (f64, memref<?xf64>, i1, memref<2x?xi64>, memref<f32>) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : {V}
  %t = memref.alloc(%n) : memref<?xf64>
  %u = memref.alloc(%n) : memref<2x?xi64>
  %z = arith.constant 0.0 : f64
  %s = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (f64) {{
    %v = memref.load %x[%i] : {V}
    %w = arith.mulf %v, %v : f64
    memref.store %w, %t[%i] : memref<?xf64>
    %ii = arith.index_cast %i : index to i64
    %neg = arith.subi %ii, %ii : i64
    %m = arith.subi %neg, %ii : i64
    memref.store %ii, %u[%c0, %i] : memref<2x?xi64>
    memref.store %m, %u[%c1, %i] : memref<2x?xi64>
    %a = arith.addf %acc, %v : f64
    scf.yield %a : f64
  }}
  %p = arith.cmpf ogt, %s, %z : f64
  %r = memref.alloc() : memref<f32>
  %h = arith.constant 0.5 : f32
  memref.store %h, %r[] : memref<f32>
  func.return %s, %t, %p, %u, %r : f64, memref<?xf64>, i1, memref<2x?xi64>, memref<f32>
}}
"""


def test_mixed_scalar_and_memref_results() -> None:
    f = entry(
        MIXED,
        "mixed",
        [V],
        ["f64", "memref<?xf64>", "i1", "memref<2x?xi64>", "memref<f32>"],
    )
    x = np.arange(10.0)[::-2]
    s, t, p, u, r = f(x)
    assert s == x.sum() and p is True
    np.testing.assert_array_equal(t, x * x)
    assert u.dtype == np.int64 and u.shape == (2, 5)
    np.testing.assert_array_equal(u, [np.arange(5), -np.arange(5)])
    assert r.shape == () and r.dtype == np.float32 and r[()] == 0.5
    s, t, p, u, r = f(x[:0])
    assert (s, p, t.shape, u.shape) == (0.0, False, (0,), (2, 0))


VIEW_RESULTS = f"""
func.func @views(%x: {V}, %n: index) -> ({V}, memref<?xf64>, memref<?xf64>, {V}) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %t = memref.alloc(%n) : memref<?xf64>
  scf.for %i = %c0 to %n step %c1 {{
    %ii = arith.index_cast %i : index to i64
    %fi = arith.sitofp %ii : i64 to f64
    memref.store %fi, %t[%i] : memref<?xf64>
  }}
  %m = arith.subi %n, %c2 : index
  %inner = memref.subview %t[1] [%m] [1] : memref<?xf64> to {V}
  %nx = memref.dim %x, %c0 : {V}
  %k = arith.subi %nx, %c1 : index
  %xs = memref.subview %x[1] [%k] [1] : {V} to {V}
  func.return %inner, %t, %t, %xs : {V}, memref<?xf64>, memref<?xf64>, {V}
}}
"""


def test_views_shared_blocks_and_argument_aliases() -> None:
    # A subview of an alloc (owned: freed through the allocated pointer), the same
    # alloc returned twice (one owner, freed once) and a view of an argument (not
    # freed: the result keeps the argument alive).
    f = entry(VIEW_RESULTS, "views", [V, "index"], [V, "memref<?xf64>", "memref<?xf64>", V])
    x = np.arange(5.0)
    inner, t1, t2, xs = f(x, 6)
    np.testing.assert_array_equal(inner, [1, 2, 3, 4])
    np.testing.assert_array_equal(t1, np.arange(6.0))
    assert _owner(inner) is _owner(t1) is _owner(t2)
    inner[0] = -1.0
    assert t1[1] == -1.0 and t2[1] == -1.0
    assert _owner(xs) is x and np.shares_memory(xs, x)
    xs[0] = 100.0
    assert x[1] == 100.0
    block = weakref.ref(_owner(t1))
    del inner, t1, t2
    gc.collect()
    assert block() is None
    del x
    gc.collect()
    np.testing.assert_array_equal(xs, [100.0, 2.0, 3.0, 4.0])


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_no_leak_returning_large_arrays() -> None:
    f = entry(IOTA, "iota", ["index"], ["memref<?xf64>"])
    n = 10**6
    for _ in range(5):  # warm up the allocator
        f(n)
    gc.collect()
    before = _rss_bytes()
    for _ in range(200):
        (a,) = f(n)
        assert a[-1] == n - 1
        del a
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < 50 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB"
