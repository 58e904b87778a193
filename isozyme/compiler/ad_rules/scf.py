"""Derivative rules of the ``scf`` dialect (Enzyme-MLIR's SCFDerivatives.td).

Structured control flow keeps its structure in both modes.

Forward mode: ``scf.for``/``scf.while`` carry the tangents of active loop-carried values
as extra iteration arguments, ``scf.if`` yields extra tangent results.

Reverse mode:

* ``scf.for`` becomes an ``scf.for`` over the same trip count, run backwards; its
  iteration arguments carry the adjoints of the loop-carried values and of every active
  value from outside the loop that the body reads.  The induction variable is
  recomputed, not cached.
* ``scf.while`` gets an iteration counter in the forward sweep; its reverse is an
  ``scf.for`` over that count.
* ``scf.if`` becomes an ``scf.if`` on the same condition whose results are the updated
  adjoints of the outside values the branches read.

``scf.parallel`` (``isozyme.prange``; iterations run in any order, no two write the same
element except by ``+=``, reductions through ``scf.reduce``):

* forward mode: the tangent loop is one ``scf.parallel``; the tangent of an ``addf``
  reduction is one more ``addf`` reduction.
* reverse mode: the adjoint loop is an ``scf.parallel`` over the same bounds (the
  induction variables are the primal's); the adjoints of active outside scalars the
  body reads are ``addf`` reductions of it; each iteration's contribution to an
  ``addf`` reduction gets the result's adjoint.  Shadow accumulations are atomic unless
  the element is private to the iteration (``ad_rules/memref.py``); values the reverse
  needs from the body are recomputed or cached in indexed buffers; inside a loop of
  unknown trip count those buffers are pushed on a stack outside the parallel loop
  (``ad/tape.py``), a stack inside it is refused.
* ``mulf``/``max``/``min`` reductions of active values are refused (UnsupportedError).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import IndexType
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.ad.tape import RevCtx, as_index, free_values
from isozyme.compiler.ad_rules.registry import Edge, RegionRule, register
from isozyme.compiler.analysis.buffers import is_buffer
from isozyme.compiler.analysis.reductions import combining_kind
from isozyme.compiler.emitter import Emitter
from isozyme.errors import UnsupportedError


def _terminator(block: Block) -> Operation:
    last = block.last_op
    assert last is not None
    return last


def carried_active(info: Any, *groups: Sequence[SSAValue]) -> list[int]:
    """Positions i where any of ``groups[k][i]`` is active."""
    n = len(groups[0])
    return [i for i in range(n) if any(info.is_active(g[i]) for g in groups)]


def outer_active_scalars(rev: Any, op: Operation) -> list[SSAValue]:
    """Active non-buffer values defined outside ``op`` that its regions read: their
    adjoints are carried out of ``op``'s reverse."""
    return [v for v in free_values(op) if rev.info.is_active(v) and not is_buffer(v)]


def loop_reverse(
    rev: Any,
    ctx: RevCtx,
    op: Operation,
    body: Block,
    carried: Sequence[SSAValue],
    results: Sequence[SSAValue],
    inits: Sequence[SSAValue],
    trip_count: SSAValue,
    iteration: Callable[[SSAValue, RevCtx], Callable[[], SSAValue]],
    iv_recompute: Callable[[SSAValue, RevCtx], Callable[[], SSAValue]] | None,
) -> None:
    """Reverse a loop whose body block is ``body`` with carried block args ``carried``:
    an ``scf.for`` from 0 to ``trip_count``; ``iteration(k, child)`` gives the emitter
    of the primal iteration number of reverse iteration ``k``."""
    act = [
        i for i in range(len(carried))
        if rev.info.is_active(carried[i]) or rev.info.is_active(results[i])
    ]
    outer = outer_active_scalars(rev, op)
    if not act and not outer and not rev.touches_shadow(op):
        return
    e = ctx.e
    # iteration arguments: the adjoint lanes of the carried values, then of the outer
    # values (rev.adjoints_of's layout)
    rinits = rev.adjoints_of(ctx, ctx, [results[i] for i in act] + outer)
    index = IndexType()
    rblock = Block(arg_types=[index] + [v.type for v in rinits])
    child = RevCtx(body, ctx, rblock)
    child.iteration = [iteration(rblock.args[0], child)]
    radjs = rblock.args[1:]
    for k, v in enumerate(outer):
        child.adj[v] = rev.lanes(radjs, len(act) + k)
    if iv_recompute is not None:
        child.recompute[rev.fwd_map[body.args[0]]] = iv_recompute(rblock.args[0], child)
    term = _terminator(body)
    for k, i in enumerate(act):
        rev.accumulate(child, term.operands[i], rev.lanes(radjs, k))
    rev.reverse_block(child)
    yields = rev.adjoints_of(child, child, [carried[i] for i in act])
    yields += [a for v in outer for a in child.adj[v]]
    child.e.insert(scf.YieldOp(*yields))
    c0, c1 = e.const(0, index), e.const(1, index)
    rloop = e.insert(scf.ForOp(c0, trip_count, c1, rinits, rblock))
    for k, v in enumerate(outer):
        ctx.adj[v] = rev.lanes(rloop.res, len(act) + k)
    for k, i in enumerate(act):
        rev.accumulate(ctx, inits[i], rev.lanes(rloop.res, k))


