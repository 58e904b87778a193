"""Builders for converted control flow: ``if``, ``for ... in range``, ``while``, boolean
operators and conditional expressions.

Each builder runs plain Python control flow when the condition (or range bounds) is a
Python value, and emits ``scf.if`` / ``scf.for`` / ``scf.while`` when it is traced.  The
code converted by :mod:`.ast_transform` calls them with the statement bodies as
functions that take and return the variables they assign (the *state*).
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable, Sequence
from typing import Any

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import i1, i64
from xdsl.ir import Attribute, Block, Operation, Region

from .context import current_builder
from .aliasing import TRAPPING_OPS
from .carried_arrays import merge_branch_arrays
from .carried_writes import register
from .late_values import late_parts, late_value
from .loop_state import Carried, named_state
from .diagnostics import trace_error, user_location
from .tracer import (
    UNDEF,
    Tracer,
    Undefined,
    as_tracer,
    cast,
    check_defined,
    constant,
    emit,
    emit1,
    index,
    is_bool_type,
    is_float_type,
    is_array_value,
    is_number,
    join_types,
    lower_bound,
    set_lower_bound,
    ssa,
    to_bool,
    type_and_strength,
)

State = tuple[Any, ...]

# --------------------------------------------------------------------------- helpers


def ld(thunk: Callable[[], Any]) -> Any:
    """Read a variable through ``thunk`` (``lambda: x``); ``UNDEF`` if it is unbound."""
    try:
        return thunk()
    except NameError:  # includes UnboundLocalError
        return UNDEF


def ret(value: Any) -> Any:
    """A ``return`` of the user's code: fail here if it returns an undefined variable."""
    values = value if type(value) is tuple else (value,)
    check_defined(*values)
    for v in values:
        if isinstance(v, Tracer):
            ssa(v)  # fails here if the value escaped its loop or branch
            if is_array_value(v):
                current_builder().array_return_at = user_location()
    return value


def _undefined(v: object) -> bool:
    return isinstance(v, Undefined)


def _line() -> int:
    return user_location()[1]


def _run_in(block: Block, fn: Callable[[], Any]) -> Any:
    with current_builder().at(block):
        return fn()


def _yield(block: Block, values: Sequence[Tracer], terminator: type = scf.YieldOp) -> None:
    from .buffer_ownership import free_allocs  # noqa: PLC0415 (import cycle)

    with current_builder().at(block):
        free_allocs(block)  # arrays allocated in a loop body or branch die at its end
        block.add_op(terminator(*[ssa(v) for v in values]))


def _discard(*blocks: Block) -> None:
    for b in blocks:
        b.erase(safe_erase=False)


def _bool_value(c: object) -> Tracer:
    return to_bool(c) if isinstance(c, Tracer) else constant(bool(c), i1)


# --------------------------------------------------------------------------- merging


def _late_pair(value: Any, name: str, other: Any) -> list[Tracer]:
    """A branch's value of a late variable (see late_values.py) and its "assigned"
    flag, in the type both branches give it."""
    parts = late_parts(value, name)
    raw = Tracer(parts[0]) if parts else value
    other_parts = late_parts(other, name)
    other_raw = Tracer(other_parts[0]) if other_parts else other
    type_ = join_types(type_and_strength(raw), type_and_strength(other_raw))
    flag = Tracer(parts[1]) if parts else constant(True, i1)
    return [as_tracer(raw, type_), flag]


