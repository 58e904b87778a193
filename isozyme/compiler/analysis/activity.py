"""Activity analysis (Enzyme's): which SSA values and buffers need derivative code.

A value is *varied* if it depends differentiably on an active argument, *useful* if an
active return value depends differentiably on it; it is *active* if both.  Inactive
code gets no derivative code at all.  Only float-typed values can be active: integer
arithmetic, comparisons and float->int casts stop the flow.

The analysis builds the graph of differentiable value flow once (op operands to
results, plus the edges the registered rules give: loop-carried and branch-result edges
of ``scf``, call arguments to results, buffers) and runs two reachability searches on
it.

Memory takes part as buffer nodes: a ``memref`` of floats is a node, a store is an edge
from the stored value to the buffer, a load an edge from the buffer to the loaded value
and a view (``memref.cast``/``memref.subview``) an edge each way.  Duplicated buffers
are inputs *and* outputs (their shadows carry seeds in and derivatives out).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from xdsl.dialects import func
from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Attribute, Operation, SSAValue

from isozyme.compiler.ad_rules import CustomRule
from isozyme.compiler.ad_rules.registry import InactiveRule, OpRule, ZeroRule, lookup
from isozyme.compiler.emitter import is_float
from isozyme.errors import AnnotationError

Edge = tuple[SSAValue, SSAValue]


def is_differentiable_type(t: Attribute) -> bool:
    """Floats, and buffers (memrefs) of floats."""
    if isinstance(t, MemRefType):
        return is_float(t.element_type)
    return is_float(t)


def value_flow_edges(op: Operation) -> Iterator[Edge]:
    """The differentiable (source -> destination) value edges that ``op`` creates: those
    its registered rule gives (buffer ops, control flow, calls), none for ops without
    derivative, operands to results for scalar ops."""
    rule = lookup(op)
    if isinstance(rule, OpRule):
        yield from rule.flow_edges(op)
        return
    if isinstance(rule, (ZeroRule, InactiveRule)):
        return
    if op.regions:
        # a region op without a rule (scf.execute_region...): every value it reads may
        # reach every result, so that AD refuses it when active instead of taking its
        # results as constants
        for a in _values_read(op):
            for r in op.results:
                yield a, r
        return
    if rule is None and not any(is_float(r.type) for r in op.results):
        return
    operands = op.operands
    if isinstance(rule, CustomRule) and rule.flow_operands is not None:
        operands = [op.operands[i] for i in rule.flow_operands]
    for a in operands:
        for r in op.results:
            yield a, r


def _values_read(op: Operation) -> list[SSAValue]:
    """The operands of ``op`` and of the ops nested in it that are defined outside it."""
    inside: set[SSAValue] = set()
    for o in op.walk():
        inside.update(o.results)
        for region in o.regions:
            for block in region.blocks:
                inside.update(block.args)
    seen: dict[SSAValue, None] = {}
    for o in op.walk():
        for v in o.operands:
            if v not in inside:
                seen.setdefault(v)
    return list(seen)


def check_const_buffers(fn: func.FuncOp, info: "ActivityInfo", shadowed: Iterable[int]) -> None:
    """Refuse Const buffer arguments that receive active values (Enzyme refuses too):
    their derivative would have nowhere to go."""
    shadowed = set(shadowed)
    for i, arg in enumerate(fn.body.block.args):
        if i not in shadowed and isinstance(arg.type, MemRefType) and info.is_active(arg):
            raise AnnotationError(
                f"argument {i} of {fn.sym_name.data} is a Const array, but the function "
                "stores values that depend on active inputs into it (or selects "
                "between it and an active array, so that its memory may hold them); "
                "pass it as Duplicated(x, dx)"
            )


class ActivityInfo:
    """The result of :func:`analyze_activity` for one function."""

    def __init__(self, varied: set[SSAValue], useful: set[SSAValue]):
        self.varied = varied
        self.useful = useful

    def is_active(self, v: SSAValue) -> bool:
        """True if ``v`` needs a derivative."""
        return v in self.varied and v in self.useful

    def any_active(self, values: Iterable[SSAValue]) -> bool:
        """True if any of ``values`` is active."""
        return any(self.is_active(v) for v in values)


def analyze_activity(
    fn: func.FuncOp,
    active_args: Iterable[int],
    active_returns: Iterable[int],
    memory_outputs: Iterable[int] = (),
) -> ActivityInfo:
    """Run activity analysis on ``fn`` for the given active argument/return indices.

    ``memory_outputs`` are the indices of Duplicated buffer arguments: what is stored
    into them is an output.
    """
    succ, pred, ret_op = flow_graph(fn)
    entry_args = fn.body.block.args
    varied = reach(
        [entry_args[i] for i in active_args if is_differentiable_type(entry_args[i].type)],
        succ,
    )
    seeds: list[SSAValue] = [
        entry_args[i] for i in memory_outputs if is_differentiable_type(entry_args[i].type)
    ]
    if ret_op is not None:
        seeds += [
            ret_op.operands[i]
            for i in active_returns
            if is_differentiable_type(ret_op.operands[i].type)
        ]
    useful = reach(seeds, pred)
    return ActivityInfo(varied, useful)


def flow_graph(
    fn: func.FuncOp,
) -> tuple[dict[SSAValue, list[SSAValue]], dict[SSAValue, list[SSAValue]], func.ReturnOp | None]:
    """The differentiable value-flow graph of ``fn`` (successors, predecessors) and its
    top-level ``func.return``."""
    succ: dict[SSAValue, list[SSAValue]] = defaultdict(list)
    pred: dict[SSAValue, list[SSAValue]] = defaultdict(list)
    ret_op = None
    for op in fn.walk():
        if isinstance(op, func.ReturnOp) and op.parent_op() is fn:
            ret_op = op
        for src, dst in value_flow_edges(op):
            if is_differentiable_type(src.type) and is_differentiable_type(dst.type):
                succ[src].append(dst)
                pred[dst].append(src)
    return succ, pred, ret_op


def reach(seeds: Iterable[SSAValue], edges: dict[SSAValue, list[SSAValue]]) -> set[SSAValue]:
    seen: set[SSAValue] = set()
    stack = list(seeds)
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        stack.extend(edges.get(v, ()))
    return seen