def _reversed_iteration(
    n: SSAValue, rev: Any
) -> Callable[[SSAValue, RevCtx], Callable[[], SSAValue]]:
    """Reverse iteration k of a loop of n iterations is primal iteration n-1-k."""

    def make(k: SSAValue, child: RevCtx) -> Callable[[], SSAValue]:
        memo: list[SSAValue] = []

        def emit() -> SSAValue:
            if not memo:
                with rev.prologue(child) as ce:
                    memo.append(ce.subi(ce.subi(n, ce.const(1, IndexType())), k))
            return memo[0]

        return emit

    return make


class ForRule(RegionRule):
    """``scf.for``."""

    def recomputes_arg(self, op: Operation, arg: SSAValue) -> bool:
        assert isinstance(op, scf.ForOp)
        return arg is op.body.block.args[0]

    def cache_dims(self, op: Operation) -> list[tuple[SSAValue, ...]] | None:
        assert isinstance(op, scf.ForOp)
        # integer (non-index) bounds too: the tape casts them to index
        return [(op.lb, op.ub, op.step, op.body.block.args[0])]

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        assert isinstance(op, scf.ForOp)
        body = op.body.block
        yielded = _terminator(body).operands
        for i, res in enumerate(op.res):
            arg = body.args[i + 1]
            yield op.iter_args[i], arg
            yield yielded[i], arg
            yield yielded[i], res
            yield op.iter_args[i], res

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, scf.ForOp)
        body = op.body.block
        carried = list(body.args[1:])
        act = carried_active(fwd.info, carried, list(op.res))
        inits = [fwd.vmap.get(v, v) for v in op.iter_args]
        inits += fwd.tangents_of(e, [op.iter_args[i] for i in act])
        new_block = Block(arg_types=[body.args[0].type] + [v.type for v in inits])
        fwd.vmap[body.args[0]] = new_block.args[0]
        for i, arg in enumerate(carried):
            fwd.vmap[arg] = new_block.args[1 + i]
        fwd.bind_tangents([carried[i] for i in act], new_block.args[1 + len(carried):])
        be = Emitter(InsertPoint.at_end(new_block))
        term = fwd.emit_block_body(be, body)
        yields = [fwd.vmap.get(v, v) for v in term.operands]
        yields += fwd.tangents_of(be, [term.operands[i] for i in act])
        be.insert(scf.YieldOp(*yields))
        new = e.insert(
            scf.ForOp(
                fwd.vmap.get(op.lb, op.lb), fwd.vmap.get(op.ub, op.ub),
                fwd.vmap.get(op.step, op.step), inits, new_block,
            )
        )
        for i, r in enumerate(op.res):
            fwd.vmap[r] = new.res[i]
        fwd.bind_tangents([op.res[i] for i in act], new.res[len(carried):])

    def reverse(self, rev: Any, ctx: RevCtx, op: Operation) -> None:
        assert isinstance(op, scf.ForOp)
        if not rev.needs_reverse(op) and not rev.touches_shadow(op):
            return
        e = ctx.e
        # bounds of an integer type (scf.for on i32...): the reverse loop counts in
        # index, the recomputed induction variable is cast back to the loop's type
        iv_type = op.lb.type
        lb, ub, step = (as_index(e, rev.primal(v, ctx)) for v in (op.lb, op.ub, op.step))
        n = e.maxsi(e.ceildivsi(e.subi(ub, lb), step), e.const(0, IndexType()))
        iteration = _reversed_iteration(n, rev)

        def iv_recompute(k: SSAValue, child: RevCtx) -> Callable[[], SSAValue]:
            j = iteration(k, child)

            def emit() -> SSAValue:
                # iteration k of the reverse loop is iteration n-1-k of the primal
                jj = j()
                with rev.prologue(child) as ce:
                    iv = ce.addi(lb, ce.muli(jj, step))
                    if iv_type != IndexType():
                        iv = ce.insert(arith.IndexCastOp(iv, iv_type)).result
                    return iv

            return emit

        body = op.body.block
        loop_reverse(
            rev, ctx, op, body, list(body.args[1:]), list(op.res), list(op.iter_args), n,
            iteration, iv_recompute,
        )


