"""Parallel loops: ``isozyme.prange`` and its builder, ``for i in prange(...)`` ->
``scf.parallel``.

:func:`prange` is ``range`` for Python: called outside traced code (or iterated by
plain Python) it returns ``range(*args)``, so a function using it runs unchanged
without isozyme. :mod:`.ast_transform` rewrites ``for i in prange(...)`` (``prange``,
``isozyme.prange``, ``iz.prange``: any name that resolves to this function) into a
body function and a call of :func:`for_prange`, which emits one ``scf.parallel``.

The contract of a parallel loop (docs/prange.md):

* iterations may run in any order and at the same time;
* no two iterations write the same array element, except by ``+=``/``-=``
  (accumulation, :mod:`.accumulation`): ``accumulate`` emits ``x[k] += v`` (and ``augment`` a
  whole-array ``y += v``) as ``memref.atomic_rmw addf`` (``addi``) unless no two
  iterations can update one element (every accumulation into one array, through its
  views, at the same index tuple, one index of which follows each loop variable, up to
  ``start + k * step`` and casts), then a plain load/add/store; in a helper function
  called from a body they stay atomic;
* a scalar defined before the loop and updated in the body only by ``s += e``,
  ``s = s + e``, ``s -= e``, ``s *= e``, ``s = max(s, e)`` or ``s = min(s, e)`` is a
  *reduction* (``scf.reduce``): after the loop it holds the initial value combined with
  every iteration's contribution (in an unspecified order);
* any other variable assigned in the body is private to one iteration: reading it
  before it is assigned in the body (a value carried from another iteration) or after
  the loop is a :class:`~isozyme.errors.TraceError` naming the variable and the line;
* ``break``, ``continue``, ``return``, ``yield`` and ``else:`` are refused
  (:class:`~isozyme.errors.UnsupportedError`).

Each reduction's body value starts at the identity of its operator (``-0.0``/``0`` for
``+``, ``1`` for ``*``, ``-inf``/``inf`` or the integer extremes for ``max``/``min``), so
the body computes the iteration's contribution, which ``scf.reduce`` combines into the
accumulator with ``arith.addf``/``addi``, ``mulf``/``muli``, ``maximumf``/``maxsi`` or
``minimumf``/``minsi`` (``maximumf`` propagates NaN, as ``max`` on traced floats does).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Sequence
from typing import Any

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import i64
from xdsl.ir import Attribute, Block, Operation, Region

from isozyme.errors import UnsupportedError

from .context import current_builder, tracing
from .accumulation import open_loops, pending_accumulations, settle
from .control_flow import range_operand, trip_count
from .diagnostics import format_location, source_line, trace_error, user_location
from .tracer import (
    Tracer,
    Undefined,
    as_tracer,
    cast,
    check_defined,
    constant,
    emit,
    emit1,
    index,
    is_array_value,
    is_float_type,
    is_number,
    join_types,
    lower_bound,
    set_lower_bound,
    ssa,
    type_and_strength,
)

State = tuple[Any, ...]

#: Reduction kinds the AST transform recognises (see :func:`for_prange`).
REDUCTION_KINDS = ("add", "mul", "max", "min")

_MAX_RETRACES = 8


def prange(*args: Any) -> range:
    """A parallel ``range``: ``prange(stop)``, ``prange(start, stop[, step])``.

    In a traced function, ``for i in prange(...)`` becomes one ``scf.parallel`` loop:
    its iterations may run in any order and in parallel (a GPU kernel on the ``cuda``
    target). No two iterations may write the same array element unless by ``+=``
    (accumulation). A scalar defined before the loop and updated only by ``s += e``,
    ``s -= e``, ``s = s + e``, ``s *= e``, ``s = max(s, e)`` or ``s = min(s, e)`` is a
    reduction; any other variable assigned in the body belongs to one iteration and
    has no value after the loop. ``break``, ``continue`` and ``return`` are refused.
    See ``docs/prange.md``.

    Called outside traced code it is ``range(*args)``, so the function also runs as
    plain Python (sequentially).
    """
    if any(isinstance(a, Tracer) for a in args):
        raise trace_error(
            "prange() with a traced bound outside a `for` statement",
            "prange is a loop: use it as `for i in prange(...):` directly (it cannot be "
            "stored, passed or iterated by other means)",
        )
    return builtins.range(*args)


def prange_unsupported(prange_fn: Any, construct: str) -> bool:
    """Raise :class:`UnsupportedError` naming ``construct`` (e.g. "a `break`") when
    ``prange_fn`` is :func:`prange`; the AST transform calls it in place of a
    ``prange`` loop it cannot convert. Returns True (run the loop as plain Python)
    when the name turned out to be something else."""
    if prange_fn is not prange:
        return True
    filename, line = user_location()
    message = (
        f"{format_location(filename, line)}: cannot trace {construct} in a `prange` loop: "
        "the iterations of a parallel loop run in any order and at the same time, so it "
        "has no early exit and no `else:`; use `for ... in range(...)` for a sequential "
        "loop"
    )
    text = source_line(filename, line)
    if text:
        message += f"\n    {text}"
    raise UnsupportedError(message)


# --------------------------------------------------------------------------- reductions


def _identity(kind: str, type_: Attribute) -> float | int:
    """The identity of reduction ``kind`` in ``type_`` (a Python number)."""
    is_float = is_float_type(type_)
    if kind == "add":
        return -0.0 if is_float else 0  # -0.0 + x is x, for x = -0.0 too
    if kind == "mul":
        return 1.0 if is_float else 1
    if kind == "max":
        return -math.inf if is_float else -(2**63)
    return math.inf if is_float else 2**63 - 1


def _combiner(kind: str, type_: Attribute) -> type[Operation]:
    """The ``arith`` op that combines two values of reduction ``kind`` in ``type_``."""
    if is_float_type(type_):
        return {"add": arith.AddfOp, "mul": arith.MulfOp, "max": arith.MaximumfOp,
                "min": arith.MinimumfOp}[kind]
    return {"add": arith.AddiOp, "mul": arith.MuliOp, "max": arith.MaxSIOp,
            "min": arith.MinSIOp}[kind]


def _reduce_region(kind: str, type_: Attribute) -> Region:
    """``^bb0(%acc, %x): %r = <combiner> %acc, %x; scf.reduce.return %r``."""
    block = Block(arg_types=[type_, type_])
    op = _combiner(kind, type_)(block.args[0], block.args[1])
    block.add_ops([op, scf.ReduceReturnOp(op.results[0])])
    return Region(block)


def _strip_identity(value: Tracer, kind: str) -> Tracer:
    """``x`` for ``identity <op> x`` (``-0.0 + x``, ``1.0 * x``, ``maximumf(-inf, x)``:
    exactly ``x``, NaN included) when nothing else uses the combination, which is then
    erased: the body's contribution without the identity the body started from."""
    op = value.value.owner
    if not isinstance(op, Operation) or type(op) is not _combiner(kind, value.type) \
            or value.value.first_use is not None:
        return value
    for k, operand in enumerate(op.operands):
        const = operand.owner
        if not isinstance(const, arith.ConstantOp) or not operand.has_one_use():
            continue
        attr = const.value
        if attr.value.data == _identity(kind, value.type) and (  # type: ignore[attr-defined]
                not is_float_type(value.type)
                or math.copysign(1.0, attr.value.data) == math.copysign(  # type: ignore[attr-defined]
                    1.0, _identity(kind, value.type))):
            other = op.operands[1 - k]
            op.detach()
            op.erase()
            const.detach()
            const.erase()
            return Tracer(other)
    return value


