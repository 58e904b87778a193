"""Run-time checks inside GPU kernels (``compiler/gpu/kernel_checks.py``): the status
buffer of the host function, the kernel's ``isz_gpu.report_failure`` ops, the checks
the host re-emits after each launch, the CUDA C of a report (compiled by ``nvcc``
when it is on PATH), and the host program lowered by the cuda target.  The numbers and
the errors are checked end to end in ``tests/runtime/test_cuda_emu_checks.py``."""

from __future__ import annotations

import re
import shutil

import pytest
from xdsl.dialects import arith, func, gpu, memref, scf
from xdsl.dialects.builtin import DYNAMIC_INDEX, MemRefType, ModuleOp, i64
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.test_value import create_ssa_value

from isozyme.compiler.gpu.cuda_emu_source import CUDA_EMU_HEADER
from isozyme.compiler.gpu.cuda_printer import print_cuda
from isozyme.compiler.gpu.outline_parallel_loops import WARP_AGGREGATE_ATTR
from isozyme.compiler.lowering.convert_check_to_llvm import check_table
from isozyme.dialects.check import CheckOp
from isozyme.dialects.gpu_ext import ReportFailureOp
from tests.compiler.test_cuda_printer import context, nvcc_ptx, outlined

STATUS = MemRefType(i64, [DYNAMIC_INDEX])

# A time loop around a checked gather (a check of two values, and one of no value in
# a sequential loop inside the body) and an unchecked loop.
TIME_LOOP = """
func.func @f(%a: memref<?xf64>, %idx: memref<?xi64>, %n: index, %steps: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = memref.dim %a, %c0 : memref<?xf64>
  scf.for %t = %c0 to %steps step %c1 {
    "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%i: index):
      %k = memref.load %idx[%i] : memref<?xi64>
      %j = arith.index_cast %k : i64 to index
      %ok = arith.cmpi ult, %j, %m : index
      isz.check %ok, %k, %m {kind = "index", message = "g.py:3: index {0} is out of bounds for axis 0 with size {1}"} : i64, index
      %v = memref.load %a[%j] : memref<?xf64>
      scf.for %q = %c0 to %t step %c1 {
        %pos = arith.cmpi ult, %q, %n : index
        isz.check %pos {kind = "unsupported", message = "g.py:4: never"}
      }
      memref.store %v, %a[%i] : memref<?xf64>
      scf.reduce
    }) : (index, index, index) -> ()
    "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%i: index):
      %v = memref.load %a[%i] : memref<?xf64>
      memref.store %v, %a[%i] : memref<?xf64>
      scf.reduce
    }) : (index, index, index) -> ()
  }
  return
}
"""

# A reduction whose body holds a check.
CHECKED_SUM = """
func.func @s(%a: memref<?xf64>, %idx: memref<?xi32>, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %m = memref.dim %a, %c0 : memref<?xf64>
  %r = "scf.parallel"(%c0, %n, %c1, %z) <{operandSegmentSizes = array<i32: 1, 1, 1, 1>}> ({
  ^bb0(%i: index):
    %k = memref.load %idx[%i] : memref<?xi32>
    %j = arith.index_cast %k : i32 to index
    %ok = arith.cmpi ult, %j, %m : index
    isz.check %ok, %k, %m {kind = "index", message = "s.py:5: index {0} is out of bounds for axis 0 with size {1}"} : i32, index
    %v = memref.load %a[%j] : memref<?xf64>
    scf.reduce(%v : f64) {
    ^bb1(%l: f64, %rr: f64):
      %q = arith.addf %l, %rr : f64
      scf.reduce.return %q : f64
    }
  }) : (index, index, index, f64) -> f64
  return %r : f64
}
"""


def kernels(module: ModuleOp) -> list[gpu.FuncOp]:
    (gmod,) = [op for op in module.ops if isinstance(op, gpu.ModuleOp)]
    return [op for op in gmod.body.block.ops if isinstance(op, gpu.FuncOp)]


def host(module: ModuleOp) -> func.FuncOp:
    return next(op for op in module.ops if isinstance(op, func.FuncOp))


def const_of(v) -> int | None:
    owner = v.owner
    return owner.value.value.data if isinstance(owner, arith.ConstantOp) else None


