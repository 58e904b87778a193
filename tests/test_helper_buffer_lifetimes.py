"""Buffer lifetimes across inlined helpers, and 0-d subscripts of traced scalars.

A helper frees its temporaries before returning; once inlined, the caller's use of the
helper's result comes after those frees.  Elementwise fusion moves the reads of a
producer's inputs down to its consumer, so it must move such frees down too: before the
fix ``np.sum(h(v))`` with ``h(v) = np.sum(v, axis=-1) * 2.0`` read the freed row sums
(primal ~1e83 instead of 210).  Every compile in this file runs
``verify-buffer-lifetimes`` after each stage (the ``_verify_every_stage`` fixture), and
the numbers are checked against numpy and central finite differences.

Second part: ``np.max`` of a 1-D array is a traced scalar; numpy lets a 0-d result be
indexed with ``[...]``, ``[()]`` and ``None`` (``mx[..., None]`` has shape ``(1,)``).
"""

import numpy as np
import pytest
from xdsl.parser import Parser

from isozyme import (
    Active,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Reverse,
    ReverseWithPrimal,
    autodiff,
)
from isozyme.compiler.context import make_context
from isozyme.compiler.passes.fuse_elementwise import FuseElementwisePass
from isozyme.compiler.passes.verify_buffer_lifetimes import verify_buffer_lifetimes
from isozyme.errors import CompileError

RNG = np.random.default_rng(9)


@pytest.fixture(autouse=True)
def _verify_every_stage(monkeypatch):
    """The use-after-free check after each stage of every compile in this file
    (``run_pipeline`` runs it when ``ISOZYME_VERIFY=1``, as tests/conftest.py sets)."""
    monkeypatch.setenv("ISOZYME_VERIFY", "1")


# --------------------------------------------------------------------------- helpers


def _rows_doubled(v):
    return np.sum(v, axis=-1) * 2.0


def sum_of_helper_reduction_scaled(v):  # the reported program
    return np.sum(_rows_doubled(v))


def _sin_of_row_sums(v):
    return np.sin(np.sum(v, axis=-1))


def sum_of_helper_reduction(v):
    return np.sum(_sin_of_row_sums(v))


def _gram_halved(v):
    return (v @ v.T) * 0.5


def sum_of_helper_matmul(v):
    return np.sum(_gram_halved(v))


def tanh_sum_of_helper_matmul(v):  # the caller's elementwise op needs the result's sizes
    return np.sum(np.tanh(_gram_halved(v)))


def _sin_of_square(v):
    t = v * v
    return np.sin(t) + 1.0


def sum_of_helper_elementwise(v):
    return np.sum(_sin_of_square(v))


def weighted_sum_of_helper_elementwise(v):
    return np.sum(_sin_of_square(v) * v)


def _shifted_rows(v):
    return _rows_doubled(v) + 1.0


def sum_of_nested_helpers(v):
    return np.sum(_shifted_rows(v)) * np.sum(np.exp(0.1 * _shifted_rows(v)))


def product_of_two_helper_calls(v):
    return np.sum(_rows_doubled(v)) * np.sum(_rows_doubled(v * v))


PROGRAMS = [
    sum_of_helper_reduction_scaled,
    sum_of_helper_reduction,
    sum_of_helper_matmul,
    tanh_sum_of_helper_matmul,
    sum_of_helper_elementwise,
    weighted_sum_of_helper_elementwise,
    sum_of_nested_helpers,
    product_of_two_helper_calls,
]


def _fd_gradient(f, v, eps=1e-6):
    g = np.zeros_like(v)
    for i in np.ndindex(v.shape):
        e = np.zeros_like(v)
        e[i] = eps
        g[i] = (f(v + e) - f(v - e)) / (2 * eps)
    return g


def test_reported_program_primal_is_exact():
    v = np.arange(15.0).reshape(5, 3)
    assert autodiff(ReverseWithPrimal, sum_of_helper_reduction_scaled, Active, Const(v)) == (
        (None,), 210.0)
    dv = np.zeros_like(v)
    assert autodiff(ReverseWithPrimal, sum_of_helper_reduction_scaled, Active,
                    Duplicated(v, dv))[1] == 210.0
    np.testing.assert_array_equal(dv, np.full((5, 3), 2.0))


