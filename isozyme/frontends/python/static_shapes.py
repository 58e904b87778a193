"""Sizes as Python ints where the value is fixed per call (shape specialisation).

An array argument's sizes are dynamic in the IR (``memref<?x?xf64>``), so
``A.shape[0]`` is a traced ``i64``: enough for traced code (``for i in range(n)``,
``np.zeros(n)``, slicing), not for Python code that needs the int itself
(``tuple(range(n))``, ``[0.0] * n``, ``int(n)``, ``assert n == 3``).  When such code asks
a traced integer for its value (``Tracer.__index__``/``__int__``/``__bool__``),
:func:`concrete_int` answers:

1. a value computed from constants and static sizes alone (``np.zeros(3).shape[0]``, or a
   size of a view of an argument whose shape is static) is folded: its Python int;
2. a value computed from the dynamic sizes of arrays the function was called with (its
   array arguments, or the large global arrays passed as hidden arguments) raises
   :class:`StaticShapeNeeded` naming them: the trace stops, and
   :func:`isozyme.frontends.python.trace` traces the function again with those
   arguments' shapes static (``memref<3x3xf64, strided<[?, ?], offset: ?>>``), as
   ``jax.jit`` traces per shape.  The compile cache then keys that function's compiled
   code on those arguments' shapes (:mod:`isozyme.calls`): a new shape traces and
   compiles again;
3. anything else (a value loaded from an array, a float, a loop index, an int argument)
   is the caller's :class:`~isozyme.errors.TraceError`, as before.

Sizes that only feed traced code never come here: such functions keep one compilation
for every shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
)
from xdsl.ir import Attribute, Block, BlockArgument, OpResult, SSAValue

from isozyme.errors import TraceError

from .context import _stack, current_builder


class StaticShapeNeeded(Exception):
    """Raised while tracing when Python code needs a size of an argument as a Python int
    (never seen by users: :func:`isozyme.frontends.python.trace` catches it and traces
    again with the shapes static, or raises ``error`` when it cannot).

    ``arguments``: the indices of the traced arguments whose shapes are needed, or None
    for every array argument (the size came through a helper function's argument);
    ``hidden``: the hidden global arrays whose shapes are needed; ``error``: the
    TraceError to raise when the shapes cannot be made static."""

    def __init__(self, arguments: frozenset[int] | None, hidden: tuple[Any, ...],
                 error: TraceError) -> None:
        super().__init__(str(error))
        self.arguments = arguments
        self.hidden = hidden
        self.error = error


#: Integer ops whose result is a function of their operands alone (folded below).
_BINARY: dict[type, Callable[[int, int], int]] = {
    arith.AddiOp: lambda a, b: a + b,
    arith.SubiOp: lambda a, b: a - b,
    arith.MuliOp: lambda a, b: a * b,
    arith.FloorDivSIOp: lambda a, b: a // b,
    arith.DivSIOp: lambda a, b: abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1),
    arith.CeilDivSIOp: lambda a, b: -(-a // b),
    arith.RemSIOp: lambda a, b: a - b * (abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)),
    arith.MaxSIOp: max,
    arith.MinSIOp: min,
    arith.AndIOp: lambda a, b: a & b,
    arith.OrIOp: lambda a, b: a | b,
    arith.XOrIOp: lambda a, b: a ^ b,
    arith.ShLIOp: lambda a, b: a << b,
    arith.ShRSIOp: lambda a, b: a >> b,
}
_CASTS = (arith.IndexCastOp, arith.ExtSIOp, arith.ExtUIOp, arith.TruncIOp)
#: arith.cmpi predicates (signed and unsigned alike: sizes are never negative)
_CMPI: dict[int, Callable[[int, int], bool]] = {
    0: lambda a, b: a == b, 1: lambda a, b: a != b,
    2: lambda a, b: a < b, 3: lambda a, b: a <= b, 4: lambda a, b: a > b, 5: lambda a, b: a >= b,
    6: lambda a, b: a < b, 7: lambda a, b: a <= b, 8: lambda a, b: a > b, 9: lambda a, b: a >= b,
}
#: How deep the analyses follow a value's operands (sizes are short expressions).
_MAX_DEPTH = 64


def _is_integer(t: Attribute) -> bool:
    return isinstance(t, (IntegerType, IndexType))


def _as_bool_width(value: int, t: Attribute) -> int:
    """An ``i1`` is 0 or 1 (its constants may be stored as -1)."""
    if isinstance(t, IntegerType) and t.width.data == 1:
        return value & 1
    return value


def fold(value: SSAValue, depth: int = _MAX_DEPTH) -> int | None:
    """The value of integer ``value`` when it is computed from constants and static
    sizes alone, else None."""
    if depth <= 0 or not isinstance(value, OpResult):
        return None
    op = value.op
    if isinstance(op, arith.ConstantOp):
        attr = op.value
        if isinstance(attr, IntegerAttr):
            return _as_bool_width(attr.value.data, value.type)
        return None
    if isinstance(op, memref.DimOp):
        k = fold(op.index, depth - 1)
        return None if k is None else _size(op.source, k, depth - 1)
    if isinstance(op, _CASTS):
        x = fold(op.operands[0], depth - 1)
        if x is None:
            return None
        source = op.operands[0].type
        if isinstance(op, arith.ExtSIOp) and isinstance(source, IntegerType) \
                and source.width.data == 1:
            return -x  # a true i1 sign-extends to -1
        return _as_bool_width(x, value.type)
    if isinstance(op, arith.CmpiOp):
        a, b = fold(op.lhs, depth - 1), fold(op.rhs, depth - 1)
        if a is None or b is None:
            return None
        return int(_CMPI[op.predicate.value.data](a, b))
    if isinstance(op, arith.SelectOp):
        c = fold(op.cond, depth - 1)
        if c is None:
            return None
        return fold(op.lhs if c else op.rhs, depth - 1)
    fn = _BINARY.get(type(op))
    if fn is not None:
        a, b = fold(op.operands[0], depth - 1), fold(op.operands[1], depth - 1)
        if a is None or b is None:
            return None
        try:
            return _as_bool_width(fn(a, b), value.type)
        except (ZeroDivisionError, ValueError):  # left to the compiled code
            return None
    return None


def _size(array: SSAValue, k: int, depth: int) -> int | None:
    """Size ``k`` of memref ``array`` when it is known at trace time, else None."""
    t = array.type
    if not isinstance(t, MemRefType) or not 0 <= k < len(t.get_shape()):
        return None
    static = t.get_shape()[k]
    if static != DYNAMIC_INDEX:
        return static
    if depth <= 0 or not isinstance(array, OpResult):
        return None
    op = array.op
    if isinstance(op, (memref.AllocOp, memref.AllocaOp)):
        # the j-th dynamic size is the j-th operand
        j = sum(1 for s in t.get_shape()[:k] if s == DYNAMIC_INDEX)
        return fold(op.dynamic_sizes[j], depth - 1)
    if isinstance(op, memref.SubviewOp):
        sizes = op.static_sizes.get_values()
        if sizes[k] != DYNAMIC_INDEX:
            return sizes[k]
        j = sum(1 for s in sizes[:k] if s == DYNAMIC_INDEX)
        return fold(op.sizes[j], depth - 1)
    if isinstance(op, memref.CastOp):
        return _size(op.source, k, depth - 1)
    return None


def shape_origin(value: SSAValue, depth: int = _MAX_DEPTH) -> set[BlockArgument] | None:
    """The function arguments (memref block arguments of a function's entry block)
    whose sizes integer ``value`` is computed from, with constants and pure integer
    arithmetic; None when it depends on anything else (a loaded element, a loop index,
    an integer argument, a loop's or a call's result)."""
    seen: set[int] = set()
    out: set[BlockArgument] = set()

    def visit(v: SSAValue, d: int) -> bool:
        if id(v) in seen:
            return True
        seen.add(id(v))
        if d <= 0:
            return False
        if isinstance(v, BlockArgument):
            block = v.block
            # an argument of a function (an entry block), not of a loop body
            if isinstance(v.type, MemRefType) and _is_entry(block):
                out.add(v)
                return True
            return False
        op = v.op  # type: ignore[attr-defined]
        if isinstance(op, arith.ConstantOp):
            return True
        if isinstance(v.type, MemRefType):
            if isinstance(op, (memref.AllocOp, memref.AllocaOp, memref.SubviewOp,
                               memref.CastOp, memref.ExpandShapeOp,
                               memref.CollapseShapeOp)):
                return all(visit(o, d - 1) for o in op.operands)
            return False
        if not _is_integer(v.type):
            return False
        if isinstance(op, memref.DimOp) or isinstance(op, _CASTS) or isinstance(
                op, (arith.CmpiOp, arith.SelectOp)) or type(op) in _BINARY:
            return all(visit(o, d - 1) for o in op.operands)
        return False

    return out if visit(value, depth) else None


def _is_entry(block: Block | None) -> bool:
    """Whether ``block`` is the entry block of a function being traced (the public
    function, a helper, a nested autodiff's target), not a loop's or a branch's body."""
    return block is not None and any(fb.entry is block for fb in _stack())


def concrete_int(value: SSAValue, error: Callable[[], TraceError]) -> int:
    """The Python int Python code needs from traced integer ``value`` (see the module
    docstring): folded, or :class:`StaticShapeNeeded`, or ``error()`` raised."""
    if not _is_integer(value.type):
        raise error()
    folded = fold(value)
    if folded is not None:
        return folded
    origin = shape_origin(value)
    if not origin:
        raise error()
    session = current_builder().session
    entry = session.public_entry
    hidden_of = {id(t.value): a for a, t in session.hidden.values()}
    arguments: set[int] = set()
    hidden: list[Any] = []
    every = False
    for arg in origin:
        if arg.block is not entry:
            every = True  # a helper's argument: its caller's sizes are not followed
        elif id(arg) in hidden_of:
            hidden.append(hidden_of[id(arg)])
        else:
            arguments.add(arg.index)
    raise StaticShapeNeeded(None if every else frozenset(arguments), tuple(hidden), error())


def static_type(t: MemRefType, shape: tuple[int, ...]) -> MemRefType:
    """Memref type ``t`` of an array argument with the static sizes ``shape`` (strides
    and offset stay as they were)."""
    return MemRefType(t.element_type, list(shape), t.layout, t.memory_space)
