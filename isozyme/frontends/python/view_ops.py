"""Views that change an array's shape, as numpy's: ``x.T``/``np.transpose``, new axes
(``x[:, None]``), ``reshape``/``ravel``; and ``np.asarray`` (the array itself).

Each is one op whose result looks into the source's memory (:data:`isozyme.compiler.
ad_rules.memref.MEMREF_VIEWS`), so writes through it reach the base and the base's later
writes are seen through it; the AD passes take the same view of the shadow:

* ``x.T``, ``np.transpose(x, axes)``: ``memref.transpose`` (sizes and strides
  permuted, the type upstream MLIR infers), then ``memref.cast`` to the generic view
  type (fully dynamic strides and offset);
* ``x[:, None]``, ``x[None]``: ``memref.expand_shape`` grouping each new axis (static
  size 1) with a neighbouring dimension;
* ``x.reshape(shape)``, ``np.reshape``, ``x.ravel()``, ``np.ravel``: a 1-D array is
  split by ``memref.expand_shape`` (always a view); a higher-rank one is first merged
  by ``memref.collapse_shape``, which is a view only when the layout allows it (numpy
  copies otherwise).  The layout is known when tracing for local buffers (identity
  layout), for arguments (the signature records it, :func:`layout_of`) and transposes
  of them: a view or a copy then, as numpy decides.  For other views it is checked at
  run time, and a layout numpy would copy raises ``UnsupportedError`` (isozyme never
  returns a copy where numpy may return a view).  The total size is checked at run
  time (``ShapeError``).
* ``x.flatten()`` is a copy, as in numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ArrayAttr,
    DenseArrayBase,
    IntegerAttr,
    MemRefType,
    NoneAttr,
    StridedLayoutAttr,
    i64,
)
from xdsl.ir import BlockArgument, SSAValue

from isozyme.dialects.memref_ext import TransposeOp

from .arrays import ArrayTracer, to_index
from .context import current_builder
from .diagnostics import trace_error
from .runtime_checks import require
from .shape_checks import may_be_one
from .tracer import Tracer, emit, emit1, is_array_value, ssa

Size = Any  # a Python int or an ``index`` SSAValue


def _strided(element_type: Any, shape: Sequence[int]) -> MemRefType:
    return MemRefType(element_type, list(shape),
                      StridedLayoutAttr([NoneAttr()] * len(shape), NoneAttr()))


def _static_of(sizes: Sequence[Size]) -> list[int]:
    return [s if isinstance(s, int) else DYNAMIC_INDEX for s in sizes]


def _derived(v: ArrayTracer, x: ArrayTracer, sizes: Sequence[Size]) -> ArrayTracer:
    """Record ``v`` as a view of ``x``'s memory with the given sizes."""
    for j, s in enumerate(sizes):
        if not isinstance(s, int):
            v._cache[("idx", j)] = Tracer(s)
    v._cache["root"] = x._cache.get("root", x.value)  # type: ignore[assignment]
    return v


def _transposed_type(src: MemRefType, perm: Sequence[int]) -> MemRefType:
    """The type upstream MLIR's ``memref.transpose`` verifier requires: sizes and
    strides of ``src`` permuted, its offset kept (``?`` where not static)."""
    shape = src.get_shape()
    if isinstance(src.layout, NoneAttr):  # identity layout: row-major strides
        strides: list[int | None] = []
        acc: int | None = 1
        for size in reversed(shape):
            strides.insert(0, acc)
            acc = None if acc is None or size == DYNAMIC_INDEX else acc * size
        offset: int | None = 0
    else:
        strides = list(src.layout.get_strides() or [None] * len(shape))
        offset = src.layout.get_offset()
    layout = StridedLayoutAttr(
        [NoneAttr() if strides[p] is None else strides[p] for p in perm],
        NoneAttr() if offset is None else offset,
    )
    return MemRefType(src.element_type, [shape[p] for p in perm], layout)


def transpose(x: ArrayTracer, perm: Sequence[int]) -> ArrayTracer:
    """``np.transpose(x, perm)``: a ``memref.transpose`` view."""
    if list(perm) == list(range(x.ndim)):
        return x
    shape = x.type.get_shape()
    # memref.transpose's result type as upstream MLIR infers it (the source's strides
    # permuted), then a cast to the generic view type every view has here
    op = TransposeOp(ssa(x), perm, _transposed_type(x.type, perm))
    v = ArrayTracer(emit1(memref.CastOp.get(
        emit1(op).value, _strided(x.element_type, [shape[p] for p in perm]))).value)
    # What is known of the result's layout: a size is known to be 1 or not when static or
    # a size of an argument (never 1, see shape_checks.py), also through temporaries.
    layout = layout_of(x)
    if layout is not None and not any(may_be_one(x, j) for j in range(x.ndim)):
        moved = [p for p in perm if shape[p] != 1]
        if moved == sorted(moved):
            v._cache["layout"] = layout  # type: ignore[assignment]  # same spacing
        elif layout in ("C", "flat"):
            # equally spaced in C order before, not after: two dimensions swapped
            v._cache["layout"] = "none"  # type: ignore[assignment]
    return _derived(v, x, [shape[p] if shape[p] != DYNAMIC_INDEX else x.dim_index(p)
                           for p in perm])


