"""Custom derivative rules: Enzyme.jl's ``EnzymeRules``, spelled the Python way.

- :func:`inactive`, :func:`inactive_noinl`: calls of ``f`` (with arguments of the given
  types) have no derivative.
- :func:`easy_rule` (call or decorator) with :data:`Constant`: the Jacobian of ``f``;
  forward, batched and reverse rules are derived from it (:mod:`.easy`).
- :func:`forward`, :func:`augmented_primal`, :func:`reverse` (decorators): general
  rules with Enzyme's signatures; ``config`` is read with :func:`needs_primal`,
  :func:`needs_shadow`, :func:`width`, :func:`overwritten`; ``augmented_primal``
  returns :class:`AugmentedReturn`.
- :func:`import_frule`, :func:`import_rrule`: rules in the ChainRules convention
  (:mod:`.chainrules`).

A rule applies to the calls of ``f`` made by traced code, and to ``f`` itself when it
is the differentiated function.  A function with a rule stays a call until AD, which
differentiates it with the rule; rule bodies are traced like user code (``print`` in
a rule prints when the compiled code runs).  Types match like ``isinstance`` on what a
traced value stands for (a traced ``f64`` is a ``float``, ``f32`` an ``np.float32``,
an array an ``np.ndarray``).  Registering a rule clears the compile cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from isozyme.errors import RuleError

from . import registry
from .chainrules import forward_from_frule, rules_from_rrule
from .config import (
    AugmentedReturn,
    Config,
    Constant,
    NoTangent,
    needs_primal,
    needs_shadow,
    overwritten,
    width,
)
from .easy import derive
from .registry import register

__all__ = [
    "AugmentedReturn", "Config", "Constant", "NoTangent", "RuleError",
    "augmented_primal", "easy_rule", "forward", "import_frule", "import_rrule",
    "inactive", "inactive_noinl", "needs_primal", "needs_shadow", "overwritten",
    "reverse", "width",
]


def inactive(f: Callable[..., Any], *types: type) -> None:
    """Calls of ``f`` whose positional arguments are instances of ``types`` (all calls
    when none are given) have no derivative: nothing flows into any shadow through
    them (``EnzymeRules.inactive``)."""
    register(f, "inactive", types, None, "inactive")


def inactive_noinl(f: Callable[..., Any], *types: type) -> None:
    """Like :func:`inactive` (``EnzymeRules.inactive_noinl``); in isozyme both keep the
    call until AD, so they behave the same."""
    register(f, "inactive", types, None, "inactive_noinl")


def easy_rule(*args: Any, types: tuple[type, ...] = ()) -> Any:
    """``easy_rule(f, jac, *types)`` or, as a decorator above ``def f``,
    ``@easy_rule(jac)``: ``jac(*args)`` returns one tuple per output of ``f`` with one
    entry per argument, the partial derivative or :data:`Constant` (see
    :mod:`isozyme.rules.easy` for the shapes).  Returns ``f`` (decorator form) or None.
    """
    if len(args) == 1:
        jac = args[0]
        if not callable(jac):
            raise RuleError(f"isozyme.rules.easy_rule(jac): jac must be a function, got "
                            f"{jac!r}")

        def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
            _register_easy(f, jac, tuple(types))
            return f

        return decorate
    if len(args) < 2:
        raise RuleError("isozyme.rules.easy_rule takes (f, jac, *types), or (jac) as a "
                        "decorator")
    f, jac, *more = args
    _register_easy(f, jac, (*more, *types))
    return None


def _register_easy(f: Callable[..., Any], jac: Callable[..., Any], types: tuple) -> None:
    if not callable(jac):
        raise RuleError(f"isozyme.rules.easy_rule({registry.function_name(f)}, jac): jac "
                        f"must be a function, got {jac!r}")
    fwd, aug, rev = derive(f, jac)
    register(f, "forward", types, fwd, "easy_rule")
    register(f, "augmented", types, aug, "easy_rule")
    register(f, "reverse", types, rev, "easy_rule")


def _decorator(kind: registry.RuleKind, origin: str, f: Callable[..., Any],
               types: tuple[type, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    registry._check_types(f, types, origin)

    def decorate(rule: Callable[..., Any]) -> Callable[..., Any]:
        register(f, kind, types, rule, origin)
        return rule

    return decorate


def forward(f: Callable[..., Any], *types: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``rule(config, func, RT, *args)`` is ``f``'s forward rule
    (``EnzymeRules.forward``).  Arguments are ``Const(v)``, ``Duplicated(v, dv)`` or
    ``BatchDuplicated(v, dvs)``; it returns ``Duplicated(primal, tangent)`` when
    ``needs_primal`` and ``needs_shadow``, the tangent (a tuple of ``width`` ones when
    batched) when only ``needs_shadow``, the primal when only ``needs_primal``."""
    return _decorator("forward", "forward", f, types)


def augmented_primal(f: Callable[..., Any], *types: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``rule(config, func, RT, *args) -> AugmentedReturn(primal, shadow,
    tape)`` is the forward sweep of ``f``'s reverse rule
    (``EnzymeRules.augmented_primal``).  Arguments are ``Active(v)`` (scalars),
    ``Duplicated(v, ...)`` (arrays: their shadows are given to :func:`reverse`) or
    ``Const(v)``; the tape is any pytree of traced and Python values."""
    return _decorator("augmented", "augmented_primal", f, types)


def reverse(f: Callable[..., Any], *types: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``rule(config, func, dret, tape, *args)`` is ``f``'s reverse rule
    (``EnzymeRules.reverse``): ``dret`` is ``Active(seed)`` (a tuple of ``width`` seeds
    when batched; a tuple over outputs for a tuple-returning ``f``) or the class
    ``Const``; it returns one entry per argument, the adjoint of each Active argument
    and None for the others, and may add into the shadows of Duplicated arrays."""
    return _decorator("reverse", "reverse", f, types)


def import_frule(f: Callable[..., Any], frule: Callable[..., Any], *types: type) -> None:
    """Use ChainRules' ``frule((df, dx...), f, x...) -> (y, dy)`` as ``f``'s forward
    rule (Enzyme's ``@import_frule``)."""
    register(f, "forward", types, forward_from_frule(f, frule), "import_frule")


def import_rrule(f: Callable[..., Any], rrule: Callable[..., Any], *types: type) -> None:
    """Use ChainRules' ``rrule(f, x...) -> (y, pullback)`` as ``f``'s reverse rule
    (Enzyme's ``@import_rrule``); the reverse sweep runs ``rrule`` again on the primal
    arguments, since its pullback closes over forward-sweep values."""
    aug, rev = rules_from_rrule(f, rrule)
    register(f, "augmented", types, aug, "import_rrule")
    register(f, "reverse", types, rev, "import_rrule")
