"""Shape facts and shape checks for what tracing assumes about dynamic sizes.

isozyme traces on ranks, not shapes: a signature fixes an argument's rank and which of
its dimensions are 1 (static ``1`` in the memref type), not its other sizes.  So a
dynamic size of an *argument* is never 1, while a size computed in the function (a
slice's length, ``np.zeros(k)``, a reshape) may be 1 at run time.  numpy's broadcasting
depends on exactly that, so every whole-array operation unifies the sizes of its operands
here (:func:`unify_sizes`):

* sizes that are the same SSA value, or static and equal, need nothing;
* two sizes that are both sizes of arguments must be equal: the assumption is recorded
  and the runtime checks it before every call (``ShapeError`` before anything runs);
* any other pair is checked in the compiled code (``isz.check``, a ``ShapeError`` at the
  line that needs it, as numpy raises there), and a size that may be 1 at run time is
  broadcast by a view whose stride is 0 when the size is 1 (:func:`broadcast_view`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    IntegerAttr,
    MemRefType,
    NoneAttr,
    StridedLayoutAttr,
)
from xdsl.ir import Block, BlockArgument, SSAValue

from isozyme.errors import ShapeError

from .context import current_builder

Size = Any  # a Python int (static size) or an ``index`` SSAValue (dynamic size)


def _origin(v: SSAValue, j: int, entry: Block, depth: int = 8) -> tuple[int, int] | None:
    """Which argument size size ``j`` of buffer ``v`` is: an argument's own size, or a
    local buffer allocated with an argument's size (a whole-array temporary)."""
    if isinstance(v, BlockArgument):
        return (v.index, j) if v.block is entry else None
    alloc = v.owner
    if depth == 0 or not isinstance(alloc, memref.AllocOp):
        return None
    shape = alloc.memref.type.get_shape()
    if shape[j] != DYNAMIC_INDEX:
        return None
    size = alloc.dynamic_sizes[sum(1 for s in shape[:j] if s == DYNAMIC_INDEX)]
    dim = size.owner
    if not isinstance(dim, memref.DimOp):
        return None
    k = dim.index.owner
    if not (isinstance(k, arith.ConstantOp) and isinstance(k.value, IntegerAttr)):
        return None
    return _origin(dim.source, k.value.value.data, entry, depth - 1)


def _public_entry() -> Block | None:
    """The entry block of the public function, when it is the one being built (sizes of
    a helper's arguments come from its caller and may be anything)."""
    builder = current_builder()
    entry = getattr(builder.session, "public_entry", None)
    return entry if entry is not None and builder.entry is entry else None


def argument_size(a: Any, j: int) -> tuple[int, int] | None:
    """``(argument, dimension)`` when dynamic size ``j`` of array ``a`` is a size of an
    argument of the public function (never 1 at run time), else None."""
    entry = _public_entry()
    if entry is None or a.type.get_shape()[j] != DYNAMIC_INDEX:
        return None
    return _origin(a.value, j, entry)


def may_be_one(a: Any, j: int) -> bool:
    """Whether size ``j`` of ``a`` may be 1 at run time without being statically 1."""
    return a.type.get_shape()[j] == DYNAMIC_INDEX and argument_size(a, j) is None


def _c(v: int) -> SSAValue:
    from .arrays import to_index  # noqa: PLC0415

    return to_index(v)


def _emit(op: Any) -> SSAValue:
    from .tracer import emit  # noqa: PLC0415

    return emit(op).results[0]


def _eq(a: SSAValue, b: SSAValue) -> SSAValue:
    return _emit(arith.CmpiOp(a, b, "eq"))


def _or(a: SSAValue, b: SSAValue) -> SSAValue:
    return _emit(arith.OrIOp(a, b))


def _shape_error(message: str) -> ShapeError:
    """A ShapeError found when tracing, at the user's ``file:line``."""
    from .diagnostics import format_location, user_location  # noqa: PLC0415

    return ShapeError(f"{format_location(*user_location())}: {message}")


def _check(cond: SSAValue, message: str, a: SSAValue, b: SSAValue) -> None:
    """A run-time shape check: ``ShapeError(message)`` with ``{0}``/``{1}`` the sizes."""
    from .runtime_checks import require  # noqa: PLC0415
    from .tracer import Tracer  # noqa: PLC0415

    require(Tracer(cond), "shape", message, Tracer(a), Tracer(b))


