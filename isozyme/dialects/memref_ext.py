"""``memref`` ops of upstream MLIR that xDSL 0.74 lacks: ``memref.transpose``; and the
names of ``memref.atomic_rmw``'s kinds, which xDSL stores as a bare integer.

isozyme needs it for numpy's ``x.T``/``np.transpose``, which are views: the result
looks into the source's memory with permuted sizes and strides.  The op keeps MLIR's
name and meaning (``memref.transpose %m (perm) : T to T'``); the permutation is printed
as an ``affine_map`` attribute because xDSL's parser has no bare affine-map syntax::

    %t = memref.transpose %a affine_map<(d0, d1) -> (d1, d0)>
           : memref<?x?xf64, strided<[?, 1], offset: ?>> to memref<?x?xf64, strided<[?, ?], offset: ?>>

Result dimension ``k`` is source dimension ``permutation[k]`` (size and stride).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from xdsl.dialects import memref
from xdsl.dialects.builtin import (
    AffineMapAttr,
    IntegerAttr,
    MemRefType,
    NoneAttr,
    StridedLayoutAttr,
    i64,
)
from xdsl.ir import Attribute, Dialect, SSAValue
from xdsl.ir.affine import AffineExpr, AffineMap
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import NoMemoryEffect
from xdsl.utils.exceptions import VerifyException


@irdl_op_definition
class TransposeOp(IRDLOperation):
    """``memref.transpose``: a view of ``source`` with its dimensions permuted (no
    copy); dimension ``k`` of the result is dimension ``permutation(k)`` of the source."""

    name = "memref.transpose"

    source = operand_def(MemRefType)
    permutation = prop_def(AffineMapAttr)
    result = result_def(MemRefType)

    traits = traits_def(NoMemoryEffect())

    assembly_format = (
        "$source $permutation attr-dict `:` type($source) `to` type($result)"
    )

    def __init__(self, source: SSAValue, perm: Sequence[int],
                 result_type: Attribute | None = None) -> None:
        n = len(perm)
        amap = AffineMap(n, 0, tuple(AffineExpr.dimension(p) for p in perm))
        if result_type is None:
            src_t = source.type
            assert isinstance(src_t, MemRefType)
            shape = src_t.get_shape()
            result_type = MemRefType(
                src_t.element_type, [shape[p] for p in perm],
                StridedLayoutAttr([NoneAttr()] * n, NoneAttr()),
            )
        super().__init__(operands=[source], result_types=[result_type],
                         properties={"permutation": AffineMapAttr(amap)})

    @property
    def perm(self) -> list[int]:
        """The permutation as a list: result dimension ``k`` is source ``perm[k]``."""
        out = []
        for e in self.permutation.data.results:
            pos = getattr(e, "position", None)
            if pos is None:
                raise VerifyException("memref.transpose: the permutation must be of dims")
            out.append(pos)
        return out

    def verify_(self) -> None:
        src, res = self.source.type, self.result.type
        assert isinstance(src, MemRefType) and isinstance(res, MemRefType)
        perm = self.perm
        if sorted(perm) != list(range(src.get_num_dims())) or \
                res.get_num_dims() != src.get_num_dims():
            raise VerifyException(f"memref.transpose: {perm} is not a permutation of "
                                  f"the source's {src.get_num_dims()} dimensions")


MemRefExt = Dialect("memref_ext", [TransposeOp])


#: ``arith::AtomicRMWKind`` of upstream MLIR (``ArithBase.td``): name -> ``kind`` value.
ATOMIC_RMW_KIND: dict[str, int] = {
    "addf": 0,
    "addi": 1,
    "andi": 2,
    "assign": 3,
    "maximumf": 4,
    "maxnumf": 5,
    "maxs": 6,
    "maxu": 7,
    "minimumf": 8,
    "minnumf": 9,
    "mins": 10,
    "minu": 11,
    "mulf": 12,
    "muli": 13,
    "ori": 14,
    "xori": 15,
}


def atomic_rmw(kind: str, value: SSAValue, buffer: SSAValue,
               indices: Iterable[SSAValue]) -> memref.AtomicRMWOp:
    """``%old = memref.atomic_rmw <kind> %value, %buffer[indices]`` (``kind`` a name of
    :data:`ATOMIC_RMW_KIND`; xDSL 0.74 has no builder for the op)."""
    return memref.AtomicRMWOp.create(
        operands=[value, buffer, *indices], result_types=[value.type],
        properties={"kind": IntegerAttr(ATOMIC_RMW_KIND[kind], i64)},
    )


def atomic_rmw_kind_name(op: memref.AtomicRMWOp) -> str:
    """The name (``addf``...) of an ``atomic_rmw``'s kind."""
    from isozyme.errors import UnsupportedError

    value = op.kind.value.data
    for name, v in ATOMIC_RMW_KIND.items():
        if v == value:
            return name
    raise UnsupportedError(f"memref.atomic_rmw of unknown kind {value}")
