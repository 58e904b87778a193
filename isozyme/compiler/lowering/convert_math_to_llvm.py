"""``convert-math-to-llvm``: lower ``math`` ops to LLVM intrinsics and libm calls.

Functions LLVM has an intrinsic for (``llvm.sin``, ``llvm.pow``, ``llvm.fabs``...)
become ``llvm.call``s of the declared intrinsic; the others become calls of the libm
function (``tan``, ``atan2``, ``expm1``..., with the ``f`` suffix for ``f32``), declared
as external ``llvm.func``s named ``__iz_libm_<name>`` (:data:`LIBM_PREFIX`: a user
function may be called ``tan``); the runtime links them to libm's functions. Calls (rather than
xDSL's ``llvm.intr.*`` ops) are used because they carry fast-math flags through
``xdsl.backend.llvm``.
"""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects import builtin, llvm, math
from xdsl.dialects.builtin import Float32Type, IntegerAttr, i1, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

from isozyme.compiler.lowering._common import (
    HELPER_PREFIX,
    LIBM_PREFIX,
    call,
    declare_function,
    llvm_fastmath,
    module_of,
    type_suffix,
)
from isozyme.dialects.math_ext import ErfcOp, SincosOp

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
    ErfcOp: "erfc",
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
            name = LIBM_PREFIX + LIBM[type(op)] + ("f" if isinstance(t, Float32Type) else "")
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


def _ipowi_helper(name: str, t: Attribute) -> llvm.FuncOp:
    """``name(b, e) -> b ** e`` on integers of type ``t``, by repeated squaring.

    ``e >= 0``: Python's ``b ** e`` (wrapping on overflow, as every ``i64`` op does).
    ``e < 0``, as MLIR defines ``math.ipowi``: ``1`` for ``b == 1``, ``+-1`` for
    ``b == -1``, else ``0`` (MLIR leaves ``b == 0`` undefined; this gives ``0``).  The
    frontend only emits ``math.ipowi`` for exponents known to be non-negative.
    """
    entry = Block(arg_types=[t, t])
    header = Block(arg_types=[t, t, t])  # result, base, exponent
    body = Block()
    done = Block(arg_types=[t])
    negative = Block()
    b0, e0 = entry.args
    r, b, e = header.args

    def add(blk: Block, op: Operation) -> SSAValue:
        blk.add_op(op)
        return op.results[0]

    def const(blk: Block, v: int) -> SSAValue:
        return add(blk, llvm.ConstantOp(IntegerAttr(v, t), t))

    def icmp(blk: Block, lhs: SSAValue, rhs: SSAValue, pred: str) -> SSAValue:
        flag = IntegerAttr(llvm.ICmpPredicateFlag(pred).to_int(), i64)
        return add(blk, llvm.ICmpOp(lhs, rhs, flag))

    one = const(entry, 1)
    zero = const(entry, 0)
    entry.add_op(llvm.CondBrOp(icmp(entry, e0, zero, "slt"), negative, [], header,
                               [one, b0, e0]))
    header.add_op(llvm.CondBrOp(icmp(header, e, zero, "sgt"), body, [], done, [r]))
    odd = icmp(body, add(body, llvm.AndOp(e, one)), zero, "ne")
    times = add(body, llvm.MulOp(r, b))
    r2 = add(body, llvm.SelectOp(odd, times, r))
    b2 = add(body, llvm.MulOp(b, b))
    e2 = add(body, llvm.AShrOp(e, one))
    body.add_op(llvm.BrOp(header, r2, b2, e2))
    done.add_op(llvm.ReturnOp(done.args[0]))
    # b ** negative: 1 for b == 1; for b == -1, -1 if e is odd else 1; else 0.
    minus_one = const(negative, -1)
    is_one = icmp(negative, b0, one, "eq")
    is_minus_one = icmp(negative, b0, minus_one, "eq")
    e_odd = icmp(negative, add(negative, llvm.AndOp(e0, one)), zero, "ne")
    sign = add(negative, llvm.SelectOp(e_odd, minus_one, one))
    unit = add(negative, llvm.SelectOp(is_minus_one, sign, zero))
    res = add(negative, llvm.SelectOp(is_one, one, unit))
    negative.add_op(llvm.ReturnOp(res))
    return llvm.FuncOp(
        name,
        llvm.LLVMFunctionType([t, t], t),
        linkage=llvm.LinkageAttr("internal"),
        body=Region([entry, header, body, done, negative]),
    )


class IPowILowering(RewritePattern):
    """``math.ipowi`` -> ``llvm.call`` of an internal helper ``__iz_ipowi_<T>`` (one per
    integer type and module; O3 inlines it) that squares repeatedly: ``O(log e)``
    multiplications.  See :func:`_ipowi_helper` for negative exponents."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, math.IPowIOp):
            return
        t = op.result.type
        name = f"{HELPER_PREFIX}ipowi_{type_suffix(t)}"
        module = module_of(op)
        if not any(
            getattr(o.properties.get("sym_name"), "data", None) == name for o in module.ops
        ):
            module.body.block.add_op(_ipowi_helper(name, t))
        rewriter.replace(op, call(name, [op.lhs, op.rhs], t))


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


class SincosLowering(RewritePattern):
    """``math.sincos`` -> ``llvm.sin`` and ``llvm.cos`` of the operand (LLVM's backend
    fuses the pair into one ``sincos`` libcall where the target has one)."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, SincosOp):
            return
        t = op.operand.type
        fm = llvm_fastmath(op)
        calls = []
        for base in ("llvm.sin", "llvm.cos"):
            name = f"{base}.{type_suffix(t)}"
            declare_function(module_of(op), name, [t], t)
            calls.append(call(name, [op.operand], t, fm))
        rewriter.replace(op, calls, [c.results[0] for c in calls])


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
    """Lower every supported ``math`` op of the module."""

    name = "convert-math-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [
                    FloatMathLowering(),
                    FPowILowering(),
                    IPowILowering(),
                    RsqrtLowering(),
                    SincosLowering(),
                    IntMathLowering(),
                ]
            ),
            apply_recursively=False,
        ).rewrite_module(op)
