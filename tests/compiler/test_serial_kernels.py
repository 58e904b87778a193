"""``wrap-serial-loops``: sequential host loops over memory run as one-thread kernels.

* the pass on hand-written IR: which loops it wraps (memory, kernel ops only), which it
  leaves on the host (scalars only, allocations, calls, loops in kernels, loops around
  kernels: their inner serial loops are wrapped), loop results through ``memref<1xT>``
  buffers (``index`` and ``i1`` through ``i64``), ``scf.while``;
* the ``host`` stage on ``cuda`` of ``np.max(x * x)``, ``max - min``, a scan
  ``y[i] = y[i - 1] + x[i]**2`` and a loop with a result, in Reverse and Forward mode,
  touches no device memory element by element (the checker of
  ``test_device_fills.py``);
* the same programs through ``cuda-emu`` give the CPU's numbers and derivatives, and
  those agree with finite differences; a failing bounds check in a wrapped loop raises
  the CPU's error after the same writes;
* the CPU target never runs the pass.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from xdsl.dialects import arith, builtin, gpu, memref, scf

import isozyme as iz
from isozyme.compiler.context import make_context
from isozyme.compiler.targets.cpu import CpuTarget
from isozyme.compiler.targets.cuda import CudaTarget
from isozyme.compiler.targets.serial_kernels import WrapSerialLoopsPass
from tests.compiler.test_device_fills import _host_accesses, names, parse

needs_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="cuda-emu needs g++")


def _module(body: str, results: str = "") -> builtin.ModuleOp:
    return parse(f"""
