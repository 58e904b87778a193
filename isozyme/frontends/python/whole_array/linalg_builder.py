"""Building blocks of whole-array operations: affine maps, result buffers and the one
``linalg.generic`` builder every operation goes through (:func:`generic`, :func:`fill`).

The IR conventions (dynamic sizes, static 1 dimensions, scalar operands) are described
in :mod:`isozyme.frontends.python.whole_array`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from xdsl.dialects import memref
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    AffineMapAttr,
    IndexType,
    MemRefType,
    i64,
)
from xdsl.dialects.linalg.attrs import IteratorTypeAttr
from xdsl.dialects.linalg.ops import GenericOp, YieldOp
from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.ir.affine import AffineExpr, AffineMap

from ..arrays import ArrayTracer
from ..buffer_ownership import record_alloc
from ..context import current_builder
from ..tracer import Tracer, as_tracer, emit, ssa

Size = Any  # a Python int (static size) or an ``index`` SSAValue (dynamic size)


def _d(k: int) -> AffineExpr:
    return AffineExpr.dimension(k)


_ZERO = AffineExpr.constant(0)


def _map(num_loops: int, exprs: Sequence[AffineExpr]) -> AffineMapAttr:
    return AffineMapAttr(AffineMap(num_loops, 0, tuple(exprs)))


def _identity(n: int) -> AffineMapAttr:
    return _map(n, [_d(k) for k in range(n)])


def _static(x: ArrayTracer, j: int) -> int:
    return x.type.get_shape()[j]


def _size(x: ArrayTracer, j: int) -> Size:
    """Dimension ``j`` of ``x``: a Python int when static, else an ``index`` value."""
    s = _static(x, j)
    return s if s != DYNAMIC_INDEX else x.dim_index(j)


def _is_one(s: Size) -> bool:
    return isinstance(s, int) and s == 1


def new_buffer(shape: Sequence[Size], element_type: Attribute) -> ArrayTracer:
    """``memref.alloc`` of ``shape`` (static ints stay static in the type, ``index``
    values are dynamic sizes), identity layout, freed at the end of the current block."""
    fb = current_builder()
    if isinstance(element_type, IndexType):
        element_type = i64
    static = [s if isinstance(s, int) else DYNAMIC_INDEX for s in shape]
    dynamic = [s for s in shape if not isinstance(s, int)]
    t = MemRefType(element_type, static)
    op = emit(memref.AllocOp(dynamic, [], t))
    record_alloc(fb, op.results[0])
    x = ArrayTracer(op.results[0])
    for k, s in enumerate(shape):
        if not isinstance(s, int):
            x._cache[("idx", k)] = Tracer(s)
    return x


def _iterators(kinds: Sequence[str]) -> list[IteratorTypeAttr]:
    return [IteratorTypeAttr.parallel() if k == "parallel" else IteratorTypeAttr.reduction()
            for k in kinds]


def _element_or_type(v: SSAValue) -> Attribute:
    t = v.type
    return t.element_type if isinstance(t, MemRefType) else t


def generic(
    inputs: Sequence[SSAValue],
    input_maps: Sequence[AffineMapAttr],
    output: ArrayTracer | None,
    output_map: AffineMapAttr,
    iterators: Sequence[str],
    body: Callable[..., object],
    *,
    output_shape: Sequence[Size] | None = None,
    output_type: Attribute | None = None,
    reads_output: bool = False,
) -> ArrayTracer:
    """Emit one ``linalg.generic``.  ``body`` receives one Tracer per input (and the
    output's element when ``reads_output``) and returns the value to yield (a Tracer or
    a Python number).  With ``output=None`` the output buffer of ``output_shape`` is
    allocated after the body is built, with ``output_type`` or the type of the body's
    value."""
    fb = current_builder()
    block = Block(arg_types=[_element_or_type(v) for v in inputs])
    if output is not None and reads_output:
        block.insert_arg(output.element_type, len(inputs))
    with fb.at(block):
        args = [Tracer(a) for a in block.args]
        value = body(*args)
        if output is not None:
            out_t = output.element_type
        elif output_type is not None:
            out_t = output_type
        else:
            out_t = as_tracer(value).type
            if isinstance(out_t, IndexType):
                out_t = i64
        result = ssa(as_tracer(value, out_t))
    if output is None:
        assert output_shape is not None
        output = new_buffer(output_shape, out_t)
    if not (reads_output and len(block.args) > len(inputs)):
        block.insert_arg(out_t, len(inputs))
    with fb.at(block):
        fb.insert(YieldOp(result))
    emit(GenericOp(
        list(inputs), [ssa(output)], Region(block), [*input_maps, output_map],
        _iterators(iterators),
    ))
    return output


def fill(buffer: ArrayTracer, value: object) -> None:
    """A generic with no inputs writing ``value`` into every element of ``buffer``."""
    n = buffer.ndim
    generic([], [], buffer, _identity(n), ["parallel"] * n, lambda: value)