class IfRule(RegionRule):
    """``scf.if``."""

    def cache_dims(self, op: Operation) -> list[tuple[SSAValue, ...]] | None:
        return []

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        assert isinstance(op, scf.IfOp)
        for region in (op.true_region, op.false_region):
            if region.blocks:
                for y, res in zip(_terminator(region.block).operands, op.results):
                    yield y, res

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, scf.IfOp)
        act = [i for i, r in enumerate(op.results) if fwd.info.is_active(r)]
        types = [r.type for r in op.results]
        types += [op.results[i].type for i in act for _ in range(fwd.width)]
        regions = []
        for region in (op.true_region, op.false_region):
            block = Block()
            be = Emitter(InsertPoint.at_end(block))
            if region.blocks:
                term = fwd.emit_block_body(be, region.block)
                yields = [fwd.vmap.get(v, v) for v in term.operands]
                yields += fwd.tangents_of(be, [term.operands[i] for i in act])
            else:
                yields = []
            be.insert(scf.YieldOp(*yields))
            regions.append(Region(block))
        new = e.insert(scf.IfOp(fwd.vmap.get(op.cond, op.cond), types, *regions))
        for i, r in enumerate(op.results):
            fwd.vmap[r] = new.results[i]
        fwd.bind_tangents([op.results[i] for i in act], new.results[len(op.results):])

    def reverse(self, rev: Any, ctx: RevCtx, op: Operation) -> None:
        assert isinstance(op, scf.IfOp)
        outer = outer_active_scalars(rev, op)
        if not outer and not rev.touches_shadow(op):
            return
        e = ctx.e
        cond = rev.primal(op.cond, ctx)
        current = [rev.adj_or_zero(ctx, ctx, v) for v in outer]  # lanes per value
        seeds = [ctx.adj.get(r) if rev.info.is_active(r) else None for r in op.results]
        regions = []
        for region in (op.true_region, op.false_region):
            rblock = Block()
            fwd_block = region.block if region.blocks else None
            child = RevCtx(fwd_block, ctx, rblock)
            for v, a in zip(outer, current):
                child.adj[v] = a
            if fwd_block is not None:
                term = _terminator(fwd_block)
                for y, s in zip(term.operands, seeds):
                    rev.accumulate(child, y, s)
                rev.reverse_block(child)
            child.e.insert(scf.YieldOp(*[a for v in outer for a in child.adj[v]]))
            regions.append(Region(rblock))
        types = [v.type for v in outer for _ in range(rev.width)]
        rif = e.insert(scf.IfOp(cond, types, *regions))
        for k, v in enumerate(outer):
            ctx.adj[v] = rev.lanes(rif.results, k)


