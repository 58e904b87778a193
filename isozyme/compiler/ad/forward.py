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

from isozyme.compiler.ad.common import DerivativeBuilder, jvp
from isozyme.compiler.ad_rules.memref import emit_zero_like
from isozyme.compiler.ad_rules.registry import OpRule, lookup
from isozyme.compiler.analysis.buffers import is_buffer
from isozyme.compiler.emitter import Emitter
from isozyme.dialects.enzyme import Activity
from isozyme.errors import UnsupportedError

if TYPE_CHECKING:
    from isozyme.compiler.ad.factory import DerivativeFactory

_SHADOWED = (Activity.DUP, Activity.DUPNONEED)


def generate_forward(
    factory: "DerivativeFactory",
    fn: func.FuncOp,
    activities: Sequence[Activity],
    ret_activities: Sequence[Activity],
    name: str,
) -> func.FuncOp:
    """Build ``name``: the forward-mode derivative of ``fn`` (Enzyme's conventions)."""
    return _ForwardDiff(factory, fn, activities, ret_activities).build(name)


class _ForwardDiff(DerivativeBuilder):
    def __init__(
        self,
        factory: "DerivativeFactory",
        fn: func.FuncOp,
        activities: Sequence[Activity],
        ret_activities: Sequence[Activity],
    ):
        for a in activities:
            if a not in (*_SHADOWED, Activity.CONST):
                raise UnsupportedError(f"forward mode does not accept activity {a.value}")
        super().__init__(factory, fn, activities, ret_activities, _SHADOWED)
        self.vmap: dict[SSAValue, SSAValue] = {}
        self.tan: dict[SSAValue, SSAValue] = {}

    # ---------------------------------------------------------------------------
    def build(self, name: str) -> func.FuncOp:
        old_entry = self.fn.body.block
        in_types = []
        for arg, act in zip(old_entry.args, self.activities):
            in_types.append(arg.type)
            if act in _SHADOWED:
                in_types.append(arg.type)
        block = Block(arg_types=in_types)
        k = 0
        for arg, act in zip(old_entry.args, self.activities):
            self.vmap[arg] = block.args[k]
            k += 1
            if act in _SHADOWED:
                # a buffer's shadow receives tangents of every store, active or not
                if self.info.is_active(arg) or is_buffer(arg):
                    self.tan[arg] = block.args[k]
                k += 1
        e = Emitter(InsertPoint.at_end(block))
        out_types: list = []
        for op in old_entry.ops:
            if isinstance(op, func.ReturnOp):
                out_types = self._emit_return(e, op)
            else:
                self.emit_op(e, op)
        return func.FuncOp(
            name, FunctionType.from_lists(in_types, out_types), Region(block),
            visibility="private",
        )

    def tangent_or_zero(self, e: Emitter, v: SSAValue) -> SSAValue:
        """The tangent of ``v``, or a zero of its type (a zero array for a buffer)."""
        t = self.tan.get(v)
        if t is not None:
            return t
        if is_buffer(v):  # an inactive returned array: its tangent is a zero array
            return emit_zero_like(e, self.vmap.get(v, v))
        return e.zero(v.type)

    def _emit_return(self, e: Emitter, op: func.ReturnOp) -> list:
        outs: list[SSAValue] = []
        for v, act in zip(op.operands, self.ret_activities):
            if act in (Activity.DUP, Activity.CONST):
                outs.append(self.vmap.get(v, v))
            if act in _SHADOWED:
                outs.append(self.tangent_or_zero(e, v))
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
                    [self.tan.get(a) for a in op.operands],
                )
                if t is not None:
                    self.tan[op.results[0]] = t
