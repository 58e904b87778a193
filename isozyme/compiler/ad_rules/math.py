"""Derivative rules of the ``math`` dialect (Enzyme-MLIR's MathDerivatives.td).

Each entry gives d(result)/d(operand) in terms of the primal operand ``p.x`` (and
``p.y``) and the primal result ``p.result``.
"""

from __future__ import annotations

import math as pymath

from collections.abc import Iterator
from typing import Any

from xdsl.dialects import arith, math
from xdsl.dialects.builtin import IntegerType
from xdsl.ir import Operation

from isozyme.compiler.ad_rules import ONE, PartialsRule, Primals, Rule
from isozyme.compiler.ad_rules.registry import Edge, OpRule, ZeroRule, register
from isozyme.compiler.emitter import Emitter
from isozyme.dialects.math_ext import ErfcOp, SincosOp


def _one_minus_sq(e: Emitter, v):
    return e.sub(e.const(1.0, v.type), e.mul(v, v))


def _one_plus_sq(e: Emitter, v):
    return e.add(e.const(1.0, v.type), e.mul(v, v))


def _recip(e: Emitter, v):
    return e.div(e.const(1.0, v.type), v)


def _sign(e: Emitter, p: Primals):
    x = p.x
    one, zero = e.const(1.0, x.type), e.zero(x.type)
    pos = e.select(e.cmpf("ogt", x, zero), one, zero)
    neg = e.select(e.cmpf("olt", x, zero), one, zero)
    return (e.sub(pos, neg),)


def _zero_where(e: Emitter, cond_value, value):
    """select(cond_value == 0, 0, value): the limit of a 0 * inf product that is 0."""
    zero = e.zero(value.type)
    if isinstance(cond_value.type, IntegerType):
        is_zero = e.insert(arith.CmpiOp(cond_value, e.const(0, cond_value.type), "eq")).result
    else:
        is_zero = e.cmpf("oeq", cond_value, e.zero(cond_value.type))
    return e.select(is_zero, zero, value)


def _powf(e: Emitter, p: Primals):
    # d(a^b)/da = b * a^(b-1) (0 when b == 0);  d(a^b)/db = a^b * log(a) (0 when a^b == 0)
    a, b = p.x, p.y
    da = e.mul(b, e.insert(math.PowFOp(a, e.sub(b, e.const(1.0, b.type)))).result)
    db = e.mul(p.result, e.unary(math.LogOp, a))
    return (_zero_where(e, b, da), _zero_where(e, p.result, db))


def _fpowi(e: Emitter, p: Primals):
    # d(a^n)/da = n * a^(n-1) for an integer n (0 when n == 0, also at a == 0)
    a, n = p.x, p.y
    n_minus_1 = e.insert(arith.SubiOp(n, e.const(1, n.type))).result
    nf = e.insert(arith.SIToFPOp(n, a.type)).result
    da = e.mul(nf, e.insert(math.FPowIOp(a, n_minus_1)).result)
    return (_zero_where(e, n, da), None)


def _atan2(e: Emitter, p: Primals):
    # atan2(a, b): d/da = b / (a^2 + b^2), d/db = -a / (a^2 + b^2)
    a, b = p.x, p.y
    r2 = e.add(e.mul(a, a), e.mul(b, b))
    return (e.div(b, r2), e.neg(e.div(a, r2)))


def _copysign(e: Emitter, p: Primals):
    # copysign(a, b) = |a| * sign(b): derivative wrt a is sign(a) * sign(b)
    ratio = e.div(p.result, p.x)
    return (ratio, None)


