"""Tests of the Python frontend on numpy arrays (memref arguments and local buffers).

Each traced module is verified, printed and parsed back, and evaluated with the reference
evaluator in ``ir_eval`` (memrefs as numpy arrays, views included) against calling the
Python function on numpy arrays (inputs copied, so that in-place writes compare too).
"""

from __future__ import annotations

import inspect
import math
import os

import numpy as np
import pytest
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin, MemRefType, f32, f64, i32, i64
from xdsl.parser import Parser

from isozyme.errors import TraceError
from isozyme.frontends.python import ArrayTracer, TracedFunction, array_memref_type, trace

from .roundtrip import reparse
from .ir_eval import evaluate

THIS_FILE = os.path.basename(__file__)
A1 = array_memref_type(1, f64)
A2 = array_memref_type(2, f64)
RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- helpers


def _copy(a: object) -> object:
    return a.copy() if isinstance(a, np.ndarray) else a


def check(fn, types, *arg_sets, rel=1e-12, memory_balanced=True) -> TracedFunction:
    """Trace ``fn``; for each argument set, compare results and array contents after the
    call between the IR (reference evaluator) and Python."""
    traced = trace(fn, types)
    reparse(traced)
    for args in arg_sets:
        py_args = [_copy(a) for a in args]
        ir_args = [_copy(a) for a in args]
        # Views (transposes, steps) stay views in the IR run: copy into a view of a copy.
        for k, a in enumerate(args):
            if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
                base = np.zeros((a.shape[0] * 2,) + a.shape[1:], a.dtype) if a.ndim == 1 \
                    else np.zeros(a.shape[::-1], a.dtype)
                view = base[::2] if a.ndim == 1 else base.T
                view[...] = a
                ir_args[k] = view
        expected = fn(*py_args)
        memory: dict = {}
        results = evaluate(traced.module, traced.func_name, *ir_args, memory=memory)
        if memory_balanced:
            assert memory["allocs"] == memory["deallocs"], memory
        got = tuple(results) if traced.returns_tuple else (results[0] if results else None)
        if isinstance(expected, tuple):
            assert got == pytest.approx(expected, rel=rel)
        elif expected is not None:
            assert got == pytest.approx(expected, rel=rel), (expected, got)
        for p, q in zip(py_args, ir_args):
            if isinstance(p, np.ndarray):
                np.testing.assert_allclose(q, p, rtol=rel)
    return traced


def op_names(traced: TracedFunction) -> list[str]:
    return [op.name for op in traced.module.walk()]


def line_of(fn, text: str) -> int:
    lines, start = inspect.getsourcelines(fn)
    for k, line in enumerate(lines):
        if text in line:
            return start + k
    raise AssertionError(text)


def assert_error(fn, types, text: str, *words: str) -> None:
    with pytest.raises(TraceError) as e:
        trace(fn, types)
    message = str(e.value)
    assert f"{THIS_FILE}:{line_of(fn, text)}:" in message, message
    for w in words:
        assert w in message, message


def vec(n: int, dtype=np.float64) -> np.ndarray:
    return RNG.standard_normal(n).astype(dtype)


# --------------------------------------------------------------------------- functions


