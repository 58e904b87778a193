"""``isozyme.prange``: ``for i in prange(...)`` traced into ``scf.parallel``.

Numbers: the traced IR runs through ``convert-parallel-to-for`` (the CPU's way of running
parallel loops) and the reference evaluator, or through the LLVM lowering, against the
same function run as plain Python (where ``prange`` is ``range``).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import f32, f64, i64

import isozyme
import isozyme as iz_alias
from isozyme import prange
from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import lower_to_llvm
from isozyme.compiler.lowering.convert_parallel_to_for import ConvertParallelToForPass
from isozyme.errors import TraceError, UnsupportedError
from isozyme.frontends.python import TracedFunction, array_memref_type, trace
from isozyme.runtime import compile_llvm_module

from .ir_eval import evaluate, lower_linalg
from .roundtrip import reparse

THIS_FILE = os.path.basename(__file__)
V = array_memref_type(1, f64)
M = array_memref_type(2, f64)
VI = array_memref_type(1, i64)
V32 = array_memref_type(1, f32)


def traced(fn, types) -> TracedFunction:
    t = trace(fn, types)
    reparse(t)
    return t


def ops_of(t: TracedFunction, kind: type) -> list:
    return [op for op in t.module.walk() if isinstance(op, kind)]


def sequential(t: TracedFunction):
    """The traced module with its parallel loops run as ``scf.for`` nests."""
    module = t.module.clone()
    ConvertParallelToForPass().apply(make_context(), module)
    module.verify()
    return lower_linalg(module)


def run(t: TracedFunction, *args):
    results = evaluate(sequential(t), t.func_name, *args)
    return results[0] if len(results) == 1 else results


def check(fn, types, *args, **approx):
    """Trace ``fn``, run the IR on copies of ``args`` and ``fn`` itself (plain Python)
    on other copies; results and every array argument must agree."""
    t = traced(fn, types)
    mine = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    theirs = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    got = run(t, *mine)
    expected = fn(*theirs)
    if expected is not None:
        assert got == pytest.approx(expected, **approx)
    for a, b in zip(mine, theirs):
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b, **{"rtol": approx.get("rel", 1e-15)})
    return t


# --------------------------------------------------------------------------- prange


def test_prange_is_range_outside_traced_code() -> None:
    assert isozyme.prange is prange
    assert list(prange(5)) == list(range(5))
    assert list(prange(2, 11, 3)) == [2, 5, 8]
    assert list(prange(5, 0, -2)) == [5, 3, 1]

    def f(x):
        s = 0.0
        for i in prange(len(x)):
            s += x[i]
        return s

    assert f(np.arange(4.0)) == 6.0  # the same function as plain Python


def saxpy(a, x, y):
    for i in isozyme.prange(len(x)):
        y[i] = a * x[i] + y[i]


def test_one_parallel_loop_no_sequential_loop() -> None:
    t = check(saxpy, [f64, V, V], 2.0, np.arange(5.0), np.ones(5))
    (par,) = ops_of(t, scf.ParallelOp)
    assert not ops_of(t, scf.ForOp) and not par.initVals
    assert [len(par.lowerBound), len(par.upperBound), len(par.step)] == [1, 1, 1]
    # prange(len(x)) runs to the memref.dim itself
    assert isinstance(par.upperBound[0].owner, memref.DimOp)


def _aliased(x, y):
    for i in iz_alias.prange(len(x)):
        y[i] = x[i] + 1.0


def _bare(x, y):
    for i in prange(len(x)):
        y[i] = x[i] + 1.0


def _make_closure():
    p = isozyme.prange

    def f(x, y):
        for i in p(len(x)):
            y[i] = x[i] + 1.0

    return f


@pytest.mark.parametrize("fn", [_aliased, _bare, _make_closure()],
                         ids=["module-alias", "imported-name", "closure-name"])
def test_prange_is_recognised_whatever_its_name(fn) -> None:
    t = check(fn, [V, V], np.arange(3.0), np.zeros(3))
    assert len(ops_of(t, scf.ParallelOp)) == 1 and not ops_of(t, scf.ForOp)


def test_a_local_alias_cannot_be_resolved_and_is_refused_clearly() -> None:
    def f(x, y):
        p = prange
        for i in p(len(x)):
            y[i] = x[i]

    with pytest.raises(TraceError, match=r"prange\(\) with a traced bound outside"):
        trace(f, [V, V])


def test_range_is_still_a_sequential_loop() -> None:
    def f(x):
        s = 0.0
        for i in range(len(x)):
            s += x[i]
        return s

    t = traced(f, [V])
    assert ops_of(t, scf.ForOp) and not ops_of(t, scf.ParallelOp)


@pytest.mark.parametrize(("start", "stop", "step"), [(1, 9, 3), (2, 7, 1), (8, -1, -3), (5, 2, 1)])
def test_start_stop_step(start, stop, step) -> None:
    def f(x, y, a, b, c):
        for i in prange(a, b, c):
            y[i] = x[i] * 10.0

    check(f, [V, V, i64, i64, i64], np.arange(9.0), np.zeros(9), start, stop, step)

    def g(x, y):  # Python bounds: still one parallel loop
        for i in prange(start, stop, step):
            y[i] = x[i] * 10.0

    t = check(g, [V, V], np.arange(9.0), np.zeros(9))
    assert len(ops_of(t, scf.ParallelOp)) == 1


# --------------------------------------------------------------------------- reductions


def _reduction_region_ops(par: scf.ParallelOp) -> list[str]:
    reduce_op = par.body.block.last_op
    assert isinstance(reduce_op, scf.ReduceOp)
    return [r.block.first_op.name for r in reduce_op.reductions]


def test_sum_reduction_becomes_scf_reduce_with_addf() -> None:
    def f(x):
        s = 0.5
        for i in prange(len(x)):
            s += x[i] * x[i]
        return s

    t = check(f, [V], np.arange(5.0))
    (par,) = ops_of(t, scf.ParallelOp)
    assert _reduction_region_ops(par) == ["arith.addf"]
    assert isinstance(par.initVals[0].owner, arith.ConstantOp)
    # the contribution is the product itself: no `-0.0 + x` left in the body
    reduce_op = par.body.block.last_op
    assert isinstance(reduce_op.args[0].owner, arith.MulfOp)
    assert run(t, np.zeros(0)) == 0.5  # no iteration: the initial value


def define(src: str, name: str = "f"):
    """A function from source text, its source registered with ``linecache`` (the AST
    transform reads it) under a file name of its own."""
    import linecache

    filename = f"<prange-test-{abs(hash(src))}>"
    lines = src.splitlines(keepends=True)
    linecache.cache[filename] = (len(src), None, lines, filename)
    namespace = {"prange": prange}
    exec(compile(src, filename, "exec"), namespace)  # noqa: S102
    return namespace[name], filename


@pytest.mark.parametrize(
    "update",
    ["s += x[i]", "s = s + x[i]", "s = x[i] + s", "s -= x[i]", "s = s - x[i]",
     "s *= x[i]", "s = s * x[i]", "s = x[i] * s",
     "s = max(s, x[i])", "s = max(x[i], s)", "s = min(s, x[i])", "s = min(x[i], s)"],
)
def test_reduction_forms(update: str) -> None:
    f, _ = define(f"def f(x, s):\n    for i in prange(len(x)):\n        {update}\n    return s\n")
    x = np.array([1.5, -2.0, 3.0, 0.5])
    t = traced(f, [V, f64])
    (par,) = ops_of(t, scf.ParallelOp)
    assert len(par.initVals) == 1
    assert run(t, x, 2.0) == pytest.approx(f(x, 2.0), rel=1e-15)


def test_several_reductions_of_several_kinds_and_types() -> None:
    def f(x, k):
        s = 0.0
        p = 1.0
        hi = -math.inf
        lo = math.inf
        n = 0
        for i in prange(len(x)):
            s += x[i]
            p *= x[i]
            hi = max(hi, x[i])
            lo = min(x[i], lo)
            n += k[i]
        return s, p, hi, lo, n

    x = np.array([1.5, -2.0, 3.0, 0.5])
    k = np.array([3, -1, 4, 1])
    t = traced(f, [V, VI])
    (par,) = ops_of(t, scf.ParallelOp)
    assert _reduction_region_ops(par) == [
        "arith.addf", "arith.mulf", "arith.maximumf", "arith.minimumf", "arith.addi"]
    assert par.res.types[-1] == i64
    assert tuple(run(t, x, k)) == f(x, k)


def test_max_reduction_propagates_nan_like_max_on_traced_floats() -> None:
    def f(x):
        m = -math.inf
        for i in prange(len(x)):
            m = max(m, x[i])
        return m

    assert math.isnan(run(traced(f, [V]), np.array([1.0, np.nan, 3.0])))


def test_int_initial_value_widens_to_the_body_type() -> None:
    def f(x):
        s = 0
        for i in prange(len(x)):
            s += x[i]
        return s

    t = check(f, [V32], np.array([0.25, 1.5], dtype=np.float32))
    (par,) = ops_of(t, scf.ParallelOp)
    assert par.res.types[0] == f32


def test_conditional_contribution_and_inner_sequential_loop() -> None:
    def f(a):
        s = 0.0
        for i in prange(a.shape[0]):
            if a[i, 0] > 0.0:
                s += a[i, 0]
            for j in range(a.shape[1]):
                s += a[i, j] * 2.0
        return s

    a = np.array([[1.0, 2.0, 3.0], [-1.0, 5.0, 7.0]])
    t = check(f, [M], a)
    assert len(ops_of(t, scf.ParallelOp)) == 1 and len(ops_of(t, scf.ForOp)) == 1


def test_nested_prange_with_reductions() -> None:
    def f(a, rows):
        total = 0.0
        for i in prange(a.shape[0]):
            r = 0.0
            for j in prange(a.shape[1]):
                r += a[i, j]
            rows[i] = r
            total += r
        return total

    a = np.arange(12.0).reshape(3, 4) ** 1.5
    t = check(f, [M, V], a, np.zeros(3))
    outer, inner = ops_of(t, scf.ParallelOp)
    assert inner.parent_op() is outer


def test_private_temporaries_and_python_values_in_the_body() -> None:
    def f(x, y):
        c = 3.0
        for i in prange(len(x)):
            t = x[i] * c
            u = t + 1.0
            y[i] = u * t
        return c

    check(f, [V, V], np.arange(4.0), np.zeros(4))


# --------------------------------------------------------------------------- accumulation


def _atomics(t: TracedFunction) -> list[memref.AtomicRMWOp]:
    return ops_of(t, memref.AtomicRMWOp)


def test_scatter_with_colliding_indices_is_an_atomic_add() -> None:
    def f(idx, w, h):
        for i in prange(len(idx)):
            h[idx[i]] += w[i]
            h[0] -= 0.5

    idx = np.array([0, 2, 2, 1, 2, 0, 3])
    w = np.arange(1.0, 8.0)
    t = check(f, [VI, V, V], idx, w, np.zeros(4))
    atomics = _atomics(t)
    assert len(atomics) == 2 and {a.kind.value.data for a in atomics} == {0}  # addf
    assert not ops_of(t, memref.StoreOp)
    # numbers against numpy's unbuffered add
    h = np.zeros(4)
    run(t, idx, w, h)
    expected = np.zeros(4)
    np.add.at(expected, idx, w)
    expected[0] -= 0.5 * len(idx)
    np.testing.assert_array_equal(h, expected)


def test_integer_scatter_is_an_atomic_addi() -> None:
    def f(idx, counts):
        for i in prange(len(idx)):
            counts[idx[i]] += 1

    idx = np.array([1, 1, 0, 1])
    t = check(f, [VI, VI], idx, np.zeros(2, dtype=np.int64))
    (a,) = _atomics(t)
    assert a.kind.value.data == 1 and a.result.type == i64


@pytest.mark.parametrize("index", ["i", "2 * i + 1", "i + 2", "3 * i"])
def test_accumulation_into_distinct_elements_is_a_plain_read_modify_write(index: str) -> None:
    f, _ = define(
        "def f(x, y, k):\n    n = len(x)\n    for i in prange(n):\n"
        f"        y[{index}] += x[i]\n        y[{index}] -= 0.25\n")
    t = check(f, [V, V, i64], np.arange(4.0), np.ones(12), 3)
    assert not _atomics(t)
    assert len(ops_of(t, arith.AddfOp)) == 1 and len(ops_of(t, arith.SubfOp)) >= 1


# i - 1, n - 1 - i and i + k may be negative: numpy's wrap-around can make two
# iterations meet (i + k with k = -3 and i = 0 is the element n - 3).
@pytest.mark.parametrize("index", ["i // 2", "i % 3", "i * 0", "i - 1", "n - 1 - i", "i + k"])
def test_accumulation_that_may_collide_is_atomic(index: str) -> None:
    f, _ = define(
        "def f(x, y, k):\n    n = len(x)\n    for i in prange(n):\n"
        f"        y[{index}] += x[i]\n")
    t = check(f, [V, V, i64], np.arange(1.0, 7.0), np.zeros(6), -3)
    assert len(_atomics(t)) == 1


def test_one_scatter_keeps_every_accumulation_of_the_nest_atomic() -> None:
    def f(idx, a, h):
        for i in prange(a.shape[0]):
            for j in prange(a.shape[1]):
                a[i, j] += 1.0  # distinct per (i, j) ...
            h[idx[i]] += a[i, 0]  # ... but this one may collide

    idx = np.array([1, 1, 0])
    t = check(f, [VI, M, V], idx, np.arange(6.0).reshape(3, 2), np.zeros(2))
    assert len(_atomics(t)) == 2

    def g(a, rows):
        for i in prange(a.shape[0]):
            for j in prange(a.shape[1]):
                a[i, j] += 1.0
                rows[i] += a[i, j]  # collides between iterations of the inner loop

    t = check(g, [M, V], np.arange(6.0).reshape(3, 2), np.zeros(3))
    assert len(_atomics(t)) == 2


def test_accumulation_in_sequential_code_is_unchanged() -> None:
    def f(idx, w, h):
        for i in range(len(idx)):
            h[idx[i]] += w[i]

    t = check(f, [VI, V, V], np.array([0, 0, 1]), np.ones(3), np.zeros(2))
    assert not _atomics(t)


def test_accumulation_of_a_float_into_an_int_array_and_of_slices_is_plain() -> None:
    def f(x, counts, a):
        for i in prange(len(x)):
            counts[0] += x[i]  # numpy: the sum is truncated, not x[i]
            a[i, :] += x[i]

    t = check(f, [V, VI, M], np.array([0.6, 0.7, 0.8]), np.zeros(2, dtype=np.int64),
              np.zeros((3, 2)))
    assert not _atomics(t)


# --------------------------------------------------------------------------- errors


def _line_of(fn, text: str) -> int:
    import inspect

    lines, first = inspect.getsourcelines(fn)
    return first + next(k for k, line in enumerate(lines) if text in line)


def test_loop_carried_value_is_an_error_naming_variable_and_line() -> None:
    def f(x):
        s = 0.0
        for i in prange(len(x)):
            s = s * 0.5 + x[i]
        return s

    with pytest.raises(TraceError, match=r"variable 's'.*read before that assignment") as e:
        trace(f, [V])
    assert f"{THIS_FILE}:{_line_of(f, 's = s * 0.5')}" in str(e.value)


def test_reduction_variable_read_in_the_body_is_loop_carried() -> None:
    def f(x, y):
        s = 0.0
        for i in prange(len(x)):
            s += x[i]
            y[i] = s
        return s

    with pytest.raises(TraceError, match=r"variable 's'"):
        trace(f, [V, V])


def test_mixed_reduction_kinds_are_loop_carried() -> None:
    def f(x):
        s = 1.0
        for i in prange(len(x)):
            s += x[i]
            s *= 2.0
        return s

    line = f.__code__.co_firstlineno
    with pytest.raises(TraceError, match=(
            rf"variable 's'.*not a reduction.*updated as a sum .* at line {line + 3} "
            rf"and as a product .* at line {line + 4}; a reduction has one operator")):
        trace(f, [V])


def test_reduction_needs_a_value_before_the_loop() -> None:
    def f(x):
        for i in prange(len(x)):
            s += x[i]  # noqa: F821
        return 0.0

    with pytest.raises(TraceError, match=r"variable 's'.*defined before the loop"):
        trace(f, [V])


def test_body_variable_used_after_the_loop_is_an_error() -> None:
    def f(x):
        t = 0.0
        for i in prange(len(x)):
            t = x[i] * 2.0
        return t

    with pytest.raises(TraceError, match=r"variable 't'.*no value after the loop") as e:
        trace(f, [V])
    assert f"line {_line_of(f, 'for i in prange')}" in str(e.value)


def test_loop_variable_after_the_loop_is_an_error() -> None:
    def f(x):
        for i in prange(len(x)):
            x[i] = 0.0
        return i  # noqa: B023

    with pytest.raises(TraceError, match=r"variable 'i'.*prange"):
        trace(f, [V])


def test_array_rebound_in_the_body_is_an_error() -> None:
    def f(x, y):
        for i in prange(len(x)):
            y = x
            y[i] = 1.0
        return 0.0

    with pytest.raises(TraceError, match=r"array variable 'y' re-bound inside the `prange`"):
        trace(f, [V, V])


@pytest.mark.parametrize(
    ("body", "named"),
    [("if x[i] > 0.0:\n            break", "`break`"),
     ("if x[i] > 0.0:\n            continue", "`continue`"),
     ("if x[i] > 0.0:\n            return 1.0", "`return`")],
)
def test_early_exits_are_unsupported(body: str, named: str) -> None:
    f, filename = define(
        f"def f(x):\n    for i in prange(len(x)):\n        {body}\n    return 0.0\n")
    with pytest.raises(UnsupportedError, match=f"{named} in a `prange` loop") as e:
        trace(f, [V])
    assert f"{filename}:2" in str(e.value)


def test_for_else_is_unsupported() -> None:
    def f(x):
        for i in prange(len(x)):
            x[i] = 1.0
        else:
            x[0] = 2.0
        return 0.0

    with pytest.raises(UnsupportedError, match=r"an `else:` clause in a `prange` loop"):
        trace(f, [V])


def test_break_in_an_inner_sequential_loop_is_fine() -> None:
    def f(a, y):
        for i in prange(a.shape[0]):
            y[i] = 0.0
            j = 0
            while j < a.shape[1]:
                y[i] += a[i, j]
                j += 1

    check(f, [M, V], np.arange(6.0).reshape(2, 3), np.zeros(2))


# --------------------------------------------------------------------------- through LLVM


def test_runs_through_the_llvm_lowering() -> None:
    def f(x, y):
        s = 0.0
        m = -math.inf
        for i in prange(1, len(x)):
            d = x[i] - x[i - 1]
            y[i] = d
            s += d * d
            m = max(m, d)
        return s, m

    t = traced(f, [V, V])
    module = sequential(t)
    lower_to_llvm(module)
    entry = compile_llvm_module(module).entry(t.func_name, [V, V], ["f64", "f64"])
    x = np.array([0.0, 1.0, 3.0, 2.0, 7.0])
    y = np.zeros(5)
    s, m = entry(x, y)
    d = np.diff(x)
    np.testing.assert_array_equal(y[1:], d)
    assert s == pytest.approx(np.sum(d * d), rel=1e-15) and m == d.max()


# --------------------------------------------------------------------------- public API


def _energy(x, y):
    s = 0.0
    for i in isozyme.prange(1, len(x)):
        d = x[i] - x[i - 1]
        y[i] = d
        s += d * d
    return s


def test_traced_stage_through_the_public_api_shows_scf_parallel() -> None:
    x = np.array([0.0, 1.0, 3.0, 2.0])
    text = isozyme.ir(isozyme.ReverseWithPrimal, _energy, isozyme.Active,
                      isozyme.Const(x), isozyme.Const(np.zeros(4)), stage="traced")
    assert '"scf.parallel"' in text and "scf.reduce" in text and "scf.for" not in text


def test_primal_through_the_public_api() -> None:
    x = np.array([0.0, 1.0, 3.0, 2.0, 7.0])
    y = np.zeros(5)
    derivs, value = isozyme.autodiff(isozyme.ReverseWithPrimal, _energy, isozyme.Active,
                                     isozyme.Const(x), isozyme.Const(y))
    assert derivs == (None, None)
    assert value == pytest.approx(np.sum(np.diff(x) ** 2), rel=1e-15)
    np.testing.assert_array_equal(y[1:], np.diff(x))


def test_primal_of_nested_prange_through_the_public_api() -> None:
    def f(a, rows):
        total = 0.0
        for i in prange(a.shape[0]):
            r = 0.0
            for j in prange(a.shape[1]):
                r = max(r, a[i, j])
            rows[i] = r
            total += r
        return total

    a = np.arange(12.0).reshape(3, 4) % 5.0
    rows = np.zeros(3)
    (_, value) = isozyme.autodiff(isozyme.ReverseWithPrimal, f, isozyme.Active,
                                  isozyme.Const(a), isozyme.Const(rows))
    np.testing.assert_array_equal(rows, a.max(axis=1))
    assert value == a.max(axis=1).sum()
