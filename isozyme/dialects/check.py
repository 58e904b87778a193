"""The ``isz`` dialect: run-time checks in compiled code.

One op, ``isz.check``, asserts an ``i1`` condition when the compiled code runs::

    isz.check %ok, %i, %n {kind = "index",
        message = "f.py:7: index {0} is out of bounds for axis 0 with size {1}"} : i64, index

(``kind`` and ``message`` are properties; the generic form is ``<{...}>``.)

When ``%ok`` is false the compiled call stops (no later op of the call runs, no later
write happens) and the Python call raises the isozyme error of ``kind``:

=============== ==========================================
``index``       :class:`isozyme.errors.OutOfBoundsError`
``shape``       :class:`isozyme.errors.ShapeError`
``unsupported`` :class:`isozyme.errors.UnsupportedError`
``host``        :class:`isozyme.errors.HostCallError` (the host function's exception
                appended by the runtime, :mod:`isozyme.host_calls`)
=============== ==========================================

with ``message.format(*values)``, the values being the run-time integers of the
operands after the condition (``{0}``, ``{1}``...).  How a failing check leaves the
call is the lowering's business (``compiler/lowering/convert_check_to_llvm.py``, see
``docs/architecture.md``).

The op has a side effect: DCE must not delete it and LICM must not move it.  It is
declared as an allocation effect on no particular value, which keeps it alive (DCE)
and in place (LICM moves only effect-free ops) without counting as a *write*: CSE may
still merge two loads of the same element across a check, which a check allows since it
writes no memory.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import IndexType, IntegerType, StringAttr, i1
from xdsl.ir import Dialect, Operation, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    base,
    irdl_op_definition,
    operand_def,
    prop_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import EffectInstance, MemoryEffect, MemoryEffectKind
from xdsl.utils.exceptions import VerifyException

#: The kinds of a check and the isozyme error each raises (by class name in
#: :mod:`isozyme.errors`).
CHECK_KINDS: dict[str, str] = {
    "index": "OutOfBoundsError",
    "assert": "AssertionFailedError",
    "shape": "ShapeError",
    "unsupported": "UnsupportedError",
    "unbound": "UnboundVariableError",
    "zerodivision": "DivisionByZeroError",
    "host": "HostCallError",
}


class CheckEffect(MemoryEffect):
    """The effect of ``isz.check``: observable (may stop the call), writes no memory."""

    @classmethod
    def get_effects(cls, op: Operation) -> set[EffectInstance]:
        """An allocation effect on no value: not removable, not movable, not a write."""
        return {EffectInstance(MemoryEffectKind.ALLOC)}


def _placeholders(message: str) -> list[int]:
    """The positional ``{k}`` fields of a format string (``ValueError`` if malformed)."""
    out: list[int] = []
    for _, field, _, _ in string.Formatter().parse(message):
        if field is None:
            continue
        if not field.isdigit():
            raise ValueError(f"field {{{field}}} is not a positional index")
        out.append(int(field))
    return out


@irdl_op_definition
class CheckOp(IRDLOperation):
    """``isz.check %cond, %values...``: stop the call and raise the error of ``kind``
    with ``message`` formatted with the values when ``%cond`` is false at run time."""

    name = "isz.check"

    VALUE: ClassVar = base(IntegerType) | base(IndexType)

    cond = operand_def(i1)
    values = var_operand_def(VALUE)
    kind = prop_def(StringAttr)
    message = prop_def(StringAttr)

    traits = traits_def(CheckEffect())
    irdl_options = (ParsePropInAttrDict(),)

    assembly_format = (
        "$cond (`,` $values^)? attr-dict (`:` type($values)^)?"
    )

    def __init__(
        self,
        cond: SSAValue | Operation,
        kind: str,
        message: str,
        values: Sequence[SSAValue | Operation] = (),
    ):
        super().__init__(
            operands=[cond, list(values)],
            properties={"kind": StringAttr(kind), "message": StringAttr(message)},
        )

    def verify_(self) -> None:
        """The kind is known and the message's fields name existing values."""
        if self.kind.data not in CHECK_KINDS:
            raise VerifyException(
                f"isz.check: unknown kind {self.kind.data!r} "
                f"(one of {', '.join(CHECK_KINDS)})"
            )
        try:
            fields = _placeholders(self.message.data)
        except ValueError as exc:
            raise VerifyException(f"isz.check: bad message: {exc}") from exc
        if fields and max(fields) >= len(self.values):
            raise VerifyException(
                f"isz.check: message field {{{max(fields)}}} but only "
                f"{len(self.values)} value(s)"
            )


Isz = Dialect("isz", [CheckOp], [])
