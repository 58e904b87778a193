"""``cse``: common subexpression elimination in time linear in the size of the IR.

Same semantics as xDSL's ``cse`` (:mod:`xdsl.transforms.common_subexpression_elimination`,
after MLIR's): an op is replaced by an identical earlier op that dominates it (same
name, attributes, properties, operand values, result types and structurally equal
regions) when it is free of side effects; an op whose only effects are reads is
replaced by an identical earlier one *of the same block* when no op between the two
may write (an op of unknown effects counts as a write); trivially dead ops are erased;
terminators and ops with multi-block regions are left alone; an op isolated from above
starts from an empty table; only single-block regions are visited.

**Why isozyme has its own.** xDSL's pass is quadratic on long straight-line code, the
shape expansion by minors or unrolled recursion produce (GradBench ``det`` at
``ell = 6``: 73% of a two-minute compilation):

* before replacing a read it walks every op between the two reads, asking each for
  its effects (``has_other_side_effecting_op_in_between``); here each block keeps a
  *write epoch*, the number of possibly-writing ops seen so far, recorded with each
  known read: two reads of one block have no write between them exactly when their
  epochs are equal (each op's effects are asked once);
* each nested region copies the whole table of known ops; here one table is shared
  and each scope undoes its own insertions when it ends (MLIR's ``ScopedHashTable``);
* the check that a use was not visited yet hashed the user structurally; here visited
  ops are a set of identities.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.traits import (
    EffectInstance,
    IsolatedFromAbove,
    IsTerminator,
    MemoryEffectKind,
    SymbolOpInterface,
    get_effects,
)
from xdsl.transforms.common_subexpression_elimination import OperationInfo

_READ = MemoryEffectKind.READ
_WRITE = MemoryEffectKind.WRITE
_ALLOC = MemoryEffectKind.ALLOC
_MISSING = object()

Effects = AbstractSet[EffectInstance] | None


def _may_write(effects: Effects) -> bool:
    """Whether an op with these effects may write memory (unknown effects may)."""
    return effects is None or any(e.kind is _WRITE for e in effects)


def _would_be_trivially_dead(op: Operation, effects: Effects) -> bool:
    """xDSL's ``would_be_trivially_dead`` with the op's effects already known."""
    if effects is None:
        return False
    if op.has_trait(IsTerminator, value_if_unregistered=False):
        return False
    if op.has_trait(SymbolOpInterface, value_if_unregistered=False):
        return False
    return all(
        e.kind is _READ
        # an allocation of a value the op itself defines is not observable
        or (e.kind is _ALLOC and isinstance(v := e.value, SSAValue)
            and op.is_ancestor(v.owner))
        for e in effects
    )


@dataclass
class _Known:
    """A known op; for a read-only op, its block and the block's write epoch then."""

    op: Operation
    block: Block | None
    epoch: int


@dataclass
class _ScopedTable:
    """A hash table of known ops whose insertions are undone scope by scope."""

    table: dict[OperationInfo, _Known] = field(default_factory=dict)
    undo: list[list[tuple[OperationInfo, object]]] = field(default_factory=list)

    def push(self) -> None:
        """Open a scope (a region is entered)."""
        self.undo.append([])

    def pop(self) -> None:
        """Close the innermost scope, forgetting what it inserted."""
        for key, previous in reversed(self.undo.pop()):
            if previous is _MISSING:
                del self.table[key]
            else:
                self.table[key] = previous  # type: ignore[assignment]

    def get(self, key: OperationInfo) -> _Known | None:
        """The known op equal to ``key``'s, if any."""
        return self.table.get(key)

    def insert(self, key: OperationInfo, known: _Known) -> None:
        """Record ``known`` under ``key`` in the innermost scope."""
        self.undo[-1].append((key, self.table.get(key, _MISSING)))
        self.table[key] = known


@dataclass
class LinearCSEDriver:
    """The state of one CSE run: known ops, visited ops and ops to erase."""

    _known: _ScopedTable = field(default_factory=_ScopedTable)
    _visited: set[Operation] = field(default_factory=set[Operation])
    _to_erase: list[Operation] = field(default_factory=list[Operation])

    def simplify(self, thing: Operation | Block | Region) -> None:
        """CSE the regions of an op, a block or a region, then erase what became dead."""
        self._known.push()
        if isinstance(thing, Operation):
            for region in thing.regions:
                self._simplify_region(region)
        elif isinstance(thing, Block):
            self._simplify_block(thing)
        else:
            self._simplify_region(thing)
        self._known.pop()
        # users before their operands: erasing checks that no use is left
        for op in reversed(self._to_erase):
            if op.parent is not None:
                op.parent.erase_op(op)

    def _simplify_region(self, region: Region) -> None:
        # as xDSL and MLIR: multi-block regions are not visited
        if len(region.blocks) != 1:
            return
        self._known.push()
        self._simplify_block(region.block)
        self._known.pop()

    def _simplify_block(self, block: Block) -> None:
        epoch = 0  # ops seen in this block so far that may write
        for op in block.ops:
            if op.regions:
                if op.has_trait(IsolatedFromAbove, value_if_unregistered=True):
                    outer = self._known
                    self._known = _ScopedTable()
                    self._known.push()
                    for region in op.regions:
                        self._simplify_region(region)
                    self._known = outer
                else:
                    for region in op.regions:
                        self._simplify_region(region)
            effects = get_effects(op)
            self._simplify_operation(op, effects, block, epoch)
            self._visited.add(op)
            if _may_write(effects):
                epoch += 1

    def _simplify_operation(
        self, op: Operation, effects: Effects, block: Block, epoch: int
    ) -> None:
        if op.has_trait(IsTerminator):
            return
        if all(r.first_use is None for r in op.results) and _would_be_trivially_dead(
            op, effects
        ):
            self._to_erase.append(op)
            return
        if any(len(region.blocks) > 1 for region in op.regions):
            return
        if effects is None:
            return
        key = OperationInfo(op)
        if len(effects) == 0:  # free of side effects
            if (existing := self._known.get(key)) is not None:
                self._replace(op, existing.op)
            else:
                self._known.insert(key, _Known(op, None, 0))
            return
        if not all(e.kind is _READ for e in effects):
            return
        existing = self._known.get(key)
        if existing is not None and existing.block is block and existing.epoch == epoch:
            self._replace(op, existing.op)
            return
        self._known.insert(key, _Known(op, block, epoch))

    def _replace(self, op: Operation, existing: Operation) -> None:
        """Replace ``op``'s results by ``existing``'s (except in visited users: graph
        regions) and erase ``op`` once none of its results is used."""
        for old, new in zip(op.results, existing.results, strict=True):
            if all(use.operation not in self._visited for use in old.uses):
                old.replace_all_uses_with(new)
        if all(r.first_use is None for r in op.results):
            self._to_erase.append(op)


@dataclass(frozen=True)
class CSEPass(ModulePass):
    """Common subexpression elimination in linear time: replace an op by an identical
    earlier one that dominates it (and has no side effects, or only reads with no
    possible write between the two, in one block); erase trivially dead ops.

    xDSL's ``cse`` with the same semantics; isozyme has its own because xDSL's is
    quadratic on long straight-line code (it walks every op between two reads, and
    copies its table of known ops for each region)."""

    name = "cse"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        """Eliminate, in place, the common subexpressions of ``op``."""
        LinearCSEDriver().simplify(op)