def _merge(
    cond: Tracer,
    then_block: Block,
    then_vals: Sequence[Any],
    else_block: Block,
    else_vals: Sequence[Any],
    labels: Sequence[str],
    undefined_ok: bool,
) -> list[Any]:
    """Emit ``scf.if`` over the two filled blocks, yielding the values that differ.

    Values identical in both branches (the same object) pass through as they are;
    numbers and tracers are unified to one type and become results; a value undefined
    in a branch gives an :class:`Undefined` (``undefined_ok``) or an error.
    """
    line = _line()
    where = f"an `if` on a traced condition (line {line})"
    out: list[Any] = [None] * len(labels)
    yielded: list[tuple[int, Attribute]] = []
    then_yield: list[Tracer] = []
    else_yield: list[Tracer] = []
    buffers: list[tuple[Any, str, list[Any]]] = []  # (buffer, name, copies) to register
    late_results: list[tuple[int, str]] = []  # (label, why) of merged late variables
    originals: list[tuple[Any, str]] = []  # arrays copied into buffers others may see
    for k, (label, t, e) in enumerate(zip(labels, then_vals, else_vals)):
        late = late_parts(t, label) or late_parts(e, label)
        if t is e:
            out[k] = t
        elif late is not None and not (is_array_value(t) or is_array_value(e)) \
                and not (_undefined(t) or _undefined(e)):
            # a variable first assigned in a loop, assigned in one branch only: its
            # value and its "assigned" flag are merged, passing it on is not a read
            then_yield.extend(_run_in(then_block, lambda t=t: _late_pair(t, label, e)))
            else_yield.extend(_run_in(else_block, lambda e=e: _late_pair(e, label, t)))
            late_results.append((k, late[2]))
            yielded.append((k, then_yield[-2].type))
            yielded.append((-1, i1))
        elif late is not None:
            raise trace_error(
                f"array variable '{label}' first assigned inside a traced loop and "
                f"assigned in one branch of {where}",
                "assign it before the loop, or in both branches",
            )
        elif is_array_value(t) and is_array_value(e):
            others = [v for j, v in enumerate([*then_vals, *else_vals])
                      if j % len(labels) != k]  # what the other names hold
            buffer, shared, copies, seen = merge_branch_arrays(
                label, t, e, then_block, else_block, where, others)
            out[k] = buffer
            if shared:
                buffers.append((buffer, label, copies))
            originals.extend((root, label) for root in seen)
        elif (is_array_value(t) or is_array_value(e)) and not (_undefined(t) or _undefined(e)):
            raise trace_error(
                f"variable '{label}' in {where}",
                "one branch gives it an array and the other a "
                f"{type(e if is_array_value(t) else t).__name__}; a traced `if` cannot "
                "choose between them at run time",
            )
        elif _undefined(t) or _undefined(e):
            if not undefined_ok:
                raise (t if _undefined(t) else e).error()  # type: ignore[union-attr]
            out[k] = Undefined(
                label,
                f"it is assigned in only one branch of the `if` on a traced condition "
                f"at line {line}; assign it before the `if` or in both branches",
            )
        elif (isinstance(t, Tracer) or is_number(t)) and (isinstance(e, Tracer) or is_number(e)):
            if not isinstance(t, Tracer) and not isinstance(e, Tracer) and type(t) is type(e) \
                    and t == e:
                out[k] = t
                continue
            type_ = join_types(type_and_strength(t), type_and_strength(e))
            then_yield.append(_run_in(then_block, lambda t=t: as_tracer(t, type_)))
            else_yield.append(_run_in(else_block, lambda e=e: as_tracer(e, type_)))
            yielded.append((k, type_))
        else:
            raise trace_error(
                f"variable '{label}' in an `if` on a traced condition",
                f"its branches give it different non-numeric values "
                f"({type(t).__name__} and {type(e).__name__})",
            )
    _yield(then_block, then_yield)
    _yield(else_block, else_yield)
    op = emit(scf.IfOp(ssa(cond), [t for _, t in yielded], Region(then_block), Region(else_block)))
    for (k, _), r in zip(yielded, op.results):
        if k >= 0:
            out[k] = Tracer(r)
    late_flags = [r for (k, _), r in zip(yielded, op.results) if k == -1]
    for (k, why), flag in zip(late_results, late_flags):
        out[k] = late_value(out[k].value, flag, labels[k], why)
    for buffer, label, copies in buffers:
        register(buffer, label, where, op, copies)
    for root, label in originals:
        register(root, label, where, op, [], original=True)
    return out


# --------------------------------------------------------------------------- if


def if_stmt(
    cond: Any, then_fn: Callable[..., State], else_fn: Callable[..., State],
    state: State, names: Sequence[str],
) -> State:
    """An ``if`` statement: run one branch (Python condition) or emit ``scf.if``.

    Returns the new values of ``names``.  After a traced ``if``, a name assigned in only
    one branch and not before is :class:`Undefined`.
    """
    check_defined(cond)
    if not isinstance(cond, Tracer):
        out = then_fn(*state) if cond else else_fn(*state)
        return tuple(
            Undefined(n, "it is not assigned on the path the code took") if v is UNDEF else v
            for n, v in zip(names, out)
        )
    c = to_bool(cond)
    then_block, else_block = Block(), Block()
    named = named_state(state, names, "`if` on a traced condition")
    then_out = _run_in(then_block, lambda: then_fn(*named))
    else_out = _run_in(else_block, lambda: else_fn(*named))
    return tuple(_merge(c, then_block, then_out, else_block, else_out, names, undefined_ok=True))