builtin.module {{
  func.func private @g(f64) -> f64
  func.func @f(%x: memref<?xf64>, %acc: memref<f64>, %n: index){results} {{
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %z = arith.constant 0.0 : f64
{body}
  }}
}}
""")


def wrapped(module: builtin.ModuleOp) -> builtin.ModuleOp:
    WrapSerialLoopsPass().apply(make_context(), module)
    module.verify()
    return module


def _wrappers(module: builtin.ModuleOp) -> list[scf.ParallelOp]:
    """The one-iteration ``scf.parallel`` ops of ``module``."""
    out = []
    for p in module.walk():
        if isinstance(p, scf.ParallelOp) and [_const(p.lowerBound[0]), _const(
                p.upperBound[0]), _const(p.step[0])] == [0, 1, 1]:
            out.append(p)
    return out


def _const(v) -> int | None:  # noqa: ANN001
    owner = v.owner
    return owner.value.value.data if isinstance(owner, arith.ConstantOp) else None


_MAX = """
    memref.store %z, %acc[] : memref<f64>
    scf.for %i = %c0 to %n step %c1 {
      %v = memref.load %x[%i] : memref<?xf64>
      %a = memref.load %acc[] : memref<f64>
      %m = arith.maximumf %a, %v : f64
      memref.store %m, %acc[] : memref<f64>
    }
    %r = memref.load %acc[] : memref<f64>
    func.return %r : f64"""


def test_a_reduction_over_a_rank0_accumulator_is_wrapped() -> None:
    module = wrapped(_module(_MAX, " -> f64"))
    (par,) = _wrappers(module)
    body = [o.name for o in par.body.block.ops]
    assert body == ["scf.for", "scf.reduce"]
    # the init store and the final load stay on the host, around the wrapper
    f = module.body.block.last_op
    top = [o.name for o in f.body.block.ops]  # type: ignore[union-attr]
    assert top.index("memref.store") < top.index("scf.parallel") < top.index("memref.load")


_LOCAL_MAX = """
    %acc2 = memref.alloc() : memref<f64>
    memref.store %z, %acc2[] : memref<f64>
    scf.for %i = %c0 to %n step %c1 {
      %v = memref.load %x[%i] : memref<?xf64>
      %a = memref.load %acc2[] : memref<f64>
      memref.store %a, %x[%i] : memref<?xf64>
      %m = arith.maximumf %a, %v : f64
      memref.store %m, %acc2[] : memref<f64>
      %b = memref.load %acc2[] : memref<f64>
      %w = arith.mulf %b, %v : f64
      memref.store %w, %acc2[] : memref<f64>
    }
    %r = memref.load %acc2[] : memref<f64>
    memref.dealloc %acc2 : memref<f64>
    func.return %r : f64"""


def test_a_fresh_rank0_accumulator_is_carried_in_iter_args() -> None:
    module = wrapped(_module(_LOCAL_MAX, " -> f64"))
    (par,) = _wrappers(module)
    assert [o.name for o in par.body.block.ops] == [
        "memref.load", "scf.for", "memref.store", "scf.reduce"]
    loop = par.body.block.ops.first.next_op  # type: ignore[union-attr]
    assert isinstance(loop, scf.ForOp) and len(loop.iter_args) == 1
    acc = loop.iter_args[0].owner.memref  # type: ignore[attr-defined]
    inside = [o for o in loop.walk() if isinstance(o, (memref.LoadOp, memref.StoreOp))]
    # x[i] read and written; the accumulator lives in registers
    assert len(inside) == 2 and all(o.memref is not acc for o in inside)
    # the chain: load -> max -> mul is yielded; the stored x[i] is the carried value
    y = loop.body.block.last_op
    mul = y.operands[0].owner  # type: ignore[union-attr]
    assert mul.name == "arith.mulf"
    assert mul.operands[0].owner.name == "arith.maximumf"
    store_x = next(o for o in inside if isinstance(o, memref.StoreOp))
    assert store_x.value is loop.body.block.args[1]
    store_after = par.body.block.ops.first.next_op.next_op  # type: ignore[union-attr]
    assert store_after.value is loop.results[0] and store_after.memref is acc


@pytest.mark.parametrize("change", [
    # an argument may alias x
    ("%acc2 = memref.alloc() : memref<f64>",
     '%acc2 = "memref.cast"(%acc) : (memref<f64>) -> memref<f64>'),
    # accessed in a branch of the body: not in body order
    ("      %b = memref.load %acc2[] : memref<f64>\n",
     "      %b = scf.if %t -> (f64) {\n        %b0 = memref.load %acc2[] : memref<f64>\n"
     "        scf.yield %b0 : f64\n      } else {\n        scf.yield %z : f64\n      }\n"),
    # a view of it
    ("    %r = memref.load %acc2[]",
     "    %e = memref.expand_shape %acc2 [] output_shape [1] : memref<f64> into memref<1xf64>\n"
     "    %r = memref.load %acc2[]"),
])
def test_accumulators_that_may_alias_stay_in_memory(change: tuple[str, str]) -> None:
    src = _LOCAL_MAX.replace(*change)
    assert src != _LOCAL_MAX
    module = wrapped(_module("    %t = arith.constant true\n" + src, " -> f64"))
    (par,) = _wrappers(module)
    loop = next(o for o in par.body.block.ops if isinstance(o, scf.ForOp))
    assert not loop.iter_args


def test_the_outlined_kernel_runs_the_loop_and_the_host_has_no_loop() -> None:
    module = _module(_MAX, " -> f64")
    CudaTarget().compile(module, make_context(), upto="gpu")
    (kernel,) = [o for o in module.walk() if isinstance(o, gpu.FuncOp)]
    assert any(isinstance(o, scf.ForOp) for o in kernel.walk())
    host = [o for o in module.walk() if not any(
        isinstance(p, gpu.ModuleOp) for p in _ancestors(o))]
    assert not any(isinstance(o, (scf.ForOp, scf.ParallelOp)) for o in host)
    assert sum(isinstance(o, gpu.LaunchFuncOp) for o in host) == 1


def _ancestors(op):  # noqa: ANN001, ANN202
    p = op.parent_op()
    while p is not None:
        yield p
        p = p.parent_op()


def test_loop_results_go_through_one_element_buffers() -> None:
    module = wrapped(_module("""
    %r:3 = scf.for %i = %c0 to %n step %c1 iter_args(%s = %z, %k = %c0, %b = %t) -> (f64, index, i1) {
      %v = memref.load %x[%i] : memref<?xf64>
      %s2 = arith.addf %s, %v : f64
      %k2 = arith.addi %k, %c1 : index
      %b2 = arith.cmpf ogt, %v, %z : f64
      scf.yield %s2, %k2, %b2 : f64, index, i1
    }
    %w = arith.select %r#2, %r#0, %z : f64
    memref.store %w, %x[%r#1] : memref<?xf64>
    func.return""".replace("    %r:3", "    %t = arith.constant true\n    %r:3")))
    (par,) = _wrappers(module)
    stores = [o for o in par.body.block.ops if isinstance(o, memref.StoreOp)]
    assert [str(s.memref.type) for s in stores] == ["memref<1xf64>", "memref<1xi64>",
                                                   "memref<1xi64>"]
    assert [o.name for o in par.body.block.ops].count("arith.index_cast") == 1
    assert [o.name for o in par.body.block.ops].count("arith.extui") == 1
    # after the wrapper: one load each, cast back, freed; the uses read them
    f = module.body.block.last_op
    after = list(f.body.block.ops)  # type: ignore[union-attr]
    after = after[after.index(par) + 1:]
    ops = [o.name for o in after]
    assert ops.count("memref.load") == 3 and ops.count("memref.dealloc") == 3
    assert "arith.index_cast" in ops and "arith.trunci" in ops
    sel = next(o for o in after if o.name == "arith.select")
    assert all(v.owner in after for v in sel.operands[:2])


def test_unused_results_get_no_buffer() -> None:
    module = wrapped(_module("""
    %r = scf.for %i = %c0 to %n step %c1 iter_args(%s = %z) -> (f64) {
      %v = memref.load %x[%i] : memref<?xf64>
      %s2 = arith.addf %s, %v : f64
      memref.store %s2, %x[%i] : memref<?xf64>
      scf.yield %s2 : f64
    }
    func.return"""))
    assert len(_wrappers(module)) == 1
    assert "memref.alloc" not in names(module)


def test_a_while_loop_over_memory_is_wrapped() -> None:
    module = wrapped(_module("""
    %r = scf.while (%i = %c0) : (index) -> index {
      %in = arith.cmpi slt, %i, %n : index
      %v = memref.load %x[%i] : memref<?xf64>
      %pos = arith.cmpf ogt, %v, %z : f64
      %go = arith.andi %in, %pos : i1
      scf.condition(%go) %i : index
    } do {
    ^bb0(%j: index):
      %j2 = arith.addi %j, %c1 : index
      scf.yield %j2 : index
    }
    memref.store %z, %x[%r] : memref<?xf64>
    func.return"""))
    (par,) = _wrappers(module)
    assert isinstance(par.body.block.first_op, scf.WhileOp)


@pytest.mark.parametrize("body", [
    # scalars only: nothing to copy
    """
    %r = scf.for %i = %c0 to %n step %c1 iter_args(%s = %z) -> (f64) {
      %s2 = arith.addf %s, %s : f64
      scf.yield %s2 : f64
    }""",
    # an allocation in the body: a kernel has no allocator
    """
    scf.for %i = %c0 to %n step %c1 {
      %t = memref.alloc(%n) : memref<?xf64>
      memref.store %z, %t[%i] : memref<?xf64>
      memref.dealloc %t : memref<?xf64>
    }""",
    # a call: a kernel calls no host function
    """
    scf.for %i = %c0 to %n step %c1 {
      %v = memref.load %x[%i] : memref<?xf64>
      %w = func.call @g(%v) : (f64) -> f64
      memref.store %w, %x[%i] : memref<?xf64>
    }""",
    # a memref.copy (the printer has none; expand-memref-copy runs first)
    """
    scf.for %i = %c0 to %n step %c1 {
      "memref.copy"(%acc, %acc) : (memref<f64>, memref<f64>) -> ()
    }""",
    # inside a kernel already
    """
    "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%k: index):
      scf.for %i = %c0 to %n step %c1 {
        %v = memref.load %x[%i] : memref<?xf64>
        memref.store %v, %x[%k] : memref<?xf64>
      }
      scf.reduce
    }) : (index, index, index) -> ()""",
])
def test_loops_that_stay_on_the_host(body: str) -> None:
    module = _module(body + "\n    func.return")
    before = names(module)
    module = wrapped(module)
    assert names(module) == before


def test_a_time_loop_around_a_kernel_stays_and_its_serial_loop_is_wrapped() -> None:
    module = wrapped(_module("""
    scf.for %t = %c0 to %n step %c1 {
      "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
      ^bb0(%k: index):
        memref.store %z, %x[%k] : memref<?xf64>
        scf.reduce
      }) : (index, index, index) -> ()
      scf.for %i = %c1 to %n step %c1 {
        %p = arith.subi %i, %c1 : index
        %v = memref.load %x[%p] : memref<?xf64>
        memref.store %v, %x[%i] : memref<?xf64>
      }
    }
    func.return"""))
    f = module.body.block.last_op
    (time,) = [o for o in f.body.block.ops if isinstance(o, scf.ForOp)]  # type: ignore[union-attr]
    inner = [o for o in time.body.block.ops if isinstance(o, scf.ParallelOp)]
    assert len(inner) == 2 and _wrappers(module) == [inner[1]]
    assert isinstance(inner[1].body.block.first_op, scf.ForOp)


def test_a_loop_with_checks_is_wrapped_and_its_kernel_reports_them() -> None:
    module = _module("""
    scf.for %i = %c0 to %n step %c1 {
      %j = arith.addi %i, %c1 : index
      %d = memref.dim %x, %c0 : memref<?xf64>
      %ok = arith.cmpi ult, %j, %d : index
      isz.check %ok {kind = "index", message = "bad"}
      %v = memref.load %x[%i] : memref<?xf64>
      memref.store %v, %x[%j] : memref<?xf64>
    }
    func.return""")
    CudaTarget().compile(module, make_context(), upto="gpu")
    ops = names(module)
    assert "isz_gpu.report_failure" in ops and ops.count("isz.check") == 1


def test_the_cpu_target_does_not_run_the_pass() -> None:
    assert "wrap-serial-loops" not in [p.name for p in CpuTarget().lowering_passes()]
    text = iz.ir(iz.Reverse, maxsq, iz.Active, iz.Duplicated(_X.copy(), np.zeros(7)),
                 stage="llvm", target="cpu")
    assert "scf.parallel" not in text and "gpu." not in text


# -- programs -------------------------------------------------------------------------------
def maxsq(x):
    return np.max(x * x)


def max_min(x):
    return np.max(x * x) - np.min(np.sin(x)) + np.prod(x)


def scan(x, y):
    for i in range(1, x.shape[0]):
        y[i] = y[i - 1] + x[i] * x[i]


def running(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s = 0.5 * s + x[i]
        y[i] = s * s
    return s


_X = np.array([0.3, -1.2, 0.7, 1.1, -0.4, 0.9, 0.2])
_SEED = np.linspace(-1.0, 1.5, 7)
_H = 1e-6


def _scalar_args(f, mode: str) -> tuple:  # noqa: ANN001
    x = _X.copy()
    if mode == "reverse":
        return (iz.Reverse, f, iz.Active, iz.Duplicated(x, np.zeros(7)))
    return (iz.Forward, f, iz.Duplicated(x, _SEED.copy()))


def _array_args(f, mode: str) -> tuple:  # noqa: ANN001
    x, y = _X.copy(), np.ones(7)
    if mode == "reverse":
        ret = iz.Active if f is running else iz.Const
        return (iz.Reverse, f, ret, iz.Duplicated(x, np.zeros(7)),
                iz.Duplicated(y, _SEED.copy()))
    return (iz.Forward, f, iz.Duplicated(x, _SEED.copy()), iz.Duplicated(y, np.zeros(7)))


_PROGRAMS = {"maxsq": (maxsq, _scalar_args), "max_min": (max_min, _scalar_args),
             "scan": (scan, _array_args), "running": (running, _array_args)}


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", sorted(_PROGRAMS))
def test_host_stage_has_no_element_loop(name: str, mode: str) -> None:
    f, args = _PROGRAMS[name]
    text = iz.ir(*args(f, mode), stage="host", target="cuda")
    assert "gpu.launch_func" in text
    assert "scf.for" not in text and "scf.while" not in text
    assert _host_accesses(text) == []


def _fd(g, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Central differences of the scalar function ``g`` at ``x``."""
    out = np.zeros_like(x)
    for k in range(x.size):
        e = np.zeros_like(x)
        e[k] = _H
        out[k] = (g(x + e) - g(x - e)) / (2 * _H)
    return out


