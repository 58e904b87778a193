"""User derivative rules (``isozyme.rules``, Enzyme's EnzymeRules) as registry entries.

A call of a function with a user rule stays a ``func.call`` through the ``optimized``
stage (the ``inline`` pass leaves it alone until AD has run), marked with the
:data:`RULE_ATTR` attribute naming its rule.  :func:`isozyme.compiler.ad_rules.registry.lookup`
returns :class:`UserCallRule` for such a call, so forward mode, reverse mode and the
activity analysis find the user's rule exactly where they find the built-in ones.

The rule itself lives in the frontend (a Python function traced like user code): it is a
:class:`UserRule` registered here under the id the attribute holds.  When AD reaches the
call, :class:`UserCallRule` asks the rule to *build* the function it needs, described by
a :class:`RuleRequest`, and emits a call of it:

``forward``
    operands: per argument its primal, then ``width`` tangents when the argument is
    ``enzyme_dup`` (a buffer's tangents are its shadow buffers);
    results: the primal results when ``needs_primal``, then per result whose tangent is
    wanted (``active_results``) ``width`` tangents, lane after lane.
``augmented`` (reverse mode's forward sweep, Enzyme's ``augmented_primal``)
    operands: per argument its primal (no shadows: shadows of buffers made inside loops
    exist only in the reverse sweep);
    results: the primal results when ``needs_primal``, then the *tape*: any number of
    scalars (and, at the function's top level, buffers) the rule chooses.
``reverse`` (Enzyme's ``reverse``)
    operands: per argument its primal, then ``width`` shadow buffers when the argument
    is ``enzyme_dup`` (a buffer: the rule adds into them); then per result in
    ``active_results`` ``width`` seeds; then the tape (``tape_types``);
    results: per ``enzyme_active`` argument ``width`` adjoints.

Calls of rules with ``inactive`` set get no derivative code and no activity edges.
"""

from __future__ import annotations

import abc
import itertools
import threading
from dataclasses import dataclass
from typing import Literal

from xdsl.dialects import func
from xdsl.dialects.builtin import StringAttr
from xdsl.ir import Attribute, Operation

from isozyme.dialects.enzyme import Activity

#: Attribute of a ``func.call`` whose callee has a user rule: the rule's id.
RULE_ATTR = "isozyme.rule"

RuleMode = Literal["forward", "augmented", "reverse"]


@dataclass(frozen=True)
class RuleRequest:
    """What derivative function of a user rule AD needs at one call (see the module
    docstring for each mode's operands and results)."""

    mode: RuleMode
    #: the call's operand and result types
    arg_types: tuple[Attribute, ...]
    result_types: tuple[Attribute, ...]
    #: per argument: ``CONST`` or ``DUP`` (forward; ``DUP`` for scalars too), ``CONST``,
    #: ``ACTIVE`` (scalars) or ``DUP`` (buffers) in augmented/reverse mode
    activities: tuple[Activity, ...]
    #: per result: whether its tangent (forward) or seed (reverse) is wanted
    active_results: tuple[bool, ...]
    #: Enzyme's ``needs_primal``/``needs_shadow``/``width``/``overwritten`` (one flag
    #: per argument; the frontend prepends the function's own, False)
    needs_primal: bool
    needs_shadow: bool
    width: int
    overwritten: tuple[bool, ...]
    #: reverse mode: the tape's types, as the augmented function returned them
    tape_types: tuple[Attribute, ...] = ()


class UserRule(abc.ABC):
    """A user rule, implemented by the frontend (``isozyme.rules``).

    ``name`` names it in messages ("the forward rule of mysin").  ``inactive``: calls get
    no derivative at all.  :meth:`build` returns a new private ``func.func`` named
    ``name`` for ``request`` (not yet in any module); the compiler adds it to the module
    being differentiated, and may call :meth:`build` several times per call site (one
    function per distinct request).
    """

    name: str = "a user rule"
    inactive: bool = False

    @abc.abstractmethod
    def build(self, request: RuleRequest, name: str, module: Operation) -> func.FuncOp:
        """The function that implements ``request``; ``module`` is the module it will
        be added to (for the names it already holds and the functions it may add)."""


_LOCK = threading.Lock()
_RULES: dict[str, UserRule] = {}
_IDS = itertools.count()


def register_user_rule(rule: UserRule, hint: str = "rule") -> str:
    """Register ``rule`` and return the id to put in a call's :data:`RULE_ATTR`."""
    with _LOCK:
        rid = f"{hint}#{next(_IDS)}"
        _RULES[rid] = rule
        return rid


def user_rule_of(op: Operation) -> UserRule | None:
    """The user rule a ``func.call`` is marked with, or None."""
    attr = op.attributes.get(RULE_ATTR)
    if not isinstance(attr, StringAttr):
        return None
    rule = _RULES.get(attr.data)
    if rule is None:
        from isozyme.errors import UnsupportedError  # noqa: PLC0415

        raise UnsupportedError(
            f"the call of {op.callee} is marked with user rule {attr.data!r}, which is "  # type: ignore[attr-defined]
            "not registered in this process (rules are Python functions: register them "
            "with isozyme.rules before differentiating this IR)"
        )
    return rule
