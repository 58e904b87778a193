"""The ``linalg`` dialect's table: a ``linalg.generic`` writes its outputs.

There is no derivative rule for ``linalg.generic`` (whole-array code is lowered to loops
before AD, see docs/architecture.md); the analyses that run on the ``traced`` stage (which
arguments a function may write) still need to know what it writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from xdsl.dialects.linalg.ops import GenericOp
from xdsl.ir import Operation, SSAValue

LINALG_WRITES: dict[type[Operation], Callable[[Operation], Sequence[SSAValue]]] = {
    GenericOp: lambda op: list(op.outputs),  # type: ignore[attr-defined]
}
