"""``lift-cf-to-scf``: raise branch-based control flow (``cf.br``, ``cf.cond_br``,
``cf.switch``) to structured control flow (``scf.if``, ``scf.while``), as upstream
MLIR's ``--lift-cf-to-scf`` does.

The AD passes differentiate structured control flow only (loops reverse as loops,
branches reverse on the same condition), so functions written with several blocks --
Enzyme-MLIR's own test inputs, IR from other frontends -- are raised first.  The pass
works on every multi-block ``func.func`` body and ``scf.execute_region`` region (the
latter then inlined into its parent block).

What it raises: reducible control flow graphs whose

* branches (``cf.cond_br``, ``cf.switch``) join again: each becomes an ``scf.if`` (a
  chain of them for a switch) whose results are the block arguments of the join (the
  branch's immediate post-dominator); a block reached by several paths that do not
  join first is emitted once per path;
* loops have one header and one exit edge (``while`` loops testing at the header,
  ``do``-``while`` loops testing at the latch, or the test in between): each becomes an
  ``scf.while`` whose ``before`` region runs from the header to the exit test and whose
  ``after`` region runs from there back to the header; values live across the test are
  passed through ``scf.condition``;
* returns may be several: they are merged into one exit first.

What it refuses, with an :class:`~isozyme.errors.UnsupportedError` naming the construct
(with ``strict=False`` such a function is left as it is): irreducible control flow
(a loop entered other than through its header), loops with several exits (``break``,
a ``return`` inside a loop), loops without exit, loops whose exit test does not run on
every iteration, and blocks that end without a branch or return (``unreachable``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import arith, cf, func, scf
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, i1
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.errors import UnsupportedError

#: How many blocks a lifted region may grow to (blocks reached by several paths that
#: do not join first are copied per path): beyond this the control flow is refused.
_MAX_EMITTED = 2000


@dataclass(eq=False)
class _Latch:
    """The point "back at the header" of loop ``header``: all back edges of the loop
    go there (a node of the post-dominator graph, and the stop of a loop body)."""

    header: Block


_Node = Block | _Latch | None  # None: the region's single exit (after the return)


def _describe(where: str, b: Block, region: Region) -> str:
    return f"{where}, block ^bb{list(region.blocks).index(b)}"


def _terminator_edges(t: Operation) -> list[tuple[Block, Sequence[SSAValue]]]:
    """The (successor, forwarded values) edges of a cf terminator."""
    if isinstance(t, cf.BranchOp):
        return [(t.successor, list(t.arguments))]
    if isinstance(t, cf.ConditionalBranchOp):
        return [(t.then_block, list(t.then_arguments)),
                (t.else_block, list(t.else_arguments))]
    if isinstance(t, cf.SwitchOp):
        return [(t.default_block, list(t.default_operands))] + [
            (b, list(ops)) for b, ops in zip(t.case_blocks, t.case_operand)
        ]
    return []


def _block_like(args: Sequence[SSAValue]) -> Block:
    """A new block with arguments of the types and names of ``args``."""
    blk = Block(arg_types=[a.type for a in args])
    for new, old in zip(blk.args, args):
        new.name_hint = old.name_hint
    return blk


class _RegionLifter:
    """Raises one multi-block region into a single block of structured ops."""

    def __init__(self, region: Region, exit_type: type[Operation], where: str):
        self.region = region
        self.exit_type = exit_type
        self.where = where
        self.vmap: dict[SSAValue, SSAValue] = {}
        self.emitted = 0
        self.open_loops: set[Block] = set()  # headers of the loops being emitted
        self._merge_exits()
        self._analyze()

    # -- analysis -----------------------------------------------------------------
    def _refuse(self, what: str, b: Block | None = None) -> UnsupportedError:
        at = _describe(self.where, b, self.region) if b is not None else self.where
        return UnsupportedError(f"lift-cf-to-scf: {at}: {what}")

    def _merge_exits(self) -> None:
        """Make the region's exit terminators (``func.return``/``scf.yield``) one:
        the others branch to it."""
        exits = [b for b in self.region.blocks if isinstance(b.last_op, self.exit_type)]
        if len(exits) <= 1:
            return
        types = [v.type for v in exits[0].last_op.operands]  # type: ignore[union-attr]
        merged = Block(arg_types=types)
        self.region.add_block(merged)
        merged.add_op(self.exit_type(*merged.args))
        for b in exits:
            ret = b.last_op
            assert ret is not None
            Rewriter.replace_op(ret, cf.BranchOp(merged, *ret.operands))

    def _successors(self, b: Block) -> list[Block]:
        t = b.last_op
        if t is None:
            raise self._refuse("an empty block", b)
        if isinstance(t, self.exit_type):
            return []
        edges = _terminator_edges(t)
        if not edges:
            raise self._refuse(
                f"a block ending in '{t.name}' (neither a branch nor "
                f"'{self.exit_type.name}')", b)
        return [s for s, _ in edges]

    def _analyze(self) -> None:
        entry = self.region.blocks.first
        assert entry is not None
        self.entry = entry
        # reachable blocks in DFS order; retreating edges
        succ: dict[Block, list[Block]] = {}
        order: list[Block] = []
        on_stack: set[Block] = set()
        retreating: list[tuple[Block, Block]] = []
        visited: set[Block] = set()

        # iterative depth-first search (large functions would exceed Python's stack)
        visited.add(entry)
        on_stack.add(entry)
        order.append(entry)
        succ[entry] = self._successors(entry)
        stack: list[tuple[Block, int]] = [(entry, 0)]
        while stack:
            blk, k = stack[-1]
            if k == len(succ[blk]):
                stack.pop()
                on_stack.discard(blk)
                continue
            stack[-1] = (blk, k + 1)
            s = succ[blk][k]
            if s in on_stack:
                retreating.append((blk, s))
            elif s not in visited:
                visited.add(s)
                on_stack.add(s)
                order.append(s)
                succ[s] = self._successors(s)
                stack.append((s, 0))
        self.succ = succ
        self.blocks = order
        preds: dict[Block, list[Block]] = {b: [] for b in order}
        for b in order:
            for s in succ[b]:
                preds[s].append(b)
        self.preds = preds
        dom = self._dominators(order, preds)
        # natural loops: a retreating edge must go to a block that dominates its source
        self.loops: dict[Block, set[Block]] = {}
        for src, hdr in retreating:
            if hdr not in dom[src]:
                raise self._refuse(
                    "irreducible control flow (a loop entered other than through "
                    "its header)", hdr)
            body = self.loops.setdefault(hdr, {hdr})
            todo = [src]
            while todo:
                x = todo.pop()
                if x not in body:
                    body.add(x)
                    todo.extend(preds[x])
        # every loop: one exit edge
        self.exit_of: dict[Block, tuple[Block, Block]] = {}  # header -> (exiting, target)
        for hdr, body in self.loops.items():
            outs = [(b, s) for b in body for s in succ[b] if s not in body]
            if not outs:
                raise self._refuse("a loop without exit", hdr)
            if len(outs) > 1:
                raise self._refuse(
                    "a loop with several exits (a break, or a return inside the loop)",
                    hdr)
            self.exit_of[hdr] = outs[0]
        self._post_dominators()

    @staticmethod
    def _dominators(order: list[Block], preds: dict[Block, list[Block]]) -> dict[Block, set[Block]]:
        dom = {b: set(order) for b in order}
        dom[order[0]] = {order[0]}
        changed = True
        while changed:
            changed = False
            for b in order[1:]:
                new = {b} | set.intersection(*(dom[p] for p in preds[b]))
                if new != dom[b]:
                    dom[b], changed = new, True
        return dom

    def target(self, src: Block, dst: Block) -> _Node:
        """The node edge ``src -> dst`` goes to: a back edge goes to the loop's latch."""
        if dst in self.loops and src in self.loops[dst]:
            return self.latch[dst]
        return dst

    def _post_dominators(self) -> None:
        """Post-dominators on the graph whose back edges go to their loop's latch node
        and whose latch nodes go to the loop's exit target (loops collapsed)."""
        self.latch = {h: _Latch(h) for h in self.loops}
        nodes: list[_Node] = [*self.blocks, *self.latch.values(), None]
        out: dict[_Node, list[_Node]] = {}
        for b in self.blocks:
            out[b] = [self.target(b, s) for s in self.succ[b]] or [None]
        for h, lt in self.latch.items():
            exiting, target = self.exit_of[h]
            out[lt] = [self.target(exiting, target)]  # an outer loop's latch, maybe
        out[None] = []
        pdom: dict[_Node, set[int]] = {n: set(range(len(nodes))) for n in nodes}
        idx = {id(n): i for i, n in enumerate(nodes)}
        pdom[None] = {idx[id(None)]}
        changed = True
        while changed:
            changed = False
            for n in reversed(nodes[:-1]):
                new = {idx[id(n)]} | set.intersection(*(pdom[s] for s in out[n]))
                if new != pdom[n]:
                    pdom[n], changed = new, True
        self.nodes = nodes
        self.pdom = pdom
        for b in self.blocks:
            if idx[id(None)] not in pdom[b]:
                raise self._refuse("a block from which the region never exits", b)

    def ipdom(self, b: Block) -> _Node:
        """The immediate post-dominator of ``b``: where its branches join."""
        i = self.nodes.index(b)
        strict = [j for j in self.pdom[b] if j != i]
        best = max(strict, key=lambda j: len(self.pdom[self.nodes[j]]))
        return self.nodes[best]

    # -- emission ---------------------------------------------------------------------
    def m(self, v: SSAValue) -> SSAValue:
        return self.vmap.get(v, v)

    def lift(self) -> Block:
        """The region's code as one block (with the entry block's argument types)."""
        new = _block_like(self.entry.args)
        for old, a in zip(self.entry.args, new.args):
            self.vmap[old] = a
        self.walk(new, self.entry, list(new.args), None, enter_loop=True)
        return new

    def _emit_ops(self, into: Block, b: Block, args: Sequence[SSAValue]) -> Operation:
        """Clone ``b``'s ops but its terminator (returned) with ``b``'s arguments
        mapped to ``args``."""
        self.emitted += 1
        if self.emitted > _MAX_EMITTED:
            raise self._refuse("control flow that structured ops would need too many "
                               "copies of blocks to express")
        for old, new in zip(b.args, args, strict=True):
            self.vmap[old] = new
        for op in list(b.ops)[:-1]:
            into.add_op(op.clone(value_mapper=self.vmap))
        t = b.last_op
        assert t is not None
        return t

    def walk(self, into: Block, b: _Node, args: list[SSAValue], stop: _Node,
             enter_loop: bool = True) -> list[SSAValue]:
        """Emit into ``into`` the code from node ``b`` (entered with ``args``) until
        control reaches ``stop``; return the values passed to ``stop``."""
        while True:
            if isinstance(b, _Latch):
                if b is stop:
                    return args
                raise self._refuse(
                    "a loop whose exit test does not run on every iteration "
                    "(a continue, or the test inside a branch)", b.header)
            if b is stop:
                return args
            if b is None:
                raise self._refuse("a return inside a loop or branch that cannot be "
                                   "structured")
            if b in self.loops and enter_loop:
                b, args = self.emit_loop(into, b, args)
                continue
            enter_loop = True
            t = self._emit_ops(into, b, args)
            if isinstance(t, self.exit_type):
                if stop is not None:
                    raise self._refuse("a return that structured ops cannot reach", b)
                into.add_op(self.exit_type(*[self.m(v) for v in t.operands]))
                return []
            edges = [(s, [self.m(v) for v in vs]) for s, vs in _terminator_edges(t)]
            if len(edges) == 1:  # cf.br, or a cf.switch with only a default
                (s, vals), = edges
                b, args = self.target(b, s), vals
                continue
            join = self.ipdom(b)
            conds = self._branch_conditions(into, t)
            b, args = join, self.emit_branches(into, b, conds, edges, join)

    def _branch_conditions(self, into: Block, t: Operation) -> list[SSAValue]:
        """One i1 per edge but the last (which is taken when none holds)."""
        if isinstance(t, cf.ConditionalBranchOp):
            return [self.m(t.cond)]
        assert isinstance(t, cf.SwitchOp)
        flag = self.m(t.flag)
        conds = []
        values = t.case_values.get_values() if t.case_values else []
        for v in values:
            c = arith.ConstantOp(IntegerAttr(v, flag.type))
            eq = arith.CmpiOp(flag, c, "eq")
            into.add_ops([c, eq])
            conds.append(eq.result)
        # the default edge comes first in the edge list: move it last
        return conds

    def _join_types(self, join: _Node) -> list[Attribute]:
        if isinstance(join, _Latch):
            return [a.type for a in join.header.args]
        if join is None:
            return []
        return [a.type for a in join.args]

    def emit_branches(self, into: Block, b: Block, conds: list[SSAValue],
                      edges: list[tuple[Block, list[SSAValue]]], join: _Node) -> list[SSAValue]:
        """An ``scf.if`` (a chain of them for several conditions) taking ``edges``;
        each arm runs until ``join`` and yields the values it passes there."""
        t = b.last_op
        if isinstance(t, cf.SwitchOp):
            edges = edges[1:] + edges[:1]  # cases in order, the default last
        types = self._join_types(join)

        def arm(k: int) -> Region:
            blk = Block()
            if k == len(conds):
                s, vals = edges[k]
                out = self.walk(blk, self.target(b, s), vals, join)
            else:
                s, vals = edges[k]
                then = arm_edge(s, vals)
                rest = arm(k + 1)
                iff = scf.IfOp(conds[k], types, then, rest)
                blk.add_op(iff)
                out = list(iff.results)
            blk.add_op(scf.YieldOp(*out))
            return Region(blk)

        def arm_edge(s: Block, vals: list[SSAValue]) -> Region:
            blk = Block()
            out = self.walk(blk, self.target(b, s), vals, join)
            blk.add_op(scf.YieldOp(*out))
            return Region(blk)

        s0, v0 = edges[0]
        iff = scf.IfOp(conds[0], types, arm_edge(s0, v0), arm(1))
        into.add_op(iff)
        return list(iff.results)

    # -- loops ------------------------------------------------------------------------
    def _top_block(self, op: Operation) -> Block | None:
        """The block of this region that holds ``op`` (or the op it is nested in)."""
        while op is not None:
            blk = op.parent_block()
            if blk is None:
                return None
            if blk.parent is self.region:
                return blk
            op = blk.parent_op()  # type: ignore[assignment]
        return None

    def emit_loop(self, into: Block, hdr: Block, init: list[SSAValue]) -> tuple[_Node, list[SSAValue]]:
        """Emit loop ``hdr`` as an ``scf.while``; return where control goes after it
        and the values passed there.

        The loop is rotated: the part from the header to the exit test runs once
        before the ``scf.while`` and again at the end of its ``after`` region, so that
        the ``before`` region only forwards its arguments (the flag of the test, then
        the values live across it) -- the form reverse mode reverses as a counted
        loop.  The execution order of the ops is the original one."""
        if hdr in self.open_loops:
            raise self._refuse("control flow that re-enters a loop other than through "
                               "its back edges", hdr)
        self.open_loops.add(hdr)
        try:
            return self._emit_loop(into, hdr, init)
        finally:
            self.open_loops.discard(hdr)

    def _emit_loop(self, into: Block, hdr: Block, init: list[SSAValue]) -> tuple[_Node, list[SSAValue]]:
        exiting, exit_target = self.exit_of[hdr]
        t = exiting.last_op
        if not isinstance(t, cf.ConditionalBranchOp):
            raise self._refuse(
                f"a loop whose exit test is a '{t.name}' (only cf.cond_br is raised)",
                exiting)
        then_in = t.then_block in self.loops[hdr]
        cont_block, cont_vals = ((t.then_block, list(t.then_arguments)) if then_in
                                 else (t.else_block, list(t.else_arguments)))
        exit_vals = list(t.else_arguments) if then_in else list(t.then_arguments)
        # values of the header-to-test part used after it (in the loop or after it)
        live = self._live_out(self._blocks_between(hdr, exiting, self.loops[hdr]))
        nc, ne = len(cont_vals), len(exit_vals)

        def test(blk: Block, args: list[SSAValue]) -> list[SSAValue]:
            """Emit the header-to-test part: the continue flag, then the values
            passed on (continue-edge values, exit-edge values, live values)."""
            if exiting is not hdr:
                args = self.walk(blk, hdr, args, exiting, enter_loop=False)
            self._emit_ops(blk, exiting, args)
            cond = self.m(t.cond)
            if not then_in:
                true = arith.ConstantOp(IntegerAttr(1, i1))
                neg = arith.XOrIOp(cond, true)
                blk.add_ops([true, neg])
                cond = neg.result
            return [cond] + [self.m(v) for v in cont_vals + exit_vals + live]

        first = test(into, init)
        types = [v.type for v in first]
        before = Block(arg_types=types)
        before.add_op(scf.ConditionOp(before.args[0], *before.args))
        after = Block(arg_types=types)
        passed = after.args[1:]
        for k, v in enumerate(live):
            self.vmap[v] = passed[nc + ne + k]
        back = self.walk(after, self.target(exiting, cont_block), list(passed[:nc]),
                         self.latch[hdr])
        after.add_op(scf.YieldOp(*test(after, back)))
        loop = scf.WhileOp(first, types, Region(before), Region(after))
        into.add_op(loop)
        results = loop.results[1:]
        for k, v in enumerate(live):
            self.vmap[v] = results[nc + ne + k]
        # the exit may go straight back to an outer loop's header (its latch)
        return self.target(exiting, exit_target), list(results[nc : nc + ne])

    def _blocks_between(self, hdr: Block, exiting: Block, body: set[Block]) -> set[Block]:
        """The loop's blocks on paths from its header to its exit test."""
        seen = {hdr}
        todo = [hdr]
        while todo:
            x = todo.pop()
            if x is exiting:
                continue
            for s in self.succ[x]:
                if s in body and s not in seen and s is not hdr:
                    seen.add(s)
                    todo.append(s)
        seen.add(exiting)
        return seen

    def _live_out(self, part: set[Block]) -> list[SSAValue]:
        """Values defined in ``part`` (block arguments and results of their ops) used
        in blocks outside it."""
        live: list[SSAValue] = []
        for b in self.blocks:
            if b not in part:
                continue
            defined: list[SSAValue] = list(b.args)
            for op in b.ops:
                defined.extend(op.results)
            for v in defined:
                if any(self._top_block(u.operation) not in part for u in v.uses):
                    live.append(v)
        return live


