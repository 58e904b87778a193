"""Fills and copies on GPU targets run as kernels, not as host element loops.

* AD's shadow fills (``emit_fill``) are one ``scf.parallel`` over all dimensions; the
  CPU target turns them back into loops;
* ``expand-memref-copy{parallel}`` turns each ``memref.copy`` into one ``scf.parallel``
  (the GPU targets run it before outlining);
* ``parallelize-host-loops`` turns independent ``scf.for`` nests (fills and copies into
  fresh arrays: ``np.zeros``, ``np.copy``...) into ``scf.parallel``, and leaves every
  other loop alone;
* the ``host`` stage of reverse-mode prange kernels and of whole-array programs on
  ``cuda`` reads and writes device memory only for reductions' and loops' results,
  check statuses and rank-0 buffers outside loops; the numbers through ``cuda-emu``
  equal the CPU's (sequential loops: ``test_serial_kernels.py``).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from xdsl.dialects import builtin, func, gpu, memref, scf
from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Operation
from xdsl.parser import Parser

import isozyme as iz
from isozyme.compiler.context import make_context
from isozyme.compiler.lowering.convert_parallel_to_for import ConvertParallelToForPass
from isozyme.compiler.lowering.expand_memref_copy import ExpandMemrefCopyPass
from isozyme.compiler.targets.cuda import CudaTarget
from isozyme.compiler.targets.cuda_emu import CudaEmuTarget
from isozyme.compiler.targets.parallel_host_loops import ParallelizeHostLoopsPass

needs_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="cuda-emu needs g++")


def parse(src: str) -> builtin.ModuleOp:
    return Parser(make_context(), src).parse_module()


def names(module: builtin.ModuleOp) -> list[str]:
    return [o.name for o in module.walk()]


# -- AD's shadow fills -------------------------------------------------------------------
def local_buffer(x, y):
    t = np.zeros(x.shape[0])
    t[1:] = x[1:] * x[:-1]
    y[:] = np.sin(t)


def test_shadow_fills_are_parallel_loops() -> None:
    x, y = np.linspace(0.1, 1.0, 6), np.zeros(6)
    args = (iz.Const, iz.Duplicated(x, np.zeros(6)), iz.Duplicated(y, np.ones(6)))
    text = iz.ir(iz.Reverse, local_buffer, *args, stage="differentiated")
    # the shadow of t, zero-filled in the reverse sweep, by an scf.parallel
    fn = parse(text)
    fills = [
        p for p in fn.walk() if isinstance(p, scf.ParallelOp)
        and [o.name for o in p.body.block.ops] == ["arith.constant", "memref.store", "scf.reduce"]
    ]
    assert fills, text
    assert all(len(p.body.block.args) == 1 for p in fills)
    # the CPU target runs them as loops: no scf.parallel at the llvm stage, same numbers
    assert "scf.parallel" not in iz.ir(iz.Reverse, local_buffer, *args, stage="llvm")


def test_shadow_fill_of_a_2d_buffer_is_one_2d_parallel_loop() -> None:
    def outer(x, y):
        t = np.zeros((x.shape[0], x.shape[0]))
        t[:, :] = x[:, None] * x[None, :]
        y[:] = np.sum(t * t, axis=1)

    x = np.linspace(0.1, 1.0, 4)
    text = iz.ir(iz.Reverse, outer, iz.Const, iz.Duplicated(x, np.zeros(4)),
                 iz.Duplicated(np.zeros(4), np.ones(4)), stage="differentiated")
    fills = [
        p for p in parse(text).walk() if isinstance(p, scf.ParallelOp)
        and [o.name for o in p.body.block.ops] == ["arith.constant", "memref.store", "scf.reduce"]
    ]
    assert any(len(p.body.block.args) == 2 for p in fills), text


def test_shadow_fill_derivatives_on_cpu() -> None:
    x = np.linspace(0.1, 1.0, 6)
    dx = np.zeros(6)
    iz.autodiff(iz.Reverse, local_buffer, iz.Const, iz.Duplicated(x, dx),
                iz.Duplicated(np.zeros(6), np.ones(6)))
    t = np.zeros(6)
    t[1:] = x[1:] * x[:-1]
    c = np.cos(t)
    want = np.zeros(6)
    want[1:] += c[1:] * x[:-1]
    want[:-1] += c[1:] * x[1:]
    np.testing.assert_allclose(dx, want, rtol=1e-13)


# -- expand-memref-copy{parallel} ---------------------------------------------------------
_COPY = """
builtin.module {
  func.func @f(%a: memref<?x4xf64, strided<[?, 1], offset: ?>>, %b: memref<?x4xf64>) {
    "memref.copy"(%a, %b) : (memref<?x4xf64, strided<[?, 1], offset: ?>>, memref<?x4xf64>) -> ()
    %s = memref.alloc() : memref<f64>
    %t = memref.alloc() : memref<f64>
    "memref.copy"(%s, %t) : (memref<f64>, memref<f64>) -> ()
    func.return
  }
}
"""


def test_parallel_copy_expansion() -> None:
    module = parse(_COPY)
    ExpandMemrefCopyPass(parallel=True).apply(make_context(), module)
    ops = names(module)
    assert "memref.copy" not in ops and "scf.for" not in ops
    (par,) = [o for o in module.walk() if isinstance(o, scf.ParallelOp)]
    assert len(par.body.block.args) == 2  # both dimensions parallel
    inner = [o.name for o in par.body.block.ops]
    assert inner == ["memref.load", "memref.store", "scf.reduce"]
    # the bounds: memref.dim of the dynamic size, the static 4
    assert par.upperBound[0].owner.name == "memref.dim"  # type: ignore[attr-defined]
    assert par.upperBound[1].owner.value.value.data == 4  # type: ignore[attr-defined]
    # the rank-0 copy is one load and one store
    assert ops.count("memref.load") == 2 and ops.count("memref.store") == 2
    module.verify()


def test_sequential_copy_expansion_unchanged() -> None:
    module = parse(_COPY)
    ExpandMemrefCopyPass().apply(make_context(), module)
    assert names(module).count("scf.for") == 2 and "scf.parallel" not in names(module)


def test_gpu_stage_expands_copies_into_kernels() -> None:
    module = parse(_COPY)
    CudaTarget().compile(module, make_context(), upto="gpu")
    kernels = [o for o in module.walk() if isinstance(o, gpu.FuncOp)]
    assert len(kernels) == 1
    f = next(o for o in module.ops if isinstance(o, func.FuncOp))
    host = [o.name for o in f.walk()]
    assert "memref.copy" not in host and "scf.for" not in host
    assert "gpu.launch_func" in host


def test_gpu_kernel_passes_order() -> None:
    for target in (CudaTarget(), CudaEmuTarget()):
        order = [p.name for p in target.kernel_passes()]
        assert order == ["expand-memref-copy", "parallelize-host-loops",
                         "wrap-serial-loops", "gpu-outline-parallel-loops"]
        assert target.kernel_passes()[0].parallel  # type: ignore[attr-defined]


# -- parallelize-host-loops -----------------------------------------------------------------
def _loops(body: str, args: str = "%x: memref<?xf64>, %n: index") -> builtin.ModuleOp:
    return parse(f"""
