"""``hoist-checks``: move run-time checks of affine indices out of ``scf.for`` loops.

A bounds check ``isz.check (0 <= a*i + b < n)`` in the body of ``scf.for %i = %lb to
%ub step %s`` (``a``, ``b``, ``n`` loop-invariant) holds for every iteration exactly when
it holds for the first and the last one, because the set of good indices is an interval
and ``a*i + b`` is monotonic in ``i``. So the check is replaced by one check before the
loop::

    isz.check (ub <= lb) or (cond(lb) and cond(last)), v(first failing end)...

with ``last = lb + ((ub - lb - 1) / s) * s``; ``cond(x)`` is the check's condition
recomputed with ``x`` for ``%i`` (its operations cloned before the loop). The loop then
runs without any check. Loops are visited innermost first, and the hoisted condition is
again of a hoistable form when the inner loop's bounds are invariant in the outer loop,
so checks leave whole loop nests.

**Which conditions.** The condition must be built from

* values that do not depend on ``%i`` (loop-invariant);
* ``arith.andi`` of hoistable conditions, ``arith.ori`` of an invariant and a hoistable
  condition (for all ``i``: ``G or B(i)`` is ``G or (for all i: B(i))``);
* comparisons of an affine function of ``%i`` with an invariant: signed ones
  (``slt``, ``sle``, ``sgt``, ``sge``: a half-line), or unsigned ``ult``/``ule``
  against a size (``memref.dim`` or a non-negative constant: ``0 <= x < n``), where the
  affine side may also be numpy's wrapped index ``x < 0 ? x + n : x`` of the same ``n``
  (``-n <= x < n``).

Affine: ``%i`` itself, invariants, ``addi``/``subi`` of affine values, ``muli`` of an
affine value by an invariant, and ``index_cast``/``extsi`` of an affine value (64-bit
wrap-around is not modelled: indices near 2**63 are out of scope). The operations
cloned before the loop are total integer operations only (no division), so computing
them for a loop that does not run is harmless. Only checks directly in the loop body
(not inside an ``scf.if``) of a loop with a constant positive step move; the reported
values are those of the first end (first, then last iteration) that fails.

Checks of a condition value that an earlier check already tested (in the same block or
an enclosing one: ``if x[c] > m: m = x[c]`` loads ``x[c]`` twice) are dropped first.
"""

from __future__ import annotations

from collections.abc import Iterable

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith, builtin, memref, scf
from xdsl.dialects.builtin import IndexType, IntegerAttr
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.dialects.check import CheckOp

#: Total (never trapping) integer operations that may be recomputed before a loop.
_CLONABLE = (
    arith.ConstantOp, arith.AddiOp, arith.SubiOp, arith.MuliOp, arith.IndexCastOp,
    arith.ExtSIOp, arith.ExtUIOp, arith.TruncIOp, arith.CmpiOp, arith.SelectOp,
    arith.AndIOp, arith.OrIOp, arith.XOrIOp, arith.MinSIOp, arith.MaxSIOp,
    arith.MinUIOp, arith.MaxUIOp, memref.DimOp,
)
_SIGNED = {"slt", "sle", "sgt", "sge"}
_FLIP = {"slt": "sgt", "sle": "sge", "sgt": "slt", "sge": "sle",
         "ult": "ugt", "ule": "uge", "ugt": "ult", "uge": "ule"}


