"""Arrays re-bound inside traced loops and branches (``w = w - lr * g`` in a ``for``,
``u, v = v, u``, ``if c: h = a else: h = b``).

A Python name re-bound to a new array in a traced ``scf.for``/``scf.while`` body or an
``scf.if`` branch is given one *carried buffer*: a memref allocated before the region,
of the array's shape and dtype.  The region writes the name's new value into it at its
end, and after the region the name is that buffer.  The IR stays a loop (nothing depends
on the trip count) and the AD passes see ordinary loads and stores into a buffer that is
overwritten each iteration, which the reverse pass already caches or recomputes.

Python re-binds names to *objects*; the buffer holds *values*.  The two agree unless
the old object is still observable: a write through the name before it is re-bound (in
the first iteration, the array it held before the loop; in a later one, the previous
iteration's array) reaches that object in Python.  So the copy is exact when every object
the buffer stands for is *private*: a fresh array no other name holds (the array held
before the loop may then be the buffer itself, with no copy).  When one is not (an
argument, a view, an array another variable also names), writing into the buffer would
not reach it, and such a write is refused (:func:`check_writes`) with a ``TraceError``
saying to copy the array first.

Dimensions: the array re-bound in a loop keeps the shape of the array it held before the
loop (a run-time ``ShapeError`` when an iteration gives it another shape: numpy would
re-bind it, isozyme cannot change a buffer's shape); in a branch, the buffer gets the
shape the ``then`` value has, computed before the ``if`` (:func:`hoist`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import DYNAMIC_INDEX, IndexType, MemRefType
from xdsl.ir import Attribute, Block, BlockArgument, Operation, SSAValue

from .aliasing import (
    TRAPPING_OPS,
    allocated_in,
    arrays_in,
    defined_in,
    is_private,
    referenced_elsewhere,
    root_buffer,
)
from .arrays import ArrayTracer, element_type_of_dtype, numpy_dtype
from .carried_writes import written_memrefs, register
from .context import current_builder
from .diagnostics import trace_error
from .tracer import Tracer, constant, emit1, is_array_value, ssa

# --------------------------------------------------------------------------- buffers


def promoted_element_type(*types: Attribute) -> Attribute:
    """numpy's promotion of array element types (``int64`` with ``float64`` gives
    ``float64``)."""
    dt = numpy_dtype(types[0])
    for t in types[1:]:
        dt = np.promote_types(dt, numpy_dtype(t))
    if dt == np.bool_:
        return types[0]
    return element_type_of_dtype(dt)


def _sizes(x: ArrayTracer) -> list[Any]:
    shape = x.type.get_shape()
    return [s if s != DYNAMIC_INDEX else x.dim_index(k) for k, s in enumerate(shape)]


def new_buffer_like(sizes: Sequence[Any], element_type: Attribute) -> ArrayTracer:
    """An uninitialised buffer of ``sizes`` (ints static, ``index`` values dynamic),
    freed at the end of the current block."""
    from .whole_array.linalg_builder import new_buffer  # noqa: PLC0415 (import cycle)

    return new_buffer(list(sizes), element_type)


def copy_into(dst: ArrayTracer, src: ArrayTracer, name: str, where: str) -> Operation:
    """Check that ``src`` has ``dst``'s shape (``ShapeError`` at run time, as the name
    cannot change shape here) and copy its elements into ``dst`` (one ``linalg.generic``,
    converting the element type).  Returns the copy op."""
    from .runtime_checks import require  # noqa: PLC0415
    from .whole_array.linalg_builder import _identity, generic  # noqa: PLC0415

    if src.ndim != dst.ndim:
        raise trace_error(
            f"array variable '{name}' re-bound inside {where} to an array of another rank",
            f"it holds a {dst.ndim}-d array before and a {src.ndim}-d array after; a name "
            "carried through a traced loop or branch keeps its shape (use another name)",
        )
    for k in range(dst.ndim):
        a, b = dst.type.get_shape()[k], src.type.get_shape()[k]
        if a == DYNAMIC_INDEX and b == DYNAMIC_INDEX and dst.dim_index(k) is src.dim_index(k):
            continue  # the same size value: nothing to check
        if a != DYNAMIC_INDEX and b != DYNAMIC_INDEX:
            ok: Any = a == b
        else:
            ok = emit1(arith.CmpiOp(dst.dim_index(k), src.dim_index(k), "eq"))
        require(ok, "shape",
                f"array variable '{name}' changes shape inside {where}: isozyme carries it "
                f"in one buffer, whose dimension {k} is {{0}}, and the new array's is {{1}}",
                Tracer(dst.dim_index(k)), Tracer(src.dim_index(k)))
    n = dst.ndim
    generic([ssa(src)], [_identity(n)], dst, _identity(n), ["parallel"] * n, lambda v: v)
    op = current_builder().block.last_op
    assert op is not None
    return op


# --------------------------------------------------------------------------- hoisting


def hoist(value: SSAValue, inner: Block) -> SSAValue | None:
    """``value`` (an ``index`` or integer computed in ``inner``, e.g. a dimension of an
    array allocated there) recomputed at the current insertion point, outside ``inner``;
    None when it depends on something computed in ``inner`` other than pure integer
    arithmetic, constants and the sizes of arrays allocated there."""
    fb = current_builder()
    owner = value.owner
    block = owner if isinstance(owner, Block) else owner.parent_block()
    if fb.visible(block):
        return value
    if isinstance(value, BlockArgument) or not isinstance(owner, Operation):
        return None
    if isinstance(owner, memref.DimOp):
        src = owner.source
        k_op = owner.index.owner
        if not isinstance(k_op, arith.ConstantOp):
            return None
        k = k_op.value.value.data  # type: ignore[union-attr]
        assert isinstance(src.type, MemRefType)
        static = src.type.get_shape()[k]
        if static != DYNAMIC_INDEX:
            return ssa(constant(static, IndexType()))
        src_owner = src.owner
        if isinstance(src_owner, memref.AllocOp):
            dyn_pos = sum(1 for s in src.type.get_shape()[:k] if s == DYNAMIC_INDEX)
            return hoist(src_owner.dynamic_sizes[dyn_pos], inner)
        if fb.visible(src_owner.parent_block() if isinstance(src_owner, Operation) else src_owner):
            clone = memref.DimOp(src, ssa(constant(k, IndexType())))
            return fb.insert(clone).results[0]
        return None
    if owner.name.startswith("arith.") and not owner.regions and len(owner.results) == 1 \
            and owner.name not in TRAPPING_OPS:
        operands = [hoist(o, inner) for o in owner.operands]
        if any(o is None for o in operands):
            return None
        clone = owner.clone()
        for i, o in enumerate(operands):
            clone.operands[i] = o  # type: ignore[assignment]
        return fb.insert(clone).results[0]
    return None


# --------------------------------------------------------------------------- loops


@dataclass
class _LoopArray:
    """One name carried through a loop in a buffer."""

    slot: int
    name: str
    element_type: Attribute
    buffer: ArrayTracer | None = None
    shared: bool = False  # the buffer stands for an object other code may observe
    copies: list[Operation] = field(default_factory=list)
    # a name first assigned in the body (see late_values.py): its buffer's sizes,
    # computed before the loop; None for a name that holds an array before the loop
    late_sizes: list[Any] | None = None


class LoopArrays:
    """The arrays re-bound in one traced loop body (see the module docstring).

    ``control_flow._Carried`` asks it, for each trace of the body: :meth:`prepare`
    (buffers before the loop), :meth:`bind` (the body sees the buffers), :meth:`check`
    (after the body: a new re-bound name or a wider dtype means tracing again, after
    :meth:`undo`), :meth:`store` (the body's last ops: the copies into the buffers),
    :meth:`finish` (after the loop op) and :meth:`bind` again for the values after it.
    """

    def __init__(self, names: Sequence[str], initial: Sequence[Any], where: str) -> None:
        self.names = list(names)
        self.initial = list(initial)
        self.where = where
        self.plans: dict[int, _LoopArray] = {}
        self._prepared: list[Operation] = []
        # arrays the buffers were copied from, which other variables may still see:
        # (root, name), refused writes from the loop on (see :meth:`finish`)
        self.originals: list[tuple[SSAValue, str]] = []

    def __bool__(self) -> bool:
        return bool(self.plans)

    def check(self, slot: int, after: object) -> bool:
        """Note the body's value ``after`` of array variable ``slot``; True when the
        body must be traced again (a newly re-bound name or a wider element type)."""
        name, before = self.names[slot], self.initial[slot]
        plan = self.plans.get(slot)
        if plan is not None and _same(after, plan.buffer):
            return False
        if plan is None and after is before:
            return False
        if not is_array_value(after):
            raise trace_error(
                f"variable '{name}' in {self.where}",
                f"it holds an array before the loop and a {type(after).__name__} in it",
            )
        assert isinstance(after, ArrayTracer) and isinstance(before, ArrayTracer)
        if after.ndim != before.ndim:
            raise trace_error(
                f"array variable '{name}' re-bound inside {self.where} to an array of "
                "another rank",
                f"it holds a {before.ndim}-d array before the loop and a {after.ndim}-d "
                "array in it; a name carried through a traced loop keeps its shape",
            )
        if plan is None:
            t = promoted_element_type(before.element_type, after.element_type)
            self.plans[slot] = _LoopArray(slot, name, t)
            return True
        t = promoted_element_type(plan.element_type, after.element_type)
        if t != plan.element_type:
            plan.element_type = t
            return True
        return False

    def check_late(self, slot: int, after: ArrayTracer, body: Block) -> bool:
        """Note the body's array ``after`` for a name first assigned in the body and
        read after the loop; True when the body must be traced again."""
        plan = self.plans.get(slot)
        if plan is not None:
            assert plan.buffer is not None
            if _same(after, plan.buffer):
                return False
            if after.ndim != plan.buffer.ndim:
                raise trace_error(
                    f"array variable '{plan.name}' re-bound inside {self.where} to an "
                    "array of another rank", "a name carried through a traced loop keeps "
                    "its shape")
            t = promoted_element_type(plan.element_type, after.element_type)
            if t == plan.element_type:
                return False
            plan.element_type = t
            return True
        name = self.names[slot]
        with _outside(body):
            sizes = _outer_sizes(after, body)
        if sizes is None:
            raise trace_error(
                f"array variable '{name}' first assigned inside {self.where} and used "
                "after it",
                "isozyme carries it out of the loop in a buffer allocated before the loop, "
                "and its size is computed inside the loop from values it cannot compute "
                "before it; allocate the array before the loop",
            )
        self.plans[slot] = _LoopArray(slot, name, after.element_type, late_sizes=sizes)
        return True

    @property
    def late(self) -> list[_LoopArray]:
        """The plans of names first assigned in the body."""
        return [p for p in self.plans.values() if p.late_sizes is not None]

    def prepare(self) -> None:
        """Emit (at the insertion point, before the loop) each name's buffer: the array
        it holds when that is private and of the carried dtype, else a copy (an
        uninitialised buffer for a name first assigned in the body)."""
        fb = current_builder()
        block = fb.block
        mark = block.last_op
        for slot, plan in sorted(self.plans.items()):
            if plan.late_sizes is not None:
                plan.copies, plan.shared = [], False
                plan.buffer = new_buffer_like(plan.late_sizes, plan.element_type)
                continue
            v0 = self.initial[slot]
            assert isinstance(v0, ArrayTracer)
            plan.copies = []
            if v0.element_type == plan.element_type and is_private(v0, plan.name):
                plan.buffer, plan.shared = v0, False
                continue
            plan.buffer = new_buffer_like(_sizes(v0), plan.element_type)
            plan.copies.append(copy_into(plan.buffer, v0, plan.name, self.where))
            plan.shared = True  # it stands for v0, which stays observable
            self.originals.append((root_buffer(v0.value), plan.name))
        ops = list(block.ops)
        start = 0 if mark is None else ops.index(mark) + 1
        self._prepared = ops[start:]

    def undo(self) -> None:
        """Erase what :meth:`prepare` emitted (the body is traced again)."""
        self.originals = []
        fb = current_builder()
        erased = {id(r) for op in self._prepared for r in op.results}
        fb.allocs = [(v, b) for v, b in fb.allocs if id(v) not in erased]
        for op in reversed(self._prepared):
            op.erase(safe_erase=False)
        self._prepared = []

    def bind(self, values: list[Any], late: Callable[[SSAValue, str], Any] | None = None) -> None:
        """Replace the carried names' values by their buffers (``late(buffer, name)``
        for the names first assigned in the body)."""
        for slot, plan in self.plans.items():
            assert plan.buffer is not None
            if plan.late_sizes is not None and late is not None:
                values[slot] = late(plan.buffer.value, plan.name)
            else:
                values[slot] = plan.buffer

    def store(self, out: Sequence[Any], body: Block) -> None:
        """At the end of the body (the insertion point): copy each re-bound name's new
        array into its buffer, through a snapshot when it may alias a buffer."""
        buffers = {id(p.buffer.value): p for p in self.plans.values() if p.buffer is not None}
        moved = [(p, out[p.slot]) for p in self.plans.values() if not _same(out[p.slot], p.buffer)]
        counts: dict[int, int] = {}
        for v in out:
            for a in arrays_in(v):
                counts[id(root_buffer(a.value))] = counts.get(id(root_buffer(a.value)), 0) + 1

        def private(p: _LoopArray, new: ArrayTracer, shared: set[int]) -> bool:
            root = root_buffer(new.value)
            if counts.get(id(root), 0) != 1 or root is not new.value:
                return False
            if id(root) in buffers:  # another name's buffer: a permutation of buffers
                return id(root) not in shared
            return allocated_in(root, body) and not referenced_elsewhere(new, p.name)

        shared = {id(p.buffer.value) for p in self.plans.values() if p.shared}
        while True:  # a buffer moved from a shared one stands for the same object
            more = {id(p.buffer.value) for p, new in moved
                    if id(p.buffer.value) not in shared and not private(p, new, shared)}
            if not more:
                break
            shared |= more
        for p in self.plans.values():
            p.shared = id(p.buffer.value) in shared
        for p, new in moved:  # a copied array other variables may still see
            root = root_buffer(new.value)
            if id(root) not in buffers and not defined_in(root, body) \
                    and not private(p, new, shared):
                self.originals.append((root, p.name))
        sources = []
        read_at_end = {id(root_buffer(n.value)) for _, n in moved}
        for p, new in moved:
            if id(p.buffer.value) not in shared and private(p, new, shared) \
                    and id(p.buffer.value) not in read_at_end \
                    and _compute_in_place(new, p.buffer, body, p.copies):
                continue  # the op computing the new array writes the buffer itself
            if id(root_buffer(new.value)) in buffers:
                new = _snapshot(new)
            sources.append((p, new))
        for p, new in sources:
            p.copies.append(copy_into(p.buffer, new, p.name, self.where))

    def finish(self, loop: Operation) -> None:
        """After the loop op: buffers that stand for observable objects refuse writes
        from here on (see :func:`check_writes`)."""
        for p in self.plans.values():
            if p.shared and p.buffer is not None:
                register(p.buffer, p.name, self.where, loop, p.copies)
        for root, name in self.originals:
            register(root, name, self.where, loop, [], original=True)


def _compute_in_place(new: ArrayTracer, buffer: ArrayTracer, body: Block,
                      own_writes: list[Operation]) -> bool:
    """Double buffering without the copy: when ``new`` (a fresh array of the body, of
    ``buffer``'s type and sizes) is written by one elementwise ``linalg.generic`` that
    reads ``buffer`` only at the element it writes, and nothing after that op in the
    body reads ``buffer``, make the op write ``buffer`` and drop ``new``.  True when
    done."""
    alloc = new.value.owner
    if not isinstance(alloc, memref.AllocOp) or alloc.parent_block() is not body \
            or new.value.type != buffer.value.type:
        return False
    dynamic = iter(alloc.dynamic_sizes)
    for k, size in enumerate(new.type.get_shape()):
        if size == DYNAMIC_INDEX and next(dynamic) is not buffer.dim_index(k):
            return False
    writers = [u.operation for u in new.value.uses if new.value in written_memrefs(u.operation)]
    if len(writers) != 1 or writers[0].name != "linalg.generic":
        return False
    gen = writers[0]
    outputs, inputs = list(gen.outputs), list(gen.inputs)  # type: ignore[attr-defined]
    if outputs != [new.value] or new.value in inputs or gen.parent_block() is not body:
        return False
    maps = [m.data for m in gen.indexing_maps]  # type: ignore[attr-defined]
    for v, v_map in zip(inputs, maps):
        if isinstance(v.type, MemRefType) and root_buffer(v) is root_buffer(buffer.value) \
                and (v is not buffer.value or v_map != maps[-1]):
            return False
    op = gen.next_op
    while op is not None:
        for inner in op.walk():
            if any(isinstance(o.type, MemRefType) and root_buffer(o) is root_buffer(buffer.value)
                   for o in inner.operands):
                return False
        op = op.next_op
    new.value.replace_all_uses_with(buffer.value)
    fb = current_builder()
    fb.allocs = [(v, b) for v, b in fb.allocs if v is not alloc.results[0]]
    body.erase_op(alloc)
    own_writes.append(gen)
    return True


def _same(a: object, b: ArrayTracer | None) -> bool:
    """Whether ``a`` is the array ``b`` (the same buffer value, e.g. a late tracer of it)."""
    return b is not None and isinstance(a, Tracer) and a.value is b.value


def _snapshot(x: ArrayTracer) -> ArrayTracer:
    """A copy of ``x`` in a new buffer (freed at the end of the current block)."""
    from .whole_array import copy_to_new  # noqa: PLC0415 (import cycle)

    return copy_to_new(x)


# --------------------------------------------------------------------------- branches


def merge_branch_arrays(
    name: str, then_value: ArrayTracer, else_value: ArrayTracer,
    then_block: Block, else_block: Block, where: str, shared_values: Sequence[object] = (),
) -> tuple[ArrayTracer, bool, list[Operation], list[SSAValue]]:
    """The buffer that holds ``name`` after an ``scf.if`` whose branches bind it to two
    arrays: allocated at the insertion point (before the ``if``) with the ``then``
    array's shape (or the ``else`` one's), written by a copy at the end of each branch.
    Returns it, whether it stands for an observable object (see the module docstring),
    the copies, and the roots of the branch arrays other variables may still see (the
    caller refuses writes into them after the ``if``).  ``shared_values``: branch
    values another name also holds after the ``if``."""
    if then_value.ndim != else_value.ndim:
        raise trace_error(
            f"array variable '{name}' bound to arrays of different ranks in the branches "
            f"of {where}",
            f"a {then_value.ndim}-d and a {else_value.ndim}-d array; a name carried out of "
            "a traced `if` has one shape (use another name in one branch)",
        )
    element_type = promoted_element_type(then_value.element_type, else_value.element_type)
    sizes = _outer_sizes(then_value, then_block) or _outer_sizes(else_value, else_block)
    if sizes is None:
        raise trace_error(
            f"array variable '{name}' assigned in both branches of {where}",
            "isozyme carries it out of the `if` in one buffer allocated before it, and "
            "its size is computed inside the branches from values it cannot compute "
            "before the `if`; allocate the array before the `if` and assign its elements "
            f"({name}[...] = ...) in the branches",
        )
    buffer = new_buffer_like(sizes, element_type)
    fb = current_builder()
    copies = []
    for value, block in ((then_value, then_block), (else_value, else_block)):
        with fb.at(block):
            copies.append(copy_into(buffer, value, name, where))
    seen = [v for v in (then_value, else_value)
            if any(v is o for o in shared_values) or not _branch_private(
                v, then_block if v is then_value else else_block, name)]
    # an array made in a branch dies with it: only older ones can be written after
    originals = [root_buffer(v.value) for v in seen
                 if not defined_in(root_buffer(v.value), then_block)
                 and not defined_in(root_buffer(v.value), else_block)]
    return buffer, bool(seen), copies, originals


@contextlib.contextmanager
def _outside(block: Block) -> Iterator[None]:
    """Within the ``with``, insert ops where ``block`` (the innermost one being built)
    will be: at the end of the block around it."""
    fb = current_builder()
    saved = fb._blocks  # noqa: SLF001 (the builder's stack of blocks)
    assert saved[-1] is block
    fb._blocks = saved[:-1]  # noqa: SLF001
    try:
        yield
    finally:
        fb._blocks = saved  # noqa: SLF001


def _outer_sizes(x: ArrayTracer, block: Block) -> list[Any] | None:
    """The sizes of ``x`` (defined in ``block``) computed at the insertion point."""
    fb = current_builder()
    out: list[Any] = []
    for k, s in enumerate(x.type.get_shape()):
        if s != DYNAMIC_INDEX:
            out.append(s)
            continue
        with fb.at(block):
            d = x.dim_index(k)
        h = hoist(d, block)
        if h is None:
            return None
        out.append(h)
    return out


def _branch_private(x: ArrayTracer, block: Block, name: str) -> bool:
    """Whether ``x`` (a branch's value of ``name``) is a fresh array of the branch or
    the private array the name held before the ``if``, held by no other variable."""
    if allocated_in(x.value, block):
        return not referenced_elsewhere(x, name)
    return is_private(x, name)
