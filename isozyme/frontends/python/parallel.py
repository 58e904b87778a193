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
  (accumulation): :func:`accumulate` emits ``x[k] += v`` (and :func:`augment` a
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
import operator
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import IntegerAttr, MemRefType, i64
from xdsl.ir import Attribute, Block, BlockArgument, Operation, Region, SSAValue

from isozyme.errors import UnsupportedError

from .context import current_builder, tracing
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
    is_bool_type,
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


# --------------------------------------------------------------------------- accumulation

#: ``memref.atomic_rmw`` kinds used here, numbered as upstream MLIR's ``AtomicRMWKind``
#: (the full table: ``compiler/lowering/convert_parallel_to_for.ATOMIC_RMW_KIND``; the
#: frontend does not import the compiler).
_ATOMIC_RMW_KIND = {"addf": 0, "addi": 1}

_LOOPS = threading.local()


def _open_loops() -> list[tuple[Any, Block]]:
    """``(builder, body block)`` of the ``prange`` bodies being traced, outermost first."""
    stack = getattr(_LOOPS, "stack", None)
    if stack is None:
        stack = _LOOPS.stack = []
    return stack


def _enclosing_bodies() -> list[Block]:
    """The bodies of the ``prange`` loops around the insertion point of the function
    being traced (a helper traced from a loop body is not inside it)."""
    fb = current_builder()
    return [b for builder, b in _open_loops() if builder is fb and fb.visible(b)]


def _outer_builders() -> list[Any]:
    """The builders of the functions up the call chain with an open ``prange`` body
    other than the one being traced: a helper function traced from a loop body."""
    fb = current_builder()
    out: list[Any] = []
    for builder, _ in _open_loops():
        if builder is not fb and all(builder is not o for o in out):
            out.append(builder)
    return out


def in_parallel_body() -> bool:
    """Whether a ``prange`` body is being traced, in the current function or up the
    call chain (a helper function's accumulations then run in parallel too)."""
    return bool(_open_loops())


def note_atomic_call() -> None:
    """A helper function whose body accumulates with ``memref.atomic_rmw`` is called
    from a ``prange`` body: every open nest keeps its own accumulations atomic (a plain
    read-modify-write racing with the helper's atomic one would lose updates)."""
    seen: list[Any] = []
    for builder, _ in _open_loops():
        if all(builder is not o for o in seen):
            seen.append(builder)
            _pending().append((builder, _Collision()))


def _defined_outside(value: SSAValue, body: Block) -> bool:
    """Whether ``value`` is defined outside ``body`` (not in it nor in a region nested
    in it): the same value in every iteration of ``body``'s loop."""
    block = value.owner if isinstance(value.owner, Block) else value.owner.parent_block()
    while block is not None:
        if block is body:
            return False
        parent = block.parent_op()
        block = parent.parent_block() if parent is not None else None
    return True


def _invariant(value: SSAValue, body: Block) -> bool:
    """Whether ``value`` is the same in every iteration of ``body``'s loop: a constant or
    a value defined outside the body."""
    return isinstance(value.owner, arith.ConstantOp) or _defined_outside(value, body)


def _follows_iv(value: SSAValue, body: Block) -> bool:
    """Whether ``value`` is an injective function of ``body``'s induction variable:
    the variable itself, through casts, ``+ c``, ``- c``, ``c - `` and ``* c`` (``c``
    a constant, non-zero for ``*``, or, for ``+``/``-``, defined outside the loop)."""
    while True:
        if isinstance(value, BlockArgument):
            return value.owner is body and value.index == 0
        op = value.owner
        if isinstance(op, arith.IndexCastOp):
            value = op.input
        elif isinstance(op, (arith.AddiOp, arith.SubiOp)):
            a, b = op.lhs, op.rhs
            if _invariant(b, body):
                value = a
            elif _invariant(a, body):
                value = b
            else:
                return False
        elif isinstance(op, arith.MuliOp):
            a, b = op.lhs, op.rhs
            for x, c in ((a, b), (b, a)):
                if isinstance(c.owner, arith.ConstantOp) \
                        and isinstance(c.owner.value, IntegerAttr) and c.owner.value.value.data:
                    value = x
                    break
            else:
                return False
        else:
            return False


def _private(root: SSAValue, bodies: Sequence[Block]) -> bool:
    """Whether buffer ``root`` belongs to one iteration: allocated in the outermost
    ``prange`` body of the function being traced or, in a helper function traced from
    a caller's body (no ``bodies`` of its own), anywhere in the helper (per call)."""
    if not isinstance(root.owner, (memref.AllocOp, memref.AllocaOp)):
        return False
    return not bodies or not _defined_outside(root, bodies[0])


def _disjoint(indices: Sequence[SSAValue], bodies: Sequence[Block]) -> bool:
    """Whether distinct iterations of every loop of ``bodies`` write distinct elements:
    for each loop, some index follows its induction variable."""
    return all(any(_follows_iv(i, body) for i in indices) for body in bodies)


#: Ops that make a view of their first operand's memory (no copy).
_VIEW_OPS = frozenset({
    "memref.subview", "memref.reinterpret_cast", "memref.collapse_shape",
    "memref.expand_shape", "memref.transpose", "memref.cast", "memref.reshape",
    "memref.view", "memref.memory_space_cast",
})


def _root_buffer(value: SSAValue) -> SSAValue:
    """The buffer whose memory the memref ``value`` views: through view ops to the
    array they were made from (an argument or an allocation). Two accumulations whose
    targets have one root may touch the same elements; different roots are different
    arrays (arguments overlapping in memory are outside the ``prange`` contract)."""
    while isinstance(value.owner, Operation) and value.owner.name in _VIEW_OPS \
            and value.owner.operands:
        value = value.owner.operands[0]
    return value


def _signature(value: SSAValue) -> Any:
    """A hashable description of how ``value`` is computed, equal for two values that
    are the same function of the same block arguments and outer values: pure
    ``arith`` ops, ``memref.dim`` and view ops are followed structurally (an index
    computed twice, as ``y[2 * i + 1]`` in two statements, has one signature); any
    other op (a load, a call) is the identity of its result."""
    owner = value.owner
    if isinstance(value, BlockArgument):
        return ("arg", id(owner), value.index)
    assert isinstance(owner, Operation)
    structural = (owner.name.startswith("arith.") or owner.name == "memref.dim"
                  or owner.name in _VIEW_OPS) and not owner.regions \
        and len(owner.results) == 1
    if not structural:
        return ("value", id(value))
    props = tuple(sorted((k, str(v)) for k, v in owner.properties.items()))
    attrs = tuple(sorted((k, str(v)) for k, v in owner.attributes.items()))
    return (owner.name, str(value.type), props, attrs,
            tuple(_signature(o) for o in owner.operands))


@dataclass
class _Accumulation:
    """A ``memref.atomic_rmw`` :func:`accumulate` emitted, and what demoting it takes."""

    atomic: memref.AtomicRMWOp
    disjoint: bool  # distinct iterations of every enclosing loop write distinct elements
    negation: Operation | None  # the ``-v`` of ``-=``
    value: SSAValue  # ``v``
    op: str  # "+" or "-"
    root: SSAValue  # the buffer the target views (:func:`_root_buffer`)
    signature: Any  # the target view and index tuple (:func:`_signature`)


@dataclass
class _Collision:
    """An accumulation of the nest that stays atomic and that :func:`_settle` cannot
    see (one in a helper function called from the body): it keeps the nest's
    other accumulations atomic too."""

    disjoint: bool = False
    root: SSAValue | None = None
    signature: Any = None


def _pending() -> list[tuple[Any, Any]]:
    """``(builder, accumulation)`` emitted in ``prange`` nests still being traced."""
    pending = getattr(_LOOPS, "pending", None)
    if pending is None:
        pending = _LOOPS.pending = []
    return pending


def accumulate(target: Any, key: Any, op: str, value: Any) -> None:
    """``target[key] += value`` (``op`` ``"+"``) or ``-=`` (``"-"``) in a ``prange``
    body, of this function or of a caller (a helper function traced from a body): one
    ``memref.atomic_rmw`` (``addf``, ``addi``) of an element of a traced array. When
    the outermost loop of the nest is traced, :func:`_settle` demotes the atomics to
    load/add/store if no two iterations can update one element (:func:`_demotable`);
    in a helper function they stay atomic. Slices become per-element atomics only
    where needed (:func:`_accumulate_slice`). Outside a traced ``prange`` body, for
    an array allocated in the body (:func:`_private`) and for integer arrays given
    floats, exactly Python's ``t = target[key]; t op= value; target[key] = t``."""
    from .arrays import ArrayTracer  # noqa: PLC0415 (import cycle)
    from .views import expand_key, is_element_key, root_of  # noqa: PLC0415

    def plain() -> None:
        inplace = operator.iadd if op == "+" else operator.isub
        target[key] = inplace(target[key], value)

    if not (tracing() and isinstance(target, ArrayTracer)):
        return plain()
    bodies = _enclosing_bodies()
    check_defined(value)
    # In a helper function traced from a prange body, the caller's loop variables are
    # not visible: its accumulations may collide between the caller's iterations.
    outer = bool(_outer_builders())
    if not bodies and not outer:
        return plain()
    if _private(_root_buffer(root_of(target)), bodies):
        return plain()  # an array of one iteration: no other iteration sees it
    keys = expand_key(target, key)
    if not is_element_key(keys):
        return _accumulate_slice(target, keys, op, value, bodies, outer, plain)
    if not (isinstance(value, Tracer) or is_number(value)) or is_array_value(value):
        return plain()
    elem = target.element_type
    if is_float_type(elem):
        kind = "addf"
    elif join_types((elem, True), type_and_strength(value)) == elem \
            and not is_bool_type(elem):
        kind = "addi"
    else:
        return plain()  # an int array += a float: numpy rounds the sum, not the value
    indices = target._indices(key)  # bounds-checked, negative indices wrapped
    v = as_tracer(value, elem)
    added = -v if op == "-" else v
    atomic = memref.AtomicRMWOp.build(
        operands=[ssa(added), ssa(target), indices], result_types=[elem],
        properties={"kind": IntegerAttr(_ATOMIC_RMW_KIND[kind], i64)})
    emit(atomic)
    negation = added.value.owner if op == "-" else None
    if not bodies:
        return  # only a caller's loop is open: stays atomic (call_helper notes it)
    # A view made in the body (its offset a function of the loop variables) may map
    # distinct indices of distinct iterations onto one element: not provably disjoint.
    disjoint = not outer and _defined_outside(ssa(target), bodies[0]) \
        and _disjoint(indices, bodies)
    _pending().append((current_builder(), _Accumulation(
        atomic, disjoint, negation, ssa(v), op, _root_buffer(root_of(target)),
        (_signature(ssa(target)), tuple(_signature(i) for i in indices)))))


@dataclass
class _SliceAccumulation:
    """``a[i, :] += v`` in a ``prange`` body: the in-place ``linalg.generic`` it was
    traced as (``out = out + v`` over the view), kept when the nest's accumulations are
    all disjoint, else rewritten into per-element atomics (:func:`_atomic_slice`)."""

    generic: Operation
    disjoint: bool  # an integer index of the key follows every enclosing loop variable
    where: str  # "file:line" of the statement, for errors
    root: SSAValue  # the buffer the target views (:func:`_root_buffer`)
    signature: Any  # the target and the key (:func:`_key_signature`)


def _key_signature(target: Any, keys: Sequence[Any]) -> Any:
    """The :func:`_signature` of ``target[keys]`` for a key of ints, tracers, slices
    and ``None``: equal for the same view of the same array."""
    def one(k: Any) -> Any:
        if isinstance(k, Tracer):
            return _signature(ssa(k))
        if isinstance(k, slice):
            return ("slice", one(k.start), one(k.stop), one(k.step))
        return ("int", None if k is None else int(k))

    return ("slice-of", _signature(ssa(target)), tuple(one(k) for k in keys))


def _accumulate_slice(target: Any, keys: Sequence[Any], op: str, value: Any,
                      bodies: Sequence[Block], outer: bool,
                      plain: Callable[[], None]) -> None:
    """``target[keys] op= value`` on a slice in a ``prange`` body: traced as Python's
    in-place update (one ``linalg.generic`` over the view), recorded so that
    :func:`_settle` makes it per-element ``memref.atomic_rmw`` when iterations may
    update the same elements. In a helper function traced from a caller's ``prange``
    body (``outer``) it may always collide: atomic at once when the helper has no
    ``prange`` of its own around it."""
    from xdsl.dialects.linalg.ops import GenericOp  # noqa: PLC0415

    elem = target.element_type
    if not is_float_type(elem) and (
            is_bool_type(elem) or (isinstance(value, Tracer) and is_float_type(
                getattr(value, "element_type", value.type)))
            or isinstance(value, float)):
        return plain()  # numpy rounds an int array's sum with a float: not an accumulation
    block = current_builder().block
    last = block.last_op
    plain()
    new: list[Operation] = []
    o = last.next_op if last is not None else block.first_op
    while o is not None:
        new.append(o)
        o = o.next_op
    generics = [g for g in new if isinstance(g, GenericOp)]
    if not generics:
        return
    from .views import root_of  # noqa: PLC0415

    record = _SliceAccumulation(
        generics[-1], False, format_location(*user_location()),
        _root_buffer(root_of(target)), _key_signature(target, keys))
    if not bodies:
        _atomic_slice(record)  # only a caller's loop is open: no settling here
        return
    record.disjoint = not outer and _defined_outside(ssa(target), bodies[0]) and all(
        any(isinstance(k, Tracer) and _non_negative(k) and _follows_iv(ssa(k), body)
            for k in keys if not isinstance(k, slice))
        for body in bodies)
    _pending().append((current_builder(), record))


def augment(target: Any, op: str, value: Any) -> Any:
    """``target += value`` (``op`` ``"+"``) or ``-=`` (``"-"``) on a name: for a traced
    array in a ``prange`` body (this function's or a caller's) the accumulation
    ``target[...] += value`` (:func:`accumulate`: atomic where iterations may update
    the same elements, as ``target[:] += value``); otherwise Python's in-place
    operator. Returns the name's new value."""
    from .arrays import ArrayTracer  # noqa: PLC0415 (import cycle)

    if tracing() and isinstance(target, ArrayTracer) and in_parallel_body() \
            and (_enclosing_bodies() or _outer_builders()):
        accumulate(target, (slice(None),) * len(target.type.get_shape()), op, value)
        return target
    return (operator.iadd if op == "+" else operator.isub)(target, value)


def _non_negative(k: Tracer) -> bool:
    """Whether index ``k`` is known to be >= 0 (no wrap-around as numpy's ``x[-1]``)."""
    lb = lower_bound(k)
    return lb is not None and lb >= 0


def _atomic_slice(acc: _SliceAccumulation) -> None:
    """Rewrite the in-place generic ``out = out +/- f(inputs)`` of a slice accumulation
    into an ``scf.for`` nest over the view doing ``memref.atomic_rmw`` of ``+/- f``."""
    from xdsl.dialects.linalg.ops import YieldOp as LinalgYield  # noqa: PLC0415

    g = acc.generic
    out = g.outputs[0]  # type: ignore[attr-defined]
    body = g.body.block  # type: ignore[attr-defined]
    out_arg = body.args[-1]
    yielded = body.last_op
    assert isinstance(yielded, LinalgYield)
    comb = yielded.operands[0].owner
    kinds = {arith.AddfOp: ("addf", False), arith.SubfOp: ("addf", True),
             arith.AddiOp: ("addi", False), arith.SubiOp: ("addi", True)}
    if type(comb) not in kinds or comb.lhs is not out_arg \
            or len(list(out_arg.uses)) != 1:  # type: ignore[union-attr]
        raise UnsupportedError(
            f"{acc.where}: cannot trace this slice accumulation (`a[i, :] += v`) in a "
            "`prange` loop as atomic updates; write it as an element loop")
    kind, negate = kinds[type(comb)]  # type: ignore[index]
    block = g.parent_block()
    assert block is not None
    rank = len(out.type.get_shape())
    ops: list[Operation] = []

    def add(o: Operation) -> SSAValue:
        ops.append(o)
        return o.results[0]

    zero = add(arith.ConstantOp(IntegerAttr(0, index)))
    one = add(arith.ConstantOp(IntegerAttr(1, index)))
    sizes = [add(memref.DimOp(out, add(arith.ConstantOp(
        IntegerAttr(k, index))))) for k in range(rank)]
    block.insert_ops_before(ops, g)
    ivs: list[SSAValue] = []
    inner_ops: list[Operation] = []
    outer: Operation | None = None
    parent: Block | None = None
    for k in range(rank):
        b = Block(arg_types=[index])
        loop = scf.ForOp(zero, sizes[k], one, [], Region(b))
        if parent is None:
            outer = loop
        else:
            parent.add_op(loop)
            parent.add_op(scf.YieldOp())
        ivs.append(b.args[0])
        parent = b
    assert parent is not None and outer is not None
    fused: list[Operation] = []
    mapping = _element_of_inputs(g, ivs, inner_ops, fused, acc.where)
    for o in body.ops:
        if o is comb or o is yielded:
            continue
        inner_ops.append(o.clone(value_mapper=mapping))
        for r_old, r_new in zip(o.results, inner_ops[-1].results):
            mapping[r_old] = r_new
    v = mapping.get(comb.rhs, comb.rhs)  # type: ignore[union-attr]
    if negate:
        neg = arith.NegfOp(v) if kind == "addf" else arith.SubiOp(
            _int_zero(inner_ops, v.type), v)
        inner_ops.append(neg)
        v = neg.results[0]
    inner_ops.append(memref.AtomicRMWOp.build(
        operands=[v, out, ivs], result_types=[v.type],
        properties={"kind": IntegerAttr(_ATOMIC_RMW_KIND[kind], i64)}))
    parent.add_ops(inner_ops)
    parent.add_op(scf.YieldOp())
    block.insert_op_before(outer, g)
    g.detach()
    g.erase()
    for producer in fused:  # temporaries computed in the loop instead: gone
        _erase_temporary(producer)


def _element_of_inputs(g: Operation, ivs: Sequence[SSAValue], ops: list[Operation],
                       fused: list[Operation], where: str) -> dict[SSAValue, SSAValue]:
    """The values of ``g``'s input block arguments at iteration ``ivs`` of ``g``: a
    scalar input itself, a temporary array computed by a fusable producer generic
    (:func:`_producer`) recomputed element-wise (appended to ``fused``), any other
    array loaded; new ops are appended to ``ops``."""
    from xdsl.ir.affine import AffineConstantExpr, AffineDimExpr  # noqa: PLC0415

    mapping: dict[SSAValue, SSAValue] = {}
    body = g.regions[0].block
    maps = [m.data for m in g.indexing_maps]  # type: ignore[attr-defined]
    for arg, operand, amap in zip(body.args, g.inputs, maps):  # type: ignore[attr-defined]
        if not isinstance(operand.type, MemRefType):
            mapping[arg] = operand
            continue
        idx: list[SSAValue] = []
        for e in amap.results:
            if isinstance(e, AffineDimExpr):
                idx.append(ivs[e.position])
            elif isinstance(e, AffineConstantExpr):
                c = arith.ConstantOp(IntegerAttr(e.value, index))
                ops.append(c)
                idx.append(c.result)
            else:  # pragma: no cover - the frontend's maps are projections
                raise UnsupportedError(f"{where}: a slice accumulation with map {amap}")
        producer = _producer(operand, g)
        if producer is None:
            ld = memref.LoadOp.get(operand, idx)
            ops.append(ld)
            mapping[arg] = ld.res
            continue
        fused.append(producer)
        inner = _element_of_inputs(producer, idx, ops, fused, where)
        pbody = producer.regions[0].block
        for o in pbody.ops:
            if o is pbody.last_op:
                mapping[arg] = inner.get(o.operands[0], o.operands[0])
                break
            ops.append(o.clone(value_mapper=inner))
            for r_old, r_new in zip(o.results, ops[-1].results):
                inner[r_old] = r_new
    return mapping


def _producer(t: SSAValue, consumer: Operation) -> Operation | None:
    """The ``linalg.generic`` that computes temporary array ``t`` for ``consumer``
    alone, when ``consumer`` may compute ``t``'s elements itself instead: ``t`` is a
    ``memref.alloc`` of ``consumer``'s block used only by that generic (its sole,
    identity-mapped, unread output, every iterator parallel), ``consumer`` and a
    ``memref.dealloc``, and no op between the generic and ``consumer`` writes memory
    (its inputs are read later, inside the consumer's loop)."""
    from xdsl.dialects.linalg.ops import GenericOp  # noqa: PLC0415
    from xdsl.ir.affine import AffineMap  # noqa: PLC0415

    alloc = t.owner
    block = consumer.parent_block()
    if not isinstance(alloc, memref.AllocOp) or alloc.parent_block() is not block:
        return None
    users = [u.operation for u in t.uses]
    gens = [u for u in users if isinstance(u, GenericOp) and u is not consumer]
    if len(gens) != 1 or any(
            u is not consumer and u is not gens[0] and not isinstance(u, memref.DeallocOp)
            for u in users):
        return None
    p = gens[0]
    out_map = p.indexing_maps.data[-1].data  # type: ignore[attr-defined]
    if list(p.outputs) != [t] or t in list(p.inputs) or p.parent_block() is not block \
            or p.regions[0].block.args[-1].uses \
            or out_map != AffineMap.identity(out_map.num_dims) \
            or any(it.data.value != "parallel" for it in p.iterator_types):  # type: ignore[attr-defined]
        return None
    o = p.next_op
    while o is not None and o is not consumer:
        if isinstance(o, GenericOp):
            if not all(isinstance(x.owner, memref.AllocOp) for x in o.outputs):
                return None
        elif o.regions or isinstance(o, (memref.StoreOp, memref.AtomicRMWOp,
                                          memref.CopyOp, memref.DeallocOp)) \
                or o.name == "func.call":
            return None
        o = o.next_op
    return p if o is consumer else None


def _erase_temporary(producer: Operation) -> None:
    """Erase a fused producer generic, and its output's dealloc and alloc once unused."""
    t = producer.outputs[0]  # type: ignore[attr-defined]
    producer.detach()
    producer.erase()
    for u in list(t.uses):
        if isinstance(u.operation, memref.DeallocOp):
            u.operation.detach()
            u.operation.erase()
    if not t.uses:
        alloc = t.owner
        alloc.detach()
        alloc.erase()


def _int_zero(ops: list[Operation], type_: Attribute) -> SSAValue:
    c = arith.ConstantOp(IntegerAttr(0, type_))
    ops.append(c)
    return c.result


def _demotable(accumulations: Sequence[Any]) -> bool:
    """Whether no two iterations of the nest can update one element: every
    accumulation is disjoint between iterations on its own, and all accumulations into
    one buffer (through any of its views) update the same view at the same index
    tuple (``y[i] += a; y[i + 1] += b`` collide: iteration ``i + 1``'s first update is
    iteration ``i``'s second)."""
    targets: dict[int, set[Any]] = {}
    for a in accumulations:
        if not a.disjoint:
            return False
        targets.setdefault(id(a.root), set()).add(a.signature)
    return all(len(s) == 1 for s in targets.values())


def _settle(fb: Any) -> None:
    """At the end of the outermost ``prange`` loop of builder ``fb``: demote its nest's
    atomics to load/add/store when no two iterations can update one element
    (:func:`_demotable`; a plain read-modify-write racing with an atomic one on the
    same element would be wrong, so one possible collision keeps them all atomic)."""
    pending = _pending()
    mine = [a for b, a in pending if b is fb]
    pending[:] = [(b, a) for b, a in pending if b is not fb]
    slices = [a for a in mine if isinstance(a, _SliceAccumulation)]
    elements = [a for a in mine if isinstance(a, _Accumulation)]
    if not _demotable(mine):
        for sl in slices:  # iterations may update the same elements: atomics
            _atomic_slice(sl)
        return
    for acc in elements:
        atomic = acc.atomic
        ref, indices = atomic.memref, list(atomic.indices)
        load = memref.LoadOp.get(ref, indices)
        cls = {("+", True): arith.AddfOp, ("-", True): arith.SubfOp,
               ("+", False): arith.AddiOp, ("-", False): arith.SubiOp}[
            (acc.op, is_float_type(acc.value.type))]
        combined = cls(load.res, acc.value)
        store = memref.StoreOp.get(combined.results[0], ref, indices)
        block = atomic.parent_block()
        assert block is not None
        block.insert_ops_before([load, combined, store], atomic)
        atomic.detach()
        atomic.erase()
        if acc.negation is not None and acc.negation.results[0].first_use is None:
            acc.negation.detach()
            acc.negation.erase()


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
    mark = len(_pending())  # accumulations of this loop's body come after
    try:
        op = _build(fb, body, start, stop, step, body_fn, mark)
    except BaseException:
        del _pending()[mark:]
        raise
    if not any(b is fb for b, _ in _open_loops()):
        _settle(fb)  # the outermost loop of the nest: every accumulation is known
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
            _open_loops().append((fb, block))
            try:
                out = tuple(body_fn(i, *body.inputs()))[1:]
            finally:
                _open_loops().pop()
            if body.check(out):
                return True, [], out
            return False, body.contributions(out), out

        with fb.at(block):
            retrace, contributions, body.out = run()
            if not retrace:
                from .arrays import free_allocs  # noqa: PLC0415 (import cycle)

                free_allocs(block)  # arrays allocated in the body die at its end
                block.add_op(scf.ReduceOp(
                    [ssa(c) for c in contributions],
                    [_reduce_region(body.reductions[k][0], t)
                     for k, t in zip(body.slots, body.types)],
                ))
        if retrace:
            del _pending()[mark:]
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


__all__ = ["REDUCTION_KINDS", "accumulate", "augment", "for_prange", "in_parallel_body",
           "note_atomic_call", "prange", "prange_unsupported"]
