"""Forward-mode AD: generate ``fwddiffe<f>`` from ``f``.

Tangents are propagated next to the primal code, op by op, in one sweep.  Scalar ops
apply their rules' partials; buffer ops, structured control flow and calls emit their
own code through their registered rules (``ad_rules/memref.py``, ``scf.py``,
``func.py``), which call back :meth:`_ForwardDiff.emit_op` for nested blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint

from isozyme.compiler.ad.common import DerivativeBuilder, check_shadowed, jvp
from isozyme.compiler.ad_rules.memref import emit_zero_like
from isozyme.compiler.ad_rules.registry import OpRule, lookup
from isozyme.compiler.analysis.buffers import is_buffer
from isozyme.compiler.emitter import Emitter
from isozyme.dialects.enzyme import SHADOWED, Activity, DerivativeSignature
from isozyme.errors import UnsupportedError

if TYPE_CHECKING:
    from isozyme.compiler.ad.factory import DerivativeFactory



def generate_forward(
    factory: "DerivativeFactory", fn: func.FuncOp, sig: DerivativeSignature, name: str
) -> func.FuncOp:
    """Build ``name``: the forward-mode derivative of ``fn`` with signature ``sig``
    (Enzyme's conventions; ``sig.width`` tangents per value in batch mode)."""
    return _ForwardDiff(factory, fn, sig).build(name)


#: A value's tangent: one SSA value per batch lane.
Tangent = tuple[SSAValue, ...]


class _ForwardDiff(DerivativeBuilder):
    """The forward-mode generator.  ``tan`` maps a primal value to its tangent, a
    tuple of ``width`` values (vector forward mode: the primal code runs once, each
    partial derivative is computed once and applied to every lane)."""

    def __init__(self, factory: "DerivativeFactory", fn: func.FuncOp, sig: DerivativeSignature):
        for a in sig.activities:
            if a not in (*SHADOWED, Activity.CONST):
                raise UnsupportedError(f"forward mode does not accept activity {a.value}")
        super().__init__(factory, fn, sig, SHADOWED)
        self.vmap: dict[SSAValue, SSAValue] = {}
        self.tan: dict[SSAValue, Tangent] = {}

    # ---------------------------------------------------------------------------
    def build(self, name: str) -> func.FuncOp:
        old_entry = self.fn.body.block
        w = self.width
        in_types = self.sig.operand_types([a.type for a in old_entry.args], [])
        block = Block(arg_types=in_types)
        k = 0
        for arg, act in zip(old_entry.args, self.activities):
            self.vmap[arg] = block.args[k]
            k += 1
            if act in SHADOWED:
                # a buffer's shadow receives tangents of every store, active or not
                if self.info.is_active(arg) or is_buffer(arg):
                    self.tan[arg] = tuple(block.args[k : k + w])
                k += w
        e = Emitter(InsertPoint.at_end(block))
        out_types: list = []
        for op in old_entry.ops:
            if isinstance(op, func.ReturnOp):
                out_types = self._emit_return(e, op)
            else:
                self.emit_op(e, op)
        self.finalize()
        return func.FuncOp(
            name, FunctionType.from_lists(in_types, out_types), Region(block),
            visibility="private",
        )

    def tangent_or_zero(self, e: Emitter, v: SSAValue) -> Tangent:
        """The tangent of ``v``, or zeros of its type (zero arrays for a buffer)."""
        t = self.tan.get(v)
        if t is not None:
            return t
        if is_buffer(v):  # an inactive returned array: its tangent is a zero array
            return tuple(emit_zero_like(e, self.vmap.get(v, v)) for _ in range(self.width))
        z = e.zero(v.type)
        return (z,) * self.width

    def tangents_of(self, e: Emitter, values: Sequence[SSAValue]) -> list[SSAValue]:
        """The tangents of ``values``, lane after lane per value, flattened (extra
        operands of a region op or terminator)."""
        return [t for v in values for t in self.tangent_or_zero(e, v)]

    def bind_tangents(self, values: Sequence[SSAValue], flat: Sequence[SSAValue]) -> None:
        """Record ``flat`` (as :meth:`tangents_of` lays them out) as the tangents of
        ``values``."""
        w = self.width
        assert len(flat) == w * len(values)
        for k, v in enumerate(values):
            self.tan[v] = tuple(flat[k * w : (k + 1) * w])

    def _emit_return(self, e: Emitter, op: func.ReturnOp) -> list:
        # a returned active array without a tangent would come back as zeros
        check_shadowed(self.info, op, self.tan, "forward")
        outs: list[SSAValue] = []
        for v, act in zip(op.operands, self.ret_activities):
            if act in (Activity.DUP, Activity.CONST):
                outs.append(self.vmap.get(v, v))
            if act in SHADOWED:
                outs += self.tangent_or_zero(e, v)
        e.insert(func.ReturnOp(*outs))
        return [o.type for o in outs]

    def emit_block_body(self, e: Emitter, block: Block) -> Operation:
        """Emit every op of ``block`` but its terminator, which is returned."""
        ops = list(block.ops)
        for op in ops[:-1]:
            self.emit_op(e, op)
        return ops[-1]

    def emit_op(self, e: Emitter, op: Operation) -> None:
        """Emit ``op`` and its tangent code: the op's registered rule, or the scalar
        rule applied to the operands' tangents."""
        check_shadowed(self.info, op, self.tan, "forward")
        rule = lookup(op)
        if isinstance(rule, OpRule):
            rule.forward(self, e, op)
        elif op.regions:
            if self.info.any_active(r for o in op.walk() for r in o.results):
                raise UnsupportedError(f"forward mode of '{op.name}' is not supported")
            e.insert(op.clone(value_mapper=self.vmap))
        else:
            e.insert(op.clone(value_mapper=self.vmap))
            if op.results and self.info.is_active(op.results[0]):
                t = jvp(
                    e, op, lambda v: self.vmap.get(v, v),
                    [self.tan.get(a) for a in op.operands], self.width,
                )
                if t is not None:
                    self.tan[op.results[0]] = t