def _reassociation(groups: Sequence[Sequence[int]]) -> ArrayAttr:
    return ArrayAttr([ArrayAttr([IntegerAttr(i, i64) for i in g]) for g in groups])


def _expand(x: ArrayTracer, groups: Sequence[Sequence[int]], sizes: Sequence[Size]
            ) -> ArrayTracer:
    """``memref.expand_shape`` of ``x``: source dimension ``i`` becomes the result
    dimensions ``groups[i]`` of ``sizes``."""
    static = _static_of(sizes)
    op = memref.ExpandShapeOp.create(
        operands=[ssa(x), *[s for s in sizes if not isinstance(s, int)]],
        result_types=[_strided(x.element_type, static)],
        properties={"reassociation": _reassociation(groups),
                    "static_output_shape": DenseArrayBase.from_list(i64, static)},
    )
    v = ArrayTracer(emit1(op).value)
    return _derived(v, x, sizes)


def _collapse(x: ArrayTracer, groups: Sequence[Sequence[int]], sizes: Sequence[Size]
              ) -> ArrayTracer:
    """``memref.collapse_shape`` of ``x`` (each group of dimensions merged into one of
    ``sizes``); the caller has checked that each group is contiguous."""
    op = memref.CollapseShapeOp.create(
        operands=[ssa(x)],
        result_types=[_strided(x.element_type, _static_of(sizes))],
        properties={"reassociation": _reassociation(groups)},
    )
    v = ArrayTracer(emit1(op).value)
    return _derived(v, x, sizes)


def new_axes(x: ArrayTracer, where: Sequence[bool]) -> ArrayTracer:
    """``x`` with a new axis of size 1 at each result position where ``where`` is True
    (the other positions are ``x``'s dimensions in order): a ``memref.expand_shape``."""
    if x.ndim == 0:
        raise trace_error("indexing a 0-dimensional view with None",
                          "index the array with None before the integer indices")
    groups: list[list[int]] = [[] for _ in range(x.ndim)]
    sizes: list[Size] = []
    j = -1
    pending: list[int] = []  # new axes before the first dimension
    for k, new in enumerate(where):
        if new:
            (groups[j] if j >= 0 else pending).append(k)
            sizes.append(1)
            continue
        j += 1
        groups[j].extend(pending)
        pending = []
        groups[j].append(k)
        s = x.type.get_shape()[j]
        sizes.append(s if s != DYNAMIC_INDEX else x.dim_index(j))
    return _expand(x, groups, sizes)


def _i(v: Size) -> SSAValue:
    return to_index(v) if isinstance(v, int) else v


def _op(op: Any) -> SSAValue:
    return emit(op).results[0]


def _is_contiguous(x: ArrayTracer) -> bool:
    """Statically C-contiguous: a buffer with the identity layout (a local array), or a
    1-D array of unit stride."""
    layout = x.type.layout
    if isinstance(layout, NoneAttr):
        return True
    strides = x.type.get_strides()
    return x.ndim == 1 and strides is not None and list(strides) == [1]


def layout_of(x: ArrayTracer) -> str | None:
    """What is known of ``x``'s memory layout when tracing: ``"C"`` (C-contiguous: a
    local buffer, or an argument the signature says is), ``"flat"`` (equally spaced
    elements), ``"none"`` (neither), or None (a view: known only at run time)."""
    if _is_contiguous(x):
        return "C"
    known = x._cache.get("layout")
    if known is not None:
        return known  # type: ignore[return-value]
    session = current_builder().session
    v = x.value
    if isinstance(v, BlockArgument) and v.block is session.public_entry \
            and v.index < len(session.arg_layouts):
        return session.arg_layouts[v.index]
    return None