builtin.module {{
  func.func @f({args}) {{
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %z = arith.constant 0.0 : f64
    %a = memref.alloc(%n) : memref<?xf64>
    %m = memref.alloc(%n, %n) : memref<?x?xf64>
{body}
    func.return
  }}
}}
""")


def parallelized(module: builtin.ModuleOp) -> builtin.ModuleOp:
    ParallelizeHostLoopsPass().apply(make_context(), module)
    module.verify()
    return module


def test_fill_and_copy_into_fresh_buffers_become_parallel() -> None:
    module = parallelized(_loops("""
    scf.for %i = %c0 to %n step %c1 {
      scf.for %j = %c0 to %n step %c1 {
        memref.store %z, %m[%j, %i] : memref<?x?xf64>
      }
    }
    scf.for %i = %c0 to %n step %c1 {
      %v = memref.load %x[%i] : memref<?xf64>
      %w = arith.mulf %v, %v : f64
      memref.store %w, %a[%i] : memref<?xf64>
    }
"""))
    pars = [o for o in module.walk() if isinstance(o, scf.ParallelOp)]
    assert "scf.for" not in names(module) and len(pars) == 2
    assert len(pars[0].body.block.args) == 2
    # convert-parallel-to-for gives back the original nest, first loop outermost
    ConvertParallelToForPass().apply(make_context(), module)
    module.verify()
    outer = next(o for o in module.walk() if isinstance(o, scf.ForOp))
    store = next(o for o in outer.walk() if isinstance(o, memref.StoreOp))
    inner = next(o for o in outer.body.block.ops if isinstance(o, scf.ForOp))
    assert list(store.indices) == [inner.body.block.args[0], outer.body.block.args[0]]


@pytest.mark.parametrize("body", [
    # a store into an argument (may alias what the loop reads)
    """
    scf.for %i = %c0 to %n step %c1 {
      memref.store %z, %x[%i] : memref<?xf64>
    }""",
    # reads the buffer it writes (a prefix sum)
    """
    scf.for %i = %c1 to %n step %c1 {
      %p = arith.subi %i, %c1 : index
      %v = memref.load %a[%p] : memref<?xf64>
      memref.store %v, %a[%i] : memref<?xf64>
    }""",
    # carries a value
    """
    %r = scf.for %i = %c0 to %n step %c1 iter_args(%s = %z) -> (f64) {
      memref.store %s, %a[%i] : memref<?xf64>
      %t = arith.addf %s, %s : f64
      scf.yield %t : f64
    }""",
    # every iteration writes the same element
    """
    scf.for %i = %c0 to %n step %c1 {
      memref.store %z, %a[%c0] : memref<?xf64>
    }""",
    # a diagonal: not every induction variable indexes the store
    """
    scf.for %i = %c0 to %n step %c1 {
      scf.for %j = %c0 to %n step %c1 {
        memref.store %z, %m[%i, %i] : memref<?x?xf64>
      }
    }""",
    # a transpose written twice: two index orders into one buffer
    """
    scf.for %i = %c0 to %n step %c1 {
      scf.for %j = %c0 to %n step %c1 {
        memref.store %z, %m[%i, %j] : memref<?x?xf64>
        memref.store %z, %m[%j, %i] : memref<?x?xf64>
      }
    }""",
    # a view of the fresh buffer (its layout may map iterations to one element)
    """
    %v = memref.subview %a[0] [%n] [1] : memref<?xf64> to memref<?xf64, strided<[1], offset: ?>>
    scf.for %i = %c0 to %n step %c1 {
      memref.store %z, %v[%i] : memref<?xf64, strided<[1], offset: ?>>
    }""",
    # a check stops the loop at the first failure
    """
    scf.for %i = %c0 to %n step %c1 {
      %ok = arith.cmpi ult, %i, %n : index
      isz.check %ok {kind = "index", message = "bad"}
      memref.store %z, %a[%i] : memref<?xf64>
    }""",
])
def test_dependent_or_unknown_loops_stay_sequential(body: str) -> None:
    module = parallelized(_loops(body))
    assert "scf.parallel" not in names(module)


def test_a_reversed_accumulation_at_its_own_element_becomes_parallel() -> None:
    # the reverse of a copy loop: dt[k] += du[k]; du[k] = 0 with k = n - 1 - i
    module = parallelized(_loops("""
    %b = memref.alloc(%n) : memref<?xf64>
    %last = arith.subi %n, %c1 : index
    scf.for %i = %c0 to %n step %c1 {
      %k = arith.subi %last, %i : index
      %du = memref.load %a[%k] : memref<?xf64>
      memref.store %z, %a[%k] : memref<?xf64>
      %dt = memref.load %b[%k] : memref<?xf64>
      %s = arith.addf %dt, %du : f64
      memref.store %s, %b[%k] : memref<?xf64>
    }"""))
    assert "scf.for" not in names(module) and "scf.parallel" in names(module)


def test_a_triangular_nest_parallelizes_its_inner_loop_only() -> None:
    module = parallelized(_loops("""
    scf.for %i = %c0 to %n step %c1 {
      scf.for %j = %c0 to %i step %c1 {
        memref.store %z, %m[%i, %j] : memref<?x?xf64>
      }
    }"""))
    outer = next(o for o in module.walk() if isinstance(o, scf.ForOp))
    (par,) = [o for o in outer.body.block.ops if isinstance(o, scf.ParallelOp)]
    assert len(par.body.block.args) == 1


def test_loops_inside_parallel_loops_are_left_alone() -> None:
    module = parallelized(_loops("""
    "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%k: index):
      %t = memref.alloc(%n) : memref<?xf64>
      scf.for %i = %c0 to %n step %c1 {
        memref.store %z, %t[%i] : memref<?xf64>
      }
      memref.dealloc %t : memref<?xf64>
      scf.reduce
    }) : (index, index, index) -> ()