def test_status_buffer_of_the_host_function():
    module = outlined(TIME_LOOP)
    f = host(module)
    entry = f.body.block
    allocs = [op for op in f.walk() if isinstance(op, memref.AllocOp)]
    assert len(allocs) == 1  # one buffer per function, not per launch
    (alloc,) = allocs
    assert alloc.parent_block() is entry and alloc.memref.type == STATUS
    assert const_of(alloc.dynamic_sizes[0]) == 3  # status[0] and two values
    # status[0] = 0 at the entry, before the time loop
    (zero,) = [u.operation for u in alloc.memref.uses
               if isinstance(u.operation, memref.StoreOp)]
    assert zero.parent_block() is entry and const_of(zero.value) == 0
    assert const_of(zero.indices[0]) == 0
    # freed right before the return
    ret = entry.last_op
    assert isinstance(ret, func.ReturnOp) and isinstance(ret.prev_op, memref.DeallocOp)
    assert ret.prev_op.memref is alloc.memref


def test_kernel_reports_each_check():
    module = outlined(TIME_LOOP)
    checked, plain = kernels(module)
    args = checked.body.block.args
    assert args[-1].type == STATUS
    assert STATUS not in [a.type for a in plain.body.block.args]
    assert not [op for op in checked.walk() if isinstance(op, CheckOp)]
    reports = [op for op in checked.walk() if isinstance(op, ReportFailureOp)]
    assert [r.check.value.data for r in reports] == [1, 2]
    for r in reports:
        assert r.status is args[-1]
        # scf.if (cond xor true) { report }
        guard = r.parent_op()
        assert isinstance(guard, scf.IfOp) and r.next_op is not None
        assert isinstance(r.next_op, scf.YieldOp)
        negation = guard.cond.owner
        assert isinstance(negation, arith.XOrIOp)
        assert const_of(negation.rhs) in (1, -1)  # true (i1 reads signed)
        assert isinstance(negation.lhs.owner, arith.CmpiOp)
    first, second = reports
    assert [v.type for v in first.values] == [i64, first.values[1].type]
    assert isinstance(first.values[0].owner, memref.LoadOp)  # %k, the i64 index
    assert second.values == ()
    # the second check stays inside its sequential loop
    assert isinstance(second.parent_op().parent_op(), scf.ForOp)
    launch_status = [ln.kernelOperands[-1] for ln in module.walk()
                     if isinstance(ln, gpu.LaunchFuncOp)]
    alloc = next(op for op in host(module).walk() if isinstance(op, memref.AllocOp))
    assert launch_status[0] is alloc.memref
    assert launch_status[1].type != STATUS


def test_host_rechecks_right_after_the_launch():
    module = outlined(TIME_LOOP)
    launch = next(op for op in module.walk() if isinstance(op, gpu.LaunchFuncOp))
    status = launch.kernelOperands[-1]
    # in the launch's scf.if: status[0] is read once and tested against 0
    after = []
    op = launch.next_op
    while op is not None:
        after.append(op)
        op = op.next_op
    (code,) = [op for op in after if isinstance(op, memref.LoadOp)]
    assert code.memref is status
    assert const_of(code.indices[0]) == 0
    failed = next(op for op in launch.parent_block().ops if isinstance(op, scf.IfOp))
    test = failed.cond.owner
    assert isinstance(test, arith.CmpiOp) and test.lhs is code.res
    assert const_of(test.rhs) == 0 and test.predicate.value.data == 1  # ne
    # only on failure: the values, then each check of the kernel with its message
    body = list(failed.true_region.block.ops)
    loads = [op for op in body if isinstance(op, memref.LoadOp)]
    assert [const_of(ld.indices[0]) for ld in loads] == [1, 2]
    # the call stops there: the status is freed first
    (free,) = [op for op in body if isinstance(op, memref.DeallocOp)]
    assert free.memref is status and body.index(free) > body.index(loads[-1])
    checks = [op for op in body if isinstance(op, CheckOp)]
    assert body.index(checks[0]) > body.index(free)
    assert [(c.kind.data, c.message.data) for c in checks] == [
        ("index", "g.py:3: index {0} is out of bounds for axis 0 with size {1}"),
        ("unsupported", "g.py:4: never"),
    ]
    for k, c in enumerate(checks, start=1):
        cond = c.cond.owner
        assert isinstance(cond, arith.CmpiOp) and cond.lhs is code.res
        assert const_of(cond.rhs) == k and cond.predicate.value.data == 1  # ne
    assert list(checks[0].values) == [ld.res for ld in loads]
    assert checks[1].values == ()
    # no check left in the host outside those (the others were in the kernel)
    host_checks = [op for op in host(module).walk() if isinstance(op, CheckOp)]
    assert host_checks == checks


