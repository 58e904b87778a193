"""General rules made from rules in the ChainRules convention.

``frule((df, dx1, ...), f, x1, ...) -> (y, dy)``: the forward rule calls it once per
batch lane with ``df = NoTangent()`` and each argument's tangent (``0.0`` for a constant
scalar argument, ``NoTangent()`` for another constant one).

``rrule(f, x1, ...) -> (y, pullback)``, ``pullback(dy) -> (df, dx1, ...)``: a pullback
closes over traced values of the forward sweep, which the reverse sweep cannot use, so
the reverse rule runs ``rrule`` again on the primal arguments and calls the new
pullback (the augmented primal's tape is empty).  A ``NoTangent()``, ``None`` or zero
for an Active argument is a zero adjoint; a Duplicated array argument's adjoint is
added into its shadow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from isozyme.annotations import Active, BatchDuplicated, Const, Duplicated
from isozyme.errors import RuleError

from .config import AugmentedReturn, NoTangent, needs_primal, needs_shadow, width
from .easy import call, converted, is_static_zero, ndim
from .registry import function_name


def _pair(value: Any, label: str, what: str) -> tuple[Any, Any]:
    if not isinstance(value, tuple) or len(value) != 2:
        raise RuleError(f"{label} returned {type(value).__name__}; expected {what}")
    return value


def forward_from_frule(f: Callable[..., Any], frule: Callable[..., Any]) -> Callable[..., Any]:
    """Enzyme's forward rule for ``f`` made from ChainRules' ``frule``."""
    label = f"the frule of {function_name(f)}"

    @converted
    def forward(config: Any, func: Any, RT: Any, *args: Any) -> Any:
        vals = [a.val for a in args]
        w = width(config)
        primal = None
        shadows = []
        for lane in range(w):
            dargs = [NoTangent()]
            for a in args:
                if isinstance(a, Duplicated):
                    dargs.append(a.dval)
                elif isinstance(a, BatchDuplicated):
                    dargs.append(a.dvals[lane])
                else:
                    dargs.append(0.0 if ndim(a.val) == 0 else NoTangent())
            y, dy = _pair(call(frule, tuple(dargs), f, *vals), label, "(y, dy)")
            primal = y if primal is None else primal
            shadows.append(dy)
        if not needs_shadow(config):
            return primal
        if needs_primal(config):
            return Duplicated(primal, shadows[0]) if w == 1 else \
                BatchDuplicated(primal, tuple(shadows))
        return shadows[0] if w == 1 else tuple(shadows)

    return forward


def rules_from_rrule(f: Callable[..., Any], rrule: Callable[..., Any]
                     ) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Enzyme's augmented primal and reverse rules for ``f`` made from ``rrule``."""
    label = f"the rrule of {function_name(f)}"

    @converted
    def augmented(config: Any, func: Any, RT: Any, *args: Any) -> AugmentedReturn:
        primal = None
        if needs_primal(config):
            primal, _ = _pair(call(rrule, f, *[a.val for a in args]), label,
                              "(y, pullback)")
        return AugmentedReturn(primal, None, None)

    @converted
    def reverse(config: Any, func: Any, dret: Any, tape: Any, *args: Any) -> tuple[Any, ...]:
        w = width(config)
        adjoints: list[Any] = [
            (0.0 if w == 1 else (0.0,) * w) if isinstance(a, Active) else None for a in args]
        if not isinstance(dret, Active):  # no result is differentiated: zero adjoints
            return tuple(adjoints)
        _, pullback = _pair(call(rrule, f, *[a.val for a in args]), label, "(y, pullback)")
        lanes = [dret.val] if w == 1 else list(dret.val)
        per_arg: list[list[Any]] = [[] for _ in args]
        for seed in lanes:
            grads = call(pullback, seed)
            if not isinstance(grads, tuple) or len(grads) != len(args) + 1:
                raise RuleError(f"the pullback of {label} returned "
                                f"{type(grads).__name__}; expected a tuple (df, dx1, ...) "
                                f"of {len(args) + 1}")
            for i, g in enumerate(grads[1:]):
                per_arg[i].append(g)
        for i, a in enumerate(args):
            if isinstance(a, Const):
                continue
            if isinstance(a, Active):
                lane_adj = [0.0 if g is None or isinstance(g, NoTangent) else g
                            for g in per_arg[i]]
                adjoints[i] = lane_adj[0] if w == 1 else tuple(lane_adj)
                continue
            shadows = [a.dval] if isinstance(a, Duplicated) else list(a.dvals)
            for shadow, g in zip(shadows, per_arg[i]):
                if g is None or isinstance(g, NoTangent) or is_static_zero(g):
                    continue
                shadow += g
        return tuple(adjoints)

    return augmented, reverse
