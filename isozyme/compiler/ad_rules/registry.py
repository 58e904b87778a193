"""The derivative-rule registry: op type -> rule, for every dialect AD knows.

Each dialect's table module (``arith.py``, ``math.py``, ``memref.py``, ``scf.py``,
``func.py``, ``isz.py``, and ``enzyme.py``: the cache ops, for nested AD) registers its
ops here when it is imported; forward mode, reverse mode, the activity analysis and
the cache-or-recompute decision (:mod:`isozyme.compiler.ad.tape`) all ask
:func:`lookup`.  Supporting a new op is one entry in its dialect's table.

Rule kinds:

* :class:`~isozyme.compiler.ad_rules.PartialsRule` / :class:`CustomRule`: scalar ops,
  described by their partial derivatives or by explicit forward/reverse functions;
* :class:`ZeroRule`: float ops whose derivative is zero wherever it exists (floor);
* :class:`InactiveRule`: ops whose results are never active (integer and index
  arithmetic, comparisons, ``memref.dim``), registered for their ``recompute`` policy;
* :class:`OpRule` subclasses -- :class:`MemoryRule` (load/store/alloc/dealloc/views,
  ``arith.select``),
  :class:`RegionRule` (``scf.for``/``if``/``while``/``parallel``), :class:`CallRule`
  (``func.call``), :class:`GuardRule` (run-time checks) -- which emit their own forward
  and reverse code through hooks the AD generators call.

Every rule carries ``recompute``: whether the reverse sweep may recompute the op's
result instead of caching it (see :data:`Recompute`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from xdsl.ir import Operation, SSAValue

if TYPE_CHECKING:
    from isozyme.compiler.ad.tape import RevCtx
    from isozyme.compiler.emitter import Emitter

#: ``"always"``: a cheap pure op, recomputed at any depth (integer arithmetic of
#: induction variables); ``"float"``: a few flops, recomputed up to a small depth when
#: its operands are cheap to obtain; ``"load"``: a load, recomputed when the memory it
#: reads is final (nothing writes it later); ``None``: cached.
Recompute = Literal["always", "float", "load"]

Edge = tuple[SSAValue, SSAValue]

#: Attribute of a ``func.call`` whose callee has a user rule (``isozyme.rules``): the
#: rule's id (see ``user_rules.py``).
RULE_ATTR = "isozyme.rule"


@dataclass(frozen=True)
class ZeroRule:
    """A float-valued op that is piecewise constant: zero derivative, no activity edge."""

    recompute: Recompute | None = None


@dataclass(frozen=True)
class InactiveRule:
    """An op whose results are never active (no float results): no derivative, no
    activity edge; registered for its ``recompute`` policy."""

    recompute: Recompute | None = None


class OpRule:
    """A rule that emits its own derivative code (memory, region, call and guard ops).

    ``fwd`` is the forward-mode generator (``ad/forward.py``), ``rev`` the reverse-mode
    one (``ad/reverse.py``); the hooks use their public helpers (value maps, adjoint
    accumulation, primal fetches).  Defaults: clone in forward mode and in the forward
    sweep, no adjoint, no activity edge.
    """

    recompute: Recompute | None = None
    #: whether a value computed in this op's regions may be cached in a LIFO stack
    #: (not in a parallel loop: its iterations have no order)
    allows_stack: bool = True

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        """The differentiable (source -> destination) value edges ``op`` creates."""
        return iter(())

    def recomputes_arg(self, op: Operation, arg: SSAValue) -> bool:
        """Whether the reverse of ``op`` recomputes block argument ``arg`` of one of its
        regions (an induction variable) rather than caching it."""
        return False

    def cache_dims(self, op: Operation) -> list[tuple[SSAValue, ...]] | None:
        """The dimensions ``op`` adds to the indexed cache of a value computed in its
        regions: ``(lb, ub, step, iv)`` per counted loop dimension, ``[]`` for a
        region run at most once (a branch), None when only a stack can hold such a
        value (unknown trip count)."""
        return None

    def forward(self, fwd: Any, e: "Emitter", op: Operation) -> None:
        """Emit ``op`` and its tangent code (forward mode)."""
        e.insert(op.clone(value_mapper=fwd.vmap))

    def forward_sweep(self, rev: Any, e: "Emitter", op: Operation) -> bool:
        """Emit ``op`` into reverse mode's forward sweep (top level only); False lets the
        generator clone it."""
        return False

    def prepare_reverse(self, rev: Any, op: Operation) -> None:
        """After the forward sweep, before the reverse sweep: adjust ``op``'s clone
        (e.g. count a while loop's iterations).  Called for ops at any depth."""

    def reverse_entry(self, rev: Any, ctx: "RevCtx", op: Operation) -> None:
        """At the start of the reverse block of a loop body or branch, for each of its
        ops in order: set up what lives for one reverse iteration (shadows)."""

    def reverse(self, rev: Any, ctx: "RevCtx", op: Operation) -> None:
        """Emit ``op``'s adjoint code into ``ctx``'s reverse block."""


class MemoryRule(OpRule):
    """Buffer ops (Enzyme's shadow memory): load, store, alloc, dealloc, views."""


class RegionRule(OpRule):
    """Structured control flow: ops with regions (``scf.for``, ``scf.parallel``, ...)."""


class CallRule(OpRule):
    """Calls: differentiated through the callee's own derivative function."""


class GuardRule(OpRule):
    """Run-time checks: cloned into forward derivatives and the forward sweep (they
    guard the code after them), no adjoint, no activity."""


_REGISTRY: dict[type[Operation], Any] = {}
_LOADED = False
#: the rule of calls marked with a user rule (``user_rules.py``), set by :func:`_load`
_USER_CALL_RULE: Any = None


def register(table: Mapping[type[Operation], Any]) -> None:
    """Add a dialect's rules; an op type registered twice is a programming error."""
    for op_type, rule in table.items():
        if op_type in _REGISTRY and _REGISTRY[op_type] is not rule:
            raise ValueError(f"two derivative rules for {op_type.__name__}")
        _REGISTRY[op_type] = rule


def _load() -> None:
    global _LOADED, _USER_CALL_RULE
    if _LOADED:
        return
    _LOADED = True
    # Importing a dialect's table registers it.
    from isozyme.compiler.ad_rules import arith, enzyme, func, isz, math, memref, scf  # noqa: F401
    from isozyme.compiler.ad_rules.user_rules import USER_CALL_RULE  # noqa: PLC0415

    _USER_CALL_RULE = USER_CALL_RULE


def lookup(op: Operation) -> Any:
    """The rule registered for ``op``'s type, or None; for a call marked with a user
    rule (``isozyme.rules``, see ``user_rules.py``), the rule that applies it."""
    _load()
    if RULE_ATTR in op.attributes and op.name == "func.call":
        return _USER_CALL_RULE
    return _REGISTRY.get(type(op))


def recompute_policy(op: Operation) -> Recompute | None:
    """How the reverse sweep may obtain ``op``'s result other than by caching it."""
    rule = lookup(op)
    return None if rule is None else rule.recompute