def _run(name: str, mode: str, target: str, dtype=np.float64) -> list[np.ndarray]:  # noqa: ANN001
    """What a call of program ``name`` in ``mode`` on ``target`` computes: results,
    derivatives and arrays written."""
    f, _ = _PROGRAMS[name]
    x, seed = _X.astype(dtype), _SEED.astype(dtype)
    with iz.target(target):
        if f in (maxsq, max_min):
            if mode == "reverse":
                dx = np.zeros_like(x)
                (_, val) = iz.autodiff(iz.ReverseWithPrimal, f, iz.Active,
                                       iz.Duplicated(x, dx))
                return [dx, np.array(val)]
            (t, val) = iz.autodiff(iz.ForwardWithPrimal, f, iz.Duplicated(x, seed.copy()))
            return [np.array(t), np.array(val)]
        y = np.ones(7, dtype)
        if mode == "reverse":
            dx, dy = np.zeros_like(x), seed.copy()
            res = iz.autodiff(iz.ReverseWithPrimal, f,
                              iz.Active if f is running else iz.Const,
                              iz.Duplicated(x, dx), iz.Duplicated(y, dy))
            return [dx, dy, y, np.array(res[-1] if f is running else 0.0)]
        ty = np.zeros_like(y)
        res = iz.autodiff(iz.ForwardWithPrimal, f, iz.Duplicated(x, seed.copy()),
                          iz.Duplicated(y, ty))
        return [ty, y, np.array(res[0] if f is running else 0.0)]