# --------------------------------------------------------------------------- the loop


class _Body:
    """The variables of a ``prange`` body: reductions, arrays and private names."""

    def __init__(self, names: Sequence[str], state: State, kinds: Sequence[str | None],
                 line: int, whys: Sequence[str | None] = ()) -> None:
        self.names = list(names)
        self.initial = list(state)
        self.line = line
        self.out: State = ()  # the body's final state, once traced
        self.kinds = dict(enumerate(kinds))
        # Reductions: position -> (kind, (type, strong)); needs a defined number before.
        self.reductions: dict[int, tuple[str, tuple[Attribute, bool]]] = {}
        for k, (v, kind) in enumerate(zip(state, kinds)):
            if kind is not None and (is_number(v) or (isinstance(v, Tracer)
                                                      and not is_array_value(v))):
                self.reductions[k] = (kind, type_and_strength(v))
        whys = list(whys) + [None] * (len(self.names) - len(whys))
        self.private = {
            k: Undefined(name, self._carried_why(k, whys[k], line))
            for k, name in enumerate(self.names)
            if k not in self.reductions and not is_array_value(state[k])
        }

    def _carried_why(self, k: int, why: str | None, line: int) -> str:
        """Why reading private name ``k`` before the body assigns it is an error: the
        reason the AST transform gave for an update that looks like a reduction but is
        not one (``why``), a reduction update of a name undefined before the loop, or
        a value carried from another iteration."""
        if why is not None:
            return (f"it is not a reduction of the `prange` loop at line {line}: {why}; "
                    "any other variable assigned in the body belongs to one iteration "
                    "and has no value before the body assigns it")
        if k in self.kinds and self.kinds[k] is not None:
            return (f"it is updated as a reduction in the `prange` loop at line {line}, "
                    "so it must be a number defined before the loop (`s = 0.0`)")
        return (f"it is assigned in the body of the `prange` loop at line {line} and "
                "read before that assignment: the iterations of a parallel loop share no "
                "state (a reduction `s += ...`, `s *= ...`, `s = max(s, ...)` needs `s` "
                "defined before the loop and updated only that way)")

    @property
    def slots(self) -> list[int]:
        return sorted(self.reductions)

    @property
    def types(self) -> list[Attribute]:
        return [self.reductions[k][1][0] for k in self.slots]

    def inputs(self) -> list[Any]:
        """The state inside the body: identities, arrays, undefined private names."""
        values = list(self.initial)
        for k, (kind, (type_, _)) in self.reductions.items():
            values[k] = _identity(kind, type_)
        for k, undefined in self.private.items():
            values[k] = undefined
        return values

    def check(self, out: Sequence[Any]) -> bool:
        """Check the body's new state; widen reduction types; True if they changed."""
        changed = False
        for k, (name, before, after) in enumerate(zip(self.names, self.initial, out)):
            if k in self.reductions:
                kind, (type_, strong) = self.reductions[k]
                check_defined(after)
                if not (isinstance(after, Tracer) or is_number(after)) or is_array_value(after):
                    raise trace_error(
                        f"the reduction variable '{name}' of the `prange` loop at line "
                        f"{self.line}",
                        f"it is a number before the loop and a {type(after).__name__} in it",
                    )
                joined = join_types((type_, strong), type_and_strength(after))
                if joined != type_:
                    self.reductions[k] = (kind, (joined, strong or isinstance(after, Tracer)))
                    changed = True
            elif is_array_value(before) and after is not before:
                raise trace_error(
                    f"array variable '{name}' re-bound inside the `prange` loop at line "
                    f"{self.line}",
                    "a parallel loop carries no state: write the array's elements "
                    "(x[i] = ...) instead of re-binding the name",
                )
        return changed

    def contributions(self, out: Sequence[Any]) -> list[Tracer]:
        """Each reduction's value at the end of the body, in its type."""
        return [_strip_identity(as_tracer(out[k], t), self.reductions[k][0])
                for k, t in zip(self.slots, self.types)]

    def init_values(self) -> list[Tracer]:
        """The reductions' values before the loop, in their types."""
        return [as_tracer(self.initial[k], t) for k, t in zip(self.slots, self.types)]

    def results(self, results: Sequence[Any], out: Sequence[Any]) -> State:
        """The state after the loop: reduction results; private names are undefined
        (unless the traced body never assigned them: then they keep their value)."""
        after = list(self.initial)
        for k, r in zip(self.slots, results):
            after[k] = Tracer(r)
        for k, undefined in self.private.items():
            if out[k] is undefined:
                continue  # not assigned on the path the body took
            after[k] = Undefined(
                self.names[k],
                f"it is assigned in the body of the `prange` loop at line {self.line}, "
                "whose iterations run in parallel, so it has no value after the loop; "
                "only reductions (`s += ...`, `s *= ...`, `s = max(s, ...)`, "
                "`s = min(s, ...)` of a number defined before the loop) do",
            )
        return tuple(after)