def require_contiguous(x: ArrayTracer, what: str, unit_one: bool = False) -> None:
    """Check at run time that ``x`` is C-contiguous up to a unit stride (what
    ``memref.collapse_shape`` of all its dimensions needs: numpy's reshape is a view
    then), or with ``unit_one`` C-contiguous (numpy's ``ravel`` is a view only then),
    ignoring dimensions of size 1, or empty; else ``UnsupportedError`` naming
    ``what``."""
    if _is_contiguous(x):
        return
    meta = emit(memref.ExtractStridedMetaDataOp(ssa(x)))
    r = x.ndim
    sizes = list(meta.results[2:2 + r])
    strides = list(meta.results[2 + r:2 + 2 * r])
    one = to_index(1)
    true = _op(arith.ConstantOp.from_int_and_width(1, 1))
    # Inner to outer: dimension k fits when its size is 1, or no dimension inside it
    # has a size other than 1 (its stride is then the unit), or its stride is the unit
    # times the number of elements inside it.
    unit: SSAValue = one
    inside: SSAValue = one
    seen: SSAValue = _op(arith.ConstantOp.from_int_and_width(0, 1))
    ok: SSAValue = true
    for k in range(r - 1, -1, -1):
        not_one = _op(arith.CmpiOp(sizes[k], one, "ne"))
        fits = _op(arith.CmpiOp(strides[k], _op(arith.MuliOp(unit, inside)), "eq"))
        first = _op(arith.XOrIOp(seen, true))
        good = _op(arith.OrIOp(_op(arith.XOrIOp(not_one, true)), _op(arith.OrIOp(first, fits))))
        ok = _op(arith.AndIOp(ok, good))
        unit = _op(arith.SelectOp(_op(arith.AndIOp(not_one, first)), strides[k], unit))
        seen = _op(arith.OrIOp(seen, not_one))
        inside = _op(arith.MuliOp(inside, sizes[k]))
    if unit_one:
        ok = _op(arith.AndIOp(ok, _op(arith.CmpiOp(unit, one, "eq"))))
    empty = _op(arith.CmpiOp(inside, to_index(0), "eq"))
    require(Tracer(_op(arith.OrIOp(ok, empty))), "unsupported",
            f"{what} of an array that is not C-contiguous: numpy returns a copy there, "
            "isozyme only views; copy it first (x.copy()) if a copy is what you want")


def _product(sizes: Sequence[Size]) -> Size:
    total: Size = 1
    for s in sizes:
        if isinstance(total, int) and isinstance(s, int):
            total *= s
        elif isinstance(s, int) and s == 1:
            continue
        elif isinstance(total, int) and total == 1:
            total = s
        else:
            total = _op(arith.MuliOp(_i(total), _i(s)))
    return total


def reshape(x: ArrayTracer, dims: Sequence[object], what: str = "reshape") -> ArrayTracer:
    """``x.reshape(dims)`` (C order, at most one ``-1``) as a view of ``x``; with
    ``what="ravel"`` numpy's ``ravel`` (a view only of a C-contiguous array).

    ``dims`` are Python ints or traced integers.  The total size must match
    (``ShapeError`` at run time, numpy's "cannot reshape array of size ... into shape").
    """
    if sum(1 for d in dims if isinstance(d, int) and d == -1) > 1:
        raise ValueError("can only specify one unknown dimension")
    in_sizes: list[Size] = [s if s != DYNAMIC_INDEX else x.dim_index(j)
                            for j, s in enumerate(x.type.get_shape())]
    total = _product(in_sizes)
    sizes: list[Size] = []
    unknown = None
    for d in dims:
        if isinstance(d, Tracer):
            if is_array_value(d):
                raise trace_error("an array used as a shape", "sizes are integers")
            sizes.append(to_index(d))
        elif int(d) == -1:  # type: ignore[call-overload]
            unknown = len(sizes)
            sizes.append(-1)
        else:
            if int(d) < 0:  # type: ignore[call-overload]
                raise ValueError("negative dimensions are not allowed")
            sizes.append(int(d))  # type: ignore[call-overload]
    known = _product([s for s in sizes if not (isinstance(s, int) and s == -1)])
    if unknown is not None:
        if isinstance(known, int) and isinstance(total, int):
            if known == 0 or total % known:
                raise ValueError(f"cannot reshape array of size {total} into shape "
                                 f"{tuple(dims)}")
            sizes[unknown] = total // known
        else:
            safe = _op(arith.MaxSIOp(_i(known), to_index(1)))
            sizes[unknown] = _op(arith.DivSIOp(_i(total), safe))
        known = _product(sizes)
    if isinstance(known, int) and isinstance(total, int):
        if known != total:
            raise ValueError(f"cannot reshape array of size {total} into shape {tuple(dims)}")
    else:
        require(Tracer(_op(arith.CmpiOp(_i(known), _i(total), "eq"))), "shape",
                "cannot reshape array of size {0} into a shape of size {1}",
                Tracer(_i(total)), Tracer(_i(known)))
    if len(sizes) == x.ndim and all(
            (isinstance(a, int) and isinstance(b, int) and a == b) or a is b
            for a, b in zip(sizes, in_sizes)):
        return x
    flat = x
    if x.ndim > 1 or what == "ravel":
        # numpy: a view when the layout allows it, else a copy; where the layout is
        # only known at run time, a copy would be wrong half the time: check instead.
        layout = layout_of(x)
        ok = ("C",) if what == "ravel" else ("C", "flat")
        if layout is not None and layout not in ok:
            from .whole_array import copy_to_new  # noqa: PLC0415

            x = copy_to_new(x)
        elif layout is None:
            require_contiguous(x, what, unit_one=what == "ravel")
        flat = x if x.ndim == 1 else _collapse(x, [list(range(x.ndim))], [total])
    if len(sizes) == 1:
        return flat  # 1-D to 1-D of the same (checked) size: the array itself
    return _expand(flat, [list(range(len(sizes)))], sizes)
