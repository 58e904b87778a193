"""The state of one trace: the module being built and where new ops are inserted.

A :class:`TraceSession` owns the ``builtin.module`` and the cache of traced helper
functions.  Each ``func.func`` being built has a :class:`FunctionBuilder` holding a stack
of insertion blocks (the innermost ``scf`` region being filled is on top).  Ops are always
appended at the end of the current block.  The active session and builder are found
through :func:`current_builder`, so that operator overloads on traced values need no
explicit context argument.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects import builtin, func
from xdsl.ir import Block, Operation

from isozyme.errors import TraceError


class FunctionBuilder:
    """Builds the body of one ``func.func``: a stack of blocks ops are appended to."""

    def __init__(self, session: "TraceSession", entry: Block) -> None:
        self.session = session
        self.entry = entry
        self._blocks: list[Block] = [entry]
        # Arrays allocated (memref.alloc) and the block they were allocated in; freed at
        # the end of that block (see arrays.free_allocs).
        self.allocs: list[tuple[Any, Block]] = []
        # Known lower bounds of integer values (id of the SSAValue -> (value, bound)),
        # used to skip the wrapping of negative array indices.
        self.lower_bounds: dict[int, tuple[Any, int]] = {}

    @property
    def block(self) -> Block:
        """The block new ops are appended to."""
        return self._blocks[-1]

    def insert(self, op: Operation) -> Operation:
        """Append ``op`` to the current block and return it."""
        self.block.add_op(op)
        return op

    def visible(self, block: Block | None) -> bool:
        """Whether values defined in ``block`` may be used at the insertion point: the
        block is the current one or one the current one is nested in."""
        return any(b is block for b in self._blocks)

    @contextlib.contextmanager
    def at_entry(self) -> Iterator[Block]:
        """Within the ``with``, append new ops to the entry block, with only its values
        visible (while a loop or branch body is being built, its op is not in the entry
        block yet: the new ops come before it)."""
        saved = self._blocks
        self._blocks = [self.entry]
        try:
            yield self.entry
        finally:
            self._blocks = saved

    def defined_in_entry(self, value: Any) -> bool:
        """Whether the SSA value is defined in the entry block (an argument or an op
        there)."""
        owner = value.owner
        block = owner if isinstance(owner, Block) else owner.parent_block()
        return block is self.entry

    @contextlib.contextmanager
    def at(self, block: Block) -> Iterator[Block]:
        """Within the ``with``, append new ops to ``block`` (e.g. an ``scf`` region)."""
        self._blocks.append(block)
        try:
            yield block
        finally:
            popped = self._blocks.pop()
            assert popped is block


@dataclass
class HelperEntry:
    """A traced helper function: its symbol and how to rebuild its Python results."""

    name: str
    result_types: list[Any]
    rebuild: Any  # callable(list of result values) -> Python value
    inline: bool = False
    owned: list[bool] | None = None  # per result: an array the caller must free
    atomic: bool = False  # it (or a helper it calls) has a memref.atomic_rmw


@dataclass
class TraceSession:
    """One call of :func:`isozyme.frontends.python.trace`: the module and its caches."""

    module: builtin.ModuleOp = field(default_factory=lambda: builtin.ModuleOp([]))
    used_names: set[str] = field(default_factory=set)
    helpers: dict[Any, HelperEntry] = field(default_factory=dict)
    in_progress: set[Any] = field(default_factory=set)
    # the public function's entry block, and the sizes its tracing assumed of its array
    # arguments: (arg, dim, arg, dim) for two equal sizes, (arg, dim, None, n) for a
    # size n; checked before every call, see shape_checks.py
    public_entry: Block | None = None
    shape_constraints: list[tuple[int, int, int | None, int]] = field(default_factory=list)
    # per argument of the public function: the memory layout of an array argument,
    # "C" (C-contiguous), "flat" (its elements are equally spaced: a merging reshape is
    # a view), "none" (neither: numpy copies), or None (unknown); see view_ops.py
    arg_layouts: list[str | None] = field(default_factory=list)
    # What the compile cache must re-check (see isozyme/reads.py): the Python functions
    # the converted code called (id -> function, held so that ids stay unique) ...
    functions: dict[int, Any] = field(default_factory=dict)
    # ... and the large numpy arrays passed as hidden arguments appended to the public
    # function (id -> (array, its tracer)); `hidden_type` maps an array to its memref
    # type, or to None to bake it into the IR (None: never hide).
    hidden: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    hidden_type: Any = None
    public_builder: Any = None
    public_arg_types: list[Any] | None = None

    def note_function(self, f: Any) -> None:
        """Record a Python function called at trace time (its globals and closure
        become part of the compiled code's cache key)."""
        if id(f) not in self.functions:
            self.functions[id(f)] = f

    def unique_name(self, base: str) -> str:
        """Return ``base`` sanitized to an identifier, suffixed ``_1``, ``_2``... if taken."""
        name = sanitize_name(base)
        candidate, n = name, 0
        while candidate in self.used_names:
            n += 1
            candidate = f"{name}_{n}"
        self.used_names.add(candidate)
        return candidate

    def add_function(self, op: func.FuncOp) -> None:
        """Append a finished ``func.func`` to the module."""
        self.module.body.block.add_op(op)


def sanitize_name(name: str) -> str:
    """Turn a Python ``__name__`` (``<lambda>``, ``f.<locals>.g``) into a symbol name."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "fn"
    if name[0].isdigit():
        name = "_" + name
    return name


_STATE = threading.local()

#: Held while tracing (by :func:`isozyme.frontends.python.trace`) and, in
#: :mod:`isozyme.api`, around each trace and compilation: the frontend keeps caches and
#: counters shared between traces, and xDSL and LLVM are not thread-safe.  Reentrant:
#: code running at trace time may trace (or call ``autodiff``) again.  One lock for both,
#: so that no two locks can be taken in opposite orders.
COMPILE_LOCK = threading.RLock()


def _stack() -> list[FunctionBuilder]:
    stack = getattr(_STATE, "stack", None)
    if stack is None:
        stack = _STATE.stack = []
    return stack


def current_builder() -> FunctionBuilder:
    """The builder of the function being traced; a TraceError outside a trace."""
    stack = _stack()
    if not stack:
        raise TraceError("no isozyme trace is active (traced values escaped their trace?)")
    return stack[-1]


def tracing() -> bool:
    """Whether a trace is active on this thread."""
    return bool(_stack())


@contextlib.contextmanager
def building(builder: FunctionBuilder) -> Iterator[FunctionBuilder]:
    """Make ``builder`` the current function builder within the ``with``."""
    stack = _stack()
    stack.append(builder)
    try:
        yield builder
    finally:
        stack.pop()
