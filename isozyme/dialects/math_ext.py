"""``math`` ops of upstream MLIR that xDSL 0.74 lacks: ``math.sincos`` and ``math.erfc``.

Enzyme-MLIR's tests use both; they keep MLIR's names, syntax and meaning::

    %s, %c = math.sincos %x : f64       // sin(x), cos(x)
    %y = math.erfc %x fastmath<fast> : f32  // 1 - erf(x), accurate for large x
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.arith import FastMathFlagsAttr
from xdsl.dialects.builtin import AnyFloat, container_of
from xdsl.dialects.math import FloatingPointLikeUnaryMathOperation
from xdsl.ir import Dialect, Operation, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    VarConstraint,
    irdl_op_definition,
    operand_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure, SameOperandsAndResultType


@irdl_op_definition
class ErfcOp(FloatingPointLikeUnaryMathOperation):
    """``math.erfc``: the complementary error function ``1 - erf(x)``."""

    name = "math.erfc"

    traits = traits_def(Pure(), SameOperandsAndResultType())


@irdl_op_definition
class SincosOp(IRDLOperation):
    """``math.sincos``: the sine and the cosine of one operand, as two results of its
    type."""

    name = "math.sincos"

    T: ClassVar = VarConstraint("T", container_of(AnyFloat))

    operand = operand_def(T)
    sin = result_def(T)
    cos = result_def(T)

    fastmath = prop_def(FastMathFlagsAttr, default_value=FastMathFlagsAttr("none"))

    traits = traits_def(Pure())

    assembly_format = "$operand (`fastmath` `` $fastmath^)? attr-dict `:` type($operand)"

    def __init__(
        self, operand: Operation | SSAValue, fastmath: FastMathFlagsAttr | None = None
    ):
        operand = SSAValue.get(operand)
        super().__init__(
            operands=[operand],
            result_types=[operand.type, operand.type],
            properties={"fastmath": fastmath},
        )


MathExt = Dialect("math_ext", [ErfcOp, SincosOp])