_MISMATCH = ("operands could not be broadcast together: a dimension of size {0} against "
             "one of size {1}")
_INTO = ("could not broadcast a value with a dimension of size {0} into an array "
         "dimension of size {1}")
_UNEQUAL = "array sizes do not fit: a dimension of size {0} against one of size {1}"


def require_same_size(a: Any, j: int, b: Any, k: int) -> None:
    """Require size ``j`` of array ``a`` to equal size ``k`` of array ``b``: before the
    call when both are argument sizes, else in the compiled code."""
    sa, sb = a.type.get_shape()[j], b.type.get_shape()[k]
    if sa != DYNAMIC_INDEX and sb != DYNAMIC_INDEX:
        if sa != sb:
            raise _shape_error(_UNEQUAL.format(sa, sb))
        return
    va, vb = a.dim_index(j), b.dim_index(k)
    if va is vb:
        return
    oa, ob = argument_size(a, j), argument_size(b, k)
    if oa is not None and ob is not None:
        if oa != ob:
            current_builder().session.shape_constraints.append((*oa, *ob))
        return
    _check(_eq(va, vb), _UNEQUAL, va, vb)


def require_size(a: Any, j: int, size: int, *, or_one: bool = False) -> None:
    """Require size ``j`` of ``a`` to be ``size`` (or 1 when ``or_one``)."""
    s = a.type.get_shape()[j]
    if s != DYNAMIC_INDEX:
        if s != size and not (or_one and s == 1):
            raise _shape_error((_MISMATCH if or_one else _UNEQUAL).format(s, size))
        return
    v = a.dim_index(j)
    origin = argument_size(a, j)
    if origin is not None:
        current_builder().session.shape_constraints.append((*origin, None, size))
        return
    cond = _eq(v, _c(size))
    if or_one:
        cond = _or(cond, _eq(v, _c(1)))
    _check(cond, _MISMATCH if or_one else _UNEQUAL, v, _c(size))


def unify_sizes(dims: Sequence[tuple[Any, int]], *, broadcast: bool = True
                ) -> tuple[Size, list[tuple[Any, int]]]:
    """The common size of dimensions ``dims`` (``(array, dimension)`` pairs) under numpy's
    broadcasting rules (``broadcast=False``: all must be equal, as for a matmul's inner
    dimension), with the checks that need.  Returns the size (a Python int or an
    ``index`` value) and the dimensions that must be broadcast at run time (dynamic
    sizes that may be 1 while the result is not: see :func:`broadcast_view`)."""
    statics = [(a, j, a.type.get_shape()[j]) for a, j in dims
               if a.type.get_shape()[j] != DYNAMIC_INDEX]
    # Dynamic sizes, grouped by SSA value (one value: one size, however many operands).
    groups: list[tuple[SSAValue, list[tuple[Any, int]]]] = []
    for a, j in dims:
        if a.type.get_shape()[j] != DYNAMIC_INDEX:
            continue
        v = a.dim_index(j)
        group = next((g for w, g in groups if w is v), None)
        if group is None:
            groups.append((v, [(a, j)]))
        else:
            group.append((a, j))
    sizes = {s for _, _, s in statics}
    non_one = sizes - {1}
    if len(non_one) > 1 or (not broadcast and len(sizes) > 1):
        a_, b_ = sorted(sizes)[:2] if len(non_one) <= 1 else sorted(non_one)[:2]
        raise _shape_error((_MISMATCH if broadcast else _UNEQUAL).format(a_, b_))
    if not groups:
        return (sizes.pop() if len(sizes) == 1 else non_one.pop()) if sizes else 1, []
    firsts = [g[0] for _, g in groups]  # one (array, dimension) per distinct size
    if not broadcast:
        if sizes:
            s = sizes.pop()
            for a, j in firsts:
                require_size(a, j, s)
            return s, []
        a0, j0 = firsts[0]
        for a, j in firsts[1:]:
            require_same_size(a0, j0, a, j)
        return groups[0][0], []
    # A size is never 1 at run time when one of its dimensions is an argument's.
    loose = [(v, g) for v, g in groups if all(may_be_one(a, j) for a, j in g)]
    fixed = [(v, g) for v, g in groups if not all(may_be_one(a, j) for a, j in g)]
    late = [d for _, g in loose for d in g]
    if non_one:
        s = non_one.pop()
        for _, g in fixed:
            require_size(*next(d for d in g if not may_be_one(*d)), s)
        for _, g in loose:
            require_size(*g[0], s, or_one=True)
        return s, late
    if len(groups) == 1:
        return groups[0][0], []
    if fixed:
        a0, j0 = next(d for d in fixed[0][1] if not may_be_one(*d))
        for _, g in fixed[1:]:
            require_same_size(a0, j0, *next(d for d in g if not may_be_one(*d)))
        result = fixed[0][0]
        for v, _ in loose:
            _check(_or(_eq(v, result), _eq(v, _c(1))), _MISMATCH, v, result)
        return result, late
    # Every size may be 1: fold numpy's rule at run time, b = v where b == 1.
    result = loose[0][0]
    for v, _ in loose[1:]:
        one = _c(1)
        _check(_or(_or(_eq(v, result), _eq(v, one)), _eq(result, one)), _MISMATCH, v, result)
        result = _emit(arith.SelectOp(_eq(result, one), v, result))
    return result, late


