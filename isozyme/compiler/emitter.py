"""A terse IR builder for the compiler's own code generation (AD, lowering helpers).

``Emitter`` inserts ops at an xDSL insertion point and returns their results, so that
derivative rules read like the math they implement: ``e.mul(adj, e.cos(x))``.
"""

from __future__ import annotations

from typing import TypeVar

from xdsl.dialects import arith, math
from xdsl.dialects.builtin import (
    AnyFloat,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    UnitAttr,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter

OpT = TypeVar("OpT", bound=Operation)

#: The unit attribute that marks a float ``arith.constant`` zero made by the AD passes (a
#: structurally zero tangent or adjoint, never the user's): ``simplify-ad`` folds
#: ``0 * x``, ``0 / x``, ``x + 0`` and ``0 - x`` for these zeros only, so the user's own
#: arithmetic keeps IEEE semantics (``inf * 0.0`` is NaN, ``x * -0.0`` keeps its sign).
AD_ZERO = "isozyme.ad_zero"


def is_float(t: Attribute) -> bool:
    """True for the floating-point types AD differentiates."""
    return isinstance(t, AnyFloat)


class Emitter:
    """Inserts ops at ``ip``; every helper returns the new op's (first) result."""

    def __init__(self, ip: InsertPoint):
        self.ip = ip
        self.last: Operation | None = None  # the op inserted most recently

    def insert(self, op: OpT) -> OpT:
        """Insert ``op`` at the insertion point (which then moves past it)."""
        Rewriter.insert_op(op, self.ip)
        self.last = op
        return op

    # constants -------------------------------------------------------------------
    def const(self, value: float | int, type: Attribute) -> SSAValue:
        """An ``arith.constant`` of ``type`` (float, integer or index)."""
        if isinstance(type, AnyFloat):
            attr: Attribute = FloatAttr(float(value), type)
        elif isinstance(type, (IntegerType, IndexType)):
            attr = IntegerAttr(int(value), type)
        else:  # pragma: no cover - caller bug
            raise TypeError(f"no constant of type {type}")
        return self.insert(arith.ConstantOp(attr)).result

    def zero(self, type: Attribute) -> SSAValue:
        """The additive identity of ``type``; a float zero is marked as AD's own
        (:data:`AD_ZERO`), which ``simplify-ad`` may fold away (``0 * x -> 0``)."""
        z = self.const(0, type)
        if isinstance(type, AnyFloat):
            z.owner.attributes[AD_ZERO] = UnitAttr()  # type: ignore[union-attr]
        return z

    # float arithmetic --------------------------------------------------------------
    def add(self, a: SSAValue, b: SSAValue, reassoc: bool = False) -> SSAValue:
        """a + b; ``reassoc`` lets LLVM reorder it (vectorize sums)."""
        flags = arith.FastMathFlagsAttr(["reassoc", "contract"]) if reassoc else None
        return self.insert(arith.AddfOp(a, b, flags)).result

    def sub(self, a: SSAValue, b: SSAValue) -> SSAValue:
        """a - b."""
        return self.insert(arith.SubfOp(a, b)).result

    def mul(self, a: SSAValue, b: SSAValue, contract: bool = False) -> SSAValue:
        """a * b; ``contract`` lets LLVM fuse it into a following add (an FMA)."""
        flags = arith.FastMathFlagsAttr(["contract"]) if contract else None
        return self.insert(arith.MulfOp(a, b, flags)).result

    def div(self, a: SSAValue, b: SSAValue) -> SSAValue:
        """a / b."""
        return self.insert(arith.DivfOp(a, b)).result

    def neg(self, a: SSAValue) -> SSAValue:
        """-a."""
        return self.insert(arith.NegfOp(a)).result

    def scale(self, a: SSAValue, c: float) -> SSAValue:
        """a * c for a Python constant c."""
        return self.mul(a, self.const(c, a.type))

    def unary(self, op_type: type[Operation], x: SSAValue) -> SSAValue:
        """A one-operand op such as ``math.sin``."""
        return self.insert(op_type(x)).results[0]  # type: ignore[call-arg]

    def cmpf(self, pred: str, a: SSAValue, b: SSAValue) -> SSAValue:
        """``arith.cmpf`` with an ordered predicate such as ``"oge"``."""
        return self.insert(arith.CmpfOp(a, b, pred)).result

    def select(self, c: SSAValue, a: SSAValue, b: SSAValue) -> SSAValue:
        """c ? a : b."""
        return self.insert(arith.SelectOp(c, a, b)).result

    def sqrt(self, x: SSAValue) -> SSAValue:
        """sqrt(x)."""
        return self.unary(math.SqrtOp, x)

    # index arithmetic (loop trip counts) ------------------------------------------
    def addi(self, a: SSAValue, b: SSAValue) -> SSAValue:
        """Integer a + b."""
        return self.insert(arith.AddiOp(a, b)).result

    def subi(self, a: SSAValue, b: SSAValue) -> SSAValue:
        """Integer a - b."""
        return self.insert(arith.SubiOp(a, b)).result

    def muli(self, a: SSAValue, b: SSAValue) -> SSAValue:
        """Integer a * b."""
        return self.insert(arith.MuliOp(a, b)).result

    def ceildivsi(self, a: SSAValue, b: SSAValue) -> SSAValue:
        """Signed ceil(a / b)."""
        return self.insert(arith.CeilDivSIOp(a, b)).result

    def maxsi(self, a: SSAValue, b: SSAValue) -> SSAValue:
        """Signed max(a, b)."""
        return self.insert(arith.MaxSIOp(a, b)).result
