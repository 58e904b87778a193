"""What an ``scf.reduce`` region combines with.

The AD rules of ``scf.parallel`` (which differentiate ``addf`` reductions only) and the
GPU outliner (which turns each reduction into a ``memref.atomic_rmw`` of the same
kind) both ask it.
"""

from __future__ import annotations

from xdsl.ir import Region

from isozyme.compiler.ad_rules import combining_kind_of


def combining_kind(region: Region) -> str | None:
    """The kind (``"addf"``, ``"maximumf"``...) of a reduce region whose body is one
    combining op of its two arguments (``ARITH_COMBINING``) whose result its terminator
    (``scf.reduce.return``) returns; None for any other body."""
    block = region.block
    ops = list(block.ops)
    args = block.args
    if len(ops) != 2 or len(set(args)) != 2:
        return None
    combine, terminator = ops
    if (set(combine.operands) == set(args) and len(combine.operands) == 2
            and list(terminator.operands) == [combine.results[0]]):
        return combining_kind_of(combine)
    return None


def describe(region: Region) -> str:
    """The ops of a reduce region, for messages."""
    return "; ".join(o.name for o in region.block.ops)
