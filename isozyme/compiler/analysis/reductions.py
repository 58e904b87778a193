"""What an ``scf.reduce`` region combines with.

The AD rules of ``scf.parallel`` (which differentiate ``addf`` reductions only) and the
GPU outliner (which turns each reduction into a ``memref.atomic_rmw`` of the same
kind) both ask it.
"""

from __future__ import annotations

from xdsl.dialects import arith, scf
from xdsl.ir import Operation, Region

#: The combining ops a reduce region may consist of -> the ``atomic_rmw`` kind (see
#: ``isozyme.dialects.memref_ext.ATOMIC_RMW_KIND``) that does the same.
REDUCE_KINDS: dict[type[Operation], str] = {
    arith.AddfOp: "addf", arith.AddiOp: "addi", arith.MulfOp: "mulf",
    arith.MuliOp: "muli", arith.MaximumfOp: "maximumf", arith.MinimumfOp: "minimumf",
    arith.MaxnumfOp: "maxnumf", arith.MinnumfOp: "minnumf", arith.MaxSIOp: "maxs",
    arith.MinSIOp: "mins", arith.MaxUIOp: "maxu", arith.MinUIOp: "minu",
    arith.OrIOp: "ori", arith.AndIOp: "andi", arith.XOrIOp: "xori",
}


def combining_kind(region: Region) -> str | None:
    """The kind (``"addf"``, ``"maximumf"``...) of a reduce region whose body is one
    combining op of its two arguments followed by ``scf.reduce.return``; None for any
    other body."""
    ops = list(region.block.ops)
    args = region.block.args
    if (len(ops) == 2 and isinstance(ops[1], scf.ReduceReturnOp)
            and type(ops[0]) in REDUCE_KINDS
            and len(ops[0].operands) == 2 and set(ops[0].operands) == set(args)
            and len(set(args)) == 2
            and ops[1].operands[0] is ops[0].results[0]):
        return REDUCE_KINDS[type(ops[0])]
    return None


def describe(region: Region) -> str:
    """The ops of a reduce region, for messages."""
    return "; ".join(o.name for o in region.block.ops)
