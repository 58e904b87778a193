"""Buffer facts: which buffer a view looks into, which buffers nothing writes, which
arguments a function may write or reshape, which ops only initialize a new buffer.

What each op does to buffers comes from the dialects' tables in
:mod:`isozyme.compiler.ad_rules` (views, writes); this module combines them over a
function and the functions it calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Block, Operation, SSAValue
from xdsl.traits import SymbolTable

from isozyme.compiler.ad_rules import allocated_by, call_of, collapsed_by, written_by
from isozyme.compiler.ad_rules import view_source as _view_source


def is_view(op: Operation) -> bool:
    """Whether ``op`` makes a view of a buffer (``MEMREF_VIEWS`` in ``ad_rules``)."""
    return _view_source(op) is not None


def view_source(op: Operation) -> SSAValue:
    """The buffer a view op looks into."""
    source = _view_source(op)
    assert source is not None, f"{op.name} is not a view"
    return source


def is_buffer(v: SSAValue) -> bool:
    """True for memref values."""
    return isinstance(v.type, MemRefType)


def root_buffer(v: SSAValue) -> SSAValue:
    """The buffer a view ultimately looks into (``v`` itself if it is not a view)."""
    while (source := _view_source(v.owner)) is not None:  # type: ignore[arg-type]
        v = source
    return v


def buffers_written(op: Operation) -> list[SSAValue]:
    """Buffers ``op`` (or an op nested in it) may write; every buffer argument of a call."""
    out: list[SSAValue] = []
    for inner in op.walk():
        out.extend(written_by(inner))
        call = call_of(inner)
        if call is not None:
            out.extend(a for a in call[1] if is_buffer(a))
    return out


def read_only_buffers(fn: func.FuncOp) -> set[SSAValue]:
    """Buffer arguments, and views of them, that nothing in ``fn`` writes.

    Loads from them can be repeated at any time with the same result, so the reverse
    sweep recomputes them instead of caching.  A buffer passed to a call counts as
    written.
    """
    written = {root_buffer(b) for b in buffers_written(fn)}
    views = [op.results[0] for op in fn.walk() if is_view(op)]
    args = {a for a in fn.body.block.args if is_buffer(a) and a not in written}
    return args | {v for v in views if root_buffer(v) in args}


def _arguments_reached(
    fn: func.FuncOp, reached: Callable[[Operation], Iterable[SSAValue]],
    unknown_call_reaches: bool, _seen: frozenset[str] = frozenset(),
) -> set[int]:
    """Indices of ``fn``'s buffer arguments that ``reached(op)`` names (through any view)
    for an op of ``fn`` or of a function it calls (its arguments mapped back to the
    call's operands).  A call without a body in the module, or a recursive one, reaches
    all its buffer operands when ``unknown_call_reaches``, none otherwise."""
    args = fn.body.block.args
    out: set[int] = set()

    def mark(v: SSAValue) -> None:
        root = root_buffer(v)
        out.update(i for i, a in enumerate(args) if a is root)

    name = fn.sym_name.data
    for op in fn.walk():
        for v in reached(op):
            mark(v)
        call = call_of(op)
        if call is None:
            continue
        callee_name, operands = call
        callee = SymbolTable.lookup_symbol(op, callee_name)
        if isinstance(callee, func.FuncOp) and callee.body.blocks and \
                callee_name not in _seen and callee_name != name:
            inner = _arguments_reached(callee, reached, unknown_call_reaches, _seen | {name})
        elif unknown_call_reaches:
            inner = set(range(len(operands)))
        else:
            continue
        for i in inner:
            if i < len(operands) and is_buffer(operands[i]):
                mark(operands[i])
    return out


def written_arguments(fn: func.FuncOp) -> set[int]:
    """Indices of the buffer arguments of ``fn`` that it (or a function it calls) may
    write, through any view (a store, a copy, a ``linalg.generic`` output).  A call of a
    function not in the module counts as writing its buffers."""
    return _arguments_reached(fn, written_by, unknown_call_reaches=True)


def collapsed_arguments(fn: func.FuncOp) -> set[int]:
    """Indices of the buffer arguments of ``fn`` that a ``memref.collapse_shape`` views,
    in ``fn`` or in a function it calls: the primal's layout is what allows the merge
    (checked when tracing or at run time), and the AD passes take the same view of the
    shadow, so the shadow must have the same layout.  An external function (``print``)
    does not view its arguments."""
    return _arguments_reached(fn, collapsed_by, unknown_call_reaches=False)


def _fills_with_constants(op: Operation, buf: SSAValue) -> bool:
    """Whether ``op``'s only memory effect is storing constants into ``buf``."""
    stores = False
    for inner in op.walk():
        if isinstance(inner, memref.StoreOp):
            if inner.memref is not buf or not isinstance(inner.value.owner, arith.ConstantOp):
                return False
            stores = True
        elif not isinstance(
            inner, (scf.ForOp, scf.YieldOp, arith.ConstantOp, memref.DimOp)
        ) and not (inner.name.startswith("arith.") and not inner.regions):
            return False
    return stores


def initializations(block: Block) -> set[Operation]:
    """Ops that fill a buffer allocated in ``block`` with constants right after its
    ``memref.alloc`` (``np.zeros(n)``), before anything reads it.

    Their reverse would zero the buffer's shadow; but in the reverse sweep nothing reads
    that shadow after them (the allocation comes next, and ends the shadow's life), so
    the reverse sweep skips them.
    """
    skip: set[Operation] = set()
    ops = list(block.ops)
    for k, op in enumerate(ops):
        buf = allocated_by(op)
        if buf is None:
            continue
        for nxt in ops[k + 1 :]:
            if isinstance(nxt, (arith.ConstantOp, memref.DimOp)):
                continue
            if not _fills_with_constants(nxt, buf):
                break
            skip.add(nxt)
    return skip
