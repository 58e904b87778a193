"""Accumulation in parallel loops: ``x[k] += v``, ``a[k, :] += v`` and ``y += v`` in a
``prange`` body (and in helpers called from one).

Several iterations may add into one element, so each update is traced as
``memref.atomic_rmw addf`` (``addi``), unless no two iterations can update one element:
every accumulation of the loop nest into one array, through its views, at the same
index tuple, one index of which follows each loop variable (up to ``start + k * step``
and casts). Then, when the outermost ``prange`` of the nest ends (:func:`settle`), the
atomics become plain load/add/store. A helper traced from a body cannot see the
caller's loop variables, so its accumulations stay atomic. See docs/prange.md.
"""

import operator
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import IntegerAttr, MemRefType
from xdsl.ir import Attribute, Block, BlockArgument, Operation, Region, SSAValue

from isozyme.dialects.memref_ext import atomic_rmw
from isozyme.errors import UnsupportedError

from .aliasing import VIEW_OPS, root_buffer
from .context import current_builder, tracing
from .diagnostics import format_location, user_location
from .tracer import (
    Tracer,
    as_tracer,
    check_defined,
    emit,
    index,
    is_array_value,
    is_bool_type,
    is_float_type,
    is_number,
    join_types,
    lower_bound,
    ssa,
    type_and_strength,
)

State = tuple[Any, ...]




_LOOPS = threading.local()


def open_loops() -> list[tuple[Any, Block]]:
    """``(builder, body block)`` of the ``prange`` bodies being traced, outermost first."""
    stack = getattr(_LOOPS, "stack", None)
    if stack is None:
        stack = _LOOPS.stack = []
    return stack


def _enclosing_bodies() -> list[Block]:
    """The bodies of the ``prange`` loops around the insertion point of the function
    being traced (a helper traced from a loop body is not inside it)."""
    fb = current_builder()
    return [b for builder, b in open_loops() if builder is fb and fb.visible(b)]


def _outer_builders() -> list[Any]:
    """The builders of the functions up the call chain with an open ``prange`` body
    other than the one being traced: a helper function traced from a loop body."""
    fb = current_builder()
    out: list[Any] = []
    for builder, _ in open_loops():
        if builder is not fb and all(builder is not o for o in out):
            out.append(builder)
    return out


def in_parallel_body() -> bool:
    """Whether a ``prange`` body is being traced, in the current function or up the
    call chain (a helper function's accumulations then run in parallel too)."""
    return bool(open_loops())


def note_atomic_call() -> None:
    """A helper function whose body accumulates with ``memref.atomic_rmw`` is called
    from a ``prange`` body: every open nest keeps its own accumulations atomic (a plain
    read-modify-write racing with the helper's atomic one would lose updates)."""
    seen: list[Any] = []
    for builder, _ in open_loops():
        if all(builder is not o for o in seen):
            seen.append(builder)
            pending_accumulations().append((builder, _Collision()))


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
                  or owner.name in VIEW_OPS) and not owner.regions \
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
    root: SSAValue  # the buffer the target views (:func:`.aliasing.root_buffer`)
    signature: Any  # the target view and index tuple (:func:`_signature`)


@dataclass
class _Collision:
    """An accumulation of the nest that stays atomic and that :func:`settle` cannot
    see (one in a helper function called from the body): it keeps the nest's
    other accumulations atomic too."""

    disjoint: bool = False
    root: SSAValue | None = None
    signature: Any = None


def pending_accumulations() -> list[tuple[Any, Any]]:
    """``(builder, accumulation)`` emitted in ``prange`` nests still being traced."""
    pending = getattr(_LOOPS, "pending", None)
    if pending is None:
        pending = _LOOPS.pending = []
    return pending


def accumulate(target: Any, key: Any, op: str, value: Any) -> None:
    """``target[key] += value`` (``op`` ``"+"``) or ``-=`` (``"-"``) in a ``prange``
    body, of this function or of a caller (a helper function traced from a body): one
    ``memref.atomic_rmw`` (``addf``, ``addi``) of an element of a traced array. When
    the outermost loop of the nest is traced, :func:`settle` demotes the atomics to
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
    if _private(root_buffer(root_of(target)), bodies):
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
    atomic = atomic_rmw(kind, ssa(added), ssa(target), indices)
    emit(atomic)
    negation = added.value.owner if op == "-" else None
    if not bodies:
        return  # only a caller's loop is open: stays atomic (call_helper notes it)
    # A view made in the body (its offset a function of the loop variables) may map
    # distinct indices of distinct iterations onto one element: not provably disjoint.
    disjoint = not outer and _defined_outside(ssa(target), bodies[0]) \
        and _disjoint(indices, bodies)
    pending_accumulations().append((current_builder(), _Accumulation(
        atomic, disjoint, negation, ssa(v), op, root_buffer(root_of(target)),
        (_signature(ssa(target)), tuple(_signature(i) for i in indices)))))


@dataclass
class _SliceAccumulation:
    """``a[i, :] += v`` in a ``prange`` body: the in-place ``linalg.generic`` it was
    traced as (``out = out + v`` over the view), kept when the nest's accumulations are
    all disjoint, else rewritten into per-element atomics (:func:`_atomic_slice`)."""

    generic: Operation
    disjoint: bool  # an integer index of the key follows every enclosing loop variable
    where: str  # "file:line" of the statement, for errors
    root: SSAValue  # the buffer the target views (:func:`.aliasing.root_buffer`)
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
    :func:`settle` makes it per-element ``memref.atomic_rmw`` when iterations may
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
        root_buffer(root_of(target)), _key_signature(target, keys))
    if not bodies:
        _atomic_slice(record)  # only a caller's loop is open: no settling here
        return
    record.disjoint = not outer and _defined_outside(ssa(target), bodies[0]) and all(
        any(isinstance(k, Tracer) and _non_negative(k) and _follows_iv(ssa(k), body)
            for k in keys if not isinstance(k, slice))
        for body in bodies)
    pending_accumulations().append((current_builder(), record))


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
    inner_ops.append(atomic_rmw(kind, v, out, ivs))
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


def settle(fb: Any) -> None:
    """At the end of the outermost ``prange`` loop of builder ``fb``: demote its nest's
    atomics to load/add/store when no two iterations can update one element
    (:func:`_demotable`; a plain read-modify-write racing with an atomic one on the
    same element would be wrong, so one possible collision keeps them all atomic)."""
    pending = pending_accumulations()
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


__all__ = ["accumulate", "augment", "in_parallel_body", "note_atomic_call", "open_loops",
           "pending_accumulations", "settle"]