class WhileRule(RegionRule):
    """``scf.while`` (reverse mode: a 'before' region that forwards its arguments)."""

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        assert isinstance(op, scf.WhileOp)
        before, after = op.before_region.block, op.after_region.block
        cond = _terminator(before)
        after_yield = _terminator(after)
        for i, arg in enumerate(before.args):
            yield op.arguments[i], arg
            yield after_yield.operands[i], arg
        for i, v in enumerate(cond.operands[1:]):
            yield v, after.args[i]
            yield v, op.results[i]

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, scf.WhileOp)
        before, after = op.before_region.block, op.after_region.block
        n_before, n_after = len(before.args), len(after.args)
        act_b = carried_active(fwd.info, list(before.args), list(op.arguments))
        act_a = carried_active(fwd.info, list(after.args), list(op.results))
        inits = [fwd.vmap.get(v, v) for v in op.arguments]
        inits += fwd.tangents_of(e, [op.arguments[i] for i in act_b])
        # before region: evaluates the condition, forwards values to `after`
        bblock = Block(arg_types=[v.type for v in inits])
        for i, a in enumerate(before.args):
            fwd.vmap[a] = bblock.args[i]
        fwd.bind_tangents([before.args[i] for i in act_b], bblock.args[n_before:])
        be = Emitter(InsertPoint.at_end(bblock))
        cond = fwd.emit_block_body(be, before)
        fwd_vals = list(cond.operands[1:])
        cargs = [fwd.vmap.get(v, v) for v in fwd_vals]
        cargs += fwd.tangents_of(be, [fwd_vals[i] for i in act_a])
        be.insert(scf.ConditionOp(fwd.vmap.get(cond.operands[0], cond.operands[0]), *cargs))
        # after region: the loop body
        ablock = Block(arg_types=[v.type for v in cargs])
        for i, a in enumerate(after.args):
            fwd.vmap[a] = ablock.args[i]
        fwd.bind_tangents([after.args[i] for i in act_a], ablock.args[n_after:])
        ae = Emitter(InsertPoint.at_end(ablock))
        term = fwd.emit_block_body(ae, after)
        yields = [fwd.vmap.get(v, v) for v in term.operands]
        yields += fwd.tangents_of(ae, [term.operands[i] for i in act_b])
        ae.insert(scf.YieldOp(*yields))
        new = e.insert(
            scf.WhileOp(inits, [v.type for v in cargs], Region(bblock), Region(ablock))
        )
        for i, r in enumerate(op.results):
            fwd.vmap[r] = new.results[i]
        fwd.bind_tangents([op.results[i] for i in act_a], new.results[n_after:])

    def prepare_reverse(self, rev: Any, op: Operation) -> None:
        """Make the forward-sweep clone of ``op`` count its iterations."""
        assert isinstance(op, scf.WhileOp)
        if not (rev.needs_reverse(op) or rev.touches_shadow(op)):
            return
        clone = rev.op_map[op]
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
        for k, v in rev.fwd_map.items():
            if v in remap:
                rev.fwd_map[k] = remap[v]
        rev.op_map[op] = new
        rev.while_counters[op] = new.results[-1]

    def reverse(self, rev: Any, ctx: RevCtx, op: Operation) -> None:
        assert isinstance(op, scf.WhileOp)
        if not rev.needs_reverse(op) and not rev.touches_shadow(op):
            return
        before, after = op.before_region.block, op.after_region.block
        cond = before.last_op
        assert isinstance(cond, scf.ConditionOp)
        if list(cond.args) != list(before.args) or len(after.args) != len(before.args):
            raise UnsupportedError(
                "reverse mode of scf.while needs a 'before' region that forwards its "
                "arguments unchanged"
            )
        if any(rev.info.any_active(o.results) for o in before.ops):
            raise UnsupportedError(
                "reverse mode of scf.while with active computation in its condition"
            )
        n = rev.fetch(rev.while_counters[op], ctx)
        loop_reverse(
            rev, ctx, op, after, list(after.args), list(op.results), list(op.arguments), n,
            _reversed_iteration(n, rev), None,
        )


def reduction_kind(reduce: scf.ReduceOp, j: int) -> str:
    """``"addf"`` when reduction ``j`` of ``reduce`` combines by ``arith.addf`` of its two
    block arguments, else the names of the ops of its region (for messages)."""
    region = reduce.reductions[j]
    if combining_kind(region) == "addf":
        return "addf"
    return ", ".join(o.name for o in list(region.block.ops)[:-1]) or "a pass-through"


def _addf_region(t: Attribute, reassoc: bool) -> Region:
    """A reduce region combining by ``arith.addf``."""
    block = Block(arg_types=[t, t])
    be = Emitter(InsertPoint.at_end(block))
    be.insert(scf.ReduceReturnOp(be.add(block.args[0], block.args[1], reassoc=reassoc)))
    return Region(block)


def _check_reductions(op: scf.ParallelOp, active: Sequence[int], mode: str) -> None:
    reduce = _terminator(op.body.block)
    assert isinstance(reduce, scf.ReduceOp)
    for j in active:
        kind = reduction_kind(reduce, j)
        if kind != "addf":
            raise UnsupportedError(
                f"{mode} mode of an scf.parallel (prange) reduction combined by {kind}: "
                "only += reductions of active values are differentiated (s *= e, "
                "max and min reductions are not)"
            )


