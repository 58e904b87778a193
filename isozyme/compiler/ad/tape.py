"""What the reverse sweep gets from the forward sweep: recomputation or caches.

A primal value the reverse sweep needs is usable directly when it is defined at the
function's top level (the reverse sweep runs after the whole forward sweep in the same
block).  Inside a loop body or branch it is either

* recomputed in the reverse block's *prologue* when it is a cheap pure op whose operands
  are themselves cheap to obtain (integer/index arithmetic of induction variables, loads
  of buffers nothing writes, a few float ops over those), or
* cached.  When every loop around the value is a counted loop (``scf.for``,
  ``scf.parallel``) whose bounds are defined at the function's top level, the cache is
  an *indexed buffer* (Enzyme-MLIR's cache removal): one ``memref.alloc`` of
  ``[n1, n2, ...]`` elements (the trip counts, outermost first) right after the last
  bound is defined, a ``memref.store`` at the iteration's ``(iv - lb) / step`` indices
  right after the value's definition in the forward sweep, a ``memref.load`` at the
  reverse iteration's indices in the prologue of the matching reverse block, a
  ``memref.dealloc`` at the end.  Branches (``scf.if``) add no dimension: a value of a
  branch taken in an iteration has that iteration's slot.  Otherwise (a ``scf.while`` of
  unknown trip count, or bounds computed inside a loop, encloses the value) the cache is
  a LIFO stack: ``enzyme.init`` at function entry, ``enzyme.push`` after the definition,
  ``enzyme.pop`` in the reverse prologue, ``enzyme.cache_free`` at the end.  Parallel
  loops cannot hold stacks (their iterations have no order): a value that would need one
  there is refused.

Which ops are counted loops, and their bounds, comes from their registered rules
(``OpRule.cache_dims``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import DYNAMIC_INDEX, IndexType, MemRefType, UnitAttr
from xdsl.ir import Block, BlockArgument, Operation, OpResult, SSAValue
from xdsl.rewriter import InsertPoint

from isozyme.compiler.ad_rules.registry import OpRule, lookup, recompute_policy
from isozyme.compiler.analysis.buffers import buffers_written, root_buffer
from isozyme.compiler.emitter import Emitter
from isozyme.dialects import enzyme
from isozyme.errors import UnsupportedError

#: attribute marking a ``memref.alloc`` that holds an indexed cache
#: (``eliminate-dead-caches`` removes it when nothing loads from it)
CACHE_ATTR = "isozyme.cache"

# Float ops (rules with ``recompute="float"``) are recomputed up to this depth when their
# operands are cheap to obtain: a few flops per reverse iteration are cheaper than a
# cache push and pop.
_MAX_RECOMPUTE_DEPTH = 4


class RevCtx:
    """The reverse sweep of one primal block."""

    def __init__(self, fwd_block: Block | None, parent: "RevCtx | None", rev_block: Block):
        self.fwd_block = fwd_block
        self.parent = parent
        self.rev_block = rev_block
        self.e = Emitter(InsertPoint.at_end(rev_block))
        self.adj: dict[SSAValue, SSAValue] = {}
        # forward-sweep value -> value usable in rev_block (pops, recomputations)
        self.fetched: dict[SSAValue, SSAValue] = {}
        self.recompute: dict[SSAValue, Callable[[], SSAValue]] = {}
        self.prologue_last: Operation | None = None
        # for a loop body: emitters of the primal iteration number (one per dimension)
        # of the current reverse iteration
        self.iteration: list[Callable[[], SSAValue]] = []
        # the primal parallel loops (scf.parallel) whose reverse bodies enclose this
        # block: their iterations run concurrently, so shadow accumulations may race
        self.parallels: list[Operation] = [] if parent is None else list(parent.parallels)


def defining_block(v: SSAValue) -> Block | None:
    if isinstance(v, BlockArgument):
        return v.block
    assert isinstance(v, OpResult)
    return v.op.parent_block()


def defining_op(v: SSAValue) -> Operation | None:
    if isinstance(v, BlockArgument):
        return v.block.parent_op()
    assert isinstance(v, OpResult)
    return v.op


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


class PrimalFetcher:
    """Mixin of the reverse-mode generator: fetch primal values for the reverse sweep.

    Expects ``self.fn`` (the primal function), ``self.fwd_map`` (primal value ->
    forward-sweep clone), ``self.read_only`` (buffers nothing writes), ``self.entry``
    (the derivative's entry block) and ``self.caches`` (caches to free at the end).
    """

    fn: object
    fwd_map: dict[SSAValue, SSAValue]
    read_only: set[SSAValue]
    entry: Block | None
    caches: list[SSAValue]

    def primal(self, v: SSAValue, ctx: RevCtx) -> SSAValue:
        """The forward-sweep value of primal ``v``, usable in ``ctx``'s reverse block."""
        block = defining_block(v)
        level = ctx
        while level is not None and level.fwd_block is not block:
            level = level.parent
        if level is None:
            raise AssertionError(f"value {v} is not visible in the reverse sweep")
        if level.parent is None:
            return self.fwd_map[v]
        clone = self.fwd_map[v]
        if clone not in level.fetched:
            if isinstance(v, OpResult) and self._recomputable(v, _MAX_RECOMPUTE_DEPTH):
                level.fetched[clone] = self._recompute(v, level)
            else:
                level.fetched[clone] = self.fetch(clone, level)
        return level.fetched[clone]

    def _recomputable(self, v: SSAValue, depth: int) -> bool:
        """Whether the reverse sweep may recompute ``v`` rather than cache it: ``v`` is
        the result of a cheap pure op (or a load of a buffer nothing writes) whose
        operands are top-level values or recomputable themselves, ``depth`` ops deep at
        most.  Integer ops recompute at any depth (their chains end at loop indices)."""
        if not isinstance(v, OpResult):
            block = defining_block(v)
            if block is self.fn.body.block:
                return True
            # induction variables are recomputed from the reverse loop's counter
            parent = block.parent_op()
            rule = lookup(parent) if parent is not None else None
            return isinstance(rule, OpRule) and rule.recomputes_arg(parent, v)
        op = v.op
        if op.parent_block() is self.fn.body.block:
            return True
        policy = recompute_policy(op)
        if policy == "always":
            return all(self._recomputable(o, depth) for o in op.operands)
        if depth <= 0:
            return False
        if policy == "float" or (
            policy == "load"
            and (op.operands[0] in self.read_only or self._final_value(op))
        ):
            return all(self._recomputable(o, depth - 1) for o in op.operands)
        return False

    def _final_value(self, load: Operation) -> bool:
        """Whether ``load`` (a rule with ``recompute="load"``: operand 0 is the buffer)
        reads memory nothing writes afterwards: the reverse sweep runs after the whole
        forward sweep, so the same load then gives the same value."""
        top = load
        entry = self.fn.body.block  # type: ignore[attr-defined]
        while top.parent_block() is not entry:
            parent = top.parent_op()
            assert parent is not None
            top = parent
        root = root_buffer(load.operands[0])
        if not (isinstance(root, BlockArgument) and root.block is entry):
            return False  # a local buffer may be freed, or reallocated, before then
        op: Operation | None = top
        while op is not None:
            if any(root_buffer(b) is root for b in buffers_written(op)):
                return False
            op = op.next_op
        return True

    def _recompute(self, v: OpResult, level: RevCtx) -> SSAValue:
        """Re-emit a cheap pure op in ``level``'s prologue instead of caching its value."""
        operands = {o: self.primal(o, level) for o in v.op.operands}
        with self.prologue(level) as e:
            new = e.insert(v.op.clone(value_mapper=dict(operands)))
        return new.results[v.index]

    def fetch(self, value: SSAValue, level: RevCtx) -> SSAValue:
        """Make forward value ``value``, defined in ``level``'s block, usable there."""
        if level.parent is None:
            return value
        if value in level.fetched:
            return level.fetched[value]
        if value in level.recompute:
            got = level.recompute[value]()
        else:
            got = self._cache(value, level)
        level.fetched[value] = got
        return got

    @contextmanager
    def prologue(self, level: RevCtx) -> Iterator[Emitter]:
        """An emitter for ``level``'s prologue: pops and recomputations, in request order."""
        if level.prologue_last is None:
            ip = InsertPoint.at_start(level.rev_block)
        else:
            ip = InsertPoint.after(level.prologue_last)
        e = Emitter(ip)
        yield e
        if e.last is not None:
            level.prologue_last = e.last

    def _cache(self, value: SSAValue, level: RevCtx) -> SSAValue:
        if isinstance(value.type, MemRefType):
            raise UnsupportedError(
                f"reverse mode would have to cache a buffer ({value.type}) made inside a "
                "loop body or branch: caches hold scalars only (allocate the buffer "
                "before the loop)"
            )
        dims = self._cache_dims(value)
        if dims is None:
            return self._stack_cache(value, level)
        return self._indexed_cache(value, level, dims)

    def _cache_dims(self, value: SSAValue) -> list[tuple[SSAValue, ...]] | None:
        """(lb, ub, step, iv) of every counted loop around forward value ``value``,
        outermost first, when an indexed cache can hold it; None when a stack must."""
        assert self.entry is not None
        dims: list[tuple[SSAValue, ...]] = []
        stack_ok = True
        indexed = True
        block = defining_block(value)
        while block is not None and block is not self.entry:
            op = block.parent_op()
            assert op is not None
            rule = lookup(op)
            got = rule.cache_dims(op) if isinstance(rule, OpRule) else None
            stack_ok = stack_ok and (not isinstance(rule, OpRule) or rule.allows_stack)
            if got is None or any(
                defining_block(b) is not self.entry for d in got for b in d[:3]
            ):
                indexed = False
            else:
                dims = list(got) + dims
            block = op.parent_block()
        if indexed:
            return dims
        if not stack_ok:
            raise UnsupportedError(
                "reverse mode of scf.parallel: a value computed in the loop body must be "
                "cached, but a loop of unknown trip count (scf.while, or bounds computed "
                "in a loop) encloses it, and a parallel loop cannot hold a stack cache"
            )
        return None

    def _indexed_cache(
        self, value: SSAValue, level: RevCtx, dims: list[tuple[SSAValue, ...]]
    ) -> SSAValue:
        assert self.entry is not None
        index = IndexType()
        # the buffer: allocated once the last bound is known
        bound_ops = {b.owner for d in dims for b in d[:3] if isinstance(b, OpResult)}
        last = None
        for op in self.entry.ops:
            if op in bound_ops:
                last = op
        ip = InsertPoint.at_start(self.entry) if last is None else InsertPoint.after(last)
        e = Emitter(ip)
        sizes = [
            e.maxsi(e.ceildivsi(e.subi(ub, lb), step), e.const(0, index))
            for lb, ub, step, _ in dims
        ]
        alloc = e.insert(
            memref.AllocOp(sizes, [], MemRefType(value.type, [DYNAMIC_INDEX] * len(dims)))
        )
        alloc.attributes[CACHE_ATTR] = UnitAttr()
        self.caches.append(alloc.memref)
        # forward sweep: store into this iteration's slot
        if isinstance(value, BlockArgument):
            ip = InsertPoint.at_start(value.block)
        else:
            assert isinstance(value, OpResult)
            ip = InsertPoint.after(value.op)
        fe = Emitter(ip)
        slot = [
            fe.insert(arith.DivSIOp(fe.subi(iv, lb), step)).result
            for lb, _, step, iv in dims
        ]
        fe.insert(memref.StoreOp.get(value, alloc.memref, slot))
        # reverse sweep: load the slot of the matching primal iteration
        iterations: list[Callable[[], SSAValue]] = []
        ctx: RevCtx | None = level
        while ctx is not None:
            iterations = ctx.iteration + iterations
            ctx = ctx.parent
        assert len(iterations) == len(dims), "reverse loops do not match the cache"
        rslot = [it() for it in iterations]
        with self.prologue(level) as re:
            load = re.insert(memref.LoadOp.get(alloc.memref, rslot))
        return load.res

    def _stack_cache(self, value: SSAValue, level: RevCtx) -> SSAValue:
        assert self.entry is not None
        init = enzyme.InitOp(value.type)
        Emitter(InsertPoint.at_start(self.entry)).insert(init)
        self.caches.append(init.result)
        if isinstance(value, BlockArgument):
            ip = InsertPoint.at_start(value.block)
        else:
            assert isinstance(value, OpResult)
            ip = InsertPoint.after(value.op)
        Emitter(ip).insert(enzyme.PushOp(init.result, value))
        with self.prologue(level) as e:
            pop = e.insert(enzyme.PopOp(init.result))
        return pop.result

    def free_cache(self, e: Emitter, cache: SSAValue) -> None:
        """Free a cache (stack or indexed buffer) at the end of the reverse sweep."""
        if isinstance(cache.type, MemRefType):
            e.insert(memref.DeallocOp.get(cache))
        else:
            e.insert(enzyme.CacheFreeOp(cache))
