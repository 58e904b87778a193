"""``enzyme``: Enzyme-MLIR's ``--enzyme`` pass, with the names Enzyme gives.

It expands every ``enzyme.fwddiff``/``enzyme.autodiff`` request like
``enzyme-differentiate`` (it is that pass: inner requests first) and names
the generated functions as Enzyme-MLIR does:

* ``fwddiffe<f>`` (forward) and ``diffe<f>`` (reverse), with the batch width after the
  prefix when it is above one (``fwddiffe2<f>``), as Enzyme-MLIR's ``CreateFromClone``;
* a name already taken (a second activity signature of ``f``, or a function of the
  module that has it) gets MLIR's symbol-table uniquing: ``<name>_0``, ``<name>_1``...
  (Enzyme inserts each new function with ``SymbolTable::insert``, which renames so);
* one function per (function, signature): a second identical request calls the first.

``enzyme-differentiate`` keeps isozyme's own suffixes for a second signature
(``diffef_a_c__an``), which name the activities.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects.func import FuncOp

from isozyme.compiler.ad.factory import DerivativeFactory
from isozyme.compiler.passes.differentiate import DifferentiatePass
from isozyme.dialects.enzyme import DerivativeSignature


def enzyme_derivative_name(prefix: str, width: int, fn: str, taken: set[str]) -> str:
    """The name Enzyme-MLIR gives the derivative of ``fn``: ``prefix`` (``fwddiffe`` or
    ``diffe``), the width when above one, ``fn``; if ``taken`` holds it, MLIR's
    symbol-table uniquing ``_0``, ``_1``... (the first suffix not taken)."""
    base = f"{prefix}{width if width > 1 else ''}{fn}"
    name, k = base, 0
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


class EnzymeNamedFactory(DerivativeFactory):
    """A :class:`DerivativeFactory` that names derivatives as Enzyme-MLIR does
    (:func:`enzyme_derivative_name`); the callees' derivatives are named the same way."""

    def _name(self, sig: DerivativeSignature, fn: FuncOp) -> str:
        return enzyme_derivative_name(sig.prefix, sig.width, fn.sym_name.data, self._names)


@dataclass(frozen=True)
class EnzymePass(DifferentiatePass):
    """Expand every ``enzyme.fwddiff``/``enzyme.autodiff`` into a call of the derivative
    function, named as Enzyme-MLIR's ``--enzyme`` pass names it (``fwddiffe<f>``,
    ``fwddiffe<W><f>``, ``diffe<f>``, ``<name>_0`` on a clash)."""

    name = "enzyme"
    factory_class = EnzymeNamedFactory