def lift_region(region: Region, exit_type: type[Operation], where: str) -> None:
    """Replace the blocks of ``region`` by one block of structured ops (see the
    module docstring); a region of one block is left alone."""
    if len(region.blocks) <= 1:
        return
    new = _RegionLifter(region, exit_type, where).lift()
    old = list(region.blocks)
    for b in old:
        region.detach_block(b)
    # drop every reference first: the old blocks' ops use each other's values
    for b in old:
        b.drop_all_references()
    for b in old:
        b.erase(safe_erase=False)
    region.add_block(new)


def lift_function(fn: func.FuncOp) -> None:
    """Raise ``fn``'s branches to ``scf`` ops (its ``scf.execute_region`` ops too)."""
    regions = [o for o in fn.walk() if isinstance(o, scf.ExecuteRegionOp)]
    for op in reversed(regions):  # inner ones first: lifting an outer one clones them
        _lift_execute_region(op, fn)
    lift_region(fn.body, func.ReturnOp, f"@{fn.sym_name.data}")


def _lift_execute_region(op: scf.ExecuteRegionOp, fn: func.FuncOp) -> None:
    """Raise the region of ``op``, then inline it where ``op`` stands."""
    lift_region(op.region, scf.YieldOp, f"scf.execute_region in @{fn.sym_name.data}")
    block = op.region.block
    term = block.last_op
    assert isinstance(term, scf.YieldOp)
    results = list(term.operands)
    for inner in list(block.ops)[:-1]:
        inner.detach()
        Rewriter.insert_op(inner, InsertPoint.before(op))
    Rewriter.replace_op(op, [], results)