class ParallelRule(RegionRule):
    """``scf.parallel`` and its ``scf.reduce`` terminator."""

    allows_stack = False

    def recomputes_arg(self, op: Operation, arg: SSAValue) -> bool:
        return arg in op.regions[0].block.args

    def cache_dims(self, op: Operation) -> list[tuple[SSAValue, ...]] | None:
        assert isinstance(op, scf.ParallelOp)
        return list(zip(op.lowerBound, op.upperBound, op.step, op.body.block.args))

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        assert isinstance(op, scf.ParallelOp)
        reduce = _terminator(op.body.block)
        for j, res in enumerate(op.res):
            yield op.initVals[j], res
            yield reduce.operands[j], res

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, scf.ParallelOp)
        body = op.body.block
        act = [j for j, r in enumerate(op.res) if fwd.info.is_active(r)]
        _check_reductions(op, act, "forward")
        inits = [fwd.vmap.get(v, v) for v in op.initVals]
        inits += fwd.tangents_of(e, [op.initVals[j] for j in act])
        new_block = Block(arg_types=[a.type for a in body.args])
        for old, new in zip(body.args, new_block.args):
            fwd.vmap[old] = new
        be = Emitter(InsertPoint.at_end(new_block))
        reduce = fwd.emit_block_body(be, body)
        assert isinstance(reduce, scf.ReduceOp)
        args = [fwd.vmap.get(v, v) for v in reduce.args]
        args += fwd.tangents_of(be, [reduce.args[j] for j in act])
        regions = [r.clone() for r in reduce.reductions]
        regions += [
            _addf_region(op.res[j].type, reassoc=False) for j in act for _ in range(fwd.width)
        ]
        be.insert(scf.ReduceOp(args, regions))
        bounds = [
            [fwd.vmap.get(v, v) for v in vs]
            for vs in (op.lowerBound, op.upperBound, op.step)
        ]
        new = e.insert(scf.ParallelOp(*bounds, Region(new_block), inits))
        for j, r in enumerate(op.res):
            fwd.vmap[r] = new.res[j]
        fwd.bind_tangents([op.res[j] for j in act], new.res[len(op.res):])

    def reverse(self, rev: Any, ctx: RevCtx, op: Operation) -> None:
        assert isinstance(op, scf.ParallelOp)
        if not rev.needs_reverse(op) and not rev.touches_shadow(op):
            return
        body = op.body.block
        reduce = _terminator(body)
        assert isinstance(reduce, scf.ReduceOp)
        act = [
            j for j, r in enumerate(op.res)
            if rev.info.is_active(r) and ctx.adj.get(r) is not None
        ]
        _check_reductions(op, act, "reverse")
        seeds = {j: ctx.adj[op.res[j]] for j in act}
        outer = outer_active_scalars(rev, op)
        e = ctx.e
        lbs = [rev.primal(v, ctx) for v in op.lowerBound]
        steps = [rev.primal(v, ctx) for v in op.step]
        ubs = [rev.primal(v, ctx) for v in op.upperBound]
        rblock = Block(arg_types=[a.type for a in body.args])
        child = RevCtx(body, ctx, rblock)
        child.parallels.append(op)
        for k, arg in enumerate(body.args):
            iv = rblock.args[k]
            # the adjoint loop runs the primal's iterations: the same induction variables
            child.recompute[rev.fwd_map[arg]] = lambda iv=iv: iv
            child.iteration.append(_iteration_of(rev, child, iv, lbs[k], steps[k]))
        for j, seed in seeds.items():
            # every iteration's contribution to an addf reduction gets the result's adjoint
            rev.accumulate(child, reduce.args[j], seed)
        rev.reverse_block(child)
        contributions = rev.adjoints_of(child, child, outer)
        child.e.insert(
            scf.ReduceOp(contributions, [_addf_region(c.type, True) for c in contributions])
        )
        zeros = [e.zero(c.type) for c in contributions]
        rpar = e.insert(scf.ParallelOp(lbs, ubs, steps, Region(rblock), zeros))
        for k, v in enumerate(outer):
            rev.accumulate(ctx, v, rev.lanes(rpar.res, k))
        for j, seed in seeds.items():
            rev.accumulate(ctx, op.initVals[j], seed)


def _iteration_of(
    rev: Any, child: RevCtx, iv: SSAValue, lb: SSAValue, step: SSAValue
) -> Callable[[], SSAValue]:
    """The iteration number ``(iv - lb) / step``, emitted once in ``child``'s prologue."""
    memo: list[SSAValue] = []

    def emit() -> SSAValue:
        if not memo:
            with rev.prologue(child) as ce:
                memo.append(ce.insert(arith.DivSIOp(ce.subi(iv, lb), step)).result)
        return memo[0]

    return emit


SCF_RULES: dict[type[Operation], RegionRule] = {
    scf.ForOp: ForRule(),
    scf.IfOp: IfRule(),
    scf.WhileOp: WhileRule(),
    scf.ParallelOp: ParallelRule(),
}

register(SCF_RULES)
