"""Forward-mode AD: generate ``fwddiffe<f>`` from ``f``.

Tangents are propagated next to the primal code, op by op, in one sweep.  Structured
control flow keeps its structure: ``scf.for``/``scf.while`` carry the tangents of active
loop-carried values as extra iteration arguments, ``scf.if`` yields extra tangent
results, and ``func.call`` calls the callee's own ``fwddiffe`` function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from xdsl.dialects import func, memref, scf
from xdsl.dialects.builtin import FunctionType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint

from isozyme.compiler.ad.common import DerivativeBuilder, jvp, lookup_callee
from isozyme.compiler.ad.memory import emit_shadow_alloc, emit_zero_like, is_buffer
from isozyme.compiler.ad_rules import is_guard
from isozyme.compiler.analysis.buffers import is_view, view_source
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
                self._emit_op(e, op)
        return func.FuncOp(
            name, FunctionType.from_lists(in_types, out_types), Region(block),
            visibility="private",
        )

    def _tangent_or_zero(self, e: Emitter, v: SSAValue) -> SSAValue:
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
                outs.append(self._tangent_or_zero(e, v))
        e.insert(func.ReturnOp(*outs))
        return [o.type for o in outs]

    def _emit_block_body(self, e: Emitter, block: Block) -> Operation:
        """Emit every op of ``block`` but its terminator, which is returned."""
        ops = list(block.ops)
        for op in ops[:-1]:
            self._emit_op(e, op)
        return ops[-1]

    def _emit_op(self, e: Emitter, op: Operation) -> None:
        match op:
            case scf.ForOp():
                self._emit_for(e, op)
            case scf.IfOp():
                self._emit_if(e, op)
            case scf.WhileOp():
                self._emit_while(e, op)
            case func.CallOp() if self.info.any_active(op.results):
                self._emit_call(e, op)
            case _ if is_guard(op):
                # A run-time check guards the derivative code as it guards the primal.
                e.insert(op.clone(value_mapper=self.vmap))
            case memref.LoadOp() | memref.StoreOp() | memref.AllocOp() | memref.DeallocOp():
                self._emit_memory(e, op)
            case _ if is_view(op):
                self._emit_memory(e, op)
            case _ if op.regions:
                if self.info.any_active(r for o in op.walk() for r in o.results):
                    raise UnsupportedError(f"forward mode of '{op.name}' is not supported")
                e.insert(op.clone(value_mapper=self.vmap))
            case _:
                clone = e.insert(op.clone(value_mapper=self.vmap))
                if op.results and self.info.is_active(op.results[0]):
                    t = jvp(
                        e, op, lambda v: self.vmap.get(v, v),
                        [self.tan.get(a) for a in op.operands],
                    )
                    if t is not None:
                        self.tan[op.results[0]] = t
                del clone

    # memory -------------------------------------------------------------------
    def _emit_memory(self, e: Emitter, op: Operation) -> None:
        """Shadow-memory rules: tangents live in the shadow buffer at the same index."""
        e.insert(op.clone(value_mapper=self.vmap))
        idx = lambda o: [self.vmap.get(i, i) for i in o.indices]  # noqa: E731
        match op:
            case memref.LoadOp() if op.memref in self.tan and self.info.is_active(op.res):
                self.tan[op.res] = e.insert(
                    memref.LoadOp.get(self.tan[op.memref], idx(op))
                ).res
            case memref.StoreOp() if op.memref in self.tan:
                t = self._tangent_or_zero(e, op.value)
                e.insert(memref.StoreOp.get(t, self.tan[op.memref], idx(op)))
            case memref.AllocOp() if self.info.is_active(op.memref):
                self.tan[op.memref] = emit_shadow_alloc(
                    e, self.vmap[op.memref].owner, zero=False  # type: ignore[arg-type]
                )
            case memref.DeallocOp() if op.memref in self.tan:
                e.insert(memref.DeallocOp.get(self.tan[op.memref]))
            case _ if is_view(op) and view_source(op) in self.tan:
                src = view_source(op)
                view = e.insert(op.clone(value_mapper={**self.vmap, src: self.tan[src]}))
                self.tan[op.results[0]] = view.results[0]
            case _:
                pass

    # scf.for ------------------------------------------------------------------
    def _carried_active(self, *groups: Sequence[SSAValue]) -> list[int]:
        n = len(groups[0])
        return [i for i in range(n) if any(self.info.is_active(g[i]) for g in groups)]

    def _emit_for(self, e: Emitter, op: scf.ForOp) -> None:
        body = op.body.block
        carried = list(body.args[1:])
        act = self._carried_active(carried, list(op.res))
        inits = [self.vmap.get(v, v) for v in op.iter_args]
        inits += [self._tangent_or_zero(e, op.iter_args[i]) for i in act]
        new_block = Block(arg_types=[body.args[0].type] + [v.type for v in inits])
        self.vmap[body.args[0]] = new_block.args[0]
        for i, arg in enumerate(carried):
            self.vmap[arg] = new_block.args[1 + i]
        for k, i in enumerate(act):
            self.tan[carried[i]] = new_block.args[1 + len(carried) + k]
        be = Emitter(InsertPoint.at_end(new_block))
        term = self._emit_block_body(be, body)
        yields = [self.vmap.get(v, v) for v in term.operands]
        yields += [self._tangent_or_zero(be, term.operands[i]) for i in act]
        be.insert(scf.YieldOp(*yields))
        new = e.insert(
            scf.ForOp(
                self.vmap.get(op.lb, op.lb), self.vmap.get(op.ub, op.ub),
                self.vmap.get(op.step, op.step), inits, new_block,
            )
        )
        for i, r in enumerate(op.res):
            self.vmap[r] = new.res[i]
        for k, i in enumerate(act):
            self.tan[op.res[i]] = new.res[len(carried) + k]

    # scf.if -------------------------------------------------------------------
    def _emit_if(self, e: Emitter, op: scf.IfOp) -> None:
        act = [i for i, r in enumerate(op.results) if self.info.is_active(r)]
        types = [r.type for r in op.results] + [op.results[i].type for i in act]
        regions = []
        for region in (op.true_region, op.false_region):
            block = Block()
            be = Emitter(InsertPoint.at_end(block))
            if region.blocks:
                term = self._emit_block_body(be, region.block)
                yields = [self.vmap.get(v, v) for v in term.operands]
                yields += [self._tangent_or_zero(be, term.operands[i]) for i in act]
            else:
                yields = []
            be.insert(scf.YieldOp(*yields))
            regions.append(Region(block))
        new = e.insert(scf.IfOp(self.vmap.get(op.cond, op.cond), types, *regions))
        for i, r in enumerate(op.results):
            self.vmap[r] = new.results[i]
        for k, i in enumerate(act):
            self.tan[op.results[i]] = new.results[len(op.results) + k]

    # scf.while ----------------------------------------------------------------
    def _emit_while(self, e: Emitter, op: scf.WhileOp) -> None:
        before, after = op.before_region.block, op.after_region.block
        n_before, n_after = len(before.args), len(after.args)
        act_b = self._carried_active(list(before.args), list(op.arguments))
        act_a = self._carried_active(list(after.args), list(op.results))
        inits = [self.vmap.get(v, v) for v in op.arguments]
        inits += [self._tangent_or_zero(e, op.arguments[i]) for i in act_b]
        # before region: evaluates the condition, forwards values to `after`
        bblock = Block(arg_types=[v.type for v in inits])
        for i, a in enumerate(before.args):
            self.vmap[a] = bblock.args[i]
        for k, i in enumerate(act_b):
            self.tan[before.args[i]] = bblock.args[n_before + k]
        be = Emitter(InsertPoint.at_end(bblock))
        cond = self._emit_block_body(be, before)
        fwd = list(cond.operands[1:])
        cargs = [self.vmap.get(v, v) for v in fwd]
        cargs += [self._tangent_or_zero(be, fwd[i]) for i in act_a]
        be.insert(scf.ConditionOp(self.vmap.get(cond.operands[0], cond.operands[0]), *cargs))
        # after region: the loop body
        ablock = Block(arg_types=[v.type for v in cargs])
        for i, a in enumerate(after.args):
            self.vmap[a] = ablock.args[i]
        for k, i in enumerate(act_a):
            self.tan[after.args[i]] = ablock.args[n_after + k]
        ae = Emitter(InsertPoint.at_end(ablock))
        term = self._emit_block_body(ae, after)
        yields = [self.vmap.get(v, v) for v in term.operands]
        yields += [self._tangent_or_zero(ae, term.operands[i]) for i in act_b]
        ae.insert(scf.YieldOp(*yields))
        new = e.insert(
            scf.WhileOp(inits, [v.type for v in cargs], Region(bblock), Region(ablock))
        )
        for i, r in enumerate(op.results):
            self.vmap[r] = new.results[i]
        for k, i in enumerate(act_a):
            self.tan[op.results[i]] = new.results[n_after + k]

    # func.call ----------------------------------------------------------------
    def _emit_call(self, e: Emitter, op: func.CallOp) -> None:
        if any(is_buffer(a) and a in self.tan for a in op.arguments):
            raise UnsupportedError(
                f"forward mode of a call of {op.callee} with an active buffer argument "
                "(inline the callee)"
            )
        callee = lookup_callee(op)
        acts = [
            Activity.DUP if self.tan.get(a) is not None else Activity.CONST
            for a in op.arguments
        ]
        rets = [
            Activity.DUP if self.info.is_active(r) else Activity.CONST for r in op.results
        ]
        name = self.factory.forward(callee, acts, rets)
        operands: list[SSAValue] = []
        for a, act in zip(op.arguments, acts):
            operands.append(self.vmap.get(a, a))
            if act is Activity.DUP:
                operands.append(self.tan[a])
        types = []
        for r, act in zip(op.results, rets):
            types.append(r.type)
            if act is Activity.DUP:
                types.append(r.type)
        call = e.insert(func.CallOp(name, operands, types))
        k = 0
        for r, act in zip(op.results, rets):
            self.vmap[r] = call.res[k]
            k += 1
            if act is Activity.DUP:
                self.tan[r] = call.res[k]
                k += 1
