"""Run-time checks (``isz.check``) inside GPU kernels: report in the kernel, raise on
the host.

A kernel cannot stop the host program, so ``gpu-outline-parallel-loops`` splits each
check of a kernel in two halves joined by a *status buffer* (``memref<?xi64>``, the
kernel's last argument):

* **host function** (:func:`add_status_buffer`): one buffer per host function that
  launches checked kernels, of ``1 + max(values of a check)`` elements, allocated and
  its ``status[0]`` zeroed at the function's entry, deallocated before each
  ``func.return``.  After a failure the host program stops, so ``status[0]`` is still 0
  at every launch that runs.
* **kernel** (:func:`report_failures`): check ``k`` (1-based, in the order of the
  kernel's ops) becomes ``scf.if (!cond) { isz_gpu.report_failure %status, values
  {check = k} }``: the first failing thread sets ``status[0] = k`` by an atomic
  compare-and-swap and writes the values to ``status[1..]``; every failing thread ends
  (``isozyme/dialects/gpu_ext.py``).
* **host, after the launch** (:func:`recheck_after_launch`): ``status[0]`` is read
  once; when it is not 0, the values are read, the status and the launch's reduction
  buffers are freed (the call is about to stop) and every check ``k`` of the kernel is
  re-emitted as ``isz.check (status[0] != k), values`` with its kind and message, so
  the CPU lowering (``convert-isz-check-to-llvm``) stops the call and the runtime raises
  the same error, with the same message, as on the ``cpu`` target.

When several iterations fail, the one reported is the first to win the
compare-and-swap (not necessarily the first iteration, as on the CPU), and iterations
that did not fail may have run (their writes landed) before the host stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.builder import Builder
from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import DYNAMIC_INDEX, IndexType, IntegerAttr, MemRefType, i1, i64
from xdsl.ir import Block, Operation, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.dialects.check import CheckOp
from isozyme.dialects.gpu_ext import ReportFailureOp

#: The type of a kernel's status buffer.
STATUS_TYPE = MemRefType(i64, [DYNAMIC_INDEX])


@dataclass(frozen=True)
class KernelCheck:
    """A check of a kernel, as the host re-raises it: its id, kind, message and
    number of values."""

    id: int
    kind: str
    message: str
    n_values: int


def checks_in(op: Operation) -> list[CheckOp]:
    """The ``isz.check`` ops nested in ``op``, in walk order."""
    return [c for c in op.walk() if isinstance(c, CheckOp)]


def status_width(loops: list[Operation]) -> int:
    """The elements a status buffer needs for the checks of ``loops``: ``status[0]``
    and the values of the check with the most (0 when there is no check)."""
    checks = [c for loop in loops for c in checks_in(loop)]
    if not checks:
        return 0
    return 1 + max(len(c.values) for c in checks)


def _index(b: Builder, value: int) -> SSAValue:
    return b.insert(arith.ConstantOp(IntegerAttr(value, IndexType()))).result


def add_status_buffer(f: func.FuncOp, width: int) -> SSAValue:
    """Allocate ``f``'s status buffer of ``width`` elements at its entry with
    ``status[0] = 0``, and free it before each ``func.return``; return it."""
    entry = f.body.blocks[0]
    at = InsertPoint.at_start(entry)
    b = Builder(at)
    n = _index(b, width)
    status = b.insert(memref.AllocOp([n], [], STATUS_TYPE)).memref
    zero = b.insert(arith.ConstantOp(IntegerAttr(0, i64))).result
    b.insert(memref.StoreOp.get(zero, status, [_index(b, 0)]))
    for ret in [o for o in f.walk() if isinstance(o, func.ReturnOp)]:
        Rewriter.insert_op(memref.DeallocOp.get(status), InsertPoint.before(ret))
    return status


def report_failures(kernel_body: Block, status: SSAValue) -> list[KernelCheck]:
    """Rewrite each ``isz.check`` nested in ``kernel_body`` into a report of its failure
    through ``status`` (the kernel's status argument); return the checks by id."""
    out: list[KernelCheck] = []
    for k, check in enumerate(checks_in_block(kernel_body), start=1):
        b = Builder(InsertPoint.before(check))
        true = b.insert(arith.ConstantOp(IntegerAttr(1, i1))).result
        bad = b.insert(arith.XOrIOp(check.cond, true)).result
        report = ReportFailureOp(status, k, list(check.values))
        b.insert(scf.IfOp(bad, [], [report, scf.YieldOp()]))
        out.append(KernelCheck(k, check.kind.data, check.message.data, len(check.values)))
        Rewriter.erase_op(check)
    return out


def checks_in_block(block: Block) -> list[CheckOp]:
    """The ``isz.check`` ops nested in ``block``, in walk order."""
    return [c for op in block.ops for c in checks_in(op)]


def recheck_after_launch(b: Builder, status: SSAValue, checks: list[KernelCheck],
                         release: Sequence[SSAValue] = ()) -> None:
    """At ``b`` (right after a launch): read ``status[0]`` and, when a check failed,
    its values, free ``release`` and the status buffer (the call stops: one of the
    checks fails, since only the kernel sets ``status[0]``, to one of its ids), and
    re-emit every check of the kernel as an ``isz.check`` of ``status[0] != k``."""
    if not checks:
        return
    code = b.insert(memref.LoadOp.get(status, [_index(b, 0)])).res
    zero = b.insert(arith.ConstantOp(IntegerAttr(0, i64))).result
    failed = b.insert(arith.CmpiOp(code, zero, "ne")).result
    then = Block()
    b.insert(scf.IfOp(failed, [], [then]))
    fb = Builder(InsertPoint.at_end(then))
    width = max(c.n_values for c in checks)
    values = [fb.insert(memref.LoadOp.get(status, [_index(fb, 1 + j)])).res
              for j in range(width)]
    for buffer in [*release, status]:
        fb.insert(memref.DeallocOp.get(buffer))
    for c in checks:
        k = fb.insert(arith.ConstantOp(IntegerAttr(c.id, i64))).result
        ok = fb.insert(arith.CmpiOp(code, k, "ne")).result
        fb.insert(CheckOp(ok, c.kind, c.message, values[:c.n_values]))
    fb.insert(scf.YieldOp())