MATH_RULES: dict[type[Operation], Rule] = {
    math.SinOp: PartialsRule(lambda e, p: (e.unary(math.CosOp, p.x),)),
    math.CosOp: PartialsRule(lambda e, p: (e.neg(e.unary(math.SinOp, p.x)),)),
    math.TanOp: PartialsRule(lambda e, p: (_one_plus_sq(e, p.result),)),
    math.AsinOp: PartialsRule(lambda e, p: (_recip(e, e.sqrt(_one_minus_sq(e, p.x))),)),
    math.AcosOp: PartialsRule(
        lambda e, p: (e.neg(_recip(e, e.sqrt(_one_minus_sq(e, p.x)))),)
    ),
    math.AtanOp: PartialsRule(lambda e, p: (_recip(e, _one_plus_sq(e, p.x)),)),
    math.SinhOp: PartialsRule(lambda e, p: (e.unary(math.CoshOp, p.x),)),
    math.CoshOp: PartialsRule(lambda e, p: (e.unary(math.SinhOp, p.x),)),
    math.TanhOp: PartialsRule(lambda e, p: (_one_minus_sq(e, p.result),)),
    math.AsinhOp: PartialsRule(lambda e, p: (_recip(e, e.sqrt(_one_plus_sq(e, p.x))),)),
    math.AcoshOp: PartialsRule(
        lambda e, p: (
            _recip(e, e.sqrt(e.sub(e.mul(p.x, p.x), e.const(1.0, p.x.type)))),
        )
    ),
    math.AtanhOp: PartialsRule(lambda e, p: (_recip(e, _one_minus_sq(e, p.x)),)),
    math.ExpOp: PartialsRule(lambda e, p: (p.result,)),
    math.Exp2Op: PartialsRule(lambda e, p: (e.scale(p.result, pymath.log(2.0)),)),
    math.ExpM1Op: PartialsRule(
        lambda e, p: (e.add(p.result, e.const(1.0, p.result.type)),)
    ),
    math.LogOp: PartialsRule(lambda e, p: (_recip(e, p.x),)),
    math.Log2Op: PartialsRule(lambda e, p: (_recip(e, e.scale(p.x, pymath.log(2.0))),)),
    math.Log10Op: PartialsRule(
        lambda e, p: (_recip(e, e.scale(p.x, pymath.log(10.0))),)
    ),
    math.Log1pOp: PartialsRule(
        lambda e, p: (_recip(e, e.add(e.const(1.0, p.x.type), p.x)),)
    ),
    math.SqrtOp: PartialsRule(lambda e, p: (e.div(e.const(0.5, p.x.type), p.result),)),
    math.RsqrtOp: PartialsRule(
        lambda e, p: (e.scale(e.mul(p.result, e.mul(p.result, p.result)), -0.5),)
    ),
    math.CbrtOp: PartialsRule(
        lambda e, p: (
            e.div(e.const(1.0 / 3.0, p.x.type), e.mul(p.result, p.result)),
        )
    ),
    math.ErfOp: PartialsRule(
        lambda e, p: (
            e.scale(
                e.unary(math.ExpOp, e.neg(e.mul(p.x, p.x))), 2.0 / pymath.sqrt(pymath.pi)
            ),
        )
    ),
    ErfcOp: PartialsRule(
        lambda e, p: (
            e.scale(
                e.unary(math.ExpOp, e.neg(e.mul(p.x, p.x))), -2.0 / pymath.sqrt(pymath.pi)
            ),
        )
    ),
    # fma(a, b, c) = a * b + c
    math.FmaOp: PartialsRule(lambda e, p: (p.y, p.x, ONE)),
    math.AbsFOp: PartialsRule(_sign),
    math.PowFOp: PartialsRule(_powf),
    math.FPowIOp: PartialsRule(_fpowi),
    math.Atan2Op: PartialsRule(_atan2),
    math.CopySignOp: PartialsRule(_copysign),
}

class SincosRule(OpRule):
    """``math.sincos`` (two results, so not a :class:`PartialsRule`): d sin = cos dx,
    d cos = -sin dx; in reverse, dx += cos * adj(sin) - sin * adj(cos), with sin and
    cos recomputed from the primal operand by one new ``math.sincos``."""

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        assert isinstance(op, SincosOp)
        yield op.operand, op.sin
        yield op.operand, op.cos

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, SincosOp)
        clone = e.insert(op.clone(value_mapper=fwd.vmap))
        dx = fwd.tan.get(op.operand)
        if dx is None:
            return
        sin, cos = clone.sin, clone.cos
        if fwd.info.is_active(op.sin):
            fwd.tan[op.sin] = tuple(e.mul(d, cos) for d in dx)
        if fwd.info.is_active(op.cos):
            fwd.tan[op.cos] = tuple(e.neg(e.mul(d, sin)) for d in dx)

    def reverse(self, rev: Any, ctx: Any, op: Operation) -> None:
        assert isinstance(op, SincosOp)
        if not rev.info.is_active(op.operand):
            return
        adj_sin = ctx.adj.get(op.sin) if rev.info.is_active(op.sin) else None
        adj_cos = ctx.adj.get(op.cos) if rev.info.is_active(op.cos) else None
        if adj_sin is None and adj_cos is None:
            return
        e = ctx.e
        again = e.insert(SincosOp(rev.primal(op.operand, ctx)))
        lanes = []
        for lane in range(rev.width):
            terms = []
            if adj_sin is not None:
                terms.append(e.mul(adj_sin[lane], again.cos))
            if adj_cos is not None:
                terms.append(e.neg(e.mul(adj_cos[lane], again.sin)))
            lanes.append(terms[0] if len(terms) == 1 else e.add(terms[0], terms[1]))
        rev.accumulate(ctx, op.operand, lanes)


# Piecewise-constant float ops: zero derivative.
MATH_ZERO: dict[type[Operation], ZeroRule] = {
    t: ZeroRule()
    for t in (math.FloorOp, math.CeilOp, math.RoundOp, math.RoundEvenOp, math.TruncOp)
}

register(MATH_RULES)
register(MATH_ZERO)
register({SincosOp: SincosRule()})
