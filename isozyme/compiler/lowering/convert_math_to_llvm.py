"""``convert-math-to-llvm``: lower ``math`` ops to LLVM intrinsics and libm calls.

Functions LLVM has an intrinsic for (``llvm.sin``, ``llvm.pow``, ``llvm.fabs``...)
become ``llvm.call``s of the declared intrinsic; the others become calls of the libm
function (``tan``, ``atan2``, ``expm1``..., with the ``f`` suffix for ``f32``), declared
as external ``llvm.func``s that MCJIT resolves from the process. Calls (rather than
xDSL's ``llvm.intr.*`` ops) are used because they carry fast-math flags through
``xdsl.backend.llvm``.
"""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects import builtin, llvm, math
from xdsl.dialects.builtin import Float32Type, i1
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

from isozyme.compiler.lowering._common import (
    call,
    declare_function,
    llvm_fastmath,
    module_of,
    type_suffix,
)

#: math op -> LLVM intrinsic base name (overloaded on the float type).
INTRINSICS: dict[type[Operation], str] = {
    math.SinOp: "llvm.sin",
    math.CosOp: "llvm.cos",
    math.ExpOp: "llvm.exp",
    math.Exp2Op: "llvm.exp2",
    math.LogOp: "llvm.log",
    math.Log2Op: "llvm.log2",
    math.Log10Op: "llvm.log10",
    math.SqrtOp: "llvm.sqrt",
    math.PowFOp: "llvm.pow",
    math.AbsFOp: "llvm.fabs",
    math.FloorOp: "llvm.floor",
    math.CeilOp: "llvm.ceil",
    math.RoundEvenOp: "llvm.roundeven",
    math.RoundOp: "llvm.round",
    math.TruncOp: "llvm.trunc",
    math.CopySignOp: "llvm.copysign",
    math.FmaOp: "llvm.fma",
}

#: math op -> libm function (double version; ``f`` is appended for ``f32``).
LIBM: dict[type[Operation], str] = {
    math.TanOp: "tan",
    math.AsinOp: "asin",
    math.AcosOp: "acos",
    math.AtanOp: "atan",
    math.Atan2Op: "atan2",
    math.SinhOp: "sinh",
    math.CoshOp: "cosh",
    math.TanhOp: "tanh",
    math.AsinhOp: "asinh",
    math.AcoshOp: "acosh",
    math.AtanhOp: "atanh",
    math.ExpM1Op: "expm1",
    math.Log1pOp: "log1p",
    math.CbrtOp: "cbrt",
    math.ErfOp: "erf",
}

#: integer bit-counting ops -> intrinsic taking an extra ``i1 is_zero_poison`` (or not).
INT_INTRINSICS: dict[type[Operation], tuple[str, bool]] = {
    math.AbsIOp: ("llvm.abs", True),
    math.CountLeadingZerosOp: ("llvm.ctlz", True),
    math.CountTrailingZerosOp: ("llvm.cttz", True),
    math.CtPopOp: ("llvm.ctpop", False),
}


class FloatMathLowering(RewritePattern):
    """Float ``math`` ops -> ``llvm.call`` of an intrinsic or of libm, with fast-math."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        t = op.results[0].type if op.results else None
        if type(op) in INTRINSICS:
            name = f"{INTRINSICS[type(op)]}.{type_suffix(t)}"  # type: ignore[arg-type]
        elif type(op) in LIBM:
            name = LIBM[type(op)] + ("f" if isinstance(t, Float32Type) else "")
        else:
            return
        assert t is not None
        args = list(op.operands)
        declare_function(module_of(op), name, [a.type for a in args], t)
        rewriter.replace(op, call(name, args, t, llvm_fastmath(op)))


class FPowILowering(RewritePattern):
    """``math.fpowi`` -> ``llvm.pow(x, sitofp(n))``.

    ``llvm.powi`` only takes an ``i32`` exponent on x86 (libcall ``__powidf2``), which
    would silently truncate a 64-bit exponent, and it multiplies repeatedly, so it
    rounds differently from Python's ``x ** n``.  Python computes ``float ** int`` with
    libm's ``pow`` on the exponent converted to float; so do we.
    """

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, math.FPowIOp):
            return
        t = op.result.type
        exponent = op.rhs
        # index-typed exponents are already i64 here: arith lowering ran first
        conv = llvm.SIToFPOp(exponent, t)
        new_ops: list[Operation] = [conv]
        name = f"llvm.pow.{type_suffix(t)}"
        declare_function(module_of(op), name, [t, t], t)
        new_ops.append(call(name, [op.lhs, conv.results[0]], t, llvm_fastmath(op)))
        rewriter.replace(op, new_ops)


class RsqrtLowering(RewritePattern):
    """``math.rsqrt`` -> ``1 / llvm.sqrt(x)``."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, math.RsqrtOp):
            return
        t = op.result.type
        name = f"llvm.sqrt.{type_suffix(t)}"
        declare_function(module_of(op), name, [t], t)
        fm = llvm_fastmath(op)
        sqrt = call(name, [op.operand], t, fm)
        one = llvm.ConstantOp(builtin.FloatAttr(1.0, t), t)  # type: ignore[arg-type]
        div = llvm.FDivOp(one, sqrt, fm)
        rewriter.replace(op, [sqrt, one, div])


class IntMathLowering(RewritePattern):
    """``absi``/``ctlz``/``cttz``/``ctpop`` -> the LLVM integer intrinsic."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        entry = INT_INTRINSICS.get(type(op))
        if entry is None:
            return
        base, poison_flag = entry
        t = op.results[0].type
        name = f"{base}.{type_suffix(t)}"
        args = [op.operands[0]]
        new_ops: list[Operation] = []
        if poison_flag:
            # is_int_min_poison / is_zero_poison = false: defined for every input.
            false = llvm.ConstantOp(builtin.IntegerAttr(0, i1), i1)
            new_ops.append(false)
            args.append(false.result)
        declare_function(module_of(op), name, [a.type for a in args], t)
        new_ops.append(call(name, args, t))
        rewriter.replace(op, new_ops)


class ConvertMathToLLVMPass(ModulePass):
    """Lower every supported ``math`` op of the module (``math.ipowi`` is not)."""

    name = "convert-math-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [
                    FloatMathLowering(),
                    FPowILowering(),
                    RsqrtLowering(),
                    IntMathLowering(),
                ]
            ),
            apply_recursively=False,
        ).rewrite_module(op)
