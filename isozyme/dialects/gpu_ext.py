"""The ``isz_gpu`` dialect: what a GPU kernel needs beyond upstream's ``gpu`` dialect.

One op, ``isz_gpu.report_failure``: a run-time check (``isz.check``) that failed in a
kernel thread.  ``gpu-outline-parallel-loops`` rewrites each ``isz.check %ok, %v...``
of a kernel into::

    %bad = arith.xori %ok, %true : i1
    scf.if %bad {
      isz_gpu.report_failure %status, %v... {check = k} : memref<?xi64>, i64, index
    }

with ``k`` the check's id in its kernel (1-based) and ``%status`` the kernel's status
buffer (its last argument).  The op records the failure and ends the thread: the first
thread to fail wins ``status[0]`` by an atomic compare-and-swap from 0 to ``k`` and then
writes its values, sign-extended to 64 bits (``i1`` zero-extended), to
``status[1 + j]``; every failing thread then returns from the kernel.  The CUDA printer
prints it as::

    if (atomicCAS((unsigned long long*)&st[0], 0ull, k) == 0ull) { st[1 + j] = v_j; ... }
    return;

After the launch the host program reads ``status[0]`` and re-raises the check there
(``docs/gpu.md``, "Run-time checks in kernels").  The op is never lowered to LLVM: it
exists only inside ``gpu.func`` kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    I64,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    i64,
)
from xdsl.ir import Dialect, Operation, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    base,
    irdl_op_definition,
    operand_def,
    prop_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import EffectInstance, MemoryEffect, MemoryEffectKind
from xdsl.utils.exceptions import VerifyException


class ReportFailureEffect(MemoryEffect):
    """Writes the status buffer and ends the thread: never removed or moved."""

    @classmethod
    def get_effects(cls, op: Operation) -> set[EffectInstance]:
        """A write of the status buffer (its first operand)."""
        return {EffectInstance(MemoryEffectKind.WRITE, op.operands[0])}


@irdl_op_definition
class ReportFailureOp(IRDLOperation):
    """``isz_gpu.report_failure %status, %values... {check = k}``: record that check
    ``k`` failed with ``values`` in ``status`` (first failure wins, by an atomic
    compare-and-swap of ``status[0]`` from 0 to ``k``) and end the kernel thread."""

    name = "isz_gpu.report_failure"

    VALUE: ClassVar = base(IntegerType) | base(IndexType)

    status = operand_def(MemRefType)
    values = var_operand_def(VALUE)
    check = prop_def(IntegerAttr[I64])

    traits = traits_def(ReportFailureEffect())
    irdl_options = (ParsePropInAttrDict(),)

    assembly_format = (
        "$status (`,` $values^)? attr-dict `:` type($status) (`,` type($values)^)?"
    )

    def __init__(self, status: SSAValue, check: int,
                 values: Sequence[SSAValue] = ()) -> None:
        super().__init__(
            operands=[status, list(values)],
            properties={"check": IntegerAttr(check, i64)},
        )

    def verify_(self) -> None:
        """The status is a rank-1 ``i64`` buffer and the id is positive."""
        t = self.status.type
        if not isinstance(t, MemRefType) or t.element_type != i64 or \
                t.get_num_dims() != 1:
            raise VerifyException(
                f"isz_gpu.report_failure: the status must be a memref<?xi64>, got {t}")
        if self.check.value.data < 1:
            raise VerifyException("isz_gpu.report_failure: check ids start at 1")


IszGpu = Dialect("isz_gpu", [ReportFailureOp], [])
