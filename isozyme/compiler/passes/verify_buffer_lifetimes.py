"""``verify-buffer-lifetimes``: check that no buffer is used after its ``memref.dealloc``.

A debug check, not a transformation: passes that move ops (fusion moving reads down,
inlining placing a helper's frees) must keep every ``memref.dealloc`` after the last use
of its buffer.  This pass walks each block in order with the set of buffers freed so
far and raises :class:`~isozyme.errors.CompileError` naming the use and the free when
an op (or an op nested in it) uses a freed buffer or a view of one (a second
``dealloc`` counts as a use: a double free).  A free inside a region of a buffer
defined outside it (an ``scf.if`` branch freeing a caller's buffer) stays in force
after the region's op.

Aliasing is followed through view ops (:func:`root_buffer`), not through loop-carried
values or call results.  One walk over the module: cheap enough to run after every stage
in tests (``run_pipeline(..., on_stage=...)``); it is meant for the structured stages,
up to ``simplified``, not for the ``llvm`` dialect's unstructured blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import memref
from xdsl.dialects.builtin import MemRefType, ModuleOp
from xdsl.ir import Block, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass

from isozyme.compiler.analysis.buffers import root_buffer
from isozyme.errors import CompileError


def _defined_in(v: SSAValue, block: Block) -> bool:
    if isinstance(v, BlockArgument):
        return v.block is block
    owner = v.owner
    return isinstance(owner, Operation) and owner.parent_block() is block


def _describe(op: Operation) -> str:
    fn = op.parent_op()
    while fn is not None and fn.name != "func.func":
        fn = fn.parent_op()
    where = f" in @{fn.sym_name.data}" if fn is not None else ""  # type: ignore[attr-defined]
    return f"{op.name}{where}"


def _check_block(
    block: Block, freed_outer: dict[SSAValue, memref.DeallocOp]
) -> dict[SSAValue, memref.DeallocOp]:
    """Check ``block`` given the buffers freed before it; return its frees of buffers
    defined outside it (they stay freed after the op that holds the block)."""
    freed = dict(freed_outer)
    escaping: dict[SSAValue, memref.DeallocOp] = {}
    for op in block.ops:
        for v in op.operands:
            if not isinstance(v.type, MemRefType):
                continue
            free = freed.get(root_buffer(v))
            if free is not None:
                raise CompileError(
                    f"use after free: {_describe(op)} uses a buffer that "
                    f"{_describe(free)} already freed (a pass moved a read past a "
                    f"memref.dealloc)"
                )
        if isinstance(op, memref.DeallocOp):
            root = root_buffer(op.memref)
            freed[root] = op
            if not _defined_in(root, block):
                escaping[root] = op
        for region in op.regions:
            for inner in region.blocks:
                for root, free in _check_block(inner, freed).items():
                    freed[root] = free
                    if not _defined_in(root, block):
                        escaping[root] = free
    return escaping


def verify_buffer_lifetimes(module: ModuleOp) -> None:
    """Raise :class:`CompileError` if any op of ``module`` uses a freed buffer."""
    for block in module.body.blocks:
        _check_block(block, {})


@dataclass(frozen=True)
class VerifyBufferLifetimesPass(ModulePass):
    """Check (without changing the IR) that every buffer is used only before its free."""

    name = "verify-buffer-lifetimes"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        verify_buffer_lifetimes(op)
