"""The ``memref`` dialect's (and ``memref_ext``'s) table: how each buffer op takes part in
AD, beside the scalar rules of ``arith.py``/``math.py``.

* ``MEMREF_VIEWS``: ops whose result is a view of a source buffer's memory (no copy),
  with the operand that is the source.  Forward and reverse mode take the same view of
  the source's shadow; the activity analysis links a view and its source both ways; the
  buffer analyses see through them.
* ``MEMREF_WRITES``: ops that write buffers, with the buffers they write (the activity
  and read-only analyses, the runtime's writeable check).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from xdsl.dialects import memref
from xdsl.ir import Operation, SSAValue

from isozyme.dialects.memref_ext import TransposeOp

MEMREF_VIEWS: dict[type[Operation], Callable[[Operation], SSAValue]] = {
    memref.SubviewOp: lambda op: op.source,  # type: ignore[attr-defined]
    memref.CastOp: lambda op: op.source,  # type: ignore[attr-defined]
    memref.ExpandShapeOp: lambda op: op.src,  # type: ignore[attr-defined]
    memref.CollapseShapeOp: lambda op: op.src,  # type: ignore[attr-defined]
    TransposeOp: lambda op: op.source,  # type: ignore[attr-defined]
}

MEMREF_WRITES: dict[type[Operation], Callable[[Operation], Sequence[SSAValue]]] = {
    memref.StoreOp: lambda op: [op.memref],  # type: ignore[attr-defined]
    memref.CopyOp: lambda op: [op.destination],  # type: ignore[attr-defined]
}
