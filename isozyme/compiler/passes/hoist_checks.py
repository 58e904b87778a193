"""``hoist-checks``: move run-time checks of affine indices out of ``scf.for`` loops
and one-dimensional ``scf.parallel`` loops (``isozyme.prange``).

A bounds check ``isz.check (0 <= a*i + b < n)`` in the body of ``scf.for %i = %lb to
%ub step %s`` (``a``, ``b``, ``n`` loop-invariant) holds for every iteration exactly when
it holds for the first and the last one, because the set of good indices is an interval
and ``a*i + b`` is monotonic in ``i``. So the check is replaced by one check before the
loop::

    isz.check (ub <= lb) or (cond(lb) and cond(last)), v(first failing end)...

with ``last = lb + (ub - lb - 1) - (ub - lb - 1) mod s``; ``cond(x)`` is the check's
condition recomputed with ``x`` for ``%i`` (its operations cloned before the loop). The
loop then runs without any check. Loops are visited innermost first, and the hoisted
condition is again of a hoistable form when the inner loop's bounds are invariant in the
outer loop, so checks leave whole loop nests.

**Triangular nests.** When the inner loop's trip count moves by one per outer iteration
(``for j in range(i)``, ``for j in range(i, n)``), the hoisted guard ``ub <= lb`` holds on
a prefix (or a suffix) of the outer iterations: for all ``i``, ``guard(i) or c(i)`` with
``c`` as above holds iff ``c`` holds at both ends of the iterations where the guard is
false, whose edge is computed from the guard at ``lb`` (it moves by one per iteration;
loops of step 1 only, so the edge is an iteration). The frontend's trip count
``max(stop - start, 0)`` is read as ``stop - start``, which runs the same iterations.

**Which conditions.** The condition must be built from

* values that do not depend on ``%i`` (loop-invariant);
* ``arith.andi`` of hoistable conditions, ``arith.ori`` of an invariant and a hoistable
  condition (for all ``i``: ``G or B(i)`` is ``G or (for all i: B(i))``), ``arith.ori``
  of a unit-slope guard and a condition of the other forms (triangular nests, below);
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
values are those of the first end (first, then last iteration) that fails, except for
a bounds check whose index moves by one per iteration: it names the first failing index,
as the loop would have.

A one-dimensional ``scf.parallel`` is treated as an ``scf.for`` without iteration
arguments: the hoisted check holds for every iteration exactly when it does for the first
and the last, whatever order the iterations run in (on a GPU, a check left in a kernel
costs a status buffer and a read back after the launch: see ``docs/gpu.md``).

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


Loop = scf.ForOp | scf.ParallelOp


def _bounds(loop: Loop) -> tuple[SSAValue, SSAValue, SSAValue] | None:
    """``(lb, ub, step)`` of an ``scf.for`` or of a one-dimensional ``scf.parallel``;
    None for a parallel loop of several dimensions."""
    if isinstance(loop, scf.ForOp):
        return loop.lb, loop.ub, loop.step
    if len(loop.lowerBound) != 1:
        return None
    return loop.lowerBound[0], loop.upperBound[0], loop.step[0]


class _Loop:
    """Dependence facts of one loop body (``scf.for`` or one-dimensional
    ``scf.parallel``)."""

    def __init__(self, loop: Loop, step: int) -> None:
        self.loop = loop
        self.step = step
        self.body: Block = loop.body.block
        self.iv = self.body.args[0]
        self._dep: dict[SSAValue, bool] = {}
        self._position: dict[Operation, int] | None = None

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

    def invariant(self, v: SSAValue) -> bool:
        """Whether ``v`` is the same in every iteration and can be computed before."""
        return not self.depends(v) and self.clonable(v)

    def convex(self, cond: SSAValue) -> bool:
        """Whether ``cond`` holds for every iteration iff it holds for the first and
        the last: invariants, interval tests of affine indices, ``and`` of such, ``or``
        with an invariant (see the module docstring)."""
        if not self.depends(cond):
            return self.clonable(cond)
        op = cond.owner
        match op:
            case arith.AndIOp():
                return self.convex(op.lhs) and self.convex(op.rhs)
            case arith.OrIOp():
                return (self.invariant(op.lhs) and self.convex(op.rhs)) or (
                    self.invariant(op.rhs) and self.convex(op.lhs))
            case arith.CmpiOp():
                return self._leaf(op)
            case _:
                return False

    def coefficient(self, v: SSAValue) -> int | None:
        """The constant coefficient of ``%i`` in affine ``v`` (0 for an invariant), or
        ``None`` when ``v`` is not affine with a constant coefficient."""
        if v is self.iv:
            return 1
        if not self.depends(v):
            return 0 if self.clonable(v) else None
        op = v.owner
        match op:
            case arith.AddiOp() | arith.SubiOp():
                a, b = self.coefficient(op.lhs), self.coefficient(op.rhs)
                if a is None or b is None:
                    return None
                return a + b if isinstance(op, arith.AddiOp) else a - b
            case arith.MuliOp():
                for x, y in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
                    c = _constant_of(y)
                    a = self.coefficient(x)
                    if c is not None and a is not None:
                        return a * c
                return None
            case arith.IndexCastOp() | arith.ExtSIOp():
                return self.coefficient(op.input)
            case _:
                return None

    def guard(self, cond: SSAValue) -> tuple[int, str, SSAValue, SSAValue] | None:
        """``(slope, pred, a, b)`` when ``cond`` is ``cmpi pred, a, b`` (signed) of two
        affine values whose difference has slope ``+1`` or ``-1`` in ``%i``: a test true
        on a prefix or a suffix of the iterations (``ub <= lb`` of an inner loop whose
        bound is the induction variable, as in ``for j in range(i)``)."""
        op = cond.owner
        if self.step != 1 or not isinstance(op, arith.CmpiOp):
            return None  # (with a larger step the guard's edge may fall between iterations)
        pred = arith.CMPI_COMPARISON_OPERATIONS[op.predicate.value.data]
        if pred not in _SIGNED:
            return None
        lhs = self._unclamped(op.lhs, pred, op.rhs)
        ca, cb = self.coefficient(lhs), self.coefficient(op.rhs)
        if ca is None or cb is None or ca - cb not in (1, -1):
            return None
        return ca - cb, pred, lhs, op.rhs

    def _unclamped(self, a: SSAValue, pred: str, c: SSAValue) -> SSAValue:
        """``x`` when ``a`` is ``max(x, k)`` (through casts) and ``a <= c`` iff
        ``x <= c``: a trip count ``max(stop - start, 0)`` tested against 0."""
        v = a
        while isinstance(v.owner, (arith.IndexCastOp, arith.ExtSIOp)):
            v = v.owner.input
        op, bound = v.owner, _constant_of(c)
        if not isinstance(op, arith.MaxSIOp) or bound is None or pred not in ("sle", "slt"):
            return a
        for x, k in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            kk = _constant_of(k)
            if kk is not None and (kk <= bound if pred == "sle" else kk < bound):
                return x
        return a

    def hoistable(self, cond: SSAValue) -> bool:
        """Whether "``cond`` in every iteration" can be computed before the loop:
        convex conditions, ``and`` of hoistable ones, ``or`` of an invariant and a
        hoistable one, ``or`` of a unit-slope :meth:`guard` and a convex one."""
        if self.convex(cond):
            return True
        op = cond.owner
        match op:
            case arith.AndIOp():
                return self.hoistable(op.lhs) and self.hoistable(op.rhs)
            case arith.OrIOp():
                return any(
                    (self.invariant(g) and self.hoistable(x))
                    or (self.guard(g) is not None and self.convex(x))
                    for g, x in ((op.lhs, op.rhs), (op.rhs, op.lhs))
                )
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
        # body order from positions taken once (walking the body per call was
        # quadratic in the body's size); hoisting inserts before the loop, not in it
        if self._position is None:
            self._position = {op: i for i, op in enumerate(self.body.ops)}
        pos = self._position
        return sorted((op for op in needed if op in pos), key=pos.__getitem__)


def _constant_of(v: SSAValue) -> int | None:
    owner = v.owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr):
        return owner.value.value.data
    return None


def _constant_step(loop: Loop) -> int | None:
    bounds = _bounds(loop)
    return None if bounds is None else _constant_of(bounds[2])


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


def _unclamped_bound(b: Builder, lb: SSAValue, ub: SSAValue) -> SSAValue:
    """``ub``, or ``x`` when ``ub`` is ``max(x, k)`` (through an ``index_cast``) with
    constants ``k <= lb``: the frontend's trip count ``max(stop - start, 0)``.  Both
    give the same iterations (when ``x <= lb`` neither bound runs the loop), but ``x``
    keeps the last iteration affine in an outer loop's variable."""
    low = _constant_of(lb)
    v = ub.owner.input if isinstance(ub.owner, arith.IndexCastOp) else ub
    op = v.owner
    if low is None or not isinstance(op, arith.MaxSIOp):
        return ub
    for x, k in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
        kk = _constant_of(k)
        if kk is not None and kk <= low:
            if x.type == ub.type:
                return x
            return b.insert(arith.IndexCastOp(x, ub.type)).results[0]
    return ub