class _Loop:
    """Dependence facts of one ``scf.for`` body."""

    def __init__(self, loop: scf.ForOp) -> None:
        self.loop = loop
        self.body: Block = loop.body.block
        self.iv = self.body.args[0]
        self._dep: dict[SSAValue, bool] = {}

    def inside(self, v: SSAValue) -> bool:
        """Whether ``v`` is defined by an op (or is an argument) of the loop body."""
        owner = v.owner
        block = owner if isinstance(owner, Block) else owner.parent_block()
        return block is self.body

    def depends(self, v: SSAValue) -> bool:
        """Whether ``v`` depends on the iteration (``None``-safe, memoised). Values
        defined in the body by ops other than clonable ones count as dependent."""
        if not self.inside(v):
            return False
        if v in self._dep:
            return self._dep[v]
        owner = v.owner
        if isinstance(owner, Block):  # the induction variable or an iter_arg
            dep = True
        elif isinstance(owner, _CLONABLE):
            dep = any(self.depends(o) for o in owner.operands)
        else:
            dep = True
        self._dep[v] = dep
        return dep

    def clonable(self, v: SSAValue) -> bool:
        """Whether ``v`` can be recomputed before the loop for a given ``%i``."""
        if not self.inside(v):
            return True
        owner = v.owner
        if isinstance(owner, Block):
            return v is self.iv
        return isinstance(owner, _CLONABLE) and all(
            self.clonable(o) for o in owner.operands
        )

    def affine(self, v: SSAValue) -> bool:
        """Whether ``v`` is an affine function of ``%i`` (invariants included)."""
        if v is self.iv or not self.depends(v):
            return self.clonable(v)
        op = v.owner
        match op:
            case arith.AddiOp() | arith.SubiOp():
                return self.affine(op.lhs) and self.affine(op.rhs)
            case arith.MuliOp():
                return (not self.depends(op.lhs) and self.affine(op.rhs)) or (
                    not self.depends(op.rhs) and self.affine(op.lhs)
                )
            case arith.IndexCastOp() | arith.ExtSIOp():
                return self.affine(op.input)
            case _:
                return False

    def _nonneg_size(self, n: SSAValue) -> bool:
        owner = n.owner
        if isinstance(owner, memref.DimOp):
            return True
        if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr):
            return owner.value.value.data >= 0
        return False

    def _wrapped_affine(self, x: SSAValue, n: SSAValue) -> bool:
        """``x`` is ``select(a < 0, a + n, a)`` with ``a`` affine."""
        op = x.owner
        if not isinstance(op, arith.SelectOp):
            return False
        a = op.rhs  # select(cond, lhs, rhs): the value when not negative
        cmp, add = op.cond.owner, op.lhs.owner
        return (
            isinstance(cmp, arith.CmpiOp)
            and cmp.predicate.value.data == 2  # slt
            and cmp.lhs is a
            and isinstance(cmp.rhs.owner, arith.ConstantOp)
            and cmp.rhs.owner.value == IntegerAttr(0, cmp.rhs.type)
            and isinstance(add, arith.AddiOp)
            and {add.lhs, add.rhs} == {a, n}
            and self.affine(a)
        )

    def _leaf(self, op: arith.CmpiOp) -> bool:
        pred = arith.CMPI_COMPARISON_OPERATIONS[op.predicate.value.data]
        lhs, rhs = op.lhs, op.rhs
        if self.depends(lhs) and self.depends(rhs):
            return False
        if self.depends(rhs):  # the varying side on the left
            lhs, rhs, pred = rhs, lhs, _FLIP.get(pred, pred)
        if not self.clonable(rhs):
            return False
        if pred in _SIGNED:
            return self.affine(lhs)
        if pred in ("ult", "ule") and self._nonneg_size(rhs):
            return self.affine(lhs) or self._wrapped_affine(lhs, rhs)
        return False

    def hoistable(self, cond: SSAValue) -> bool:
        """Whether ``cond`` holds for every iteration iff it holds for the first and
        the last (see the module docstring)."""
        if not self.depends(cond):
            return self.clonable(cond)
        op = cond.owner
        match op:
            case arith.AndIOp():
                return self.hoistable(op.lhs) and self.hoistable(op.rhs)
            case arith.OrIOp():
                return (not self.depends(op.lhs) and self.clonable(op.lhs)
                        and self.hoistable(op.rhs)) or (
                    not self.depends(op.rhs) and self.clonable(op.rhs)
                    and self.hoistable(op.lhs))
            case arith.CmpiOp():
                return self._leaf(op)
            case _:
                return False

    def slice_ops(self, values: Iterable[SSAValue]) -> list[Operation]:
        """The body ops ``values`` depend on, in body order."""
        needed: set[Operation] = set()
        stack = [v for v in values if self.inside(v)]
        while stack:
            v = stack.pop()
            op = v.owner
            if isinstance(op, Block) or op in needed:
                continue
            needed.add(op)
            stack.extend(o for o in op.operands if self.inside(o))
        return [op for op in self.body.ops if op in needed]