def _flatten_return(value: Any) -> tuple[list[Any], Any]:
    if type(value) is tuple:
        return list(value), ("tuple", len(value))
    if value is None:
        return [], None
    return [value], "scalar"


def if_return(
    cond: Any, then_fn: Callable[..., Any], else_fn: Callable[..., Any],
    state: State, names: Sequence[str],
) -> Any:
    """An ``if`` whose branches all end in ``return``; returns the function's value.

    With a traced condition both branches are traced and must return the same structure
    (a value, a tuple of the same length, or None).
    """
    check_defined(cond)
    if not isinstance(cond, Tracer):
        return then_fn(*state) if cond else else_fn(*state)
    c = to_bool(cond)
    then_block, else_block = Block(), Block()
    then_ret = _run_in(then_block, lambda: then_fn(*state))
    else_ret = _run_in(else_block, lambda: else_fn(*state))
    then_leaves, then_def = _flatten_return(then_ret)
    else_leaves, else_def = _flatten_return(else_ret)
    if then_def != else_def:
        raise trace_error(
            "an `if` on a traced condition whose branches return different shapes",
            f"one returns {_describe(then_ret)}, the other {_describe(else_ret)}",
        )
    labels = [f"return value {k}" for k in range(len(then_leaves))]
    merged = _merge(c, then_block, then_leaves, else_block, else_leaves, labels, undefined_ok=False)
    if then_def is None:
        return None
    if then_def == "scalar":
        return merged[0]
    return tuple(merged)


def _describe(v: Any) -> str:
    if v is None:
        return "None"
    if type(v) is tuple:
        return f"a tuple of {len(v)}"
    return "a single value"


def ifexp(cond: Any, then_thunk: Callable[[], Any], else_thunk: Callable[[], Any]) -> Any:
    """``a if cond else b``: Python selection, or ``scf.if`` with one result."""
    check_defined(cond)
    if not isinstance(cond, Tracer):
        return then_thunk() if cond else else_thunk()
    c = to_bool(cond)
    then_block, else_block = Block(), Block()
    t = _run_in(then_block, then_thunk)
    e = _run_in(else_block, else_thunk)
    return _merge(c, then_block, [t], else_block, [e], ["conditional expression"], False)[0]


# --------------------------------------------------------------------------- and/or/not


def and_(*thunks: Callable[[], Any]) -> Any:
    """``a and b and ...``: Python semantics on Python values; with a traced operand,
    the ``i1`` conjunction (``arith.andi``) of the operands' truth values."""
    return _bool_chain(thunks, is_and=True)


def or_(*thunks: Callable[[], Any]) -> Any:
    """``a or b or ...``: like :func:`and_` with ``arith.ori``."""
    return _bool_chain(thunks, is_and=False)


def _speculatable(op: Operation) -> bool:
    """Whether ``op`` may run where Python's short-circuit would not run it: pure
    arithmetic that cannot trap (no loads, checks, calls or divisions)."""
    return (op.name.startswith(("arith.", "math.")) and op.name not in TRAPPING_OPS) \
        or op.name == "memref.dim"


def _bool_chain(thunks: Sequence[Callable[[], Any]], is_and: bool) -> Any:
    """Python's short-circuit: operands run left to right while they decide nothing;
    once one is traced, the rest are traced into a block that runs only where they
    are needed (``a and b``: ``b`` where ``a`` holds; an ``scf.if``), so that
    ``k < n and x[k] > 0`` never reads ``x[n]``; when that block is only pure
    arithmetic it runs unconditionally and is combined with ``arith.andi``/``ori``."""
    value: Any = None
    for i, thunk in enumerate(thunks):
        value = thunk()
        check_defined(value)
        if isinstance(value, Tracer):
            acc = to_bool(value)
            rest = thunks[i + 1:]
            if not rest:
                return acc
            block = Block()
            rest_value = _run_in(block, lambda: _bool_value(_bool_chain(rest, is_and)))
            if all(_speculatable(op) for op in block.walk()):
                fb = current_builder()
                for op in list(block.ops):
                    op.detach()
                    fb.insert(op)
                cls = arith.AndIOp if is_and else arith.OrIOp
                return emit1(cls(ssa(acc), ssa(rest_value)))
            decided = Block()
            decided_value = _run_in(decided, lambda: constant(not is_and, i1))
            _yield(block, [rest_value])
            _yield(decided, [decided_value])
            then_block, else_block = (block, decided) if is_and else (decided, block)
            op = emit(scf.IfOp(ssa(acc), [i1], Region(then_block), Region(else_block)))
            return Tracer(op.results[0])
        if bool(value) != is_and:  # decides the result: falsy for `and`, truthy for `or`
            return value
    return value