def fit_size(target: Any, k: int, value: Any, j: int) -> bool:
    """Check that size ``j`` of ``value`` may be written into size ``k`` of ``target``
    (``target[...] = value``, ``target += value``): equal, or 1 (numpy never grows the
    output).  Returns whether ``value`` must be broadcast there at run time."""
    t, s = target.type.get_shape()[k], value.type.get_shape()[j]
    if s == 1:
        return False  # a static 1 broadcasts by its map
    if s != DYNAMIC_INDEX:
        if t != DYNAMIC_INDEX:
            if t != s:
                raise _shape_error(_INTO.format(s, t))
        else:
            require_size(target, k, s)
        return False
    v = value.dim_index(j)
    if t != DYNAMIC_INDEX:
        if t == 1:
            require_size(value, j, 1)
            return False
        require_size(value, j, t, or_one=may_be_one(value, j))
        return may_be_one(value, j)
    tv = target.dim_index(k)
    if v is tv:
        return False
    if may_be_one(value, j):
        _check(_or(_eq(v, tv), _eq(v, _c(1))), _INTO, v, tv)
        return True
    require_same_size(target, k, value, j)
    return False


def broadcast_view(a: Any, shape: Sequence[Size], dims: Sequence[int]) -> Any:
    """A view of ``a`` (rank ``len(shape)`` or less, aligned right) broadcast to
    ``shape`` in dimensions ``dims`` of ``a`` whose size may be 1 at run time: a
    ``memref.subview`` of size ``shape[...]`` whose step is ``0`` when ``a``'s size is 1
    (every index reads element 0, as numpy's zero stride does) and ``1`` otherwise."""
    from .arrays import ArrayTracer  # noqa: PLC0415
    from .tracer import Tracer, emit1, ssa  # noqa: PLC0415

    rank = len(shape)
    sizes: list[Size] = []
    steps: list[Size] = []
    for j in range(a.ndim):
        if j in dims:
            s = shape[j + rank - a.ndim]
            sizes.append(s)
            one = _eq(a.dim_index(j), _c(1))
            steps.append(_emit(arith.SelectOp(one, _c(0), _c(1))))
        else:
            st = a.type.get_shape()[j]
            sizes.append(st if st != DYNAMIC_INDEX else a.dim_index(j))
            steps.append(1)
    static = [s if isinstance(s, int) else DYNAMIC_INDEX for s in sizes]
    layout = StridedLayoutAttr([NoneAttr()] * a.ndim, NoneAttr())
    result_type = MemRefType(a.element_type, static, layout)
    op = memref.SubviewOp.get(ssa(a), [0] * a.ndim, sizes, steps, result_type)
    v = ArrayTracer(emit1(op).value)
    for j, s in enumerate(sizes):
        if not isinstance(s, int):
            v._cache[("idx", j)] = Tracer(s)
    # A broadcast view is read-only in numpy (np.broadcast_to); never written here.
    v._cache["root"] = a._cache.get("root", a.value)
    return v


__all__ = [
    "argument_size", "broadcast_view", "fit_size", "may_be_one", "require_same_size", "require_size",
    "unify_sizes",
]