def _constant_step(loop: scf.ForOp) -> int | None:
    owner = loop.step.owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr):
        return owner.value.value.data
    return None


def _dedupe(block: Block, seen: frozenset[SSAValue] = frozenset()) -> None:
    """Drop a check whose condition value a check that runs before it already tested:
    an earlier check of the same block or of an enclosing ``scf`` op's block."""
    local = set(seen)
    for op in list(block.ops):
        if isinstance(op, CheckOp):
            if op.cond in local:
                Rewriter.erase_op(op)
            else:
                local.add(op.cond)
        elif op.regions:
            inner = frozenset(local) if op.name.startswith("scf.") else frozenset()
            for region in op.regions:
                for b in region.blocks:
                    _dedupe(b, inner)


def _erase_dead(ops: list[Operation]) -> None:
    for op in reversed(ops):
        if op.parent is not None and all(not r.uses for r in op.results):
            Rewriter.erase_op(op)


def hoist_from(loop: scf.ForOp) -> int:
    """Hoist the hoistable checks of ``loop``'s body before it; return how many."""
    step = _constant_step(loop)
    if step is None or step <= 0:
        return 0
    info = _Loop(loop)
    checks = [
        op for op in info.body.ops
        if isinstance(op, CheckOp)
        and info.hoistable(op.cond)
        and all(info.clonable(v) for v in op.values)
    ]
    if not checks:
        return 0
    b = Builder(InsertPoint.before(loop))
    lb, ub = loop.lb, loop.ub
    idx = IndexType()
    one = b.insert(arith.ConstantOp(IntegerAttr(1, idx))).result
    empty = b.insert(arith.CmpiOp(ub, lb, "sle")).result
    span = b.insert(arith.SubiOp(b.insert(arith.SubiOp(ub, lb)).result, one)).result
    if step != 1:
        # (ub - lb - 1) - (ub - lb - 1) mod step, without a division by a value: the
        # remainder by a positive constant is total.
        st = b.insert(arith.ConstantOp(IntegerAttr(step, idx))).result
        rem = b.insert(arith.RemSIOp(span, st)).result
        span = b.insert(arith.SubiOp(span, rem)).result
    last = b.insert(arith.AddiOp(lb, span)).result

    def at(point: SSAValue, values: list[SSAValue]) -> list[SSAValue]:
        mapping: dict[SSAValue, SSAValue] = {info.iv: point}
        for op in info.slice_ops(values):
            clone = b.insert(op.clone(value_mapper=mapping))
            for old, new in zip(op.results, clone.results):
                mapping[old] = new
        return [mapping.get(v, v) for v in values]

    for check in checks:
        values = [check.cond, *check.values]
        first_vals = at(lb, values)
        last_vals = at(last, values)
        both = b.insert(arith.AndIOp(first_vals[0], last_vals[0])).result
        ok = b.insert(arith.OrIOp(empty, both)).result
        reported = [
            f if f is l else b.insert(arith.SelectOp(first_vals[0], l, f)).result
            for f, l in zip(first_vals[1:], last_vals[1:])
        ]
        b.insert(CheckOp(ok, check.kind.data, check.message.data, reported))
        dead = info.slice_ops(values)
        Rewriter.erase_op(check)
        _erase_dead(dead)
    return len(checks)


class HoistChecksPass(ModulePass):
    """Move ``isz.check`` ops on affine indices out of ``scf.for`` loops, innermost
    loops first (see the module docstring)."""

    name = "hoist-checks"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        if not any(isinstance(o, CheckOp) for o in op.walk()):
            return
        _dedupe(op.body.block)
        loops = [o for o in op.walk() if isinstance(o, scf.ForOp)]
        for loop in reversed(loops):  # pre-order reversed: inner loops first
            hoist_from(loop)