def test_reported_program_on_the_emulated_gpu():
    import isozyme as iz

    v = np.arange(15.0).reshape(5, 3)
    dv = np.zeros_like(v)
    with iz.target("cuda-emu"):
        (_, primal) = autodiff(ReverseWithPrimal, sum_of_helper_reduction_scaled, Active,
                               Duplicated(v, dv))
    assert primal == 210.0
    np.testing.assert_array_equal(dv, np.full((5, 3), 2.0))


@pytest.mark.parametrize("f", PROGRAMS, ids=lambda f: f.__name__)
def test_reverse_gradient_and_primal(f):
    v = RNG.uniform(-1.0, 1.0, (5, 3))
    dv = np.zeros_like(v)
    (_, primal) = autodiff(ReverseWithPrimal, f, Active, Duplicated(v.copy(), dv))
    assert primal == pytest.approx(f(v), rel=1e-12)
    np.testing.assert_allclose(dv, _fd_gradient(f, v), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("f", PROGRAMS, ids=lambda f: f.__name__)
def test_forward_derivative_and_primal(f):
    v = RNG.uniform(-1.0, 1.0, (4, 3))
    seed = RNG.uniform(-1.0, 1.0, v.shape)
    (t, primal) = autodiff(ForwardWithPrimal, f, Duplicated(v.copy(), seed.copy()))
    assert primal == pytest.approx(f(v), rel=1e-12)
    expected = float(np.sum(_fd_gradient(f, v) * seed))
    assert t == pytest.approx(expected, rel=1e-6, abs=1e-8)
    (t2,) = autodiff(Forward, f, Duplicated(v.copy(), seed.copy()))
    assert t2 == pytest.approx(t, rel=1e-14)


# --------------------------------------------------------------------------- passes

_BUG_IR = """
func.func @f(%v: memref<?x?xf64>) -> f64 {
  %c0 = arith.constant 0 : index
  %n = memref.dim %v, %c0 : memref<?x?xf64>
  %t = memref.alloc(%n) : memref<?xf64>
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%v : memref<?x?xf64>) outs(%t : memref<?xf64>) {
  ^bb0(%a: f64, %b: f64):
    %s = arith.addf %b, %a : f64
    linalg.yield %s : f64
  }
  %u = memref.alloc(%n) : memref<?xf64>
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins(%t : memref<?xf64>) outs(%u : memref<?xf64>) {
  ^bb0(%a: f64, %b: f64):
    %two = arith.constant 2.0 : f64
    %m = arith.mulf %a, %two : f64
    linalg.yield %m : f64
  }
  memref.dealloc %t : memref<?xf64>
  %r = memref.alloc() : memref<f64>
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> ()>], iterator_types = ["reduction"]} ins(%u : memref<?xf64>) outs(%r : memref<f64>) {
  ^bb0(%a: f64, %b: f64):
    %s = arith.addf %b, %a : f64
    linalg.yield %s : f64
  }
  %x = memref.load %r[] : memref<f64>
  memref.dealloc %u : memref<?xf64>
  memref.dealloc %r : memref<f64>
  func.return %x : f64
}
"""


def _parse(text):
    ctx = make_context()
    return ctx, Parser(ctx, text).parse_module()


def test_fusion_moves_the_free_of_a_producer_input_after_the_fused_op():
    ctx, m = _parse(_BUG_IR)
    verify_buffer_lifetimes(m)
    FuseElementwisePass().apply(ctx, m)
    verify_buffer_lifetimes(m)
    fn = next(iter(m.ops))
    names = [op.name for op in fn.body.block.ops]
    # *2.0 fused into the sum: two generics left, %t freed right after the second
    assert names.count("linalg.generic") == 2
    fused = [op for op in fn.body.block.ops if op.name == "linalg.generic"][-1]
    assert fused.next_op.name == "memref.dealloc"
    assert fused.next_op.operands[0] is fused.inputs[0]  # %t, read by the fused op


def test_verifier_reports_a_use_after_free():
    _, m = _parse("""
func.func @f(%n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %t = memref.alloc(%n) : memref<?xf64>
  %view = memref.subview %t[1] [2] [1] : memref<?xf64> to memref<2xf64, strided<[1], offset: 1>>
  memref.dealloc %t : memref<?xf64>
  %x = memref.load %view[%c0] : memref<2xf64, strided<[1], offset: 1>>
  func.return %x : f64
}
""")
    with pytest.raises(CompileError, match=r"use after free: memref.load in @f"):
        verify_buffer_lifetimes(m)


def test_verifier_follows_a_free_out_of_a_branch_and_into_a_loop():
    _, m = _parse("""
func.func @f(%n: index, %c: i1) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %t = memref.alloc(%n) : memref<?xf64>
  scf.if %c {
    memref.dealloc %t : memref<?xf64>
  }
  %z = arith.constant 0.0 : f64
  %s = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (f64) {
    %x = memref.load %t[%i] : memref<?xf64>
    %y = arith.addf %acc, %x : f64
    scf.yield %y : f64
  }
  func.return %s : f64
}
""")
    with pytest.raises(CompileError, match=r"memref.load in @f uses a buffer that "
                                           r"memref.dealloc in @f already freed"):
        verify_buffer_lifetimes(m)


def test_verifier_accepts_frees_after_the_last_use_and_reports_a_double_free():
    ok = """
func.func @f(%n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %t = memref.alloc(%n) : memref<?xf64>
  %x = memref.load %t[%c0] : memref<?xf64>
  memref.dealloc %t : memref<?xf64>
  func.return %x : f64
}
"""
    _, m = _parse(ok)
    verify_buffer_lifetimes(m)
    _, m = _parse(ok.replace("  func.return", "  memref.dealloc %t : memref<?xf64>\n  func.return"))
    with pytest.raises(CompileError, match="memref.dealloc in @f uses a buffer"):
        verify_buffer_lifetimes(m)


# --------------------------------------------------------------------------- 0-d subscripts


def log_sum_exp(x):
    mx = np.max(x)
    return np.log(np.sum(np.exp(x - mx[..., None]))) + mx


def every_0d_subscript(x):
    mx = np.max(x)
    a = mx[..., None]
    b = mx[None]
    c = mx[()]
    d = mx[...]
    e = mx[None, None]
    assert len(a.shape) == 1 and len(b.shape) == 1 and len(e.shape) == 2
    return (np.sum(np.exp(x - a)) + np.sum(b * x) + c * 3.0 + d * d
            + np.sum(e * x[:, None]))


@pytest.mark.parametrize("f", [log_sum_exp, every_0d_subscript], ids=lambda f: f.__name__)
def test_0d_subscripts_primal_and_gradients(f):
    x = np.array([0.3, 1.7, -0.2, 0.9, 1.1])
    dx = np.zeros_like(x)
    (_, primal) = autodiff(ReverseWithPrimal, f, Active, Duplicated(x.copy(), dx))
    assert primal == pytest.approx(f(x), rel=1e-13)
    np.testing.assert_allclose(dx, _fd_gradient(f, x), rtol=1e-6, atol=1e-8)
    seed = RNG.uniform(-1.0, 1.0, x.shape)
    (t,) = autodiff(Forward, f, Duplicated(x.copy(), seed))
    assert t == pytest.approx(float(np.sum(_fd_gradient(f, x) * seed)), rel=1e-6)


def test_0d_subscript_of_an_integer():
    def f(x):
        k = np.argmax(x)
        return np.sum(x * k[None]) + np.sum(k[None, None] // 2)

    x = np.array([0.5, 1.0, 2.0])
    dx = np.zeros_like(x)
    (_, primal) = autodiff(ReverseWithPrimal, f, Active, Duplicated(x.copy(), dx))
    assert primal == f(x) == 8.0
    np.testing.assert_array_equal(dx, [2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    "subscript, message",
    [
        (lambda mx: mx[0], "too many indices for array: array is 0-dimensional, but 1 were"),
        (lambda mx: mx[None, 1:], "array is 0-dimensional, but 1 were indexed"),
        (lambda mx: mx[..., None, ...], "an index can only have a single ellipsis"),
    ],
)
def test_0d_subscripts_numpy_refuses_are_index_errors(subscript, message):
    def f(x):
        return np.sum(subscript(np.max(x)))

    with pytest.raises(IndexError, match=message):
        autodiff(Reverse, f, Active, Duplicated(np.ones(3), np.zeros(3)))


def test_verifier_is_an_isozyme_opt_pass():
    from isozyme.compiler.passes import available_passes

    ctx, m = _parse(_BUG_IR.replace("  %r = memref.alloc", "  %w = memref.load %t[%c0] : memref<?xf64>\n  %r = memref.alloc"))
    with pytest.raises(CompileError, match="use after free: memref.load in @f"):
        available_passes()["verify-buffer-lifetimes"]().apply(ctx, m)
