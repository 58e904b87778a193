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
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from xdsl.ir import Operation, SSAValue

from isozyme.compiler.ad_rules.registry import Edge, MemoryRule, register
from isozyme.dialects.enzyme import CacheFreeOp, InitOp, PopOp, PushOp
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


#: The enzyme cache ops' rules; the requests (enzyme.autodiff/fwddiff) are replaced by
#: calls before any function holding them is differentiated (enzyme-differentiate).
ENZYME_CACHE_RULES: dict[type[Operation], MemoryRule] = {
    InitOp: CacheInitRule(),
    PushOp: CachePushRule(),
    PopOp: CachePopRule(),
    CacheFreeOp: CacheFreeRule(),
}

register(ENZYME_CACHE_RULES)
