"""What a general rule is given and returns (Enzyme's ``EnzymeRules`` configuration).

A rule's ``config`` is a :class:`Config`; :func:`needs_primal`, :func:`needs_shadow`,
:func:`width` and :func:`overwritten` read it as ``EnzymeRules`` does (the same values
are attributes).  ``augmented_primal`` returns an :class:`AugmentedReturn`.
:data:`Constant` marks a zero derivative in an ``easy_rule``'s Jacobian;
:class:`NoTangent` is ChainRules' tangent of the function itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Config:
    """The configuration a rule is called with (Enzyme's ``RevConfig``/``FwdConfig``).

    ``needs_primal``: the rule must return the primal result; ``needs_shadow``: it must
    return the derivative of the result (forward) or a shadow (augmented primal);
    ``width``: the batch width (number of tangents or seeds per value);
    ``overwritten``: the function itself first (always False), then per argument
    whether memory it points to may be overwritten between the augmented primal and
    the reverse rule (scalars never are).
    """

    needs_primal: bool
    needs_shadow: bool
    width: int
    overwritten: tuple[bool, ...]
    #: isozyme's own: (whether the function returns a tuple, its number of results),
    #: for the rules derived from an easy_rule or a ChainRules rule
    result_shape: tuple[bool, int] | None = field(default=None, repr=False, compare=False)


def needs_primal(config: Config) -> bool:
    """Whether the rule must compute the primal result (``EnzymeRules.needs_primal``)."""
    return config.needs_primal


def needs_shadow(config: Config) -> bool:
    """Whether the rule must compute the result's derivative (``needs_shadow``)."""
    return config.needs_shadow


def width(config: Config) -> int:
    """The batch width: tangents (forward) or seeds (reverse) per value (``width``)."""
    return config.width


def overwritten(config: Config) -> tuple[bool, ...]:
    """Per function-then-argument: may its memory be overwritten before the reverse
    rule runs (``EnzymeRules.overwritten``)."""
    return config.overwritten


@dataclass
class AugmentedReturn:
    """What ``augmented_primal`` returns: the primal result (or None when
    ``needs_primal`` is False), the shadow (None: isozyme gives result shadows to the
    reverse rule as seeds) and the tape, any pytree of traced values and Python values
    that ``reverse`` receives back as it was."""

    primal: Any
    shadow: Any
    tape: Any


class _ConstantMarker:
    """The type of :data:`Constant`."""

    _instance: "_ConstantMarker | None" = None

    def __new__(cls) -> "_ConstantMarker":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "isozyme.rules.Constant"

    def __reduce__(self) -> str:
        return "Constant"


#: An ``easy_rule`` Jacobian entry meaning "no derivative" (Enzyme's ``@Constant``).
Constant = _ConstantMarker()


class NoTangent:
    """ChainRules' ``NoTangent()``: the tangent of the function itself in ``frule``'s
    first tuple, and what a pullback may return for it."""

    def __repr__(self) -> str:
        return "NoTangent()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoTangent)

    def __hash__(self) -> int:
        return hash(NoTangent)