def has_branches(fn: func.FuncOp) -> bool:
    """Whether ``fn`` has several blocks or an ``scf.execute_region``."""
    return len(fn.body.blocks) > 1 or any(
        isinstance(o, scf.ExecuteRegionOp) for o in fn.walk())


def lift_functions(fns: Iterable[func.FuncOp], strict: bool = True) -> None:
    """:func:`lift_function` on each of ``fns`` that has branches; with ``strict``
    False, a function that cannot be raised is left unchanged."""
    for fn in fns:
        if not has_branches(fn) or not fn.body.blocks:
            continue
        if strict:
            lift_function(fn)
            continue
        trial = fn.clone()
        try:
            lift_function(trial)
        except UnsupportedError:
            continue
        lift_function(fn)


@dataclass(frozen=True)
class LiftCfToScfPass(ModulePass):
    """Raise the ``cf`` branches of every function to ``scf.if``/``scf.while``.

    ``strict``: refuse (``UnsupportedError``) control flow that cannot be raised;
    when False such functions are left as they are.
    """

    name = "lift-cf-to-scf"

    strict: bool = field(default=True, metadata={
        "help": "refuse control flow that cannot be raised (else leave the function as it is)"})

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        lift_functions([f for f in op.ops if isinstance(f, func.FuncOp)], self.strict)