def not_(value: Any) -> Any:
    """``not value``: ``arith.xori`` with ``true`` on a traced value."""
    check_defined(value)
    if isinstance(value, Tracer):
        return emit1(arith.XOrIOp(ssa(to_bool(value)), ssa(constant(True, i1))))
    return not value


_CMP = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne, "is": operator.is_, "is not": operator.is_not,
    "in": lambda a, b: a in b, "not in": lambda a, b: a not in b,
}


def compare_chain(left: Callable[[], Any], ops: Sequence[str], *rights: Callable[[], Any]) -> Any:
    """``a < b < c``: each operand evaluated once; traced comparisons are and-ed."""
    lhs = left()
    acc: Tracer | None = None
    result: Any = True
    for op, right in zip(ops, rights):
        rhs = right()
        result = _CMP[op](lhs, rhs)
        if isinstance(result, Tracer):
            acc = result if acc is None else emit1(arith.AndIOp(ssa(acc), ssa(result)))
        elif not result:
            return result if acc is None else False
        lhs = rhs
    return result if acc is None else acc


# --------------------------------------------------------------------------- loops


_MAX_RETRACES = 8


def trip_count(start: Any, stop: Any, step: Any) -> Tracer:
    """``len(range(start, stop, step))`` as an ``i64`` tracer."""
    diff = stop if (not isinstance(start, Tracer) and start == 0) else stop - start
    if not isinstance(step, Tracer):
        if step == 1:
            n = diff
        elif step > 0:
            n = _divsi(diff + (step - 1), step)
        else:
            n = _divsi((start - stop) + (-step - 1), -step)
    else:
        n = emit1(arith.CeilDivSIOp(ssa(as_tracer(diff, i64)), ssa(_nonzero_step(step))))
    known = lower_bound(n)
    n = as_tracer(n, i64)
    if known is not None and known >= 0:
        return n  # e.g. range(len(x)): no clamp needed
    return emit1(arith.MaxSIOp(ssa(n), ssa(constant(0, i64))))


_trip_count = trip_count  # the name arrays.py imports


def _nonzero_step(step: Tracer) -> Tracer:
    """A traced step, checked at run time to be non-zero as Python's ``range`` does
    (``ShapeError``, a ``ValueError``: "range() arg 3 must not be zero"), and replaced
    by 1 when it is zero so that the trip count's division never divides by zero (a
    SIGFPE, even where the division would be evaluated before the check)."""
    from .runtime_checks import require  # noqa: PLC0415

    zero = constant(0, step.type)
    nonzero = emit1(arith.CmpiOp(ssa(step), ssa(zero), "ne"))
    require(nonzero, "shape", "range() arg 3 must not be zero")
    return emit1(arith.SelectOp(ssa(nonzero), ssa(step), ssa(constant(1, step.type))))


def _divsi(a: Any, b: int) -> Tracer:
    return emit1(arith.DivSIOp(ssa(as_tracer(a, i64)), ssa(constant(b, i64))))


def range_operand(v: Any, what: str) -> Any:
    """A bound of ``range``/``prange``: an integer tracer (bools widened) or a Python int."""
    check_defined(v)
    if isinstance(v, Tracer):
        if is_float_type(v.type):
            raise trace_error("range() with a float argument",
                              f"the {what} is a traced float; use int(...)")
        return cast(v, i64) if is_bool_type(v.type) else v
    return operator.index(v)