def hoist_from(loop: Loop) -> int:
    """Hoist the hoistable checks of ``loop``'s body before it; return how many."""
    step = _constant_step(loop)
    if step is None or step <= 0:
        return 0
    info = _Loop(loop, step)
    checks = [
        op for op in info.body.ops
        if isinstance(op, CheckOp)
        and info.hoistable(op.cond)
        and all(info.clonable(v) for v in op.values)
    ]
    if not checks:
        return 0
    b = Builder(InsertPoint.before(loop))
    lb, ub, _ = _bounds(loop)  # type: ignore[misc]  (not None: the step is known)
    idx = IndexType()
    ub = _unclamped_bound(b, lb, ub)
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

    mappings: dict[SSAValue, dict[SSAValue, SSAValue]] = {}

    def at(point: SSAValue, v: SSAValue) -> SSAValue:
        """``v`` recomputed before the loop for ``%i = point`` (clones shared per
        point)."""
        mapping = mappings.setdefault(point, {info.iv: point})
        for op in info.slice_ops([v]):
            if op.results and op.results[0] in mapping:
                continue
            clone = b.insert(op.clone(value_mapper=mapping))
            for old, new in zip(op.results, clone.results):
                mapping[old] = new
        return mapping.get(v, v)

    def emit(op: Operation) -> SSAValue:
        return b.insert(op).results[0]

    def const(value: int) -> SSAValue:
        return emit(arith.ConstantOp(IntegerAttr(value, idx)))

    def forall(cond: SSAValue, points: list[SSAValue]) -> SSAValue:
        """An ``i1``: ``cond`` holds in every iteration (the loop runs at least once);
        ``points`` collects the iterations it tested."""
        if info.convex(cond):
            for p in (lb, last):
                if p not in points:
                    points.append(p)
            return emit(arith.AndIOp(at(lb, cond), at(last, cond)))
        op = cond.owner
        if isinstance(op, arith.AndIOp):
            return emit(arith.AndIOp(forall(op.lhs, points), forall(op.rhs, points)))
        assert isinstance(op, arith.OrIOp)
        for g, x in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            if info.invariant(g) and info.hoistable(x):
                return emit(arith.OrIOp(at(lb, g), forall(x, points)))
        for g, x in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            found = info.guard(g)
            if found is not None and info.convex(x):
                return guarded(found, x, points)
        raise AssertionError("hoistable() and forall() disagree")

    def guarded(found: tuple[int, str, SSAValue, SSAValue], x: SSAValue,
                points: list[SSAValue]) -> SSAValue:
        """``guard or x`` in every iteration, ``x`` convex: ``x`` at both ends of the
        iterations where the guard is false (an interval, since the guard has slope
        +-1: with ``g = s*(a - b) - k`` and the guard ``g <= 0``, ``g`` moves by one per
        unit of ``%i``)."""
        slope, pred, a, c = found
        # guard <=> sign * (a - c) <= k
        sign, k = {"sle": (1, 0), "slt": (1, -1), "sge": (-1, 0), "sgt": (-1, -1)}[pred]
        diff = emit(arith.SubiOp(at(lb, a), at(lb, c)))
        if sign < 0:
            diff = emit(arith.SubiOp(const(0), diff))
        g_first = emit(arith.SubiOp(diff, const(k))) if k else diff  # g at lb
        one = const(1)
        # (only in loops of step 1: see _Loop.guard)
        if sign * slope > 0:
            # the guard fails from lb + max(0, 1 - g(lb)) on
            start = emit(arith.AddiOp(lb, emit(arith.MaxSIOp(
                const(0), emit(arith.SubiOp(one, g_first))))))
            none = emit(arith.CmpiOp(start, last, "sgt"))
            lo, hi = start, last
        else:
            # the guard fails up to lb + g(lb) - 1
            stop = emit(arith.MinSIOp(last, emit(arith.SubiOp(
                emit(arith.AddiOp(lb, g_first)), one))))
            none = emit(arith.CmpiOp(g_first, one, "slt"))
            lo, hi = lb, stop
        points.extend(p for p in (lo, hi) if p not in points)
        both = emit(arith.AndIOp(at(lo, x), at(hi, x)))
        return emit(arith.OrIOp(none, both))

    def first_bad_index(check: CheckOp) -> SSAValue | None:
        """For a bounds check ``(index, size)`` whose index moves by one per iteration,
        the index of the first failing iteration, as numpy would report it: the first
        iteration's index if that one fails, else the first value past the bound the
        index runs towards (``n`` going up; ``-1``, or ``-n - 1`` for a wrapped index,
        going down)."""
        if check.kind.data != "index" or len(check.values) != 2:
            return None
        index, size = check.values
        leaf = check.cond.owner
        if not (isinstance(leaf, arith.CmpiOp) and leaf.predicate.value.data == 6  # ult
                and leaf.rhs is size and info.invariant(size)):
            return None
        x, wrapped = leaf.lhs, False
        if isinstance(x.owner, arith.SelectOp) and info._wrapped_affine(x, size):
            x, wrapped = x.owner.rhs, True
        same = x is index or any(
            isinstance(u.owner, arith.IndexCastOp) and u.owner.input is v
            for u, v in ((x, index), (index, x))
        )
        c = info.coefficient(x)
        if not same or c is None or c * step not in (1, -1) or not info.affine(x):
            return None
        t = index.type
        n = at(lb, size)  # (the size may be computed in the body: take the clone)
        if n.type != t:
            n = emit(arith.IndexCastOp(n, t))
        if c * step > 0:
            edge = n
        elif wrapped:
            edge = emit(arith.SubiOp(emit(arith.ConstantOp(IntegerAttr(-1, t))), n))
        else:
            edge = emit(arith.ConstantOp(IntegerAttr(-1, t)))
        return emit(arith.SelectOp(at(lb, check.cond), edge, at(lb, index)))

    for check in checks:
        values = [check.cond, *check.values]
        points: list[SSAValue] = []
        ok = emit(arith.OrIOp(empty, forall(check.cond, points)))
        # report the values of the first tested iteration that fails
        reported = []
        for v in check.values:
            r = at(points[-1], v)
            for p in reversed(points[:-1]):
                here = at(p, v)
                if here is not r:
                    r = emit(arith.SelectOp(at(p, check.cond), r, here))
            reported.append(r)
        first_bad = first_bad_index(check)
        if first_bad is not None:
            reported[0] = first_bad
        b.insert(CheckOp(ok, check.kind.data, check.message.data, reported))
        dead = info.slice_ops(values)
        Rewriter.erase_op(check)
        _erase_dead(dead)
    return len(checks)


class HoistChecksPass(ModulePass):
    """Move ``isz.check`` ops on affine indices out of ``scf.for`` and one-dimensional
    ``scf.parallel`` loops, innermost loops first (see the module docstring)."""

    name = "hoist-checks"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        if not any(isinstance(o, CheckOp) for o in op.walk()):
            return
        _dedupe(op.body.block)
        loops = [o for o in op.walk() if isinstance(o, (scf.ForOp, scf.ParallelOp))]
        for loop in reversed(loops):  # pre-order reversed: inner loops first
            hoist_from(loop)
