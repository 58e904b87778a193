"""Derivative rules as data: one table module per dialect (Enzyme-MLIR's ``*Derivatives.td``).

Most ops are described by their partial derivatives (``PartialsRule``): the AD passes
derive the forward rule (tangent = sum of partial * operand tangent) and the reverse rule
(operand adjoint += partial * result adjoint) from it.  Ops whose derivative is not a
product (casts between float widths) give both directions explicitly (``CustomRule``);
``arith.select`` is a ``MemoryRule``, since a select of buffers selects their shadows.  Supporting a new op is one table entry plus a finite-difference test.

Every dialect registers its rules in :mod:`isozyme.compiler.ad_rules.registry`:
scalar rules here, and rules that emit their own code for buffer ops (``memref.py``),
structured control flow (``scf.py``), calls (``func.py``) and run-time checks
(``isz.py``).  Buffer ops also have tables of facts (``memref.py``: views and writes;
``linalg.py``: what a generic writes), reached through :func:`view_source` and
:func:`written_by`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from xdsl.ir import Operation, SSAValue

from isozyme.compiler.emitter import Emitter


class Primals:
    """Lazy access to an op's primal operands/result in the code being emitted.

    Reverse mode fetches a primal only when a rule asks for it, because every fetch from
    inside a loop costs a cache.
    """

    def __init__(self, op: Operation, fetch: Callable[[SSAValue], SSAValue]):
        self._op = op
        self._fetch = fetch
        self._memo: dict[SSAValue, SSAValue] = {}

    def _get(self, v: SSAValue) -> SSAValue:
        if v not in self._memo:
            self._memo[v] = self._fetch(v)
        return self._memo[v]

    def operand(self, i: int) -> SSAValue:
        """The i-th primal operand."""
        return self._get(self._op.operands[i])

    @property
    def x(self) -> SSAValue:
        """Operand 0."""
        return self.operand(0)

    @property
    def y(self) -> SSAValue:
        """Operand 1 (binary ops)."""
        return self.operand(1)

    @property
    def result(self) -> SSAValue:
        """The primal result."""
        return self._get(self._op.results[0])


class _Unit:
    """A partial derivative of exactly +1 or -1: applied without a multiplication."""

    def __init__(self, sign: int):
        self.sign = sign

    def __repr__(self) -> str:
        return "ONE" if self.sign > 0 else "MINUS_ONE"


ONE = _Unit(1)
MINUS_ONE = _Unit(-1)

Partial = SSAValue | _Unit | None
PartialsFn = Callable[[Emitter, Primals], Sequence[Partial]]


@dataclass(frozen=True)
class PartialsRule:
    """d(result)/d(operand_i) for every operand (``None``: not differentiable)."""

    partials: PartialsFn
    #: see :data:`isozyme.compiler.ad_rules.registry.Recompute`
    recompute: Literal["always", "float", "load"] | None = None


@dataclass(frozen=True)
class CustomRule:
    """Explicit forward and reverse rules.

    ``forward(e, p, tangents) -> result tangent | None`` and
    ``reverse(e, p, adjoint) -> per-operand adjoint contribution | None``.
    """

    forward: Callable[[Emitter, Primals, Sequence[SSAValue | None]], SSAValue | None]
    reverse: Callable[[Emitter, Primals, SSAValue], Sequence[SSAValue | None]]
    #: see :data:`isozyme.compiler.ad_rules.registry.Recompute`
    recompute: Literal["always", "float", "load"] | None = None
    #: the operands the result depends on differentiably (None: all of them)
    flow_operands: tuple[int, ...] | None = None


Rule = PartialsRule | CustomRule


def lookup_rule(op: Operation) -> Rule | None:
    """The scalar derivative rule of ``op``'s type, or None."""
    from isozyme.compiler.ad_rules.registry import lookup

    rule = lookup(op)
    return rule if isinstance(rule, (PartialsRule, CustomRule)) else None


def view_source(op: Operation) -> SSAValue | None:
    """The buffer whose memory ``op``'s result views (``memref.subview``, ``cast``,
    ``expand_shape``, ``collapse_shape``, ``transpose``), or None for other ops."""
    from isozyme.compiler.ad_rules.memref import MEMREF_VIEWS

    source = MEMREF_VIEWS.get(type(op))
    return None if source is None else source(op)


def written_by(op: Operation) -> Sequence[SSAValue]:
    """The buffers ``op`` itself writes (not counting ops nested in it, nor calls)."""
    from isozyme.compiler.ad_rules.linalg import LINALG_WRITES
    from isozyme.compiler.ad_rules.memref import MEMREF_WRITES

    t = type(op)
    written = MEMREF_WRITES.get(t) or LINALG_WRITES.get(t)
    return () if written is None else written(op)


def collapsed_by(op: Operation) -> Sequence[SSAValue]:
    """The buffer whose dimensions ``op`` merges (``memref.collapse_shape``), if any."""
    from isozyme.compiler.ad_rules.memref import MEMREF_COLLAPSES

    source = MEMREF_COLLAPSES.get(type(op))
    return () if source is None else (source(op),)


def allocated_by(op: Operation) -> SSAValue | None:
    """The new buffer ``op`` allocates (``memref.alloc``), or None."""
    from isozyme.compiler.ad_rules.memref import MEMREF_ALLOCS

    result = MEMREF_ALLOCS.get(type(op))
    return None if result is None else result(op)


def call_of(op: Operation) -> tuple[str, Sequence[SSAValue]] | None:
    """For a call (``func.call``): the callee's symbol name and the operands passed to its
    arguments; None for other ops."""
    from isozyme.compiler.ad_rules.func import FUNC_CALLS

    call = FUNC_CALLS.get(type(op))
    return None if call is None else call(op)


def injective_operand(op: Operation, invariant: Callable[[SSAValue], bool]) -> SSAValue | None:
    """The operand of integer op ``op`` that its result is an injective function of, when
    ``invariant`` holds for the other operands (``ARITH_INJECTIVE``), or None."""
    from isozyme.compiler.ad_rules.arith import ARITH_INJECTIVE

    step = ARITH_INJECTIVE.get(type(op))
    return None if step is None else step(op, invariant)


def combining_kind_of(op: Operation) -> str | None:
    """The reduction kind (``"addf"``, ``"maximumf"``...) of a binary op that may combine
    the values of an ``scf.reduce`` (``ARITH_COMBINING``), or None."""
    from isozyme.compiler.ad_rules.arith import ARITH_COMBINING

    return ARITH_COMBINING.get(type(op))


def combining_op_names() -> list[str]:
    """The names of the ops :func:`combining_kind_of` knows (for messages)."""
    from isozyme.compiler.ad_rules.arith import ARITH_COMBINING

    return [t.name for t in ARITH_COMBINING]
