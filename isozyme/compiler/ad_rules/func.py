"""Derivative rules of the ``func`` dialect: ``func.call`` calls the callee's own
derivative function (``fwddiffe<callee>`` in forward mode, ``diffe<callee>`` in reverse
mode, which recomputes its primal), generated on demand by the derivative factory.
"""

from __future__ import annotations

import threading

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Operation, SSAValue

from isozyme.compiler.ad.common import lookup_callee
from isozyme.compiler.ad_rules.registry import CallRule, Edge, register
from isozyme.compiler.analysis.buffers import is_buffer, written_arguments
from isozyme.compiler.emitter import Emitter
from isozyme.dialects.enzyme import Activity, DerivativeSignature
from isozyme.errors import UnsupportedError


def _writes_any(op: func.CallOp, args: list[int]) -> bool:
    """Whether the callee of ``op`` may write one of its buffer arguments ``args``
    (False for a function without a body in the module: external calls such as the
    debug ``print`` only read)."""
    if not args:
        return False
    from xdsl.traits import SymbolTable

    callee = SymbolTable.lookup_symbol(op, op.callee)
    if not isinstance(callee, func.FuncOp) or not callee.body.blocks:
        return False
    return bool(written_arguments(callee) & set(args))


class FuncCallRule(CallRule):
    """``func.call`` of a function whose body is in the module."""

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        assert isinstance(op, func.CallOp)
        from xdsl.traits import SymbolTable  # noqa: PLC0415

        callee = SymbolTable.lookup_symbol(op, op.callee)
        yield from call_flow_edges(op, callee if isinstance(callee, func.FuncOp) else None)

    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, func.CallOp)
        shadowed = [i for i, a in enumerate(op.arguments) if is_buffer(a) and a in fwd.tan]
        if not fwd.info.any_active(op.results) and not _writes_any(op, shadowed):
            # (a call that only reads shadowed buffers, or an external one like print)
            e.insert(op.clone(value_mapper=fwd.vmap))
            return
        if shadowed:
            # the tangents of what the callee writes would be lost: checked before the
            # shortcut above too, so a call that writes an active buffer and returns
            # nothing is not cloned without its tangent
            raise UnsupportedError(
                f"forward mode of a call of {op.callee} with an active buffer argument "
                "(inline the callee)"
            )
        callee = lookup_callee(op)
        acts = [
            Activity.DUP if fwd.tan.get(a) is not None else Activity.CONST
            for a in op.arguments
        ]
        rets = [
            Activity.DUP if fwd.info.is_active(r) else Activity.CONST for r in op.results
        ]
        sig = DerivativeSignature(tuple(acts), tuple(rets), fwd.width, "forward")
        name = fwd.factory.derivative(callee, sig)
        operands: list[SSAValue] = []
        for a, act in zip(op.arguments, acts):
            operands.append(fwd.vmap.get(a, a))
            if act is Activity.DUP:
                operands += fwd.tan[a]
        types = sig.result_types([a.type for a in op.arguments], [r.type for r in op.results])
        call = e.insert(func.CallOp(name, operands, types))
        k, w = 0, fwd.width
        for r, act in zip(op.results, rets):
            fwd.vmap[r] = call.res[k]
            k += 1
            if act is Activity.DUP:
                fwd.tan[r] = tuple(call.res[k : k + w])
                k += w

    def reverse(self, rev: Any, ctx: Any, op: Operation) -> None:
        assert isinstance(op, func.CallOp)
        if any(is_buffer(a) and rev.info.is_active(a) for a in op.arguments):
            raise UnsupportedError(
                f"reverse mode of a call of {op.callee} with an active buffer argument "
                "(inline the callee)"
            )
        act_res = [r for r in op.results if rev.info.is_active(r) and r in ctx.adj]
        if not act_res:
            return
        callee = lookup_callee(op)
        acts = [
            Activity.ACTIVE if rev.info.is_active(a) else Activity.CONST
            for a in op.arguments
        ]
        rets = [
            Activity.ACTIVENONEED if r in act_res else Activity.CONSTNONEED
            for r in op.results
        ]
        w = rev.width
        name = rev.factory.derivative(
            callee, DerivativeSignature(tuple(acts), tuple(rets), w, "reverse")
        )
        # the callee's diffe takes width seeds per active result, returns width
        # gradients per active argument (DerivativeSignature's layout)
        operands = [rev.primal(a, ctx) for a in op.arguments]
        operands += [s for r in act_res for s in ctx.adj[r]]
        active_args = [a for a, act in zip(op.arguments, acts) if act is Activity.ACTIVE]
        types = [a.type for a in active_args for _ in range(w)]
        call = ctx.e.insert(func.CallOp(name, operands, types))
        for k, a in enumerate(active_args):
            rev.accumulate(ctx, a, rev.lanes(call.res, k))


FUNC_RULES: dict[type[Operation], CallRule] = {func.CallOp: FuncCallRule()}

#: Calls, with their callee's symbol name and the operands passed to its arguments (the
#: buffer analyses follow them into the callee).
FUNC_CALLS: dict[type[Operation], Callable[[Operation], tuple[str, Sequence[SSAValue]]]] = {
    func.CallOp: lambda op: (op.callee.root_reference.data, op.arguments),  # type: ignore[attr-defined]
}

register(FUNC_RULES)


_IN_PROGRESS = threading.local()


def call_flow_edges(call: Operation, callee: func.FuncOp | None) -> Iterator[Edge]:
    """The differentiable edges of a call: from each operand to each result and to each
    buffer operand that the callee's own value flow connects it to (its body analysed
    like the caller's), so that ``(x, y) -> (f(x), 2.0 * y)`` does not make ``y``'s
    result depend on ``x``.  Every operand flows to every result and every buffer
    operand when the body is not available, calls a function without a body (a host
    function: nothing is known of it), or is being analysed already (recursion)."""
    operands, results = list(call.operands), list(call.results)
    busy: set[str] = getattr(_IN_PROGRESS, "names", None) or set()
    _IN_PROGRESS.names = busy
    opaque = callee is None or not callee.body.blocks or callee.sym_name.data in busy
    if not opaque:
        assert callee is not None
        opaque = any(_calls_declaration(o) for o in callee.walk())
    if opaque:
        buffers = [b for b in operands if isinstance(b.type, MemRefType)]
        for a in operands:
            for r in [*results, *buffers]:
                if r is not a:
                    yield a, r
        return
    assert callee is not None
    name = callee.sym_name.data
    from isozyme.compiler.analysis.activity import flow_graph, reach  # noqa: PLC0415

    busy.add(name)
    try:
        succ, _, ret_op = flow_graph(callee)
    finally:
        busy.discard(name)
    args = callee.body.block.args
    rets = list(ret_op.operands) if ret_op is not None else []
    for i, a in enumerate(args):
        reached = reach([a], succ)
        for j, r in enumerate(rets):
            if r in reached and j < len(results):
                yield operands[i], results[j]
        for k, b in enumerate(args):
            if k != i and isinstance(b.type, MemRefType) and b in reached:
                yield operands[i], operands[k]


def _calls_declaration(op: Operation) -> bool:
    """Whether ``op`` is a call (:data:`FUNC_CALLS`) of a function declared without a
    body (a host function)."""
    call = FUNC_CALLS.get(type(op))
    if call is None:
        return False
    from xdsl.traits import SymbolTable  # noqa: PLC0415

    callee = SymbolTable.lookup_symbol(op, call(op)[0])
    return not isinstance(callee, func.FuncOp) or not callee.body.blocks

