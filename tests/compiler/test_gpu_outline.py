"""``gpu-outline-parallel-loops``: the structure of the kernels and launches it makes.

Each test parses hand-written IR with ``scf.parallel`` loops, runs the pass and checks
the ``gpu.module``/``gpu.func``/``gpu.launch_func`` structure, that the module
verifies, and that the printed IR parses back to the same text (with ``mlir-opt`` too
when it is on PATH).  The numbers the kernels compute are checked through the CUDA
emulator in ``test_cuda_emu_kernels.py``.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from xdsl.dialects import arith, func, gpu, memref, scf
from xdsl.dialects.builtin import DYNAMIC_INDEX, IntegerAttr, MemRefType, ModuleOp, f64, i64
from xdsl.dialects.gpu import GPU
from xdsl.parser import Parser

import isozyme as iz
from isozyme.compiler.context import make_context
from isozyme.compiler.gpu import BLOCK_SIZE, KERNEL_MODULE, OutlineParallelLoopsPass, print_cuda
from isozyme.compiler.gpu.outline_parallel_loops import (
    MAX_REDUCTION_BLOCKS,
    WARP_AGGREGATE_ATTR,
)
from isozyme.compiler.lowering.convert_parallel_to_for import ATOMIC_RMW_KIND
from isozyme.dialects.gpu_ext import IszGpu
from isozyme.errors import UnsupportedError


def context():
    ctx = make_context()
    assert {GPU.name, IszGpu.name} <= set(ctx.registered_dialect_names)  # the kernels'
    return ctx


def outlined(src: str) -> ModuleOp:
    module = Parser(context(), src).parse_module()
    module.verify()
    OutlineParallelLoopsPass().apply(context(), module)
    module.verify()
    return module


def kernels(module: ModuleOp) -> list[gpu.FuncOp]:
    gmods = [op for op in module.ops if isinstance(op, gpu.ModuleOp)]
    assert len(gmods) == 1
    assert gmods[0].sym_name.data == KERNEL_MODULE
    return list(gmods[0].body.block.ops)


def launches(module: ModuleOp) -> list[gpu.LaunchFuncOp]:
    return [op for op in module.walk() if isinstance(op, gpu.LaunchFuncOp)]


def constant_of(v) -> int | None:
    owner = v.owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr):
        return owner.value.value.data
    return None


REDUCE_2D = """
func.func @f(%a: memref<?x?xf64>, %n: index, %m: index, %s: f64) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %z = arith.constant 0.0 : f64
  %r = "scf.parallel"(%c0, %c1, %n, %m, %c1, %c2, %z)
       <{operandSegmentSizes = array<i32: 2, 2, 2, 1>}> ({
  ^bb0(%i: index, %j: index):
    %x = memref.load %a[%i, %j] : memref<?x?xf64>
    %y = arith.mulf %x, %s : f64
    memref.store %y, %a[%i, %j] : memref<?x?xf64>
    scf.reduce(%x : f64) {
    ^bb1(%l: f64, %rr: f64):
      %q = arith.addf %l, %rr : f64
      scf.reduce.return %q : f64
    }
  }) : (index, index, index, index, index, index, f64) -> f64
  return %r : f64
}
"""


def test_kernel_launch_and_reduction_buffer():
    module = outlined(REDUCE_2D)
    assert "gpu.container_module" in module.attributes
    (k,) = kernels(module)
    assert k.sym_name.data == "f_k0" and k.kernel is not None
    host = next(op for op in module.ops if isinstance(op, func.FuncOp))
    assert not any(isinstance(op, scf.ParallelOp) for op in host.walk())
    (launch,) = launches(module)
    assert launch.kernel.string_value() == f"{KERNEL_MODULE}.f_k0"
    # 1-D geometry: 256 threads per block, y and z of 1.
    assert constant_of(launch.blockSizeX) == BLOCK_SIZE
    for v in (launch.gridSizeY, launch.gridSizeZ, launch.blockSizeY, launch.blockSizeZ):
        assert constant_of(v) == 1
    # A kernel with reductions: min(ceildiv(total, 256), MAX_REDUCTION_BLOCKS) blocks.
    grid = launch.gridSizeX.owner
    assert isinstance(grid, arith.MinSIOp)
    assert isinstance(grid.lhs.owner, arith.CeilDivSIOp)
    assert constant_of(grid.lhs.owner.rhs) == BLOCK_SIZE
    assert constant_of(grid.rhs) == MAX_REDUCTION_BLOCKS
    # The launch is skipped when there is no iteration.
    guard = launch.parent_op()
    assert isinstance(guard, scf.IfOp)
    assert isinstance(guard.cond.owner, arith.CmpiOp)
    # Arguments: captured %a and %s (first use order), total, the count of dim 1
    # (lbs/steps are constants: sunk), then the reduction buffer.
    args = list(launch.kernelOperands)
    assert args[0] is host.body.block.args[0] and args[1] is host.body.block.args[3]
    assert isinstance(args[-1].type, MemRefType) and args[-1].type.get_shape() == (1,)
    assert len(args) == 5
    assert [a.type for a in args] == list(k.function_type.inputs)
    # The buffer: alloc, store of the init value, load after the launch, dealloc.
    buf = args[-1]
    assert isinstance(buf.owner, memref.AllocOp)
    users = {type(u.operation) for u in buf.uses}
    assert {memref.StoreOp, memref.LoadOp, memref.DeallocOp, gpu.LaunchFuncOp} <= users
    ret = host.body.block.last_op
    assert isinstance(ret.operands[0].owner, memref.LoadOp)
    # The kernel: linear id, a grid-stride scf.for carrying the partial sum from the
    # identity -0.0, then the atomic addf of the partial, after the loop.
    names = [op.name for op in k.walk()]
    for n in ("gpu.block_id", "gpu.block_dim", "gpu.thread_id", "gpu.grid_dim",
              "scf.for", "arith.remui", "arith.divui", "gpu.return"):
        assert n in names, n
    assert "scf.if" not in names
    (atomic,) = [op for op in k.walk() if isinstance(op, memref.AtomicRMWOp)]
    assert atomic.kind.value.data == ATOMIC_RMW_KIND["addf"]
    assert atomic.value.type == f64
    # Every thread reaches the atomic (it is in the kernel's entry block, after the
    # loop); the printer may combine a warp first.
    assert atomic.parent_op() is k and WARP_AGGREGATE_ATTR in atomic.attributes
    stride_loop = atomic.value.owner
    assert isinstance(stride_loop, scf.ForOp) and stride_loop.parent_op() is k
    assert stride_loop.next_op is not None
    # for (k = id; k < total; k += gridDim.x * blockDim.x)
    assert isinstance(stride_loop.lb.owner, arith.AddiOp)  # block_id * block_dim + tid
    assert stride_loop.ub is k.body.block.args[2]  # total
    step = stride_loop.step.owner
    assert isinstance(step, arith.MuliOp)
    assert {type(step.lhs.owner), type(step.rhs.owner)} == {gpu.GridDimOp, gpu.BlockDimOp}
    (init,) = stride_loop.iter_args
    assert isinstance(init.owner, arith.ConstantOp)
    assert str(init.owner.value.value.data) == "-0.0"
    # The loop body combines the iteration's value into the partial and yields it.
    body_yield = stride_loop.body.block.last_op
    combine = body_yield.operands[0].owner
    assert isinstance(combine, arith.AddfOp)
    assert stride_loop.body.block.args[1] in combine.operands
    assert "scf.parallel" not in names and "scf.reduce" not in names


def test_printed_ir_parses_back():
    module = outlined(REDUCE_2D)
    text = str(module)
    again = Parser(context(), text).parse_module()
    again.verify()
    assert str(again) == text


@pytest.mark.skipif(shutil.which("mlir-opt") is None, reason="mlir-opt not on PATH")
def test_mlir_opt_parses_it():
    text = str(outlined(ELEMENTWISE))
    out = subprocess.run(["mlir-opt", "--allow-unregistered-dialect"], input=text,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


ELEMENTWISE = """
func.func @g(%x: memref<?xf64>, %y: memref<?xf64>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %v = memref.load %x[%i] : memref<?xf64>
    %w = math.sin %v : f64
    memref.store %w, %y[%i] : memref<?xf64>
    scf.reduce
  }) : (index, index, index) -> ()
  "scf.parallel"(%c1, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %v = memref.load %y[%i] : memref<?xf64>
    memref.store %v, %x[%i] : memref<?xf64>
    scf.reduce
  }) : (index, index, index) -> ()
  return
}
func.func @h(%x: memref<?xf64>, %n: index, %t: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %s = %c0 to %t step %c1 {
    "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%i: index):
      %v = memref.load %x[%i] : memref<?xf64>
      %w = arith.addf %v, %v : f64
      memref.store %w, %x[%i] : memref<?xf64>
      "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
      ^bb1(%j: index):
        scf.reduce
      }) : (index, index, index) -> ()
      scf.reduce
    }) : (index, index, index) -> ()
  }
  return
}
"""


def test_kernel_names_time_loops_and_nested_loops():
    module = outlined(ELEMENTWISE)
    assert [k.sym_name.data for k in kernels(module)] == ["g_k0", "g_k1", "h_k0"]
    ls = launches(module)
    assert [op.kernel.string_value() for op in ls] == [
        f"{KERNEL_MODULE}.g_k0", f"{KERNEL_MODULE}.g_k1", f"{KERNEL_MODULE}.h_k0"]
    # The time loop stays on the host, the launch inside it.
    assert isinstance(ls[2].parent_op().parent_op(), scf.ForOp)
    # The nested loop stays an scf.parallel inside the kernel.
    h_k0 = kernels(module)[2]
    assert sum(isinstance(op, scf.ParallelOp) for op in h_k0.walk()) == 1
    # g_k1 starts at 1: its lower bound is a sunk constant, not an argument.
    g_k1 = kernels(module)[1]
    assert len(g_k1.function_type.inputs) == 3  # %y, %x, total


def test_module_without_parallel_loops_is_unchanged():
    src = """
