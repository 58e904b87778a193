"""Reverse-mode AD: generate ``diffe<f>`` from ``f`` (Enzyme's combined mode).

The generated function first runs the *forward sweep* (a clone of ``f``'s body) and then
the *reverse sweep*, which walks the primal ops backwards accumulating adjoints.

Scalar ops apply their rules' partials to the result's adjoint.  Buffer ops,
structured control flow and calls emit their own reverse code through their registered
rules (``ad_rules/memref.py``: Enzyme's shadow memory; ``ad_rules/scf.py``: loops run
backwards, branches on the same condition; ``ad_rules/func.py``: the callee's own
``diffe`` function), which call back :meth:`_ReverseDiff.reverse_block` for nested
blocks.

Primal values needed from inside loop bodies and branches are recomputed or cached
(see :mod:`isozyme.compiler.ad.tape`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import FunctionType, IndexType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint

from isozyme.compiler.ad.common import DerivativeBuilder, check_shadowed, vjp
from isozyme.compiler.ad.tape import PrimalFetcher, RevCtx, free_values
from isozyme.compiler.ad_rules import allocated_by
from isozyme.compiler.ad_rules.memref import emit_add_into
from isozyme.compiler.ad_rules.registry import OpRule, lookup
from isozyme.compiler.analysis.buffers import (
    initializations,
    is_buffer,
    read_only_buffers,
    root_buffer,
)
from isozyme.compiler.emitter import Emitter
from isozyme.dialects.check import CheckOp
from isozyme.dialects.enzyme import SEEDED, SHADOWED, Activity, DerivativeSignature
from isozyme.errors import UnsupportedError

if TYPE_CHECKING:
    from isozyme.compiler.ad.factory import DerivativeFactory


#: How the run-time check of a seed buffer's sizes begins its message (the runtime
#: reports it as the caller's bad seed).
SEED_SHAPE_MESSAGE = "bad seed"

def generate_reverse(
    factory: "DerivativeFactory", fn: func.FuncOp, sig: DerivativeSignature, name: str
) -> func.FuncOp:
    """Build ``name``: the reverse-mode derivative of ``fn`` with signature ``sig``
    (Enzyme's conventions; ``sig.width`` seeds, shadows and gradients per value in
    batch mode, all lanes in one reverse sweep)."""
    return _ReverseDiff(factory, fn, sig).build(name)


#: A value's adjoint, or a buffer's shadow: one SSA value per batch lane.
Lanes = tuple[SSAValue, ...]


class _ReverseDiff(DerivativeBuilder, PrimalFetcher):
    """The reverse-mode generator.  ``ctx.adj`` maps a primal value to its adjoint and
    ``shadow`` a primal buffer to its shadow buffers, each a tuple of ``width`` values
    (batched reverse mode: the forward sweep runs once, each partial derivative is
    computed once and applied to every lane)."""

    def __init__(self, factory: "DerivativeFactory", fn: func.FuncOp, sig: DerivativeSignature):
        activities = sig.activities
        for a, arg in zip(activities, fn.body.block.args):
            if a in SHADOWED and not is_buffer(arg):
                raise UnsupportedError(
                    f"reverse mode with a Duplicated argument of type {arg.type}: "
                    "scalars are immutable, mark them Active instead"
                )
            if a in (Activity.ACTIVENONEED, Activity.CONSTNONEED):
                raise UnsupportedError(f"reverse mode does not accept activity {a.value}")
        super().__init__(factory, fn, sig, SEEDED)
        self.shadow: dict[SSAValue, Lanes] = {}  # primal buffer -> shadow buffers
        self.read_only = read_only_buffers(fn)
        self.deferred_frees: list[SSAValue] = []
        self.fwd_map: dict[SSAValue, SSAValue] = {}
        self.op_map: dict[Operation, Operation] = {}
        self.while_counters: dict[Operation, SSAValue] = {}
        self.caches: list[SSAValue] = []
        self.entry: Block | None = None

    # ---------------------------------------------------------------------------
    def build(self, name: str) -> func.FuncOp:
        old = self.fn.body.block
        ret_op = old.last_op
        assert isinstance(ret_op, func.ReturnOp)
        seeds_for = [
            i for i, a in enumerate(self.ret_activities) if a in SEEDED
        ]
        w = self.width
        in_types = self.sig.operand_types(
            [a.type for a in old.args], [v.type for v in ret_op.operands]
        )
        block = Block(arg_types=in_types)
        self.entry = block
        k = 0
        for a, act in zip(old.args, self.activities):
            self.fwd_map[a] = block.args[k]
            k += 1
            if act in SHADOWED:
                self.shadow[a] = tuple(block.args[k : k + w])
                k += w
        # forward sweep
        e = Emitter(InsertPoint.at_end(block))
        for op in list(old.ops)[:-1]:
            rule = lookup(op)
            if isinstance(rule, OpRule) and rule.forward_sweep(self, e, op):
                continue
            clone = e.insert(op.clone(value_mapper=self.fwd_map))
            for p, c in zip(op.walk(), clone.walk()):
                self.op_map[p] = c
        for op in list(old.walk()):
            rule = lookup(op)
            if isinstance(rule, OpRule):
                rule.prepare_reverse(self, op)
        # reverse sweep
        ctx = RevCtx(old, None, block)
        for i in seeds_for:  # each return's width seeds, after the arguments
            v, seed = ret_op.operands[i], tuple(block.args[k : k + w])
            k += w
            if is_buffer(v):
                self._seed_buffer(ctx, i, v, seed)
            else:
                self.accumulate(ctx, v, seed)
        self.reverse_block(ctx)
        outs: list[SSAValue] = []
        for v, act in zip(ret_op.operands, self.ret_activities):
            if act in (Activity.ACTIVE, Activity.CONST):
                outs.append(self.fwd_map.get(v, v))
        for arg, act in zip(old.args, self.activities):
            if act is Activity.ACTIVE:
                outs += self.adj_or_zero(ctx, ctx, arg)
        for cache in self.caches:
            self.free_cache(ctx.e, cache)
        for buf in self.deferred_frees:
            ctx.e.insert(memref.DeallocOp.get(buf))
        self._free_returned_buffers(ctx, ret_op)
        ctx.e.insert(func.ReturnOp(*outs))
        self.finalize()
        return func.FuncOp(
            name,
            FunctionType.from_lists(in_types, [o.type for o in outs]),
            Region(block),
            visibility="private",
        )

    def _seed_buffer(self, ctx: RevCtx, i: int, v: SSAValue, seeds: Lanes) -> None:
        """Start the reverse sweep of returned buffer ``v`` (return value ``i``) from
        the buffers ``seeds`` (the cotangents, Enzyme-MLIR's seed of a memref return,
        one per lane): check that their sizes are the returned array's, then add each
        into ``v``'s shadow of its lane.  The seeds themselves are only read."""
        e = ctx.e
        primal = self.fwd_map.get(v, v)
        for lane, seed in enumerate(seeds):
            which = f"return value {i}" if len(seeds) == 1 else f"return value {i}, lane {lane},"
            for d in range(len(v.type.get_shape())):  # type: ignore[attr-defined]
                k = e.const(d, IndexType())
                got = e.insert(memref.DimOp(seed, k)).result
                want = e.insert(memref.DimOp(primal, k)).result
                ok = e.insert(arith.CmpiOp(got, want, "eq")).result
                e.insert(CheckOp(ok, "shape", (
                    f"{SEED_SHAPE_MESSAGE}: the seed of {which} has size {{0}} in "
                    f"dimension {d}, but the returned array has size {{1}}"), [got, want]))
        if not self.info.is_active(v):
            return  # the returned array does not depend on an active input
        shadow = self.shadow.get(v)
        if shadow is None:
            raise UnsupportedError(
                f"reverse mode of a function returning an array made by "
                f"'{v.owner.name}': its shadow is not known"  # type: ignore[union-attr]
            )
        for sh, seed in zip(shadow, seeds):
            emit_add_into(e, sh, seed)

    def _free_returned_buffers(self, ctx: RevCtx, ret_op: func.ReturnOp) -> None:
        """Free what the forward sweep allocated for returned buffers and that outlives
        the call nowhere: their shadows, and the buffers whose primal is not returned
        (a ``noneed`` return activity)."""
        freed: set[SSAValue] = set()
        for v, act in zip(ret_op.operands, self.ret_activities):
            if not is_buffer(v):
                continue
            root, owner = root_buffer(v), root_buffer(v).owner
            if not isinstance(owner, Operation) or allocated_by(owner) is None:
                continue  # an argument (or a view of one): the caller's memory
            if owner.parent_block() is not ctx.fwd_block:
                continue  # allocated in a region: not a buffer of the sweep's scope
            if root in freed:
                continue
            freed.add(root)
            for sh in self.shadow.get(root, ()):
                ctx.e.insert(memref.DeallocOp.get(sh))
            if act not in (Activity.ACTIVE, Activity.CONST):
                ctx.e.insert(memref.DeallocOp.get(self.fwd_map[root]))

    def touches_shadow(self, op: Operation) -> bool:
        """Whether ops in ``op``'s regions use a shadowed buffer from outside it."""
        return any(v in self.shadow for v in free_values(op))

    # helpers --------------------------------------------------------------------
    def needs_reverse(self, op: Operation) -> bool:
        """Whether region op ``op`` has active results, reads active outside values or
        has active block arguments."""
        return self.info.any_active(op.results) or self.info.any_active(
            free_values(op)
        ) or any(self.info.any_active(b.args) for r in op.regions for b in r.blocks)

    def accumulate(self, ctx: RevCtx, v: SSAValue, c: Sequence[SSAValue] | None) -> None:
        """Add contribution ``c`` (one value per lane) to the adjoint of ``v`` (when
        ``v`` is active)."""
        # Adjoint accumulation is AD's own sum, not the user's: its order is free, so
        # it may be reassociated (Enzyme makes the same choice); LLVM then vectorizes
        # the reductions reverse loops carry.
        if c is None or not self.info.is_active(v):
            return
        assert len(c) == self.width
        cur = ctx.adj.get(v)
        ctx.adj[v] = tuple(c) if cur is None else tuple(
            ctx.e.add(a, b, reassoc=True) for a, b in zip(cur, c)
        )

    def adj_or_zero(self, ctx: RevCtx, at: RevCtx, v: SSAValue) -> Lanes:
        """The adjoint of ``v`` in ``ctx`` (one value per lane), or zeros emitted in
        ``at``."""
        a = ctx.adj.get(v)
        return a if a is not None else (at.e.zero(v.type),) * self.width

    def adjoints_of(self, ctx: RevCtx, at: RevCtx, values: Sequence[SSAValue]) -> list[SSAValue]:
        """The adjoints of ``values`` (:meth:`adj_or_zero`), lane after lane per value,
        flattened: the extra operands of a region op or terminator."""
        return [a for v in values for a in self.adj_or_zero(ctx, at, v)]

    def lanes(self, flat: Sequence[SSAValue], k: int) -> Lanes:
        """Value ``k``'s lanes in ``flat`` (laid out as :meth:`adjoints_of` does)."""
        w = self.width
        return tuple(flat[k * w : (k + 1) * w])

    # the reverse sweep ------------------------------------------------------------
    def reverse_block(self, ctx: RevCtx) -> None:
        """Emit the reverse of ``ctx.fwd_block``'s ops (last to first) into its reverse
        block; in a loop body or branch, rules first set up what lives for one reverse
        iteration (shadows of buffers allocated there)."""
        assert ctx.fwd_block is not None
        if ctx.parent is not None:
            for op in ctx.fwd_block.ops:
                rule = lookup(op)
                if isinstance(rule, OpRule):
                    rule.reverse_entry(self, ctx, op)
        skip = initializations(ctx.fwd_block)
        for op in reversed(list(ctx.fwd_block.ops)[:-1]):
            if op in skip:
                continue
            check_shadowed(self.info, op, self.shadow, "reverse")
            rule = lookup(op)
            if isinstance(rule, OpRule):
                rule.reverse(self, ctx, op)
            elif op.regions:
                if self.needs_reverse(op):
                    raise UnsupportedError(f"reverse mode of '{op.name}' is not supported")
            else:
                self._reverse_simple(ctx, op)
        # cache buffers popped for this block's reverse loops (tape._buffer_cache)
        for buf in ctx.frees:
            ctx.e.insert(memref.DeallocOp.get(buf))

    def _reverse_simple(self, ctx: RevCtx, op: Operation) -> None:
        if not op.results or not self.info.is_active(op.results[0]):
            return
        adj = ctx.adj.get(op.results[0])
        if adj is None:
            return
        wanted = [self.info.is_active(o) for o in op.operands]
        contribs = vjp(ctx.e, op, lambda v: self.primal(v, ctx), adj, wanted)
        for v, c in zip(op.operands, contribs):
            self.accumulate(ctx, v, c)