def _loss(name: str):  # noqa: ANN202
    """The scalar whose gradient the reverse calls compute (the seed weights ``y``)."""
    f, _ = _PROGRAMS[name]
    if f in (maxsq, max_min):
        return f

    def loss(x: np.ndarray) -> float:
        y = np.ones(7)
        s = f(x, y)
        return float(np.dot(_SEED, y)) + (s if f is running else 0.0)
    return loss


@needs_cxx
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", sorted(_PROGRAMS))
def test_cuda_emu_equals_the_cpu_and_finite_differences(name: str, mode: str) -> None:
    emu, cpu = _run(name, mode, "cuda-emu"), _run(name, mode, "cpu")
    for a, b in zip(emu, cpu):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    loss = _loss(name)
    grad = _fd(loss, _X.copy())
    if mode == "reverse":
        np.testing.assert_allclose(emu[0], grad, rtol=1e-6, atol=1e-8)
    elif name in ("maxsq", "max_min"):
        assert float(emu[0]) == pytest.approx(float(grad @ _SEED), rel=1e-6)
    else:  # the tangent of y along the seed, and of the result
        f, _ = _PROGRAMS[name]

        def ys(x: np.ndarray) -> np.ndarray:
            y = np.ones(7)
            f(x, y)
            return y
        want = (ys(_X + _H * _SEED) - ys(_X - _H * _SEED)) / (2 * _H)
        np.testing.assert_allclose(emu[0], want, rtol=1e-6, atol=1e-8)