func.func @f(%a: memref<?xf64>) -> f64 {
  %c0 = arith.constant 0 : index
  %v = memref.load %a[%c0] : memref<?xf64>
  return %v : f64
}
"""
    before = Parser(context(), src).parse_module()
    text = str(before)
    OutlineParallelLoopsPass().apply(context(), before)
    assert str(before) == text
    assert "gpu.container_module" not in before.attributes


def _loop_with(body: str, extra_args: str = "") -> str:
    return f"""
func.func @f(%a: memref<?xf64>, %n: index{extra_args}) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  "scf.parallel"(%c0, %n, %c1) <{{operandSegmentSizes = array<i32: 1, 1, 1, 0>}}> ({{
  ^bb0(%i: index):
{body}
    scf.reduce
  }}) : (index, index, index) -> ()
  return
}}
func.func @callee(%x: f64) -> f64 {{
  return %x : f64
}}
"""


def test_check_in_kernel_becomes_a_status_report():
    # the full contract is in tests/compiler/test_gpu_checks.py
    src = _loop_with("""
    %ok = arith.cmpi slt, %i, %n : index
    isz.check %ok {kind = "index", message = "out of bounds"}
""")
    module = outlined(src)
    (kernel,) = kernels(module)
    assert [a.type for a in kernel.body.block.args][-1] == MemRefType(i64, [DYNAMIC_INDEX])
    assert "isz_gpu.report_failure" in str(kernel)
    assert "isz.check" not in str(kernel)


def test_call_in_kernel_is_refused():
    src = _loop_with("""
    %v = memref.load %a[%i] : memref<?xf64>
    %w = func.call @callee(%v) : (f64) -> f64
