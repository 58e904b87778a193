"""Derivative rules of the ``arith`` dialect (Enzyme-MLIR's ArithDerivatives.td).

Integer ops, comparisons and float<->int casts have no derivative: their results are
never active, so they need no entry.
"""

from __future__ import annotations

from xdsl.dialects import arith
from xdsl.ir import Operation, SSAValue

from isozyme.compiler.ad_rules import (
    MINUS_ONE,
    ONE,
    CustomRule,
    PartialsRule,
    Primals,
    Rule,
)
from isozyme.compiler.emitter import Emitter


def _select_forward(e: Emitter, p: Primals, t) -> SSAValue | None:
    ta, tb = t[1], t[2]
    if ta is None and tb is None:
        return None
    ty = p._op.results[0].type
    return e.select(p.operand(0), ta or e.zero(ty), tb or e.zero(ty))


def _select_reverse(e: Emitter, p: Primals, adj: SSAValue):
    zero = e.zero(adj.type)
    c = p.operand(0)
    return (None, e.select(c, adj, zero), e.select(c, zero, adj))


def _cast_forward(e: Emitter, p: Primals, t) -> SSAValue | None:
    if t[0] is None:
        return None
    return e.insert(type(p._op)(t[0], p._op.results[0].type)).results[0]  # type: ignore


def _cast_reverse(e: Emitter, p: Primals, adj: SSAValue):
    back = arith.TruncFOp if isinstance(p._op, arith.ExtFOp) else arith.ExtFOp
    return (e.insert(back(adj, p._op.operands[0].type)).results[0],)


def _max_partials(pred: str):
    def partials(e: Emitter, p: Primals):
        c = e.cmpf(pred, p.x, p.y)
        one, zero = e.const(1.0, p.x.type), e.zero(p.x.type)
        return (e.select(c, one, zero), e.select(c, zero, one))

    return partials


ARITH_RULES: dict[type[Operation], Rule] = {
    arith.AddfOp: PartialsRule(lambda e, p: (ONE, ONE)),
    arith.SubfOp: PartialsRule(lambda e, p: (ONE, MINUS_ONE)),
    arith.MulfOp: PartialsRule(lambda e, p: (p.y, p.x)),
    arith.DivfOp: PartialsRule(
        lambda e, p: (e.div(e.const(1.0, p.y.type), p.y), e.neg(e.div(p.result, p.y)))
    ),
    arith.NegfOp: PartialsRule(lambda e, p: (MINUS_ONE,)),
    arith.MaximumfOp: PartialsRule(_max_partials("oge")),
    arith.MaxnumfOp: PartialsRule(_max_partials("oge")),
    arith.MinimumfOp: PartialsRule(_max_partials("ole")),
    arith.MinnumfOp: PartialsRule(_max_partials("ole")),
    arith.SelectOp: CustomRule(_select_forward, _select_reverse),
    arith.ExtFOp: CustomRule(_cast_forward, _cast_reverse),
    arith.TruncFOp: CustomRule(_cast_forward, _cast_reverse),
}

# Float-valued ops whose derivative is zero everywhere it exists.
ARITH_ZERO: frozenset[type[Operation]] = frozenset({arith.SIToFPOp, arith.UIToFPOp})
