"""Who else can reach an array: the privacy analysis of arrays carried through traced
loops and branches (:mod:`.carried_arrays`).

An array is *private* to a variable when the code being traced allocated it and nothing
but that variable can reach it: no other variable of the user's frames
(:func:`held_elsewhere`), and no live object the user's code can reach (a list, a
closure cell of another variable, a ``functools.partial``, an attribute, a global, a
view of it), found by following referrers upwards with ``gc.get_referrers``
(:func:`referenced_elsewhere`); isozyme's own frames and the containers they hold are
internal.  Conservative: what cannot be classified counts as a reference.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

from xdsl.dialects import memref
from xdsl.ir import Block, Operation, SSAValue

from .arrays import ArrayTracer
from .context import current_builder

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CONVERTED_PREFIX = "_iz_"  # the names of the functions ast_transform generates

#: Ops that make a view of their first operand's memory (no copy).
VIEW_OPS = frozenset({
    "memref.subview", "memref.reinterpret_cast", "memref.collapse_shape",
    "memref.expand_shape", "memref.transpose", "memref.cast", "memref.reshape",
    "memref.view", "memref.memory_space_cast",
})


#: Integer ops that trap (SIGFPE) on a zero divisor: never moved out of a branch.
TRAPPING_OPS = frozenset({
    "arith.divsi", "arith.divui", "arith.remsi", "arith.remui", "arith.ceildivsi",
    "arith.ceildivui", "arith.floordivsi",
})


def root_buffer(value: SSAValue) -> SSAValue:
    """The buffer whose memory the memref ``value`` views: through view ops to the
    array they were made from (an argument or an allocation), or ``value`` itself.
    (The frontend's counterpart of ``compiler.analysis.buffers.root_buffer``, which the
    frontend layer does not import.)"""
    while isinstance(value.owner, Operation) and value.owner.name in VIEW_OPS \
            and value.owner.operands:
        value = value.owner.operands[0]
    return value


# --------------------------------------------------------------------------- privacy


def arrays_in(value: object, depth: int = 2) -> Iterator[ArrayTracer]:
    """The traced arrays ``value`` is or holds (tuples, lists, dict values; shallow)."""
    if isinstance(value, ArrayTracer):
        yield value
    elif depth > 0 and isinstance(value, (tuple, list)):
        for v in value:
            yield from arrays_in(v, depth - 1)
    elif depth > 0 and isinstance(value, dict):
        for v in value.values():
            yield from arrays_in(v, depth - 1)


def _is_converted_helper(frame: FrameType) -> bool:
    """Whether ``frame`` runs a function the converter generated (a loop body, a branch,
    a condition: ``_iz_for_body_3``), whose variables are the user function's."""
    return frame.f_code.co_name.lstrip("_").startswith(_CONVERTED_PREFIX.strip("_"))


def _user_frames() -> Iterator[FrameType]:
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if not os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
            yield frame
        frame = frame.f_back


def held_elsewhere(root: SSAValue, name: str) -> bool:
    """Whether a variable of the user's code other than ``name`` (of the function being
    traced, including its stale copies in enclosing loop bodies) holds an array whose
    memory is ``root``'s."""
    in_scope = True  # the converted helpers up to and including the user function
    for frame in _user_frames():
        same_scope = in_scope
        if not _is_converted_helper(frame):
            in_scope = False  # the frames above this one are other functions
        for var, value in frame.f_locals.items():
            if same_scope and var == name:
                continue
            if any(root_buffer(a.value) is root for a in arrays_in(value)):
                return True
    return False


def _internal_ids() -> set[int]:
    """The ids of what holds the user's arrays while isozyme works on them: every frame
    on the stack and its ``f_locals`` dict, and (in isozyme's own frames) the locals and
    their attributes, two levels deep (a loop's state tuple, the carried lists)."""
    ids: set[int] = set()
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        ids.add(id(frame))
        local_vars = frame.f_locals
        ids.add(id(local_vars))
        if os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
            todo = list(local_vars.values())
            for depth in range(3):
                nxt: list[Any] = []
                for v in todo:
                    ids.add(id(v))
                    attrs = getattr(v, "__dict__", None)
                    if isinstance(attrs, dict):
                        ids.add(id(attrs))
                        nxt.extend(attrs.values())
                    if isinstance(v, (list, tuple)) and depth < 2:
                        nxt.extend(v)
                    elif isinstance(v, dict) and depth < 2:
                        nxt.extend(v.values())
                todo = nxt
        frame = frame.f_back
    return ids


def _locals_dicts() -> dict[int, FrameType]:
    """The ``f_locals`` dicts of the user's frames on the stack (through which
    ``gc.get_referrers`` sees their variables) by id."""
    return {id(f.f_locals): f for f in _user_frames()}