""")
    with pytest.raises(UnsupportedError, match="func.call @callee inside a GPU kernel"):
        outlined(src)


@pytest.mark.parametrize("combine, kind", [
    ("arith.maximumf", "maximumf"), ("arith.mulf", "mulf"), ("arith.minnumf", "minnumf"),
])
def test_reduction_kinds(combine, kind):
    src = f"""
func.func @f(%a: memref<?xf64>, %n: index) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 1.0 : f64
  %r = "scf.parallel"(%c0, %n, %c1, %z) <{{operandSegmentSizes = array<i32: 1, 1, 1, 1>}}> ({{
  ^bb0(%i: index):
    %x = memref.load %a[%i] : memref<?xf64>
    scf.reduce(%x : f64) {{
    ^bb1(%l: f64, %rr: f64):
      %q = {combine} %rr, %l : f64
      scf.reduce.return %q : f64
    }}
  }}) : (index, index, index, f64) -> f64
  return %r : f64
}}
"""
    module = outlined(src)
    (atomic,) = [op for op in module.walk() if isinstance(op, memref.AtomicRMWOp)]
    assert atomic.kind.value.data == ATOMIC_RMW_KIND[kind]


def test_index_reduction_goes_through_i64():
    src = """
func.func @f(%n: index) -> index {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %r = "scf.parallel"(%c0, %n, %c1, %c0) <{operandSegmentSizes = array<i32: 1, 1, 1, 1>}> ({
  ^bb0(%i: index):
    scf.reduce(%i : index) {
    ^bb1(%l: index, %rr: index):
      %q = arith.addi %l, %rr : index
      scf.reduce.return %q : index
    }
  }) : (index, index, index, index) -> index
  return %r : index
}
"""
    module = outlined(src)
    (atomic,) = [op for op in module.walk() if isinstance(op, memref.AtomicRMWOp)]
    assert atomic.kind.value.data == ATOMIC_RMW_KIND["addi"]
    assert str(atomic.value.type) == "i64"


def test_unsupported_reduction_body_is_refused():
    src = """