@needs_cxx
@pytest.mark.parametrize("name", ["max_min", "running"])
def test_float32_through_cuda_emu(name: str) -> None:
    for mode in ("reverse", "forward"):
        emu = _run(name, mode, "cuda-emu", np.float32)
        cpu = _run(name, mode, "cpu", np.float32)
        for a, b in zip(emu, cpu):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def shifted(x, y):
    for i in range(x.shape[0]):
        y[i + 1] = y[i] + x[i]


@needs_cxx
def test_a_failing_check_in_a_wrapped_loop_raises_the_cpu_error() -> None:
    errors = []
    for target in ("cpu", "cuda-emu"):
        x, y = np.arange(1.0, 6.0), np.zeros(5)
        with iz.target(target), pytest.raises(IndexError) as info:
            iz.autodiff(iz.Forward, shifted, iz.Duplicated(x, np.ones(5)),
                        iz.Duplicated(y, np.zeros(5)))
        errors.append((type(info.value), str(info.value), y.tolist()))
    assert errors[0] == errors[1]
    assert "index 5 is out of bounds" in errors[0][1]
    text = iz.ir(iz.Forward, shifted, iz.Duplicated(np.ones(5), np.ones(5)),
                 iz.Duplicated(np.zeros(5), np.zeros(5)), stage="host", target="cuda")
    assert "scf.for" not in text and "isz.check" in text