def _view_values(root: SSAValue) -> list[SSAValue]:
    """The SSA values of the views of ``root`` the IR made so far (through view ops)."""
    out: list[SSAValue] = []
    todo = [root]
    while todo:
        v = todo.pop()
        for use in v.uses:
            op = use.operation
            if op.name in VIEW_OPS and op.operands and op.operands[0] is v:
                out.extend(op.results)
                todo.extend(op.results)
    return out


def referenced_elsewhere(x: ArrayTracer, name: str) -> bool:
    """Whether anything but variable ``name`` may reach the memory of ``x``: another
    variable of the user's frames (:func:`held_elsewhere`), or a live object the user's
    code can reach (a list, a closure cell of another variable, a ``functools.partial``,
    an attribute, a global) holding ``x``, another tracer of its memory, or a view of it.
    The search follows referrers upwards (``gc.get_referrers``) a few levels: a chain
    that ends in isozyme's own frames (a loop's state tuple, a branch's values) is
    internal; one that cannot be classified counts as a reference (conservative)."""
    root = root_buffer(x.value)
    if held_elsewhere(root, name):
        return True
    internal = _internal_ids()
    frame_of_locals = _locals_dicts()  # id(f_locals dict) -> its user frame
    nodes: list[Any] = [x]
    for r in gc.get_referrers(root, *_view_values(root)):
        if isinstance(r, ArrayTracer) and r is not x:
            nodes.append(r)  # another tracer of this memory: who holds it?
    internal.add(id(nodes))
    internal.update(id(c._cache) for c in nodes)  # noqa: SLF001 (cached views)
    seen = {id(n) for n in nodes}
    for _ in range(5):
        if not nodes:
            return False
        referrers = gc.get_referrers(*nodes)
        internal.add(id(referrers))
        up: list[Any] = []
        for r in referrers:
            frame = frame_of_locals.get(id(r))
            if frame is not None:  # a user frame's variables
                if any(any(v is n for n in nodes) and var != name for var, v in r.items()):
                    return True
                continue
            if id(r) in internal or id(r) in seen:
                continue
            if isinstance(r, FrameType):
                if os.path.abspath(r.f_code.co_filename).startswith(_PACKAGE_DIR):
                    continue  # isozyme's own frame: internal
                if any(any(v is n for n in nodes) and var != name
                       for var, v in r.f_locals.items()):
                    return True  # another variable of a user frame
                continue  # the variable itself, or a temporary on the frame's stack
            if type(r).__name__ == "cell":
                if _cell_names(r) <= {name}:
                    continue  # the variable itself, captured by a closure
                return True
            if isinstance(r, dict) and ("__name__" in r and "__builtins__" in r):
                return True  # a module's globals
            seen.add(id(r))
            up.append(r)
        nodes = up
        internal.add(id(nodes))
    return bool(nodes)  # not classified within the search: count it as a reference


def _cell_names(cell: object) -> set[str]:
    """The names of the variables closure cell ``cell`` is, from the user's functions
    that close over it (a cell of a live frame's variable also shows in its
    ``f_locals``, which :func:`held_elsewhere` reads; isozyme's own closures are
    internal)."""
    names: set[str] = set()
    for t in gc.get_referrers(cell):
        if type(t) is not tuple:
            continue
        for f in gc.get_referrers(t):  # the functions whose __closure__ it is
            code = getattr(f, "__code__", None)
            if getattr(f, "__closure__", None) is not t or code is None \
                    or os.path.abspath(code.co_filename).startswith(_PACKAGE_DIR):
                continue
            names.update(n for n, c in zip(code.co_freevars, t) if c is cell)
    return names


def defined_in(value: SSAValue, block: Block) -> bool:
    """Whether ``value`` is defined in ``block`` or in a region nested in it."""
    owner = value.owner
    b: Block | None = owner if isinstance(owner, Block) else owner.parent_block()
    while b is not None:
        if b is block:
            return True
        parent_op = b.parent_op()
        b = parent_op.parent_block() if parent_op is not None else None
    return False


def allocated_in(value: SSAValue, block: Block) -> bool:
    return any(v is value and b is block for v, b in current_builder().allocs)


def is_private(x: ArrayTracer, name: str, block: Block | None = None) -> bool:
    """Whether ``x`` is a whole array allocated by the code being traced (in ``block``
    when given, else anywhere in this function) that no other variable holds."""
    v = x.value
    if not isinstance(v.owner, (memref.AllocOp, memref.AllocaOp)):
        return False
    fb = current_builder()
    if block is not None and not allocated_in(v, block):
        return False
    if block is None and not any(a is v for a, _ in fb.allocs):
        return False
    return not referenced_elsewhere(x, name)