def test_reduction_with_a_check_skips_the_warp_shuffle(tmp_path):
    module = outlined(CHECKED_SUM)
    (kernel,) = kernels(module)
    (rmw,) = [op for op in kernel.walk() if isinstance(op, memref.AtomicRMWOp)]
    assert WARP_AGGREGATE_ATTR not in rmw.attributes  # a failed thread leaves early
    args = kernel.body.block.args
    assert args[-1].type == STATUS and args[-2].type == MemRefType(rmw.value.type, [1])
    assert rmw.memref is args[-2]
    # a failure frees the reduction buffer and the status before stopping the call
    launch = next(op for op in module.walk() if isinstance(op, gpu.LaunchFuncOp))
    failed = next(op for op in launch.parent_block().ops if isinstance(op, scf.IfOp))
    freed = [op.memref for op in failed.true_region.block.ops
             if isinstance(op, memref.DeallocOp)]
    assert freed == list(launch.kernelOperands[-2:])
    (report,) = [op for op in kernel.walk() if isinstance(op, ReportFailureOp)]
    assert str(report.values[0].type) == "i32"
    text = print_cuda(module)
    assert "__shfl_down_sync" not in text
    if shutil.which("nvcc") is not None:
        nvcc_ptx(text, tmp_path)


def test_cuda_c_of_a_report():
    text = print_cuda(outlined(TIME_LOOP))
    lines = [ln.strip() for ln in text.splitlines()]
    cas = [i for i, ln in enumerate(lines) if "atomicCAS" in ln]
    assert len(cas) == 2
    first, second = cas
    kernel = next(ln for ln in lines if "__global__" in ln)
    status = re.search(r"iz_memref_int64_t_1 (\w+)\) \{$", kernel).group(1)
    assert lines[first] == (f"if (atomicCAS((unsigned long long*)&{status}.aligned"
                            "[((int64_t)0LL)], 0ull, 1ull) == 0ull) {")
    assert lines[first + 1].startswith(f"{status}.aligned[((int64_t)1LL)] = (int64_t)")
    assert lines[first + 2].startswith(f"{status}.aligned[((int64_t)2LL)] = (int64_t)")
    assert lines[first + 3: first + 5] == ["}", "return;"]
    assert lines[second].endswith("0ull, 2ull) == 0ull) {")
    assert lines[second + 1: second + 3] == ["}", "return;"]
    assert "atomicCAS(unsigned long long*" in CUDA_EMU_HEADER


def test_nvcc_compiles_kernels_with_checks(tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not on PATH")
    nvcc_ptx(print_cuda(outlined(TIME_LOOP)), tmp_path)


def test_gpu_stage_round_trips():
    module = outlined(TIME_LOOP)
    text = str(module)
    again = Parser(context(), text).parse_module()
    again.verify()
    assert str(again) == text
    assert "isz_gpu.report_failure" in text


def test_report_failure_verifier():
    status = create_ssa_value(STATUS)
    ReportFailureOp(status, 1, [create_ssa_value(i64)]).verify()
    with pytest.raises(VerifyException, match="check ids start at 1"):
        ReportFailureOp(status, 0).verify()
    with pytest.raises(VerifyException, match=r"the status must be a memref<\?xi64>"):
        ReportFailureOp(create_ssa_value(MemRefType(i64, [2, 2])), 1).verify()


@pytest.mark.parametrize("target", ["cuda", "cuda-emu"])
def test_host_program_lowers_with_the_check_table(target):
    from isozyme.abi import DEVICE_COPY_SYMBOL
    from isozyme.compiler.targets import get_target

    module = Parser(context(), TIME_LOOP).parse_module()
    art = get_target(target).compile(module, context(), upto="llvm")
    from isozyme.compiler.lowering.convert_gpu_launch_to_llvm import DRIVER_FAILURE
    from isozyme.compiler.targets.cuda import ALLOC_FAILURE

    # the user's checks, in order, besides the runtime's own (a failed launch, copy or
    # device allocation)
    table = tuple(c for c in check_table(art.host)
                  if not c[1].startswith((DRIVER_FAILURE, ALLOC_FAILURE)))
    assert len(table) < len(check_table(art.host))
    assert table == (
        ("index", "g.py:3: index {0} is out of bounds for axis 0 with size {1}", 2),
        ("unsupported", "g.py:4: never", 0),
    )
    copies = "llvm.call @" + DEVICE_COPY_SYMBOL in str(art.host)
    assert copies == (target == "cuda")  # the status is device memory on cuda
