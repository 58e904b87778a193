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
  branch taken in an iteration has that iteration's slot.

  When counted loops around the value sit inside a loop of unknown trip count (a
  ``scf.while``, or a loop whose bounds are computed in an enclosing loop's body), the
  value is cached as Enzyme does: in an indexed buffer of those counted loops' trip
  counts (the loops between the value and its *home*, the body of that uncounted
  loop), allocated in every iteration of the home just before the outermost of those
  counted loops; the buffer itself is pushed on a stack (``enzyme.push`` of a memref)
  right after its alloc; the reverse of the home pops it in its prologue, the reverse
  loops load from it, and it is freed after them (``RevCtx.frees``).  A value with no
  counted loop between it and an uncounted loop is pushed itself: ``enzyme.init`` at
  function entry, ``enzyme.push`` after the definition, ``enzyme.pop`` in the reverse
  prologue, ``enzyme.cache_free`` at the end.  Parallel loops cannot hold stacks (their
  iterations have no order): a push inside one is refused; the stacks of buffers stay
  outside them (on a GPU target: in the host program, the buffers in device memory).

Which ops are counted loops, and their bounds, comes from their registered rules
(``OpRule.cache_dims``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import DYNAMIC_INDEX, IndexType, MemRefType, UnitAttr
from xdsl.ir import Attribute, Block, BlockArgument, Operation, OpResult, SSAValue
from xdsl.rewriter import InsertPoint

from isozyme.compiler.ad_rules import allocated_by
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
        # primal value -> its adjoint, one value per batch lane
        self.adj: dict[SSAValue, tuple[SSAValue, ...]] = {}
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
        # cache buffers popped in this block's reverse: freed after its reverse ops
        self.frees: list[SSAValue] = []


@dataclass
class _CachePlan:
    """Where a cached value's slot lives (:meth:`PrimalFetcher._cache_plan`)."""

    #: (lb, ub, step, iv) of the counted loops between the value and ``home``,
    #: outermost first
    dims: list[tuple[SSAValue, ...]]
    #: the forward-sweep block holding the buffer (the entry, or a loop body)
    home: Block
    #: how many blocks ``home`` is above the value's block
    levels: int
    #: the outermost counted loop (None when ``home`` is the entry)
    outermost: Operation | None


def _defined_in(v: SSAValue, op: Operation) -> bool:
    """Whether ``v`` is defined inside ``op``'s regions (an induction variable
    included)."""
    block = defining_block(v)
    parent = block.parent_op() if block is not None else None
    return parent is not None and op.is_ancestor(parent)


def defining_block(v: SSAValue) -> Block | None:
    """The block that defines ``v`` (a block argument's block, an op result's block)."""
    if isinstance(v, BlockArgument):
        return v.block
    assert isinstance(v, OpResult)
    return v.op.parent_block()


def defining_op(v: SSAValue) -> Operation | None:
    """The op that defines ``v``: its op, or for a block argument the op owning the
    block (the ``func.func`` for a function's arguments; None for a detached block)."""
    if isinstance(v, BlockArgument):
        return v.block.parent_op()
    assert isinstance(v, OpResult)
    return v.op


def as_index(e: Emitter, v: SSAValue) -> SSAValue:
    """``v`` as an ``index`` (cast from a loop's integer type; scf.for's bounds are
    signed)."""
    if isinstance(v.type, IndexType):
        return v
    return e.insert(arith.IndexCastOp(v, IndexType())).result


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
    (the derivative's entry block), ``self.caches`` (caches to free at the end) and
    ``self.shadow`` (primal buffer -> its shadows).
    """

    fn: object
    fwd_map: dict[SSAValue, SSAValue]
    shadow: dict[SSAValue, tuple[SSAValue, ...]]
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
        forward sweep, so the same load then gives the same value.  The buffer is an
        argument, or a local allocation of the entry block with a shadow (its free moves
        after the reverse sweep: ``DeallocRule``; GMM's ``qdiag = exp(icf)`` table)."""
        top = load
        entry = self.fn.body.block  # type: ignore[attr-defined]
        while top.parent_block() is not entry:
            parent = top.parent_op()
            assert parent is not None
            top = parent
        root = root_buffer(load.operands[0])
        shadowed_local = (
            isinstance(root.owner, Operation)
            and root.owner.parent_block() is entry
            and allocated_by(root.owner) is not None
            and root in self.shadow
        )
        if not (isinstance(root, BlockArgument) and root.block is entry) and not shadowed_local:
            return False  # another local buffer may be freed, or reallocated, before then
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
        plan = self._cache_plan(value)
        if plan.home is self.entry:
            return self._indexed_cache(value, level, plan.dims)
        if not plan.dims:
            self._check_stack(defining_block(value))
            return self._stack_cache(value, level)
        self._check_stack(plan.home)
        return self._buffer_cache(value, level, plan)

    def _cache_plan(self, value: SSAValue) -> "_CachePlan":
        """Where forward value ``value``'s cache lives: the counted loops between it and
        its *home* block (the function's entry, or the body of the nearest loop of
        unknown trip count around them), outermost first.

        Walking outwards, a counted loop joins the segment while every bound of the
        segment's loops is defined outside it; a loop of unknown trip count, or a
        counted loop whose body computes a bound of the loops inside, ends it.  Branches
        join without a dimension.  When the walk stops short of the entry, the home is
        the block holding the segment's outermost loop (trailing branches do not count:
        the buffer is then made only when the branch runs)."""
        assert self.entry is not None
        dims: list[tuple[SSAValue, ...]] = []
        bounds: list[SSAValue] = []
        block = defining_block(value)
        assert block is not None
        home, home_levels, outermost = block, 0, None
        levels = 0
        while block is not self.entry:
            op = block.parent_op()
            assert op is not None
            rule = lookup(op)
            got = rule.cache_dims(op) if isinstance(rule, OpRule) else None
            if got is None:
                break
            seg_bounds = bounds + [b for d in got for b in d[:3]]
            if any(_defined_in(b, op) for b in seg_bounds):
                break
            dims, bounds = list(got) + dims, seg_bounds
            levels += 1
            block = op.parent_block()
            assert block is not None
            if got:
                home, home_levels, outermost = block, levels, op
        if block is self.entry:
            return _CachePlan(dims, self.entry, levels, None)
        return _CachePlan(dims, home, home_levels, outermost)

    def _check_stack(self, block: Block | None) -> None:
        """Refuse a stack cache pushed in ``block`` when a parallel loop encloses it."""
        while block is not None and block is not self.entry:
            op = block.parent_op()
            assert op is not None
            rule = lookup(op)
            if isinstance(rule, OpRule) and not rule.allows_stack:
                raise UnsupportedError(
                    f"reverse mode of a parallel loop ({op.name}, isozyme.prange or "
                    "whole-array code): a value computed in its body must be cached, but "
                    "an inner loop around the value has a trip count known only inside "
                    "the parallel iteration (a while loop, a range whose bounds depend on "
                    "the prange variable such as range(i), or on a buffer allocated in "
                    "the body), and such a cache needs a stack, which a parallel loop "
                    "cannot hold; give the inner loop bounds fixed outside the prange"
                )
            block = op.parent_block()

    def _store_in_slot(
        self, value: SSAValue, buf: SSAValue, dims: list[tuple[SSAValue, ...]]
    ) -> None:
        """Forward sweep: store ``value`` into its iteration's slot of ``buf``."""
        if isinstance(value, BlockArgument):
            ip = InsertPoint.at_start(value.block)
        else:
            assert isinstance(value, OpResult)
            ip = InsertPoint.after(value.op)
        fe = Emitter(ip)
        slot = [
            fe.insert(arith.DivSIOp(
                fe.subi(as_index(fe, iv), as_index(fe, lb)), as_index(fe, step))).result
            for lb, _, step, iv in dims
        ]
        fe.insert(memref.StoreOp.get(value, buf, slot))

    @staticmethod
    def _alloc_cache(
        e: Emitter, t: Attribute, dims: list[tuple[SSAValue, ...]]
    ) -> memref.AllocOp:
        """``memref.alloc`` of one ``t`` per iteration of ``dims``, marked a cache."""
        index = IndexType()
        sizes = [
            e.maxsi(e.ceildivsi(e.subi(as_index(e, ub), as_index(e, lb)),
                                as_index(e, step)), e.const(0, index))
            for lb, ub, step, _ in dims
        ]
        mtype = MemRefType(t, [DYNAMIC_INDEX] * len(dims))
        alloc = e.insert(memref.AllocOp(sizes, [], mtype))
        alloc.attributes[CACHE_ATTR] = UnitAttr()
        return alloc

    def _indexed_cache(
        self, value: SSAValue, level: RevCtx, dims: list[tuple[SSAValue, ...]]
    ) -> SSAValue:
        assert self.entry is not None
        # the buffer: allocated once the last bound is known
        bound_ops = {b.owner for d in dims for b in d[:3] if isinstance(b, OpResult)}
        last = None
        for op in self.entry.ops:
            if op in bound_ops:
                last = op
        ip = InsertPoint.at_start(self.entry) if last is None else InsertPoint.after(last)
        alloc = self._alloc_cache(Emitter(ip), value.type, dims)
        self.caches.append(alloc.memref)
        self._store_in_slot(value, alloc.memref, dims)
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

    def _buffer_cache(self, value: SSAValue, level: RevCtx, plan: "_CachePlan") -> SSAValue:
        """Enzyme's cache of a value in counted loops inside a loop of unknown trip
        count: an indexed buffer of the counted loops' trip counts, allocated in each
        iteration of the home block just before the outermost counted loop, and the
        buffer itself pushed on a stack there; the reverse of the home block pops it,
        its reverse loops load from it, and it is freed after them."""
        assert plan.outermost is not None
        home_level = level
        for _ in range(plan.levels):
            assert home_level.parent is not None
            home_level = home_level.parent
        alloc = self._alloc_cache(
            Emitter(InsertPoint.before(plan.outermost)), value.type, plan.dims
        )
        self._store_in_slot(value, alloc.memref, plan.dims)
        buf = self._stack_cache(alloc.memref, home_level)
        home_level.frees.append(buf)
        # reverse sweep: the slot of the reverse iteration, counted inside the home
        iterations: list[Callable[[], SSAValue]] = []
        ctx: RevCtx | None = level
        while ctx is not home_level:
            assert ctx is not None
            iterations = ctx.iteration + iterations
            ctx = ctx.parent
        assert len(iterations) == len(plan.dims), "reverse loops do not match the cache"
        rslot = [it() for it in iterations]
        with self.prologue(level) as re:
            load = re.insert(memref.LoadOp.get(buf, rslot))
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
