"""Writes the carried buffers of :mod:`.carried_arrays` must refuse.

A buffer that stands for an array other code can still see, and an array a carried
name was copied from, are registered (:func:`register`); :func:`check_writes`, run when
the traced function is complete, refuses any write into them after the loop or ``if``
that carries the name (other than the carrying copies), since Python would see that
write through the name.  A call writes the memrefs its callee writes (followed through
the module's functions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from xdsl.dialects import memref
from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Block, Operation, SSAValue

from .aliasing import root_buffer
from .arrays import ArrayTracer
from .context import current_builder
from .diagnostics import trace_error, user_location
from .tracer import Tracer

@dataclass
class CopyCarried:
    """A carried buffer that stands for an object Python code could still observe
    (see the module docstring): only :func:`copy_into` may write it."""

    buffer: SSAValue
    name: str
    where: str
    start: Operation  # the loop or `if` from which on it is carried
    location: tuple[str, int]  # the user's file and line of that loop or `if`
    own_writes: set[int] = field(default_factory=set)  # ids of the copies into it
    # True: ``buffer`` is an array the carried name was copied *from* (other variables
    # may see it: a write into it would not reach the name's buffer, as Python's would)
    original: bool = False


def register(buffer: ArrayTracer | SSAValue, name: str, where: str, start: Operation,
             own_writes: Sequence[Operation], original: bool = False) -> None:
    """Record ``buffer`` as standing for an observable object from op ``start`` on, or
    (``original``) as an observable array the carried name was copied from (checked by
    :func:`check_writes`)."""
    fb = current_builder()
    entries: list[CopyCarried] = fb.__dict__.setdefault("copy_carried", [])
    value = buffer.value if isinstance(buffer, Tracer) else buffer
    entries.append(CopyCarried(value, name, where, start, user_location(),
                               {id(op) for op in own_writes}, original))


def written_memrefs(op: Operation, depth: int = 0) -> list[SSAValue]:
    """The memrefs ``op`` may write (a call: the arguments its callee may write,
    following its calls; all of them when the callee is not found)."""
    if op.name == "func.call":
        return _call_writes(op, depth)
    if isinstance(op, memref.StoreOp):
        return [op.memref]
    if op.name == "linalg.generic":
        return list(op.outputs)  # type: ignore[attr-defined]
    if op.name in ("memref.copy",):
        return [op.operands[1]]
    if op.name in ("memref.atomic_rmw", "memref.generic_atomic_rmw"):
        return [op.operands[1]]
    return []


def _call_writes(call: Operation, depth: int) -> list[SSAValue]:
    memrefs = [o for o in call.operands if isinstance(o.type, MemRefType)]
    if not memrefs:
        return []
    module = current_builder().session.module
    callee = call.properties.get("callee") or call.attributes.get("callee")
    name = getattr(getattr(callee, "root_reference", None), "data", None)
    target = next((f for f in module.body.block.ops
                   if getattr(getattr(f, "sym_name", None), "data", None) == name), None)
    if target is None or depth > 8 or not target.regions or not target.regions[0].blocks:
        return memrefs  # unknown callee (still being traced: recursion): may write all
    args = target.regions[0].blocks[0].args
    written = {id(root_buffer(w)) for inner in target.walk()
               for w in written_memrefs(inner, depth + 1)}
    return [o for o, a in zip(call.operands, args)
            if isinstance(o.type, MemRefType) and id(a) in written]


def check_writes(block: Block) -> None:
    """Refuse a write into a buffer registered with :func:`register` (other than its
    own copies) anywhere in ``block`` (the function being traced)."""
    entries: list[CopyCarried] = current_builder().__dict__.get("copy_carried", [])
    if not entries:
        return
    started: list[CopyCarried] = []
    for op in block.walk():
        started.extend(e for e in entries if e.start is op)
        for target in written_memrefs(op):
            root = root_buffer(target)
            matching = [e for e in started if e.buffer is root]
            if matching and not any(id(op) in e.own_writes for e in matching):
                e = matching[0]
                if e.original:
                    raise trace_error(
                        f"a write into an array that variable '{e.name}' held before it was "
                        f"re-bound inside {e.where}",
                        f"isozyme carries '{e.name}' in a buffer of its own, copied from this "
                        "array, so the write would not reach it as it does in Python when "
                        f"'{e.name}' is still this array; copy it first "
                        f"({e.name} = {e.name}.copy() before the loop or branch)",
                        e.location,
                    )
                raise trace_error(
                    f"a write into array '{e.name}', which is re-bound inside {e.where}",
                    "isozyme carries the re-bound name in a buffer of its own, and the "
                    "array it stands for here is also seen elsewhere (an argument, a view, "
                    "or another variable), which this write would not reach as it does in "
                    f"Python; make the array private first ({e.name} = {e.name}.copy() "
                    "before the loop or branch), or write into a new array",
                    e.location,
                )