def _trip_count(start: Any, stop: Any, step: Any) -> Tracer:
    """``len(range(start, stop, step))`` as an ``index`` tracer."""
    n = trip_count(start, stop, step)
    owner = n.value.owner
    if isinstance(owner, arith.IndexCastOp) and owner.input.type == index:
        return Tracer(owner.input)  # prange(len(x)): the memref.dim itself
    return emit1(arith.IndexCastOp(ssa(n), index))


def for_prange(
    prange_fn: Any, args: tuple[Any, ...], body_fn: Callable[..., State],
    state: State, names: Sequence[str], kinds: Sequence[str | None],
    whys: Sequence[str | None] = (),
) -> State:
    """``for i in prange(*args)``: one ``scf.parallel`` over ``0 .. trip count`` with
    ``i = start + k * step``, reductions as ``scf.reduce`` (see the module docstring).

    ``state``/``names`` start with the loop variable, then the names the body assigns;
    ``kinds`` gives, per name after the loop variable, the reduction kind the AST
    transform recognised (``"add"``, ``"mul"``, ``"max"``, ``"min"``) or None, and
    ``whys`` why a name updated like a reduction is not one (or None), for the error
    when the body reads it. When
    ``prange_fn`` is not :func:`prange` (a name the transform could not resolve) or no
    trace is active, the loop runs as Python over ``prange_fn(*args)``.
    """
    check_defined(*args)
    if prange_fn is not prange or not tracing():
        current = tuple(state)
        for value in prange_fn(*args):
            current = tuple(body_fn(value, *current[1:]))
        return current
    if not 1 <= len(args) <= 3:
        raise TypeError(f"prange expected 1 to 3 arguments, got {len(args)}")
    start, stop, step = (0, args[0], 1) if len(args) == 1 else (
        (args[0], args[1], 1) if len(args) == 2 else args)
    start, stop, step = (range_operand(start, "start"), range_operand(stop, "stop"),
                         range_operand(step, "step"))
    if not isinstance(step, Tracer) and step == 0:
        raise ValueError("prange() arg 3 must not be zero")
    line = user_location()[1]
    body = _Body(names[1:], tuple(state[1:]), kinds, line, whys)
    fb = current_builder()
    mark = len(pending_accumulations())  # accumulations of this loop's body come after
    try:
        op = _build(fb, body, start, stop, step, body_fn, mark)
    except BaseException:
        del pending_accumulations()[mark:]
        raise
    if not any(b is fb for b, _ in open_loops()):
        settle(fb)  # the outermost loop of the nest: every accumulation is known
    target = Undefined(
        names[0], f"it is the variable of the `prange` loop at line {line}, which has no "
        "value after the loop",
    )
    return (target, *body.results(op.results, body.out))


