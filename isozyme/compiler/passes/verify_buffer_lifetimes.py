"""``verify-buffer-lifetimes``: check that no buffer is used after its ``memref.dealloc``.

A debug check, not a transformation: passes that move ops (fusion moving reads down,
inlining placing a helper's frees) must keep every ``memref.dealloc`` after the last use
of its buffer.  This pass walks each block in order with the set of buffers freed so
far and raises :class:`~isozyme.errors.CompileError` naming the use and the free when
an op (or an op nested in it) uses a freed buffer or a view of one (a second
``dealloc`` counts as a use: a double free).  A free inside a region of a buffer
defined outside it (an ``scf.if`` branch freeing a caller's buffer) stays in force
after the region's op.

Aliasing is followed through view ops (:func:`root_buffer`) and through calls of the
module's functions (:class:`_Aliases`: a result that returns an argument, or a view of
one, is that argument; two results returning the same buffer are one buffer, so a caller
freeing both is a double free), not through loop-carried values.  One walk over the
module: cheap enough to run after every stage in tests (``run_pipeline(...,
on_stage=...)``); it is meant for the structured stages, up to ``simplified``, not for
the ``llvm`` dialect's unstructured blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func, memref
from xdsl.dialects.builtin import MemRefType, ModuleOp
from xdsl.ir import Block, BlockArgument, Operation, OpResult, SSAValue
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


#: Where a function's result comes from: ("arg", k) its k-th argument (or a view of it),
#: ("result", j) the same buffer as its earlier result j, None a buffer of its own.
_Source = tuple[str, int] | None


class _Aliases:
    """The buffer behind a memref value: :func:`root_buffer` through views, and through
    ``func.call`` results, by what the callee's ``func.return`` returns."""

    def __init__(self, module: ModuleOp) -> None:
        self._funcs = {op.sym_name.data: op for op in module.walk()
                       if isinstance(op, func.FuncOp)}
        self._sources: dict[str, list[_Source]] = {}

    def root(self, v: SSAValue) -> SSAValue:
        """The buffer ``v`` is, or views."""
        v = root_buffer(v)
        while isinstance(v, OpResult) and isinstance(v.op, func.CallOp):
            sources = self._returns(v.op.callee.string_value())
            source = sources[v.index] if v.index < len(sources) else None
            if source is None:
                break
            kind, k = source
            v = root_buffer(v.op.operands[k] if kind == "arg" else v.op.results[k])
        return v

    def _returns(self, name: str) -> list[_Source]:
        if name in self._sources:
            return self._sources[name]
        self._sources[name] = []  # recursion (or an external function): nothing known
        fn = self._funcs.get(name)
        returns = [op for op in fn.walk() if isinstance(op, func.ReturnOp)] if fn else []
        if len(returns) != 1 or not fn.body.blocks:  # type: ignore[union-attr]
            return []
        entry = fn.body.blocks[0]  # type: ignore[union-attr]
        roots = [self.root(v) if isinstance(v.type, MemRefType) else None
                 for v in returns[0].operands]
        sources: list[_Source] = []
        for i, r in enumerate(roots):
            if isinstance(r, BlockArgument) and r.block is entry:
                sources.append(("arg", r.index))
            else:
                same = [j for j in range(i) if r is not None and roots[j] is r]
                sources.append(("result", same[0]) if same else None)
        self._sources[name] = sources
        return sources


def _check_block(
    block: Block, freed_outer: dict[SSAValue, memref.DeallocOp], aliases: _Aliases
) -> dict[SSAValue, memref.DeallocOp]:
    """Check ``block`` given the buffers freed before it; return its frees of buffers
    defined outside it (they stay freed after the op that holds the block)."""
    freed = dict(freed_outer)
    escaping: dict[SSAValue, memref.DeallocOp] = {}
    for op in block.ops:
        for v in op.operands:
            if not isinstance(v.type, MemRefType):
                continue
            free = freed.get(aliases.root(v))
            if free is not None:
                why = ("the buffer is freed twice: a double free"
                       if isinstance(op, memref.DeallocOp)
                       else "a pass moved a read past a memref.dealloc")
                raise CompileError(
                    f"use after free: {_describe(op)} uses a buffer that "
                    f"{_describe(free)} already freed ({why})"
                )
        if isinstance(op, memref.DeallocOp):
            root = aliases.root(op.memref)
            freed[root] = op
            if not _defined_in(root, block):
                escaping[root] = op
        for region in op.regions:
            for inner in region.blocks:
                for root, free in _check_block(inner, freed, aliases).items():
                    freed[root] = free
                    if not _defined_in(root, block):
                        escaping[root] = free
    return escaping


def verify_buffer_lifetimes(module: ModuleOp) -> None:
    """Raise :class:`CompileError` if any op of ``module`` uses a freed buffer (a second
    ``memref.dealloc`` of a buffer counts: a double free)."""
    aliases = _Aliases(module)
    for block in module.body.blocks:
        _check_block(block, {}, aliases)


@dataclass(frozen=True)
class VerifyBufferLifetimesPass(ModulePass):
    """Check (without changing the IR) that every buffer is used only before its free."""

    name = "verify-buffer-lifetimes"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        verify_buffer_lifetimes(op)
