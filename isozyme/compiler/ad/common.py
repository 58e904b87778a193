"""Pieces shared by forward and reverse mode: rule application and call handling."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from xdsl.dialects import func
from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Operation, SSAValue

from isozyme.compiler.ad_rules import (
    CustomRule,
    PartialsRule,
    Primals,
    Rule,
    _Unit,
    lookup_rule,
)
from isozyme.compiler.analysis.activity import (
    ActivityInfo,
    analyze_activity,
    check_const_buffers,
)
from isozyme.compiler.emitter import Emitter
from isozyme.dialects.enzyme import SHADOWED, Activity, DerivativeSignature
from isozyme.errors import UnsupportedError

if TYPE_CHECKING:
    from isozyme.compiler.ad.factory import DerivativeFactory




class DerivativeBuilder:
    """What the forward and reverse generators share: the function, its activities,
    and the activity analysis (Duplicated buffers are inputs and outputs)."""

    def __init__(
        self,
        factory: "DerivativeFactory",
        fn: func.FuncOp,
        sig: DerivativeSignature,
        active_rets: Sequence[Activity],
    ):
        self.factory = factory
        self.fn = fn
        self.sig = sig
        #: the batch width: tangents (forward) and adjoints (reverse) are tuples of it
        self.width = sig.width
        self.activities = list(sig.activities)
        self.ret_activities = list(sig.ret_activities)
        self.shadowed = [i for i, a in enumerate(self.activities) if a in SHADOWED]
        args = fn.body.block.args
        self.info: ActivityInfo = analyze_activity(
            fn,
            [i for i, a in enumerate(self.activities) if a is Activity.ACTIVE] + self.shadowed,
            [i for i, a in enumerate(self.ret_activities) if a in active_rets],
            [i for i in self.shadowed if isinstance(args[i].type, MemRefType)],
        )
        check_const_buffers(fn, self.info, self.shadowed)
        #: run once the derivative function is complete (rules that choose a variant
        #: by what the finished code uses: ``user_rules.py``'s ``needs_primal``)
        self.finalizers: list[Callable[[], None]] = []

    def finalize(self) -> None:
        """Run the finalizers, in the order they were registered."""
        for fin in self.finalizers:
            fin()


def check_shadowed(info: ActivityInfo, op: Operation, shadows: dict, mode: str) -> None:
    """Refuse ``op`` when it uses an active buffer that has no shadow: the buffer was
    made by an op whose rule gives no shadow (a region op yielding an array, an op
    without a buffer rule), so the derivatives through it would be silently lost."""
    for v in op.operands:
        if isinstance(v.type, MemRefType) and v not in shadows and info.is_active(v):
            owner = v.owner
            made = (f"the result of '{owner.name}'" if isinstance(owner, Operation)
                    else f"a block argument of '{owner.parent_op().name}'"  # type: ignore[union-attr]
                    if owner.parent_op() is not None else "a block argument")
            raise UnsupportedError(
                f"{mode} mode of '{op.name}': it uses an array that depends on active "
                f"inputs but has no shadow ({made}): no derivative rule gives a shadow "
                "to arrays made that way, so their derivatives would be lost"
            )


def rule_for(op: Operation) -> Rule:
    """The derivative rule of an active op, or a clear error naming the op."""
    rule = lookup_rule(op)
    if rule is None:
        raise UnsupportedError(
            f"isozyme cannot differentiate '{op.name}': no derivative rule is registered "
            "for it (see isozyme/compiler/ad_rules/)"
        )
    return rule


def times_partial(e: Emitter, v: SSAValue, partial, contract: bool = False) -> SSAValue:
    """v * partial, where partial may be the unit markers ONE / MINUS_ONE;
    ``contract``: LLVM may fuse the product into the add that sums it (an FMA)."""
    if isinstance(partial, _Unit):
        return v if partial.sign > 0 else e.neg(v)
    return e.mul(v, partial, contract=contract)


def jvp(
    e: Emitter,
    op: Operation,
    fetch: Callable[[SSAValue], SSAValue],
    tangents: Sequence[Sequence[SSAValue] | None],
    width: int = 1,
) -> tuple[SSAValue, ...] | None:
    """The tangent of ``op``'s (single) result, one value per lane, or None when it is
    zero.  ``tangents``: per operand its lanes, or None.  Partial derivatives are
    computed once and applied to every lane (vector forward mode)."""
    if all(t is None for t in tangents):
        return None
    rule = rule_for(op)
    p = Primals(op, fetch)
    if isinstance(rule, CustomRule):
        custom = [
            rule.forward(e, p, [None if t is None else t[lane] for t in tangents])
            for lane in range(width)
        ]
        if all(c is None for c in custom):
            return None
        return tuple(c if c is not None else e.zero(op.results[0].type) for c in custom)
    assert isinstance(rule, PartialsRule)
    partials = rule.partials(e, p)
    lanes: list[SSAValue] = []
    for lane in range(width):
        total: SSAValue | None = None
        for t, d in zip(tangents, partials):
            if t is None or d is None:
                continue
            term = times_partial(e, t[lane], d, contract=True)
            total = term if total is None else e.add(total, term, reassoc=True)
        if total is None:
            return None
        lanes.append(total)
    return tuple(lanes)


def vjp(
    e: Emitter, op: Operation, fetch: Callable[[SSAValue], SSAValue],
    adj: Sequence[SSAValue], wanted: Sequence[bool],
) -> list[tuple[SSAValue, ...] | None]:
    """Per-operand adjoint contributions of ``op``, one value per lane, given its
    result's adjoint lanes ``adj``.  Partial derivatives are computed once and applied
    to every lane (batched reverse mode)."""
    rule = rule_for(op)
    p = Primals(op, fetch)
    if isinstance(rule, CustomRule):
        per_lane = [list(rule.reverse(e, p, a)) for a in adj]
        contribs: list[tuple[SSAValue, ...] | None] = [
            None if lanes[0] is None else tuple(lanes) for lanes in zip(*per_lane)
        ]
    else:
        assert isinstance(rule, PartialsRule)
        contribs = [
            None if (d is None or not w) else tuple(times_partial(e, a, d) for a in adj)
            for d, w in zip(rule.partials(e, p), wanted)
        ]
    return [c if w else None for c, w in zip(contribs, wanted)]


def lookup_callee(op: func.CallOp) -> func.FuncOp:
    """The ``func.func`` a ``func.call`` calls."""
    from xdsl.traits import SymbolTable

    callee = SymbolTable.lookup_symbol(op, op.callee)
    if not isinstance(callee, func.FuncOp) or not callee.body.blocks:
        raise UnsupportedError(
            f"cannot differentiate a call of {op.callee}: its body is not available"
        )
    return callee


def return_has_primal(act: Activity) -> bool:
    """Whether a return activity asks for the primal value."""
    return act in (Activity.ACTIVE, Activity.DUP, Activity.CONST)