def _build(fb: Any, body: _Body, start: Any, stop: Any, step: Any,
           body_fn: Callable[..., State], mark: int) -> scf.ParallelOp:
    """Trace the body (again while reduction types widen) and emit the loop."""
    for _ in range(_MAX_RETRACES):
        block = Block(arg_types=[index])

        def run(block: Block = block) -> tuple[bool, list[Tracer], State]:
            k = cast(Tracer(block.args[0]), i64)
            set_lower_bound(k, 0)
            i = k
            if isinstance(step, Tracer) or step != 1:
                i = i * step
            if isinstance(start, Tracer) or start != 0:
                i = start + i
            start_lb, step_lb = lower_bound(start), lower_bound(step)
            if start_lb is not None and step_lb is not None and step_lb > 0:
                set_lower_bound(i, start_lb)
            open_loops().append((fb, block))
            try:
                out = tuple(body_fn(i, *body.inputs()))[1:]
            finally:
                open_loops().pop()
            if body.check(out):
                return True, [], out
            return False, body.contributions(out), out

        with fb.at(block):
            retrace, contributions, body.out = run()
            if not retrace:
                from .buffer_ownership import free_allocs  # noqa: PLC0415 (import cycle)

                free_allocs(block)  # arrays allocated in the body die at its end
                block.add_op(scf.ReduceOp(
                    [ssa(c) for c in contributions],
                    [_reduce_region(body.reductions[k][0], t)
                     for k, t in zip(body.slots, body.types)],
                ))
        if retrace:
            del pending_accumulations()[mark:]
            block.erase(safe_erase=False)
            continue
        break
    else:  # pragma: no cover - types only widen
        raise trace_error("a `prange` loop", "reduction types did not settle")

    upper = _trip_count(start, stop, step)
    lower, one = constant(0, index), constant(1, index)
    inits = body.init_values()
    op = emit(scf.ParallelOp([ssa(lower)], [ssa(upper)], [ssa(one)], Region(block),
                             [ssa(v) for v in inits]))
    assert isinstance(op, scf.ParallelOp)
    return op


__all__ = ["REDUCTION_KINDS", "for_prange", "prange", "prange_unsupported"]
