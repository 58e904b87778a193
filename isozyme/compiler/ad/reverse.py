"""Reverse-mode AD: generate ``diffe<f>`` from ``f`` (Enzyme's combined mode).

The generated function first runs the *forward sweep* (a clone of ``f``'s body) and then
the *reverse sweep*, which walks the primal ops backwards accumulating adjoints.

Structured control flow reverses structurally:

* ``scf.for`` becomes an ``scf.for`` over the same trip count, run backwards; its
  iteration arguments carry the adjoints of the loop-carried values and of every active
  value from outside the loop that the body reads.  The induction variable is
  recomputed, not cached.
* ``scf.while`` gets an iteration counter in the forward sweep; its reverse is an
  ``scf.for`` over that count.
* ``scf.if`` becomes an ``scf.if`` on the same condition whose results are the updated
  adjoints of the outside values the branches read.
* ``func.call`` calls the callee's own ``diffe`` function (which recomputes its primal).

Memory follows Enzyme's shadow semantics: a load adds its adjoint into the shadow
buffer, a store takes the overwritten value's adjoint from the shadow and zeroes it.
Active local buffers get zeroed shadows (per reverse iteration when allocated in a
loop), and views of shadowed buffers are taken again of the shadows.

Primal values needed from inside loop bodies and branches are recomputed or cached
(see :mod:`isozyme.compiler.ad.tape`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from xdsl.dialects import func, memref, scf
from xdsl.dialects.builtin import FunctionType, IndexType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.ad.common import DerivativeBuilder, lookup_callee, vjp
from isozyme.compiler.ad.memory import (
    emit_fill,
    emit_shadow_alloc,
    initializations,
    is_buffer,
    read_only_buffers,
)
from isozyme.compiler.ad.tape import PrimalFetcher, RevCtx, defining_op
from isozyme.compiler.ad_rules import is_guard
from isozyme.compiler.analysis.buffers import is_view, view_source
from isozyme.compiler.emitter import Emitter
from isozyme.dialects import enzyme
from isozyme.dialects.enzyme import Activity
from isozyme.errors import UnsupportedError

if TYPE_CHECKING:
    from isozyme.compiler.ad.factory import DerivativeFactory

_ACTIVE_RET = (Activity.ACTIVE, Activity.ACTIVENONEED)
_SHADOWED = (Activity.DUP, Activity.DUPNONEED)

def generate_reverse(
    factory: "DerivativeFactory",
    fn: func.FuncOp,
    activities: Sequence[Activity],
    ret_activities: Sequence[Activity],
    name: str,
) -> func.FuncOp:
    """Build ``name``: the reverse-mode derivative of ``fn`` (Enzyme's conventions)."""
    return _ReverseDiff(factory, fn, activities, ret_activities).build(name)


def free_values(op: Operation) -> list[SSAValue]:
    """Values defined outside ``op`` that ops inside its regions use, in walk order."""
    seen: dict[SSAValue, None] = {}
    for inner in op.walk():
        if inner is op:
            continue
        for v in inner.operands:
            d = defining_op(v)
            if d is not None and (d is op or op.is_ancestor(d)):
                continue
            seen[v] = None
    return list(seen)


class _ReverseDiff(DerivativeBuilder, PrimalFetcher):
    def __init__(
        self,
        factory: "DerivativeFactory",
        fn: func.FuncOp,
        activities: Sequence[Activity],
        ret_activities: Sequence[Activity],
    ):
        for a, arg in zip(activities, fn.body.block.args):
            if a in (Activity.DUP, Activity.DUPNONEED) and not is_buffer(arg):
                raise UnsupportedError(
                    f"reverse mode with a Duplicated argument of type {arg.type}: "
                    "scalars are immutable, mark them Active instead"
                )
            if a in (Activity.ACTIVENONEED, Activity.CONSTNONEED):
                raise UnsupportedError(f"reverse mode does not accept activity {a.value}")
        super().__init__(factory, fn, activities, ret_activities, _ACTIVE_RET)
        self.shadow: dict[SSAValue, SSAValue] = {}  # primal buffer -> shadow buffer
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
            i for i, a in enumerate(self.ret_activities) if a in _ACTIVE_RET
        ]
        in_types = []
        for a, act in zip(old.args, self.activities):
            in_types += [a.type, a.type] if act in _SHADOWED else [a.type]
        in_types += [ret_op.operands[i].type for i in seeds_for]
        block = Block(arg_types=in_types)
        self.entry = block
        k = 0
        for a, act in zip(old.args, self.activities):
            self.fwd_map[a] = block.args[k]
            if act in _SHADOWED:
                self.shadow[a] = block.args[k + 1]
                k += 1
            k += 1
        # forward sweep
        e = Emitter(InsertPoint.at_end(block))
        for op in list(old.ops)[:-1]:
            if self._forward_memory(e, op):
                continue
            clone = e.insert(op.clone(value_mapper=self.fwd_map))
            for p, c in zip(op.walk(), clone.walk()):
                self.op_map[p] = c
        for op in old.walk():
            if isinstance(op, scf.WhileOp) and (
                self._needs_reverse(op) or self._touches_shadow(op)
            ):
                self._add_trip_counter(op)
        # reverse sweep
        ctx = RevCtx(old, None, block)
        n_in = len(in_types) - len(seeds_for)
        for k, i in enumerate(seeds_for):
            self._accumulate(ctx, ret_op.operands[i], block.args[n_in + k])
        self._reverse_ops(ctx)
        outs: list[SSAValue] = []
        for v, act in zip(ret_op.operands, self.ret_activities):
            if act in (Activity.ACTIVE, Activity.CONST):
                outs.append(self.fwd_map.get(v, v))
        for arg, act in zip(old.args, self.activities):
            if act is Activity.ACTIVE:
                outs.append(self._adj_or_zero(ctx, ctx, arg))
        for cache in self.caches:
            ctx.e.insert(enzyme.CacheFreeOp(cache))
        for buf in self.deferred_frees:
            ctx.e.insert(memref.DeallocOp.get(buf))
        ctx.e.insert(func.ReturnOp(*outs))
        return func.FuncOp(
            name,
            FunctionType.from_lists(in_types, [o.type for o in outs]),
            Region(block),
            visibility="private",
        )

    # memory ---------------------------------------------------------------------
    def _forward_memory(self, e: Emitter, op: Operation) -> bool:
        """Forward-sweep handling of top-level buffer ops; True if ``op`` was consumed.

        An active local buffer gets a zeroed shadow next to it; its frees (and its
        shadow's) move after the reverse sweep, which still reads the shadow.
        """
        match op:
            case memref.AllocOp() if self.info.is_active(op.memref):
                clone = e.insert(op.clone(value_mapper=self.fwd_map))
                self.shadow[op.memref] = emit_shadow_alloc(e, clone, zero=True)
                return True
            case memref.DeallocOp() if op.memref in self.shadow:
                self.deferred_frees += [self.fwd_map[op.memref], self.shadow[op.memref]]
                return True
            case _ if is_view(op) and view_source(op) in self.shadow:
                src = view_source(op)
                e.insert(op.clone(value_mapper=self.fwd_map))
                view = e.insert(
                    op.clone(value_mapper={**self.fwd_map, src: self.shadow[src]})
                )
                self.shadow[op.results[0]] = view.results[0]
                return True
        return False

    def _touches_shadow(self, op: Operation) -> bool:
        return any(v in self.shadow for v in free_values(op))

    def _reverse_memory(self, ctx: RevCtx, op: memref.LoadOp | memref.StoreOp) -> None:
        """Enzyme's shadow memory: a load adds its adjoint into the shadow; a store
        takes the overwritten value's adjoint from the shadow and zeroes it."""
        sh = self.shadow.get(op.memref)
        if sh is None:
            return
        e = ctx.e
        if isinstance(op, memref.LoadOp):
            adj = ctx.adj.get(op.res)
            if adj is None or not self.info.is_active(op.res):
                return
            idx = [self._primal(i, ctx) for i in op.indices]
            old = e.insert(memref.LoadOp.get(sh, idx)).res
            e.insert(memref.StoreOp.get(e.add(old, adj, reassoc=True), sh, idx))
            return
        idx = [self._primal(i, ctx) for i in op.indices]
        old = e.insert(memref.LoadOp.get(sh, idx)).res
        e.insert(memref.StoreOp.get(e.zero(old.type), sh, idx))
        self._accumulate(ctx, op.value, old)

    # helpers --------------------------------------------------------------------
    def _needs_reverse(self, op: Operation) -> bool:
        return self.info.any_active(op.results) or self.info.any_active(
            free_values(op)
        ) or any(self.info.any_active(b.args) for r in op.regions for b in r.blocks)

    def _accumulate(self, ctx: RevCtx, v: SSAValue, c: SSAValue | None) -> None:
        # Adjoint accumulation is AD's own sum, not the user's: its order is free, so
        # it may be reassociated (Enzyme makes the same choice); LLVM then vectorizes
        # the reductions reverse loops carry.
        if c is None or not self.info.is_active(v):
            return
        cur = ctx.adj.get(v)
        ctx.adj[v] = c if cur is None else ctx.e.add(cur, c, reassoc=True)

    def _adj_or_zero(self, ctx: RevCtx, at: RevCtx, v: SSAValue) -> SSAValue:
        a = ctx.adj.get(v)
        return a if a is not None else at.e.zero(v.type)

    # the reverse sweep ------------------------------------------------------------
    def _reverse_ops(self, ctx: RevCtx) -> None:
        assert ctx.fwd_block is not None
        if ctx.parent is not None:
            # A buffer allocated in a loop body or branch lives for one iteration: its
            # shadow lives for the matching reverse iteration, zeroed at its start.
            # Views taken in the body are taken again of the shadows, in order.
            for op in ctx.fwd_block.ops:
                if isinstance(op, memref.AllocOp) and self.info.is_active(op.memref):
                    sizes = [self._primal(v, ctx) for v in op.dynamic_sizes]
                    sh = ctx.e.insert(memref.AllocOp(sizes, [], op.memref.type)).memref
                    emit_fill(ctx.e, sh, 0.0)
                    self.shadow[op.memref] = sh
                elif is_view(op) and view_source(op) in self.shadow:
                    mapping = {o: self._primal(o, ctx) for o in op.operands[1:]}
                    mapping[view_source(op)] = self.shadow[view_source(op)]
                    view = ctx.e.insert(op.clone(value_mapper=mapping))
                    self.shadow[op.results[0]] = view.results[0]
        skip = initializations(ctx.fwd_block)
        for op in reversed(list(ctx.fwd_block.ops)[:-1]):
            if op in skip:
                continue
            match op:
                case scf.ForOp():
                    self._reverse_for(ctx, op)
                case scf.WhileOp():
                    self._reverse_while(ctx, op)
                case scf.IfOp():
                    self._reverse_if(ctx, op)
                case func.CallOp():
                    self._reverse_call(ctx, op)
                case _ if is_guard(op):
                    pass  # checked in the forward sweep; a check has no adjoint
                case memref.LoadOp() | memref.StoreOp():
                    self._reverse_memory(ctx, op)
                case memref.AllocOp() if ctx.parent is not None and op.memref in self.shadow:
                    ctx.e.insert(memref.DeallocOp.get(self.shadow.pop(op.memref)))
                case _ if is_view(op) and ctx.parent is not None:
                    self.shadow.pop(op.results[0], None)
                case memref.AllocOp() | memref.DeallocOp() | memref.DimOp():
                    pass
                case _ if is_view(op):
                    pass
                case _ if op.regions:
                    if self._needs_reverse(op):
                        raise UnsupportedError(
                            f"reverse mode of '{op.name}' is not supported"
                        )
                case _:
                    self._reverse_simple(ctx, op)

    def _reverse_simple(self, ctx: RevCtx, op: Operation) -> None:
        if not op.results or not self.info.is_active(op.results[0]):
            return
        adj = ctx.adj.get(op.results[0])
        if adj is None:
            return
        wanted = [self.info.is_active(o) for o in op.operands]
        contribs = vjp(ctx.e, op, lambda v: self._primal(v, ctx), adj, wanted)
        for v, c in zip(op.operands, contribs):
            self._accumulate(ctx, v, c)

    def _loop_reverse(
        self,
        ctx: RevCtx,
        op: Operation,
        body: Block,
        carried: Sequence[SSAValue],
        results: Sequence[SSAValue],
        inits: Sequence[SSAValue],
        trip_count: SSAValue,
        iv_recompute: Callable[[SSAValue, RevCtx], Callable[[], SSAValue]] | None,
    ) -> None:
        """Reverse a loop whose body block is ``body`` with carried block args ``carried``."""
        act = [
            i for i in range(len(carried))
            if self.info.is_active(carried[i]) or self.info.is_active(results[i])
        ]
        outer = [
            v for v in free_values(op) if self.info.is_active(v) and not is_buffer(v)
        ]
        if not act and not outer and not self._touches_shadow(op):
            return
        e = ctx.e
        rinits = [self._adj_or_zero(ctx, ctx, results[i]) for i in act]
        rinits += [self._adj_or_zero(ctx, ctx, v) for v in outer]
        index = IndexType()
        rblock = Block(arg_types=[index] + [v.type for v in rinits])
        child = RevCtx(body, ctx, rblock)
        for k, v in enumerate(outer):
            child.adj[v] = rblock.args[1 + len(act) + k]
        if iv_recompute is not None:
            child.recompute[self.fwd_map[body.args[0]]] = iv_recompute(
                rblock.args[0], child
            )
        term = body.last_op
        assert term is not None
        for k, i in enumerate(act):
            self._accumulate(child, term.operands[i], rblock.args[1 + k])
        self._reverse_ops(child)
        yields = [self._adj_or_zero(child, child, carried[i]) for i in act]
        yields += [child.adj[v] for v in outer]
        child.e.insert(scf.YieldOp(*yields))
        c0, c1 = e.const(0, index), e.const(1, index)
        rloop = e.insert(scf.ForOp(c0, trip_count, c1, rinits, rblock))
        for k, v in enumerate(outer):
            ctx.adj[v] = rloop.res[len(act) + k]
        for k, i in enumerate(act):
            self._accumulate(ctx, inits[i], rloop.res[k])

    def _reverse_for(self, ctx: RevCtx, op: scf.ForOp) -> None:
        if not self._needs_reverse(op) and not self._touches_shadow(op):
            return
        e = ctx.e
        lb, ub, step = (self._primal(v, ctx) for v in (op.lb, op.ub, op.step))
        if lb.type != IndexType():
            raise UnsupportedError("reverse mode of scf.for needs index-typed bounds")
        n = e.maxsi(e.ceildivsi(e.subi(ub, lb), step), e.const(0, IndexType()))

        def iv_recompute(k: SSAValue, child: RevCtx) -> Callable[[], SSAValue]:
            def emit() -> SSAValue:
                # iteration k of the reverse loop is iteration n-1-k of the primal
                with self._prologue(child) as ce:
                    one = ce.const(1, IndexType())
                    j = ce.subi(ce.subi(n, one), k)
                    return ce.addi(lb, ce.muli(j, step))

            return emit

        body = op.body.block
        self._loop_reverse(
            ctx, op, body, list(body.args[1:]), list(op.res), list(op.iter_args), n,
            iv_recompute,
        )

    def _reverse_while(self, ctx: RevCtx, op: scf.WhileOp) -> None:
        if not self._needs_reverse(op) and not self._touches_shadow(op):
            return
        before, after = op.before_region.block, op.after_region.block
        cond = before.last_op
        assert isinstance(cond, scf.ConditionOp)
        if list(cond.args) != list(before.args) or len(after.args) != len(before.args):
            raise UnsupportedError(
                "reverse mode of scf.while needs a 'before' region that forwards its "
                "arguments unchanged"
            )
        if any(self.info.any_active(o.results) for o in before.ops):
            raise UnsupportedError(
                "reverse mode of scf.while with active computation in its condition"
            )
        n = self._fetch(self.while_counters[op], ctx)
        self._loop_reverse(
            ctx, op, after, list(after.args), list(op.results), list(op.arguments), n,
            None,
        )

    def _add_trip_counter(self, op: scf.WhileOp) -> None:
        """Make the forward-sweep clone of ``op`` count its iterations."""
        clone = self.op_map[op]
        assert isinstance(clone, scf.WhileOp)
        index = IndexType()
        zero = Emitter(InsertPoint.before(clone)).const(0, index)
        after = clone.detach_region(1)
        before = clone.detach_region(0)
        bcount = before.block.insert_arg(index, len(before.block.args))
        cond = before.block.last_op
        assert isinstance(cond, scf.ConditionOp)
        Emitter(InsertPoint.before(cond)).insert(
            scf.ConditionOp(cond.condition, *cond.args, bcount)
        )
        Rewriter.erase_op(cond)
        acount = after.block.insert_arg(index, len(after.block.args))
        yld = after.block.last_op
        assert yld is not None
        ye = Emitter(InsertPoint.before(yld))
        nxt = ye.addi(acount, ye.const(1, index))
        ye.insert(scf.YieldOp(*yld.operands, nxt))
        Rewriter.erase_op(yld)
        new = scf.WhileOp(
            [*clone.arguments, zero], [*clone.result_types, index], before, after
        )
        Emitter(InsertPoint.before(clone)).insert(new)
        remap = {}
        for old_r, new_r in zip(clone.results, new.results):
            old_r.replace_all_uses_with(new_r)
            remap[old_r] = new_r
        Rewriter.erase_op(clone)
        for k, v in self.fwd_map.items():
            if v in remap:
                self.fwd_map[k] = remap[v]
        self.op_map[op] = new
        self.while_counters[op] = new.results[-1]

    def _reverse_if(self, ctx: RevCtx, op: scf.IfOp) -> None:
        outer = [
            v for v in free_values(op) if self.info.is_active(v) and not is_buffer(v)
        ]
        if not outer and not self._touches_shadow(op):
            return
        e = ctx.e
        cond = self._primal(op.cond, ctx)
        current = [self._adj_or_zero(ctx, ctx, v) for v in outer]
        seeds = [ctx.adj.get(r) if self.info.is_active(r) else None for r in op.results]
        regions = []
        for region in (op.true_region, op.false_region):
            rblock = Block()
            fwd_block = region.block if region.blocks else None
            child = RevCtx(fwd_block, ctx, rblock)
            for v, a in zip(outer, current):
                child.adj[v] = a
            if fwd_block is not None:
                term = fwd_block.last_op
                assert term is not None
                for y, s in zip(term.operands, seeds):
                    self._accumulate(child, y, s)
                self._reverse_ops(child)
            child.e.insert(scf.YieldOp(*[child.adj[v] for v in outer]))
            regions.append(Region(rblock))
        rif = e.insert(scf.IfOp(cond, [v.type for v in outer], *regions))
        for k, v in enumerate(outer):
            ctx.adj[v] = rif.results[k]

    def _reverse_call(self, ctx: RevCtx, op: func.CallOp) -> None:
        if any(is_buffer(a) and self.info.is_active(a) for a in op.arguments):
            raise UnsupportedError(
                f"reverse mode of a call of {op.callee} with an active buffer argument "
                "(inline the callee)"
            )
        act_res = [r for r in op.results if self.info.is_active(r) and r in ctx.adj]
        if not act_res:
            return
        callee = lookup_callee(op)
        acts = [
            Activity.ACTIVE if self.info.is_active(a) else Activity.CONST
            for a in op.arguments
        ]
        rets = [
            Activity.ACTIVENONEED if r in act_res else Activity.CONSTNONEED
            for r in op.results
        ]
        name = self.factory.reverse(callee, acts, rets)
        operands = [self._primal(a, ctx) for a in op.arguments]
        operands += [ctx.adj[r] for r in act_res]
        active_args = [a for a, act in zip(op.arguments, acts) if act is Activity.ACTIVE]
        call = ctx.e.insert(func.CallOp(name, operands, [a.type for a in active_args]))
        for a, g in zip(active_args, call.res):
            self._accumulate(ctx, a, g)