def for_range(
    range_fn: Any, args: tuple[Any, ...], body_fn: Callable[..., State],
    state: State, names: Sequence[str], live_after: Sequence[str] = (),
) -> State:
    """``for i in range(*args)``: a Python loop when the bounds are Python ints (and
    ``range`` is the builtin), else one ``scf.for`` whose trip count is computed in IR.

    ``state``/``names`` start with the loop variable, then the names the body assigns.
    """
    check_defined(*args)
    if range_fn is not builtins.range or not any(isinstance(a, Tracer) for a in args):
        current = tuple(state)
        for value in range_fn(*args):
            current = tuple(body_fn(value, *current[1:]))
        return current
    if len(args) == 1:
        start, stop, step = 0, args[0], 1
    elif len(args) == 2:
        start, stop, step = args[0], args[1], 1
    else:
        start, stop, step = args
    start = range_operand(start, "start")
    stop = range_operand(stop, "stop")
    step = range_operand(step, "step")
    if not isinstance(step, Tracer) and step == 0:
        raise ValueError("range() arg 3 must not be zero")

    carried = Carried(names[1:], tuple(state[1:]), "`for` loop over a traced range",
                       live_after)
    for _ in range(_MAX_RETRACES):
        carried.arrays.prepare()
        block = Block(arg_types=[index, *carried.types])

        def body(block: Block = block) -> tuple[bool, list[Tracer]]:
            k = cast(Tracer(block.args[0]), i64)
            set_lower_bound(k, 0)
            i = k
            if isinstance(step, Tracer) or step != 1:
                i = i * step
            if isinstance(start, Tracer) or start != 0:
                i = start + i
            start_lb, step_lb = lower_bound(start), lower_bound(step)
            if start_lb is not None and step_lb is not None and step_lb > 0:
                set_lower_bound(i, start_lb)  # an index of an increasing range
            out = tuple(body_fn(i, *carried.inputs(block.args[1:])))[1:]
            if carried.check(out):
                return True, []
            carried.arrays.store(out, block)
            return False, carried.yields(out)

        retrace, yields = _run_in(block, body)
        if retrace:
            _discard(block)
            carried.arrays.undo()
            continue
        _yield(block, yields)
        break
    else:  # pragma: no cover - types only widen, so this cannot loop forever
        raise trace_error("a `for` loop", "loop-carried types did not settle")

    n = trip_count(start, stop, step)
    owner = n.value.owner
    if isinstance(owner, arith.IndexCastOp) and owner.input.type == index:
        upper = Tracer(owner.input)  # range(len(x)): the memref.dim itself
    else:
        upper = emit1(arith.IndexCastOp(ssa(n), index))
    lower, one = constant(0, index), constant(1, index)
    inits = carried.init_values()
    op = emit(scf.ForOp(ssa(lower), ssa(upper), ssa(one), [ssa(v) for v in inits], Region(block)))
    carried.arrays.finish(op)
    after = carried.results(op.results, "first assigned inside")
    target = Undefined(
        names[0], f"it is the variable of the `for` loop over a traced range at line "
        f"{carried.line}, which has no value after the loop",
    )
    return (target, *after)


def while_(
    cond_fn: Callable[..., Any], body_fn: Callable[..., State],
    state: State, names: Sequence[str], live_after: Sequence[str] = (),
) -> State:
    """``while cond: body``: Python iterations while the condition is a Python value;
    once it is traced, one ``scf.while`` for the remaining iterations."""
    current = tuple(state)
    fb = current_builder()
    while True:
        scratch = Block()
        cond = _run_in(scratch, lambda: cond_fn(*current))
        check_defined(cond)
        if isinstance(cond, Tracer):
            _discard(scratch)
            break
        for op in list(scratch.ops):  # keep ops a Python-valued condition emitted
            op.detach()
            fb.insert(op)
        if not cond:
            return current
        current = tuple(body_fn(*current))

    carried = Carried(names, current, "`while` loop on a traced condition", live_after)
    for _ in range(_MAX_RETRACES):
        carried.arrays.prepare()
        before = Block(arg_types=carried.types)
        after = Block(arg_types=carried.types)

        def before_body() -> None:
            from .buffer_ownership import free_allocs  # noqa: PLC0415 (import cycle)

            c = cond_fn(*carried.inputs(before.args))
            check_defined(c)
            cv = ssa(_bool_value(c))
            free_allocs(before)
            before.add_op(scf.ConditionOp(cv, *before.args))

        def after_body() -> tuple[bool, list[Tracer]]:
            out = tuple(body_fn(*carried.inputs(after.args)))
            if carried.check(out):
                return True, []
            carried.arrays.store(out, after)
            return False, carried.yields(out)

        _run_in(before, before_body)
        retrace, yields = _run_in(after, after_body)
        if retrace:
            _discard(before, after)
            carried.arrays.undo()
            continue
        _yield(after, yields)
        break
    else:  # pragma: no cover
        raise trace_error("a `while` loop", "loop-carried types did not settle")

    inits = carried.init_values()
    op = emit(scf.WhileOp([ssa(v) for v in inits], carried.types, Region(before), Region(after)))
    carried.arrays.finish(op)
    return carried.results(op.results, "first assigned inside")
