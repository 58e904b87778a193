"""Buffer facts: which buffer a view looks into, and which buffers nothing writes."""

from __future__ import annotations

from xdsl.dialects import builtin, func, memref
from xdsl.dialects.linalg.ops import GenericOp
from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Operation, SSAValue

from isozyme.dialects.memref_ext import TransposeOp

#: Ops whose result is a view of their first operand's memory (no copy).  The AD passes
#: take the same view of the shadow; the analyses treat a view like its source.
VIEW_OPS: tuple[type[Operation], ...] = (
    memref.SubviewOp, memref.CastOp, memref.ExpandShapeOp, memref.CollapseShapeOp,
    TransposeOp,
)


def is_view(op: Operation) -> bool:
    """Whether ``op`` makes a view of a buffer (see :data:`VIEW_OPS`)."""
    return isinstance(op, VIEW_OPS)


def view_source(op: Operation) -> SSAValue:
    """The buffer a view op looks into (its first operand)."""
    return op.operands[0]


def is_buffer(v: SSAValue) -> bool:
    """True for memref values."""
    return isinstance(v.type, MemRefType)


def root_buffer(v: SSAValue) -> SSAValue:
    """The buffer a view (:data:`VIEW_OPS`) ultimately looks into."""
    while isinstance(v.owner, VIEW_OPS):
        v = view_source(v.owner)  # type: ignore[arg-type]
    return v


def buffers_written(op: Operation) -> list[SSAValue]:
    """Buffers ``op`` (or an op nested in it) may write; every buffer argument of a call."""
    out: list[SSAValue] = []
    for inner in op.walk():
        if isinstance(inner, memref.StoreOp):
            out.append(inner.memref)
        elif isinstance(inner, memref.CopyOp):
            out.append(inner.destination)
        elif isinstance(inner, func.CallOp):
            out.extend(a for a in inner.arguments if is_buffer(a))
    return out


def read_only_buffers(fn: func.FuncOp) -> set[SSAValue]:
    """Buffer arguments, and views of them, that nothing in ``fn`` writes.

    Loads from them can be repeated at any time with the same result, so the reverse
    sweep recomputes them instead of caching.  A buffer passed to a call counts as
    written.
    """
    written: set[SSAValue] = set()
    views: list[SSAValue] = []
    for op in fn.walk():
        if isinstance(op, memref.StoreOp):
            written.add(root_buffer(op.memref))
        elif isinstance(op, memref.CopyOp):
            written.add(root_buffer(op.destination))
        elif isinstance(op, func.CallOp):
            written.update(root_buffer(a) for a in op.arguments if is_buffer(a))
        elif isinstance(op, VIEW_OPS):
            views.append(op.results[0])
    args = {a for a in fn.body.block.args if is_buffer(a) and a not in written}
    return args | {v for v in views if root_buffer(v) in args}


def _callee(call: func.CallOp) -> func.FuncOp | None:
    op: Operation | None = call
    while op is not None and not isinstance(op, builtin.ModuleOp):
        op = op.parent_op()
    if op is None:
        return None
    for f in op.ops:
        if isinstance(f, func.FuncOp) and f.sym_name.data == call.callee.root_reference.data:
            return f
    return None


def written_arguments(fn: func.FuncOp, _seen: frozenset[str] = frozenset()) -> set[int]:
    """Indices of the buffer arguments of ``fn`` that it (or a function it calls) may
    write, through any view: ``memref.store``, ``memref.copy``, a ``linalg.generic``
    output.  A call of a function not in the module counts as writing its buffers."""
    args = fn.body.block.args
    written: set[int] = set()

    def mark(v: SSAValue) -> None:
        root = root_buffer(v)
        for i, a in enumerate(args):
            if a is root:
                written.add(i)

    name = fn.sym_name.data
    for op in fn.walk():
        if isinstance(op, memref.StoreOp):
            mark(op.memref)
        elif isinstance(op, memref.CopyOp):
            mark(op.destination)
        elif isinstance(op, GenericOp):
            for out in op.outputs:
                mark(out)
        elif isinstance(op, func.CallOp):
            callee = _callee(op)
            if callee is None or not callee.body.blocks or \
                    callee.sym_name.data in _seen or callee.sym_name.data == name:
                inner = set(range(len(op.arguments)))  # external or recursive: assume so
            else:
                inner = written_arguments(callee, _seen | {name})
            for i, a in enumerate(op.arguments):
                if i in inner and is_buffer(a):
                    mark(a)
    return written


def collapsed_arguments(fn: func.FuncOp, _seen: frozenset[str] = frozenset()) -> set[int]:
    """Indices of the buffer arguments of ``fn`` that a ``memref.collapse_shape`` views,
    in ``fn`` or in a function it calls: the primal's layout is what allows the merge
    (checked when tracing or at run time), and the AD passes take the same view of the
    shadow, so the shadow must have the same layout."""
    args = fn.body.block.args
    out: set[int] = set()

    def mark(v: SSAValue) -> None:
        root = root_buffer(v)
        out.update(i for i, a in enumerate(args) if a is root)

    name = fn.sym_name.data
    for op in fn.walk():
        if isinstance(op, memref.CollapseShapeOp):
            mark(op.src)
        elif isinstance(op, func.CallOp):
            callee = _callee(op)
            if callee is None or not callee.body.blocks or callee.sym_name.data in _seen \
                    or callee.sym_name.data == name:
                continue  # an external function (print) does not view its arguments
            for i in collapsed_arguments(callee, _seen | {name}):
                if i < len(op.arguments) and is_buffer(op.arguments[i]):
                    mark(op.arguments[i])
    return out