def rosenbrock_inp(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2


def total(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i]
    return s


def dot(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * y[i]
    return s


def scale_inplace(x):
    for i in range(len(x)):
        x[i] *= 2.0


def stencil(x, out):
    for i in range(1, len(x) - 1):
        out[i] = x[i - 1] - 2 * x[i] + x[i + 1]


def matvec_sum(A, v):
    s = 0.0
    n, m = A.shape
    for i in range(n):
        for j in range(m):
            s += A[i, j] * v[j]
    return s


def matvec_into(A, v, out):
    for i in range(A.shape[0]):
        acc = 0.0
        for j in range(A.shape[1]):
            acc += A[i, j] * v[j]
        out[i] = acc


def local_buffer(x):
    t = np.zeros(len(x))
    for i in range(len(x)):
        t[i] = x[i] * x[i]
    s = 0.0
    for i in range(len(x)):
        s += t[i]
    return s


def negative_index(x, k):
    return x[-1] + 2.0 * x[-2] + x[k]


def sizes(x, A):
    return len(x), x.shape[0], x.size, x.ndim, A.shape[0], A.shape[1], A.size, A.ndim, len(A)


# --------------------------------------------------------------------------- tests


def test_array_memref_type():
    assert str(A1) == "memref<?xf64, strided<[?], offset: ?>>"
    assert str(A2) == "memref<?x?xf64, strided<[?, ?], offset: ?>>"
    assert str(array_memref_type(1, f32)) == "memref<?xf32, strided<[?], offset: ?>>"
    assert str(array_memref_type(3, i64)) == "memref<?x?x?xi64, strided<[?, ?, ?], offset: ?>>"
    ctx = Context()
    ctx.load_dialect(Builtin)
    assert Parser(ctx, str(A2)).parse_attribute() == A2
    with pytest.raises(ValueError):
        array_memref_type(1, i32)
    with pytest.raises(ValueError):
        array_memref_type(0, f64)


def test_rosenbrock():
    traced = check(rosenbrock_inp, [A1], (np.array([0.5, 0.7]),), (np.array([1.0, 1.0, 3.0]),))
    names = op_names(traced)
    assert names.count("memref.load") == 3
    # x[0], x[1], x[2] of a dynamic size: one run-time bounds check each, no loop
    assert "scf.for" not in names and names.count("isz.check") == 3
    assert traced.arg_types == [A1] and traced.result_types == [f64]


def test_sum_dot_and_ir_independent_of_size():
    traced = check(total, [A1], (vec(1),), (vec(7),), (vec(100),), (vec(0),))
    names = op_names(traced)
    assert names.count("scf.for") == 1 and names.count("memref.load") == 1
    assert names.count("memref.dim") == 1
    assert "arith.maxsi" not in names  # len(x) >= 0: no clamp of the trip count
    # The IR does not depend on the array size: the type has dynamic sizes.
    assert str(trace(total, [A1]).module) == str(traced.module)
    check(dot, [A1, A1], (vec(5), vec(5)), (vec(33), vec(33)), (vec(6)[::2], vec(3)))


def test_inplace_scaling():
    traced = check(scale_inplace, [A1], (vec(4),), (vec(9),), (vec(12)[::3],))
    names = op_names(traced)
    assert names.count("memref.store") == 1 and names.count("memref.load") == 1
    assert traced.result_types == []


def test_stencil():
    traced = check(stencil, [A1, A1], (vec(10), np.zeros(10)), (vec(3), np.zeros(3)),
                   (vec(2), np.zeros(2)))
    names = op_names(traced)
    assert names.count("scf.for") == 1 and names.count("memref.load") == 3
    # i - 1 >= 0 in range(1, ...): no negative-index wrapping.
    assert "arith.select" not in names


def test_rank2():
    A = RNG.standard_normal((4, 3))
    v = vec(3)
    traced = check(matvec_sum, [A2, A1], (A, v), (A.T.copy(), vec(4)))
    check(matvec_sum, [A2, A1], (np.asfortranarray(A), v))  # a transposed view in the IR
    assert op_names(traced).count("scf.for") == 2
    check(matvec_into, [A2, A1, A1], (A, v, np.zeros(4)))


def test_local_zeros_buffer():
    traced = check(local_buffer, [A1], (vec(5),), (vec(1),))
    names = op_names(traced)
    assert names.count("memref.alloc") == 1 and names.count("memref.dealloc") == 1
    # The dealloc comes right before the function's return.
    body = list(traced.module.ops)[0].body.block.ops
    *_, dealloc, ret = body
    assert dealloc.name == "memref.dealloc" and ret.name == "func.return"
    assert "memref<?xf64>" in str(traced.module)


def test_negative_index():
    traced = check(negative_index, [A1, i64], (vec(5), 1), (vec(5), -3), (vec(3), -1))
    text = str(traced.module)
    assert text.count("arith.select") == 1  # only the traced index k is wrapped at run time
    assert "memref.dim" in text


def test_sizes():
    traced = check(sizes, [A1, A2], (vec(6), RNG.standard_normal((2, 5))))
    assert traced.returns_tuple

    def attrs(x):
        assert x.ndim == 1 and x.dtype == np.float64
        return x.size

    check(attrs, [A1], (vec(4),))


def test_dtypes_and_conversions():
    F1, I1 = array_memref_type(1, f32), array_memref_type(1, i64)

    def mixed(x, y, k):
        assert x.dtype == np.float32 and y.dtype == np.int64
        for i in range(len(y)):
            y[i] = y[i] * 2 + k
        y[0] = 7.9  # float into an int array truncates, as numpy does
        x[0] = x[1] * 2.0  # stays f32
        x[1] = 1.5
        x[2] = y[1]  # i64 -> f32
        s = 0.0
        for i in range(len(x)):
            s += x[i]
        return s

    x = vec(4, np.float32)
    y = np.arange(5, dtype=np.int64)
    traced = check(mixed, [F1, I1, i64], (x, y, 3), rel=1e-6)
    text = str(traced.module)
    assert "arith.sitofp" in text  # i64 element -> f32
    assert traced.result_types == [f64]


def test_array_constructors():
    def build(x, n):
        a = np.zeros(n)
        b = np.ones((n, 3))
        c = np.full(n, 2.5)
        d = np.zeros_like(x)
        e = np.ones_like(x)
        f = np.empty_like(x)
        g = x.copy()
        h = np.copy(x)
        r = np.arange(n)
        rf = np.arange(n, dtype=np.float32)
        r3 = np.arange(1, 7, 2)
        e32 = np.empty(4, dtype=np.float32)
        fi = np.full((2, 2), 3)
        for i in range(len(x)):
            f[i] = x[i] + 1.0
            x[i] = -1.0  # the copies are independent of x
        s = 0.0
        for i in range(n):
            s += a[i] + b[i, 2] + c[i] + r[i] + rf[i]
        for i in range(len(x)):
            s += d[i] + 10 * e[i] + 100 * f[i] + 1000 * g[i] + 10000 * h[i]
        e32[3] = 1.0
        return s + r3[2] + e32[3] + fi[1, 1] + len(r3) + b.shape[1]

    traced = check(build, [A1, i64], (vec(3), 4), (vec(5), 0), rel=1e-6)
    names = op_names(traced)
    assert names.count("memref.alloc") == 13 and names.count("memref.dealloc") == 13
    text = str(traced.module)
    assert "memref<?x?xf64>" in text and "memref<?xf32>" in text and "memref<?xi64>" in text

    def python_sizes(x):
        z = np.zeros((2, 3))  # Python sizes: still a traced buffer
        z[1, 2] = x[0]
        return z[1, 2] + z[0, 0]

    check(python_sizes, [A1], (vec(2),))


def test_alloc_in_loop_is_freed_in_loop():
    def f(x):
        s = 0.0
        for i in range(len(x)):
            t = np.full(3, x[i])
            s += t[0] + t[2]
        return s

    traced = check(f, [A1], (vec(4),))
    (for_op,) = [op for op in traced.module.walk() if op.name == "scf.for"
                 and any(o.name == "memref.alloc" for o in op.body.block.ops)]
    ops = [o.name for o in for_op.body.block.ops]
    assert ops[-2:] == ["memref.dealloc", "scf.yield"]


def test_helpers_take_arrays():
    def norm2(v):
        s = 0.0
        for i in range(len(v)):
            s += v[i] * v[i]
        return s

    def f(x):
        t = np.zeros(len(x))
        for i in range(len(x)):
            t[i] = x[i] + 1.0
        return norm2(x) + norm2(t) + norm2(x)

    traced = check(f, [A1], (vec(6),))
    funcs = [op for op in traced.module.ops]
    assert len(funcs) == 3  # f, norm2 on the strided argument, norm2 on the local buffer
    sigs = sorted(str(fn.function_type) for fn in funcs[1:])
    assert sigs == ["(memref<?xf64, strided<[?], offset: ?>>) -> f64", "(memref<?xf64>) -> f64"]


def test_helper_returning_local_array():
    def doubled(v):
        out = np.empty_like(v)
        for i in range(len(v)):
            out[i] = 2.0 * v[i]
        return out

    def same(v):
        v[0] = 5.0
        return v

    def f(x):
        d = doubled(x)
        e = same(d)
        return d[0] + e[1] + same(x)[0]

    traced = check(f, [A1], (vec(3),))
    text = str(traced.module)
    assert text.count("memref.alloc") == 1 and text.count("memref.dealloc") == 1
    # the caller frees the returned buffer
    main = [op for op in traced.module.ops if op.sym_name.data == "f"][0]
    assert [o.name for o in main.body.block.ops][-2:] == ["memref.dealloc", "func.return"]


def test_arrays_in_branches_and_while():
    def f(x, c):
        if c > 0.0:
            x[0] = c
        else:
            x[1] = c
        k = 0
        while x[k] < 100.0:
            x[k] = x[k] * 2.0 + 1.0
        y = x
        y[2] = y[2] + 1.0
        return x[0] + x[1]

    check(f, [A1, f64], (np.array([1.0, 2.0, 3.0]), 2.0), (np.array([1.0, 2.0, 3.0]), -2.0))


def test_array_tracer_is_exported():
    seen = {}

    def f(x):
        seen["x"] = x
        return x[0]

    trace(f, [A1])
    assert isinstance(seen["x"], ArrayTracer)


# --------------------------------------------------------------------------- errors


def err_mul(x):
    return np.median(x)  # ERR


def err_rmul(x, s):
    return np.sort(x * s)  # ERR


def err_sin(x):
    return math.sin(x)  # ERR


def err_sum(x):
    return np.linalg.slogdet(x)  # ERR


def err_method(x):
    return x.argsort()  # ERR


def err_slice(x, k):
    return x[::k][0]  # ERR


def err_row(A):
    return A[[0.0, 1.0]][0, 0]  # ERR


def err_float_index(x, t):
    return x[t]  # ERR


def err_builtin_sum(x):
    return sum(x)  # ERR


@pytest.mark.parametrize(
    "fn,types,words",
    [
        (err_mul, [A1], ["median", "this whole-array numpy operation is not supported; "
                               "see docs/supported.md for the numpy functions"]),
        (err_rmul, [A1, f64], ["sort", "whole-array"]),
        (err_sin, [A1], ["math.sin", "whole-array"]),
        (err_sum, [A1], ["slogdet", "whole-array"]),
        (err_method, [A1], ["argsort", "whole-array"]),
        (err_slice, [A1, i64], ["slice step that is traced"]),
        (err_row, [A2], ["index array of dtype float64", "integer (or boolean)"]),
        (err_float_index, [A1, f64], ["float"]),
        (err_builtin_sum, [A1], ["iteration over a traced array"]),
    ],
)
def test_errors(fn, types, words):
    assert_error(fn, types, "ERR", *words)


def test_bad_argument_type():
    with pytest.raises(TraceError):
        trace(total, [MemRefType(i32, [3])])


def test_static_sizes_unroll():
    # A memref type with static sizes (not what array_memref_type gives) also traces:
    # sizes are Python ints and range(len(x)) runs in Python.
    traced = check(total, [MemRefType(f64, [3])], (vec(3),))
    assert "scf.for" not in op_names(traced)


# --------------------------------------------------------------------------- shared programs


def _array_programs():
    import importlib.util  # noqa: PLC0415

    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "array_programs.py")
    if not os.path.exists(path):
        return None
    spec = importlib.util.spec_from_file_location("_iz_array_programs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_PROGRAM_ARGS = {
    "rosenbrock_inp": ([A1], lambda: [vec(2)]),
    "rosenbrock_loop": ([A1], lambda: [vec(6)]),
    "sum_sq": ([A1], lambda: [vec(6)]),
    "dot": ([A1, A1], lambda: [vec(6), vec(6)]),
    "scale_in_place": ([A1, f64], lambda: [vec(6), 1.5]),
    "matvec_norm": ([A2, A1], lambda: [RNG.standard_normal((3, 4)), vec(4)]),
    "local_buffer": ([A1], lambda: [vec(6)]),
    "stencil_steps": ([A1, i64], lambda: [vec(7), 3]),
    "last_element": ([A1], lambda: [vec(6)]),
    "branchy": ([A1], lambda: [vec(6)]),
    "while_over_array": ([A1], lambda: [vec(6) + 1.0]),
    "write_output": ([A1, A1], lambda: [vec(6), np.zeros(6)]),
}


@pytest.mark.parametrize("name", sorted(_PROGRAM_ARGS))
def test_array_programs(name):
    programs = _array_programs()
    assert programs is not None and hasattr(programs, name), name
    types, make = _PROGRAM_ARGS[name]
    check(getattr(programs, name), types, make(), make())
