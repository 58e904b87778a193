"""Run-time shape checks for what tracing assumes about dynamic sizes.

isozyme traces on ranks, not shapes, so ``x + y`` on two 1-D arrays assumes
``len(x) == len(y)`` and ``A @ v`` assumes ``A.shape[1] == len(v)``.  When both sizes are
sizes of arguments of the traced function, the assumption is recorded here; the runtime
checks it before every call and raises a clear error instead of reading past the end of
an array.
"""

from __future__ import annotations

from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import DYNAMIC_INDEX, IntegerAttr
from xdsl.ir import Block, BlockArgument, SSAValue

from .context import current_builder


def _origin(v: SSAValue, j: int, entry: Block, depth: int = 8) -> tuple[int, int] | None:
    """Which argument size size ``j`` of buffer ``v`` is: an argument's own size, or a
    local buffer allocated with an argument's size (a whole-array temporary)."""
    if isinstance(v, BlockArgument):
        return (v.index, j) if v.block is entry else None
    alloc = v.owner
    if depth == 0 or not isinstance(alloc, memref.AllocOp):
        return None
    shape = alloc.memref.type.get_shape()
    if shape[j] != DYNAMIC_INDEX:
        return None
    size = alloc.dynamic_sizes[sum(1 for s in shape[:j] if s == DYNAMIC_INDEX)]
    dim = size.owner
    if not isinstance(dim, memref.DimOp):
        return None
    k = dim.index.owner
    if not (isinstance(k, arith.ConstantOp) and isinstance(k.value, IntegerAttr)):
        return None
    return _origin(dim.source, k.value.value.data, entry, depth - 1)


def require_same_size(a: object, j: int, b: object, k: int) -> None:
    """Record that size ``j`` of array ``a`` must equal size ``k`` of array ``b``."""
    builder = current_builder()
    session = builder.session
    entry = getattr(session, "public_entry", None)
    if entry is None or builder.entry is not entry:
        return
    oa = _origin(a.value, j, entry)  # type: ignore[attr-defined]
    ob = _origin(b.value, k, entry)  # type: ignore[attr-defined]
    if oa is not None and ob is not None and oa != ob:
        session.shape_constraints.append((*oa, *ob))
