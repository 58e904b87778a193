"""Index arithmetic and ``scf.for`` loops of loads and stores, for the whole-array
builders whose indices are not affine in the loop variables with dynamic sizes (scans,
``np.eye``, ``np.triu``, ``np.argmax``...).

A loop here is one ``scf.for`` per dimension whatever the sizes are (nothing is unrolled
over array sizes); the AD passes differentiate it through their memref and scf rules.
Sizes and bounds are ``index`` SSA values or Python ints (:data:`Idx`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import IndexType
from xdsl.ir import Block, Region, SSAValue

from ..arrays import ArrayTracer, to_index
from ..context import current_builder
from ..tracer import Tracer, as_tracer, constant, emit, emit1, index, ssa

Idx = Any  # a Python int or an ``index`` SSAValue


def iv(a: Idx) -> SSAValue:
    """``a`` as an ``index`` SSA value (Python ints and integer tracers are converted)."""
    if isinstance(a, SSAValue):
        return a
    return to_index(a)


def _op(op: Any) -> SSAValue:
    return emit(op).results[0]


def add(a: Idx, b: Idx) -> Idx:
    """``a + b`` on indices (folded when both are Python ints)."""
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if isinstance(b, int) and b == 0:
        return a
    if isinstance(a, int) and a == 0:
        return b
    return _op(arith.AddiOp(iv(a), iv(b)))


def sub(a: Idx, b: Idx) -> Idx:
    """``a - b`` on indices."""
    if isinstance(a, int) and isinstance(b, int):
        return a - b
    if isinstance(b, int) and b == 0:
        return a
    return _op(arith.SubiOp(iv(a), iv(b)))


def mul(a: Idx, b: Idx) -> Idx:
    """``a * b`` on indices."""
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if isinstance(b, int) and b == 1:
        return a
    if isinstance(a, int) and a == 1:
        return b
    return _op(arith.MuliOp(iv(a), iv(b)))


def imin(a: Idx, b: Idx) -> Idx:
    """``min(a, b)`` on (signed) indices."""
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    return _op(arith.MinSIOp(iv(a), iv(b)))


def imax(a: Idx, b: Idx) -> Idx:
    """``max(a, b)`` on (signed) indices."""
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    return _op(arith.MaxSIOp(iv(a), iv(b)))


def clamp(a: Idx, lo: Idx, hi: Idx) -> Idx:
    """``min(max(a, lo), hi)``."""
    return imin(imax(a, lo), hi)


def size_of(x: ArrayTracer, k: int) -> Idx:
    """Dimension ``k`` of ``x``: a Python int when static, else an ``index`` value."""
    s = x.type.get_shape()[k]
    return s if s >= 0 else x.dim_index(k)


def for_range(lb: Idx, ub: Idx, body: Callable[[SSAValue], None]) -> None:
    """One ``scf.for %i = lb to ub step 1`` whose body is built by ``body(%i)`` (no
    iteration when ``ub <= lb``)."""
    fb = current_builder()
    block = Block(arg_types=[index])
    with fb.at(block):
        body(block.args[0])
        fb.insert(scf.YieldOp())
    emit(scf.ForOp(iv(lb), iv(ub), ssa(constant(1, index)), [], Region(block)))


def for_each(bounds: Sequence[tuple[Idx, Idx]], body: Callable[[list[SSAValue]], None]
             ) -> None:
    """Nested ``scf.for`` loops over ``lb_k <= i_k < ub_k`` (outermost first), ``body``
    called with the induction variables in the innermost block."""

    def level(k: int, ivs: list[SSAValue]) -> None:
        if k == len(bounds):
            body(ivs)
            return
        for_range(bounds[k][0], bounds[k][1], lambda i: level(k + 1, [*ivs, i]))

    level(0, [])


def load(x: ArrayTracer, idx: Sequence[Idx]) -> Tracer:
    """``memref.load x[idx]`` (no bounds check: the loops stay inside the sizes)."""
    return emit1(memref.LoadOp.get(ssa(x), [iv(i) for i in idx]))


def store(value: object, x: ArrayTracer, idx: Sequence[Idx]) -> None:
    """``memref.store value, x[idx]`` (``value`` converted to the element type)."""
    emit(memref.StoreOp.get(ssa(as_tracer(value, x.element_type)), ssa(x),
                            [iv(i) for i in idx]))


def as_i64(i: Idx) -> Tracer:
    """An index as an ``i64`` tracer (what numpy's integer results are)."""
    from xdsl.dialects.builtin import i64  # noqa: PLC0415

    if isinstance(i, int):
        return constant(i, i64)
    if isinstance(i.type, IndexType):
        return emit1(arith.IndexCastOp(i, i64))
    return Tracer(i)
