"""The ``enzyme`` dialect's table: the cache ops of a reverse derivative, differentiated
again (nested AD: forward over reverse).

A reverse derivative (``diffe<f>``) keeps what its reverse sweep needs from a loop of
unknown trip count in a LIFO stack: ``enzyme.init``, ``enzyme.push`` in the forward
sweep, ``enzyme.pop`` in the reverse sweep, ``enzyme.cache_free``.  Forward mode over
such code gives each cache holding active values ``width`` tangent caches, created,
pushed, popped and freed beside it: the tangent of a popped value is the tangent that
was pushed with it.

Activity: a push and the pops of the same cache are linked by an edge from the pushed
value to each popped value (the cache itself is not a differentiable value).

Reverse mode over these ops (reverse over reverse of code with a while loop) is
refused: the adjoint of a pop would be a push onto an adjoint stack in the order the
pops ran, which the generator does not build.

Enzyme-MLIR's gradient slots (``enzyme.init`` of a ``!enzyme.Gradient<T>``,
``enzyme.set``, ``enzyme.get``) hold one mutable value.  Activity: an edge from each
set value to each get result of the same slot (both ways for a buffer: an alias).
Forward mode gives an active slot ``width`` tangent slots, set and read beside it.
Reverse mode gives it ``width`` shadow slots, as Enzyme-MLIR does: the adjoint of a get
is added into the shadow, the adjoint of a set reads the shadow into the stored value's
adjoint and zeroes it.  Refused (UnsupportedError), where the derivative would be lost:
a slot holding an active value that escapes the set/get ops of its function (call
argument, yield, return), a buffer slot in reverse mode, set/get on an active slot in
a reversed ``scf.parallel``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Operation, SSAValue

from isozyme.compiler.ad_rules.registry import Edge, MemoryRule, register
from isozyme.dialects.enzyme import (
    CacheFreeOp,
    GetOp,
    GradientInitOp,
    InitOp,
    PopOp,
    PushOp,
    SetOp,
)
from isozyme.errors import UnsupportedError

if TYPE_CHECKING:
    from isozyme.compiler.ad.tape import RevCtx
    from isozyme.compiler.emitter import Emitter


def _pops(cache: SSAValue) -> Iterator[PopOp]:
    return (u.operation for u in cache.uses if isinstance(u.operation, PopOp))


def _pushes(cache: SSAValue) -> Iterator[PushOp]:
    return (u.operation for u in cache.uses if isinstance(u.operation, PushOp))


def _refuse_reverse(rev: Any, values: list[SSAValue]) -> None:
    if rev.info.any_active(values):
        raise UnsupportedError(
            "reverse mode over enzyme.push/enzyme.pop (reverse over the reverse "
            "derivative of a while loop, whose values live in a LIFO cache) is not "
            "supported; use forward over reverse (autodiff(Forward, ...) of the function "
            "calling autodiff(Reverse, ...)), as isozyme.hvp does")


class CacheInitRule(MemoryRule):
    """``enzyme.init``: and ``width`` tangent caches when a pop of it is active."""

    def forward(self, fwd: Any, e: "Emitter", op: Operation) -> None:
        """Clone, and create the tangent caches."""
        assert isinstance(op, InitOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        if any(fwd.info.is_active(p.result) for p in _pops(op.result)):
            elt = op.result.type.type  # type: ignore[attr-defined]
            fwd.tan[op.result] = tuple(
                e.insert(InitOp(elt)).results[0] for _ in range(fwd.width))


class CachePushRule(MemoryRule):
    """``enzyme.push``: the tangent of the value onto each tangent cache."""

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        """Pushed value -> each value popped from the same cache."""
        assert isinstance(op, PushOp)
        for pop in _pops(op.cache):
            yield op.value, pop.result

    def forward(self, fwd: Any, e: "Emitter", op: Operation) -> None:
        """Clone, and push the value's tangent (zero when inactive)."""
        assert isinstance(op, PushOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        caches = fwd.tan.get(op.cache)
        if caches is not None:
            for c, t in zip(caches, fwd.tangent_or_zero(e, op.value)):
                e.insert(PushOp(c, t))

    def reverse(self, rev: Any, ctx: "RevCtx", op: Operation) -> None:
        """Refused when the pushed value is active (see the module docstring)."""
        assert isinstance(op, PushOp)
        _refuse_reverse(rev, [op.value])


class CachePopRule(MemoryRule):
    """``enzyme.pop``: the popped tangents are the result's tangent."""

    def forward(self, fwd: Any, e: "Emitter", op: Operation) -> None:
        """Clone, and pop each tangent cache."""
        assert isinstance(op, PopOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        caches = fwd.tan.get(op.cache)
        if caches is not None:
            fwd.tan[op.result] = tuple(e.insert(PopOp(c)).results[0] for c in caches)

    def reverse(self, rev: Any, ctx: "RevCtx", op: Operation) -> None:
        """Refused when the popped value is active (see the module docstring)."""
        assert isinstance(op, PopOp)
        _refuse_reverse(rev, [op.result])


class CacheFreeRule(MemoryRule):
    """``enzyme.cache_free``: the tangent caches are freed with it."""

    def forward(self, fwd: Any, e: "Emitter", op: Operation) -> None:
        """Clone, and free each tangent cache."""
        assert isinstance(op, CacheFreeOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        for c in fwd.tan.get(op.cache, ()):
            e.insert(CacheFreeOp(c))


def _gets(gradient: SSAValue) -> Iterator[GetOp]:
    return (u.operation for u in gradient.uses if isinstance(u.operation, GetOp))


def _is_local(slot: SSAValue) -> bool:
    """Whether AD sees every access to ``slot``: made by an ``enzyme.init`` of the
    function and used by ``enzyme.set``/``enzyme.get`` only (not passed to a call,
    yielded or returned, where the activity analysis cannot follow its value)."""
    return isinstance(slot.owner, GradientInitOp) and all(
        isinstance(u.operation, (SetOp, GetOp)) for u in slot.uses)


def _check_set(info: Any, op: SetOp, mode: str) -> None:
    """Refuse storing a value that depends on active inputs into a slot whose other
    accesses AD does not see: its derivative would be silently lost."""
    if op.value in info.varied and not _is_local(op.gradient):
        raise UnsupportedError(
            f"{mode} mode of 'enzyme.set': the !enzyme.Gradient slot receives a value "
            "that depends on active inputs but is not only used by enzyme.set/enzyme.get "
            "of this function (it is an argument, passed to a call, yielded or "
            "returned), so the derivative through it cannot be followed")


def _carries_activity(info: Any, slot: SSAValue) -> bool:
    """Whether an active value passes through ``slot`` (a get of it is active, which
    holds exactly when a set of it is)."""
    return any(info.is_active(g.result) for g in _gets(slot))


def _shadow_slots(rev: Any, e: "Emitter", op: GradientInitOp) -> None:
    """Give the slot of ``op`` ``width`` zeroed shadow slots (its adjoint) when an
    active value passes through it; a buffer slot is refused."""
    if not _carries_activity(rev.info, op.result):
        return
    base = op.result.type.basetype  # type: ignore[attr-defined]
    if isinstance(base, MemRefType):
        raise UnsupportedError(
            "reverse mode through an !enzyme.Gradient slot holding a buffer "
            f"(!enzyme.Gradient<{base}>) is not supported; forward mode is")
    rev.shadow[op.result] = tuple(
        e.insert(GradientInitOp(base)).results[0] for _ in range(rev.width))


class GradientInitRule(MemoryRule):
    """``enzyme.init`` of a gradient slot.  Forward mode: ``width`` tangent slots when an
    active value passes through it (the tangent of the value a slot holds is held by its
    tangent slot).  Reverse mode: ``width`` shadow slots, zero at creation, that
    accumulate the adjoint of the value the slot holds (Enzyme-MLIR's shadow of a
    gradient); a slot made in a loop body or branch gets fresh ones in the matching
    reverse block."""

    def forward(self, fwd: Any, e: "Emitter", op: Operation) -> None:
        """Clone, and create the tangent slots."""
        assert isinstance(op, GradientInitOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        if _carries_activity(fwd.info, op.result):
            base = op.result.type.basetype  # type: ignore[attr-defined]
            fwd.tan[op.result] = tuple(
                e.insert(GradientInitOp(base)).results[0] for _ in range(fwd.width))

    def forward_sweep(self, rev: Any, e: "Emitter", op: Operation) -> bool:
        """Clone, and create the shadow slots (top level)."""
        assert isinstance(op, GradientInitOp)
        e.insert(op.clone(value_mapper=rev.fwd_map))
        _shadow_slots(rev, e, op)
        return True

    def reverse_entry(self, rev: Any, ctx: "RevCtx", op: Operation) -> None:
        """A slot of a loop body or branch: its shadows live for one reverse block."""
        assert isinstance(op, GradientInitOp)
        _shadow_slots(rev, ctx.e, op)

    def reverse(self, rev: Any, ctx: "RevCtx", op: Operation) -> None:
        """The shadows of a nested slot end with its reverse block."""
        if ctx.parent is not None:
            rev.shadow.pop(op.results[0], None)


class GradientSetRule(MemoryRule):
    """``enzyme.set``.  Forward mode: the value's tangent into each tangent slot.  Reverse
    mode: the shadow slot holds the summed adjoints of the gets that read this value; it
    goes to the value's adjoint and the shadow is zeroed (gets before this set read an
    older value), whether or not the value is active."""

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        """Stored value -> each value read from the same slot; and back, for a buffer
        (a get returns the same memory: an alias, as a view is)."""
        assert isinstance(op, SetOp)
        for get in _gets(op.gradient):
            yield op.value, get.result
            if isinstance(op.value.type, MemRefType):
                yield get.result, op.value

    def forward(self, fwd: Any, e: "Emitter", op: Operation) -> None:
        """Clone, and set the tangent slots (zero when the value is inactive)."""
        assert isinstance(op, SetOp)
        _check_set(fwd.info, op, "forward")
        e.insert(op.clone(value_mapper=fwd.vmap))
        slots = fwd.tan.get(op.gradient)
        if slots is not None:
            for s, t in zip(slots, fwd.tangent_or_zero(e, op.value)):
                e.insert(SetOp(s, t))

    def prepare_reverse(self, rev: Any, op: Operation) -> None:
        """Check the slot before the reverse sweep (ops at any depth)."""
        assert isinstance(op, SetOp)
        _check_set(rev.info, op, "reverse")

    def reverse(self, rev: Any, ctx: "RevCtx", op: Operation) -> None:
        """Take the shadow slot's adjoint for the value, and zero the shadow."""
        assert isinstance(op, SetOp)
        shadows = rev.shadow.get(op.gradient)
        if shadows is None:
            return
        _refuse_parallel(ctx)
        adj = tuple(ctx.e.insert(GetOp(s)).results[0] for s in shadows)
        zero = ctx.e.zero(op.value.type)
        for s in shadows:
            ctx.e.insert(SetOp(s, zero))
        rev.accumulate(ctx, op.value, adj)


class GradientGetRule(MemoryRule):
    """``enzyme.get``.  Forward mode: the tangent slots' values are the result's tangent.
    Reverse mode: the result's adjoint is added into the shadow slots."""

    def forward(self, fwd: Any, e: "Emitter", op: Operation) -> None:
        """Clone, and read each tangent slot."""
        assert isinstance(op, GetOp)
        e.insert(op.clone(value_mapper=fwd.vmap))
        slots = fwd.tan.get(op.gradient)
        if slots is not None:
            fwd.tan[op.result] = tuple(e.insert(GetOp(s)).results[0] for s in slots)

    def reverse(self, rev: Any, ctx: "RevCtx", op: Operation) -> None:
        """shadow += adjoint of the result."""
        assert isinstance(op, GetOp)
        shadows = rev.shadow.get(op.gradient)
        adj = ctx.adj.get(op.result)
        if shadows is None or adj is None or not rev.info.is_active(op.result):
            return
        _refuse_parallel(ctx)
        for s, a in zip(shadows, adj):
            cur = ctx.e.insert(GetOp(s)).results[0]
            ctx.e.insert(SetOp(s, ctx.e.add(cur, a, reassoc=True)))


def _refuse_parallel(ctx: "RevCtx") -> None:
    # a slot read and written by concurrent iterations has no order to reverse
    if ctx.parallels:
        raise UnsupportedError(
            "reverse mode of enzyme.set/enzyme.get in an scf.parallel loop is not "
            "supported (its iterations have no order)")


#: The enzyme cache ops' rules; the requests (enzyme.autodiff/fwddiff) are replaced by
#: calls before any function holding them is differentiated (enzyme-differentiate).
ENZYME_CACHE_RULES: dict[type[Operation], MemoryRule] = {
    InitOp: CacheInitRule(),
    PushOp: CachePushRule(),
    PopOp: CachePopRule(),
    CacheFreeOp: CacheFreeRule(),
    GradientInitOp: GradientInitRule(),
    SetOp: GradientSetRule(),
    GetOp: GradientGetRule(),
}

register(ENZYME_CACHE_RULES)