func.func @f(%a: memref<?xf64>, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %r = "scf.parallel"(%c0, %n, %c1, %z) <{operandSegmentSizes = array<i32: 1, 1, 1, 1>}> ({
  ^bb0(%i: index):
    %x = memref.load %a[%i] : memref<?xf64>
    scf.reduce(%x : f64) {
    ^bb1(%l: f64, %rr: f64):
      %p = arith.mulf %l, %rr : f64
      %q = arith.addf %p, %rr : f64
      scf.reduce.return %q : f64
    }
  }) : (index, index, index, f64) -> f64
  return %r : f64
}
"""
    with pytest.raises(UnsupportedError, match=r"scf.reduce region \(arith.mulf; arith.addf"):
        outlined(src)


# -- reductions as grid-stride loops, through the public API on cuda-emu -----------
# Totals past MAX_REDUCTION_BLOCKS * 256 (so threads run several iterations) and not
# multiples of 32 or 256; values whose squares and sums are exact integers, so any
# iteration missed or counted twice changes the result.
N_STRIDE = MAX_REDUCTION_BLOCKS * BLOCK_SIZE + 37_857  # 300_001
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


@pytest.fixture
def no_checks():
    old = iz.config(boundscheck=False)
    yield
    iz.config(**old)


def _exact_values(n: int, dtype) -> np.ndarray:
    return ((np.arange(n) * 7919) % 13 - 6).astype(dtype)


def _whole_array_sum_sq(x):
    return np.sum(x * x)


def _prange_sum_sq(x):
    s = 0.0
    for i in iz.prange(x.shape[0]):
        s += x[i] * x[i]
    return s


def _prange_max_min(x):
    hi = -1e300
    lo = 1e300
    for i in iz.prange(x.shape[0]):
        hi = max(hi, x[i] * 3.0)
        lo = min(lo, x[i] * 3.0)
    return hi - lo * 1000.0


def _gpu_ir(f, *anns) -> str:
    return iz.ir(iz.ForwardWithPrimal, f, *anns, stage="gpu", target="cuda-emu")


@needs_gxx
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [N_STRIDE, 1000, 31])
def test_whole_array_sum_on_cuda_emu(no_checks, dtype, n) -> None:
    x = _exact_values(n, dtype)
    with iz.target("cuda-emu"):
        _, val = iz.autodiff(iz.ForwardWithPrimal, _whole_array_sum_sq, iz.Const(x))
    assert val == float(np.sum(x.astype(np.float64) ** 2))
    text = _gpu_ir(_whole_array_sum_sq, iz.Const(x))
    assert "arith.minsi" in text and "gpu.grid_dim" in text


@needs_gxx
def test_prange_sum_and_max_min_on_cuda_emu(no_checks) -> None:
    x = _exact_values(N_STRIDE, np.float64)
    with iz.target("cuda-emu"):
        _, s = iz.autodiff(iz.ForwardWithPrimal, _prange_sum_sq, iz.Const(x))
        assert s == float(np.sum(x * x))
        # the extremes at the last iterations: reached only by a second stride
        y = x.copy()
        y[-1], y[-2] = 100.0, -50.0
        _, r = iz.autodiff(iz.ForwardWithPrimal, _prange_max_min, iz.Const(y))
    assert r == 300.0 + 150_000.0
    # the max/min kernel: two partials carried by the stride loop, two atomics after it
    module = Parser(context(), _gpu_ir(_prange_max_min, iz.Const(y))).parse_module()
    (k,) = kernels(module)
    loop = next(op for op in k.walk() if isinstance(op, scf.ForOp))
    rmws = [op for op in k.walk() if isinstance(op, memref.AtomicRMWOp)]
    assert [r.parent_op() for r in rmws] == [k, k]
    assert [r.value.owner for r in rmws] == [loop, loop]
    assert sorted(r.kind.value.data for r in rmws) == sorted(
        ATOMIC_RMW_KIND[kd] for kd in ("maximumf", "minimumf"))
    assert [str(v.owner.value.value.data) for v in loop.iter_args] == ["-inf", "inf"]


@needs_gxx
def test_reverse_of_a_full_sum_has_no_stride_loop(no_checks) -> None:
    x = _exact_values(N_STRIDE, np.float64)
    dx = np.zeros_like(x)
    with iz.target("cuda-emu"):
        iz.autodiff(iz.Reverse, _whole_array_sum_sq, iz.Active, iz.Duplicated(x, dx))
    np.testing.assert_array_equal(dx, 2.0 * x)
    # the adjoint kernel (the one storing dx) has no reduction: one element per
    # thread and ceildiv(total, 256) blocks, as before
    text = iz.ir(iz.Reverse, _whole_array_sum_sq, iz.Active, iz.Duplicated(x, dx),
                 stage="gpu", target="cuda-emu")
    module = Parser(context(), text).parse_module()
    by_name = {k.sym_name.data: k for k in kernels(module)}
    (adjoint,) = [k for k in by_name.values()
                  if any(isinstance(op, memref.StoreOp) for op in k.walk())]
    assert not any(isinstance(op, memref.AtomicRMWOp | scf.ForOp) for op in adjoint.walk())
    assert not any(op.name == "gpu.grid_dim" for op in adjoint.walk())
    (launch,) = [op for op in launches(module)
                 if by_name[op.kernel.nested_references.data[-1].data] is adjoint]
    assert isinstance(launch.gridSizeX.owner, arith.CeilDivSIOp)


def _gather_sum(x, idx):
    s = 0.0
    for i in iz.prange(idx.shape[0]):
        s += x[idx[i]]
    return s


@needs_gxx
def test_checked_reduction_in_a_stride_loop() -> None:
    old = iz.config(boundscheck=True)
    try:
        x = np.arange(10.0)
        idx = np.arange(N_STRIDE) % 10
        with iz.target("cuda-emu"):
            _, s = iz.autodiff(iz.ForwardWithPrimal, _gather_sum, iz.Const(x),
                               iz.Const(idx))
            assert s == float(np.sum(x[idx]))
            # a bad index only a thread's second iteration reaches
            idx[-1] = 12
            with pytest.raises(iz.OutOfBoundsError,
                               match="index 12 is out of bounds for axis 0 with size 10"):
                iz.autodiff(iz.ForwardWithPrimal, _gather_sum, iz.Const(x), iz.Const(idx))
        text = _gpu_ir(_gather_sum, iz.Const(x), iz.Const(idx))
    finally:
        iz.config(**old)
    module = Parser(context(), text).parse_module()
    (k,) = kernels(module)
    (rmw,) = [op for op in k.walk() if isinstance(op, memref.AtomicRMWOp)]
    loop = rmw.value.owner
    assert isinstance(loop, scf.ForOp)
    # the report (which ends the thread) is in the loop; no warp shuffle with checks
    assert any(op.name == "isz_gpu.report_failure" for op in loop.walk())
    assert WARP_AGGREGATE_ATTR not in rmw.attributes


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_nvcc_compiles_a_stride_loop_reduction(tmp_path) -> None:
    from tests.compiler.test_cuda_printer import nvcc_ptx

    module = outlined(REDUCE_2D)
    text = print_cuda(module)
    assert "gridDim.x" in text and "__shfl_down_sync" in text
    nvcc_ptx(text, tmp_path)