"""))
    assert names(module).count("scf.parallel") == 1 and "scf.for" in names(module)


def test_a_time_loop_keeps_its_loop_and_its_fill_becomes_parallel() -> None:
    module = parallelized(_loops("""
    scf.for %t = %c0 to %n step %c1 {
      scf.for %i = %c0 to %n step %c1 {
        memref.store %z, %a[%i] : memref<?xf64>
      }
      %v = memref.load %a[%t] : memref<?xf64>
      memref.store %v, %x[%t] : memref<?xf64>
    }
"""))
    outer = next(o for o in module.walk() if isinstance(o, scf.ForOp))
    assert [o.name for o in outer.body.block.ops].count("scf.parallel") == 1


# -- host programs of the cuda target --------------------------------------------------------
def _in_host_loop(op: Operation) -> bool:
    p = op.parent_op()
    while p is not None:
        if isinstance(p, (scf.ForOp, scf.WhileOp)):
            return True
        p = p.parent_op()
    return False


def _host_accesses(text: str) -> list[str]:
    """The host's memref loads, stores, copies and atomics that are neither a
    reduction's or loop's result (``memref<1xT>``), nor a check status (a
    ``memref<?xi64>`` passed to a launch), nor an access of a rank-0 buffer outside
    host loops (a whole-array max's accumulator: its init and its result, one copy
    each)."""
    module = parse(text)
    assert not any(isinstance(o, gpu.ModuleOp) for o in module.ops)
    status = {
        a for o in module.walk() if isinstance(o, gpu.LaunchFuncOp)
        for a in o.kernelOperands if str(a.type) == "memref<?xi64>"
    }
    bad = []
    for o in module.walk():
        if isinstance(o, (memref.LoadOp, memref.StoreOp, memref.AtomicRMWOp)):
            ref = o.memref
            if str(ref.type).startswith("memref<1x") or ref in status:
                continue
            rank0 = isinstance(ref.type, MemRefType) and not ref.type.shape.data
            if rank0 and not _in_host_loop(o):
                continue
            bad.append(str(o))
        elif isinstance(o, memref.CopyOp):
            bad.append(str(o))
    return bad


def gather_scatter(x, idx, y):
    s = 0.0
    for i in iz.prange(len(idx)):
        y[idx[i]] += x[i] * x[i]
        s += x[idx[i]] ** 2
    return s


def smooth(x, y):
    t = np.zeros(x.shape[0])
    t[1:-1] = 0.25 * x[:-2] + 0.5 * x[1:-1] + 0.25 * x[2:]
    u = np.copy(t)
    y[:] = np.sin(u) * t


_X = np.linspace(0.1, 1.3, 9)
_IDX = np.array([0, 2, 2, 1, 3, 0, 8, 8, 5])


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_host_of_a_prange_kernel_touches_only_reductions_and_status(mode: str) -> None:
    args = (iz.Duplicated(_X, np.ones(9)), iz.Const(_IDX), iz.Duplicated(np.zeros(9), np.ones(9)))
    if mode == "reverse":
        text = iz.ir(iz.Reverse, gather_scatter, iz.Active, *args, stage="host", target="cuda")
    else:
        text = iz.ir(iz.Forward, gather_scatter, *args, stage="host", target="cuda")
    assert "gpu.launch_func" in text
    assert _host_accesses(text) == []


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_host_of_whole_array_code_has_no_element_access(mode: str) -> None:
    args = (iz.Duplicated(_X, np.ones(9)), iz.Duplicated(np.zeros(9), np.ones(9)))
    m = iz.Reverse if mode == "reverse" else iz.Forward
    text = iz.ir(m, smooth, *(([iz.Const]) if mode == "reverse" else []), *args,
                 stage="host", target="cuda")
    assert "scf.for" not in text and "gpu.launch_func" in text
    assert _host_accesses(text) == []


@needs_cxx
@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_cuda_emu_numbers_equal_the_cpu(mode: str) -> None:
    def run(target: str) -> list[np.ndarray]:
        out = []
        with iz.target(target):
            if mode == "reverse":
                dx, dy = np.zeros(9), np.ones(9)
                iz.autodiff(iz.Reverse, smooth, iz.Const, iz.Duplicated(_X, dx),
                            iz.Duplicated(np.zeros(9), dy))
                out.append(dx)
                dx2 = np.zeros(9)
                r = iz.autodiff(iz.ReverseWithPrimal, gather_scatter, iz.Active,
                                iz.Duplicated(_X, dx2), iz.Const(_IDX),
                                iz.Duplicated(np.zeros(9), np.linspace(1, 2, 9)))
                out += [dx2, np.array(r[-1])]
            else:
                y, dy = np.zeros(9), np.zeros(9)
                iz.autodiff(iz.Forward, smooth, iz.Duplicated(_X, np.linspace(1, 2, 9)),
                            iz.Duplicated(y, dy))
                out += [y, dy]
                (ds,) = iz.autodiff(iz.Forward, gather_scatter,
                                    iz.Duplicated(_X, np.linspace(1, 2, 9)), iz.Const(_IDX),
                                    iz.Duplicated(np.zeros(9), np.zeros(9)))
                out.append(np.array(ds))
        return out

    for a, b in zip(run("cpu"), run("cuda-emu")):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


# -- the CUDA C of fill, copy and slice-accumulation kernels compiles ------------------------
def nvcc_ptx(source: str, tmp_path) -> None:
    """``nvcc -ptx -arch=sm_90`` of ``source`` (fails the test on an error)."""
    import subprocess  # noqa: PLC0415

    cu = tmp_path / "k.cu"
    cu.write_text(source)
    out = subprocess.run(["nvcc", "-ptx", "-arch=sm_90", "-x", "cu", str(cu), "-o",
                          str(tmp_path / "k.ptx")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + "\n" + source


def rows_scaled(a, idx, w, b):
    for i in iz.prange(len(idx)):
        a[idx[i], :] += w[i] * b[i, :]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_nvcc_compiles_fill_copy_and_slice_kernels(tmp_path) -> None:
    args = (iz.Duplicated(_X, np.ones(9)), iz.Duplicated(np.zeros(9), np.ones(9)))
    nvcc_ptx(iz.ir(iz.Reverse, smooth, iz.Const, *args, stage="cuda", target="cuda"), tmp_path)
    module = parse(_COPY)
    CudaTarget().compile(module, make_context(), upto="gpu")
    from isozyme.compiler.gpu import print_cuda  # noqa: PLC0415

    nvcc_ptx(print_cuda(module), tmp_path)
    idx, w, b = np.array([0, 2, 2, 0]), np.arange(1.0, 5.0), np.ones((4, 2))
    src = iz.ir(iz.Reverse, rows_scaled, iz.Const,
                iz.Duplicated(np.zeros((3, 2)), np.ones((3, 2))), iz.Const(idx),
                iz.Duplicated(w, np.zeros(4)), iz.Duplicated(b, np.zeros((4, 2))),
                stage="cuda", target="cuda")
    assert "atomicAdd" in src
    nvcc_ptx(src, tmp_path)
