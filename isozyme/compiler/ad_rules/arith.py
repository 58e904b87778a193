"""Derivative rules of the ``arith`` dialect (Enzyme-MLIR's ArithDerivatives.td).

Integer ops, comparisons and float->int casts have no derivative: their results are
never active.  Those the reverse sweep recomputes rather than caches (index arithmetic
of induction variables, comparisons) are registered as ``InactiveRule`` with their
``recompute`` policy.

``arith.select`` has a rule of its own (:class:`SelectRule`): on scalars it picks the
chosen operand's tangent/adjoint, on buffers (``memref``-typed) it selects the shadows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from xdsl.dialects import arith
from xdsl.dialects.builtin import IndexType, IntegerAttr, IntegerType, MemRefType
from xdsl.ir import Attribute, Operation, SSAValue

from isozyme.compiler.ad_rules import (
    MINUS_ONE,
    ONE,
    CustomRule,
    PartialsRule,
    Primals,
    Rule,
)
from isozyme.compiler.ad_rules.registry import (
    Edge,
    InactiveRule,
    MemoryRule,
    ZeroRule,
    register,
)
from isozyme.compiler.emitter import Emitter
from isozyme.errors import UnsupportedError


class SelectRule(MemoryRule):
    """``arith.select``.  Of scalars: the tangent is the select of the operands'
    tangents, the adjoint goes to the operand the condition chose.  Of buffers
    (``memref``-typed, Enzyme-MLIR's ``select_ptr``): the result is the memory of one
    operand, so its shadow is the select of the operands' shadows, in both modes (a
    view of two sources: the activity analysis links it to both, each way)."""

    recompute = "float"

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        assert isinstance(op, arith.SelectOp)
        for src in (op.lhs, op.rhs):
            yield src, op.result
            if isinstance(op.result.type, MemRefType):
                yield op.result, src  # a store through the result writes the source

    @staticmethod
    def _shadows(op: arith.SelectOp, shadows: dict) -> tuple | None:
        """The shadows of both operands (None when neither has one; refused when only
        one has: a Const array selected with an active one)."""
        sa, sb = shadows.get(op.lhs), shadows.get(op.rhs)
        if sa is None and sb is None:
            return None
        if sa is None or sb is None:
            raise UnsupportedError(
                "arith.select between an array with a derivative (Duplicated or "
                "computed from active values) and one without (Const): its shadow "
                "would be a select of a shadow and nothing; mark both Duplicated")
        return sa, sb

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, arith.SelectOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        cond = fwd.vmap.get(op.cond, op.cond)
        if isinstance(op.result.type, MemRefType):
            pair = self._shadows(op, fwd.tan)
            if pair is not None:
                fwd.tan[op.result] = tuple(e.select(cond, a, b) for a, b in zip(*pair))
            return
        if not fwd.info.is_active(op.result):
            return
        ta, tb = fwd.tan.get(op.lhs), fwd.tan.get(op.rhs)
        if ta is None and tb is None:
            return
        zero = e.zero(op.result.type)
        fwd.tan[op.result] = tuple(
            e.select(cond, ta[k] if ta else zero, tb[k] if tb else zero)
            for k in range(fwd.width)
        )

    def forward_sweep(self, rev: Any, e: Emitter, op: Operation) -> bool:
        assert isinstance(op, arith.SelectOp)
        if not isinstance(op.result.type, MemRefType):
            return False
        pair = self._shadows(op, rev.shadow)
        if pair is None:
            return False
        clone = e.insert(op.clone(value_mapper=rev.fwd_map))
        rev.shadow[op.result] = tuple(e.select(clone.cond, a, b) for a, b in zip(*pair))
        return True

    def reverse_entry(self, rev: Any, ctx: Any, op: Operation) -> None:
        assert isinstance(op, arith.SelectOp)
        if not isinstance(op.result.type, MemRefType):
            return
        pair = self._shadows(op, rev.shadow)
        if pair is not None:
            cond = rev.primal(op.cond, ctx)
            rev.shadow[op.result] = tuple(ctx.e.select(cond, a, b) for a, b in zip(*pair))

    def reverse(self, rev: Any, ctx: Any, op: Operation) -> None:
        assert isinstance(op, arith.SelectOp)
        if isinstance(op.result.type, MemRefType):
            if ctx.parent is not None:
                rev.shadow.pop(op.result, None)
            return
        adj = ctx.adj.get(op.result)
        if adj is None or not rev.info.is_active(op.result):
            return
        e = ctx.e
        cond = rev.primal(op.cond, ctx)
        zero = e.zero(op.result.type)
        rev.accumulate(ctx, op.lhs, [e.select(cond, a, zero) for a in adj])
        rev.accumulate(ctx, op.rhs, [e.select(cond, zero, a) for a in adj])


def _cast_forward(e: Emitter, p: Primals, t) -> SSAValue | None:
    if t[0] is None:
        return None
    return e.insert(type(p._op)(t[0], p._op.results[0].type)).results[0]  # type: ignore


def _cast_reverse(e: Emitter, p: Primals, adj: SSAValue):
    back = arith.TruncFOp if isinstance(p._op, arith.ExtFOp) else arith.ExtFOp
    return (e.insert(back(adj, p._op.operands[0].type)).results[0],)


def _max_partials(pred: str):
    """The partials of a max/min: 1 for the operand ``cmpf pred`` selects, 0 for the
    other."""

    def partials(e: Emitter, p: Primals):
        """(d/dx, d/dy) of the op: a select on the same comparison."""
        c = e.cmpf(pred, p.x, p.y)
        one, zero = e.const(1.0, p.x.type), e.zero(p.x.type)
        return (e.select(c, one, zero), e.select(c, zero, one))

    return partials


# Reverse mode recomputes a few flops of cheap operands rather than caching them.
_FLOAT = "float"

ARITH_RULES: dict[type[Operation], Rule] = {
    arith.AddfOp: PartialsRule(lambda e, p: (ONE, ONE), recompute=_FLOAT),
    arith.SubfOp: PartialsRule(lambda e, p: (ONE, MINUS_ONE), recompute=_FLOAT),
    arith.MulfOp: PartialsRule(lambda e, p: (p.y, p.x), recompute=_FLOAT),
    arith.DivfOp: PartialsRule(
        lambda e, p: (e.div(e.const(1.0, p.y.type), p.y), e.neg(e.div(p.result, p.y)))
    ),
    arith.NegfOp: PartialsRule(lambda e, p: (MINUS_ONE,), recompute=_FLOAT),
    arith.MaximumfOp: PartialsRule(_max_partials("oge")),
    arith.MaxnumfOp: PartialsRule(_max_partials("oge")),
    arith.MinimumfOp: PartialsRule(_max_partials("ole")),
    arith.MinnumfOp: PartialsRule(_max_partials("ole")),
    arith.ExtFOp: CustomRule(_cast_forward, _cast_reverse, recompute="always"),
    arith.TruncFOp: CustomRule(_cast_forward, _cast_reverse, recompute=_FLOAT),
}

# Float-valued ops whose derivative is zero everywhere it exists.
ARITH_ZERO: dict[type[Operation], ZeroRule] = {
    arith.SIToFPOp: ZeroRule(recompute="always"),
    arith.UIToFPOp: ZeroRule(),
}

# Ops without derivative the reverse sweep recomputes: cheap pure integer ops (their
# chains end at loop indices, so they recompute at any depth) and float comparisons.
_ALWAYS = InactiveRule(recompute="always")
ARITH_INACTIVE: dict[type[Operation], InactiveRule] = {
    **{
        t: _ALWAYS
        for t in (
            arith.ConstantOp, arith.IndexCastOp, arith.AddiOp, arith.SubiOp,
            arith.MuliOp, arith.ExtUIOp, arith.ExtSIOp, arith.TruncIOp, arith.CmpiOp,
            arith.DivSIOp, arith.FloorDivSIOp, arith.CeilDivSIOp, arith.RemSIOp,
            arith.MaxSIOp, arith.MinSIOp, arith.AndIOp, arith.OrIOp, arith.XOrIOp,
        )
    },
    arith.CmpfOp: InactiveRule(recompute=_FLOAT),
}

register(ARITH_RULES)
register({arith.SelectOp: SelectRule()})
register(ARITH_ZERO)
register(ARITH_INACTIVE)


# index arithmetic that keeps distinct values distinct ---------------------------------
def _width(t: Attribute) -> int | None:
    if isinstance(t, IndexType):
        return 64
    return t.width.data if isinstance(t, IntegerType) else None


def _nonzero_constant(v: SSAValue) -> bool:
    op = v.owner
    return (isinstance(op, arith.ConstantOp) and isinstance(op.value, IntegerAttr)
            and op.value.value.data != 0)


def _invariant_side(op: Operation, invariant: Callable[[SSAValue], bool]) -> SSAValue | None:
    lhs, rhs = op.operands
    if invariant(rhs):
        return lhs
    return rhs if invariant(lhs) else None


def _scaled_side(op: Operation, invariant: Callable[[SSAValue], bool]) -> SSAValue | None:
    lhs, rhs = op.operands
    if _nonzero_constant(rhs):
        return lhs
    return rhs if _nonzero_constant(lhs) else None


def _widened(op: Operation, invariant: Callable[[SSAValue], bool]) -> SSAValue | None:
    wi, wo = _width(op.operands[0].type), _width(op.results[0].type)
    return op.operands[0] if wi is not None and wo is not None and wo >= wi else None


#: Integer ops whose result is an injective function of one operand when the others are
#: loop-invariant (``analysis/injectivity.py``: which iterations touch distinct elements):
#: op type -> ``(op, invariant) -> that operand | None``. ``+ c``, ``- c``, ``c - x``;
#: ``* k`` with ``k`` a non-zero constant; casts that do not narrow (``index`` is 64 bits).
ARITH_INJECTIVE: dict[
    type[Operation],
    Callable[[Operation, Callable[[SSAValue], bool]], SSAValue | None],
] = {
    arith.AddiOp: _invariant_side,
    arith.SubiOp: _invariant_side,
    arith.MuliOp: _scaled_side,
    arith.ExtSIOp: lambda op, invariant: op.operands[0],
    arith.IndexCastOp: _widened,
}


#: Ops that can be the whole body of an ``scf.reduce`` region (a combining op of its
#: two arguments) -> the ``memref.atomic_rmw`` kind that does the same
#: (``isozyme.dialects.memref_ext.ATOMIC_RMW_KIND``); ``analysis/reductions.py`` asks.
ARITH_COMBINING: dict[type[Operation], str] = {
    arith.AddfOp: "addf", arith.AddiOp: "addi", arith.MulfOp: "mulf",
    arith.MuliOp: "muli", arith.MaximumfOp: "maximumf", arith.MinimumfOp: "minimumf",
    arith.MaxnumfOp: "maxnumf", arith.MinnumfOp: "minnumf", arith.MaxSIOp: "maxs",
    arith.MinSIOp: "mins", arith.MaxUIOp: "maxu", arith.MinUIOp: "minu",
    arith.OrIOp: "ori", arith.AndIOp: "andi", arith.XOrIOp: "xori",
}
