"""Activity annotations and differentiation modes (Enzyme.jl's, spelled the Python way).

An argument passed to :func:`isozyme.autodiff` without annotation is ``Const``.
Annotations check their inputs when constructed, so a bad annotation fails before
anything is traced, compiled or written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isozyme.errors import AnnotationError
from isozyme.pytree import check_same_structure, flatten, is_node


# -- modes ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Mode:
    """A differentiation mode: ``Forward``, ``ForwardWithPrimal``, ``Reverse``,
    ``ReverseWithPrimal``."""

    name: str
    reverse: bool
    with_primal: bool

    def __repr__(self) -> str:
        return self.name


Forward = Mode("Forward", reverse=False, with_primal=False)
ForwardWithPrimal = Mode("ForwardWithPrimal", reverse=False, with_primal=True)
Reverse = Mode("Reverse", reverse=True, with_primal=False)
ReverseWithPrimal = Mode("ReverseWithPrimal", reverse=True, with_primal=True)


# -- value classification --------------------------------------------------------------
def is_float_scalar(x: object) -> bool:
    """Python floats and numpy float64/float32 scalars."""
    return isinstance(x, (float, np.float64, np.float32)) and not isinstance(x, bool)


def is_int_scalar(x: object) -> bool:
    """Python ints and numpy integers (not bools)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def is_array(x: object) -> bool:
    """numpy arrays and anything exposing an array interface (numpy scalars are not)."""
    if isinstance(x, np.generic):
        return False
    return isinstance(x, np.ndarray) or hasattr(x, "__array_interface__") or hasattr(
        x, "__cuda_array_interface__"
    )


def describe(x: object) -> str:
    """A short description of a value's type for error messages."""
    if isinstance(x, np.ndarray):
        return f"numpy array of dtype {x.dtype} and shape {x.shape}"
    return type(x).__name__


# -- annotations -----------------------------------------------------------------------
class Annotation:
    """Base class of activity annotations."""

    __slots__ = ("val",)
    val: object


class Const(Annotation):
    """``Const(x)``: x is not differentiated."""

    __slots__ = ()

    def __init__(self, val: object):
        self.val = val

    def __repr__(self) -> str:
        return f"Const({self.val!r})"


class Active(Annotation):
    """``Active(x)``: x is an immutable float whose derivative reverse mode returns."""

    __slots__ = ()

    def __init__(self, val: object):
        if type(val) is float:  # the common case first: this runs on every call
            self.val = val
            return
        if is_node(val):
            leaves, _ = flatten(val)
            for leaf in leaves:
                Active(leaf)  # every leaf must be a float scalar
            self.val = val
            return
        if is_array(val):
            raise AnnotationError(
                f"Active(...) got a {describe(val)}: Active is for immutable float "
                "scalars; pass arrays as Duplicated(x, dx)"
            )
        if not is_float_scalar(val) and not _is_traced(val):
            raise AnnotationError(
                f"Active(...) got a value of type {describe(val)}: only floats "
                "(float, numpy.float64, numpy.float32) can be Active; use Const for "
                "ints and other values"
            )
        self.val = val

    def __repr__(self) -> str:
        return f"Active({self.val!r})"


class Duplicated(Annotation):
    """``Duplicated(x, dx)``: x with its shadow dx (tangent seed in forward mode)."""

    __slots__ = ("dval",)

    def __init__(self, val: object, dval: object):
        _check_shadow(type(self).__name__, val, dval)
        self.val = val
        self.dval = dval

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.val!r}, {self.dval!r})"


class DuplicatedNoNeed(Duplicated):
    """``DuplicatedNoNeed(x, dx)``: like Duplicated, but the primal result is not needed."""

    __slots__ = ()


class BatchDuplicated(Annotation):
    """``BatchDuplicated(x, (dx1, dx2, ...))``: several shadows (vector forward mode)."""

    __slots__ = ("dvals",)

    def __init__(self, val: object, dvals: tuple):
        if not isinstance(dvals, tuple) or not dvals:
            raise AnnotationError("BatchDuplicated(x, dxs) needs a non-empty tuple of shadows")
        for d in dvals:
            _check_shadow("BatchDuplicated", val, d)
        if len(dvals) > 1:
            _check_lanes_disjoint(dvals)
        self.val = val
        self.dvals = dvals


class BatchDuplicatedNoNeed(BatchDuplicated):
    """``BatchDuplicatedNoNeed``: BatchDuplicated without the primal result."""

    __slots__ = ()


def _byte_bounds(a: np.ndarray) -> tuple[int, int]:
    """The first and one-past-last byte addresses ``a`` can touch."""
    lo = hi = a.ctypes.data if type(a) is np.ndarray else a.__array_interface__["data"][0]
    for n, st in zip(a.shape, a.strides):
        if n == 0:
            return lo, lo
        if st >= 0:
            hi += (n - 1) * st
        else:
            lo += (n - 1) * st
    return lo, hi + a.itemsize


def _check_lanes_disjoint(dvals: tuple) -> None:
    """The lanes' shadow arrays must not share memory: each lane's derivative is
    accumulated (and, for overwritten values, zeroed) in its own shadow.  Sorting the
    arrays by their byte bounds finds candidates in O(W log W); only overlapping bounds
    get numpy's exact check (interleaved views of one block are fine)."""
    if all(type(d) is np.ndarray for d in dvals):  # the common case, fast
        lanes = [[d] for d in dvals]
        leaf_arrays = [[(_byte_bounds(d), k) for k, d in enumerate(dvals)]]
    else:
        lanes = [flatten(d)[0] if is_node(d) else [d] for d in dvals]
        leaf_arrays = [[(_byte_bounds(_metadata(lane[leaf])), k)
                        for k, lane in enumerate(lanes) if is_array(lane[leaf])]
                       for leaf in range(len(lanes[0]))]
    for leaf, arrays in enumerate(leaf_arrays):
        arrays.sort()
        active: list[tuple[int, int]] = []  # (hi, lane) of the bounds still open
        for (lo, hi), k in arrays:
            active = [(h, j) for h, j in active if h > lo]
            for _, j in active:
                if np.shares_memory(_metadata(lanes[j][leaf]), _metadata(lanes[k][leaf])):
                    raise AnnotationError(
                        f"BatchDuplicated(x, dxs): the shadows of lanes {min(j, k)} and "
                        f"{max(j, k)} share memory; every lane needs a shadow of its own"
                    )
            active.append((hi, k))


def _metadata(x: object) -> np.ndarray:
    """``x`` as an ndarray, or for a device array (CuPy) an ndarray of its shape, dtype,
    strides and device pointer, which is never read on the host (``np.asarray`` of a CuPy
    array raises)."""
    from isozyme.runtime.marshal import device_view, on_device

    return device_view(x) if on_device(x) else np.asarray(x)


def _check_shadow(kind: str, val: object, dval: object) -> None:
    if is_node(val):
        check_same_structure(f"{kind}(x, dx)", val, dval)
        for v, d in zip(flatten(val)[0], flatten(dval)[0]):
            _check_shadow(kind, v, d)
        return
    if is_float_scalar(val):
        if not is_float_scalar(dval):
            raise AnnotationError(
                f"{kind}(x, dx): the shadow dx must be a float like x, got "
                f"{describe(dval)}"
            )
        return
    if is_array(val):
        if not is_array(dval):
            raise AnnotationError(
                f"{kind}(x, dx): x is a {describe(val)} but dx is a {describe(dval)}"
            )
        a, d = _metadata(val), _metadata(dval)
        if a.shape != d.shape or a.dtype != d.dtype:
            raise AnnotationError(
                f"{kind}(x, dx): shadow shape/dtype {d.shape}/{d.dtype} does not match "
                f"primal {a.shape}/{a.dtype}"
            )
        # may_share_memory is a cheap bounds check; shares_memory is exact but costly
        if np.may_share_memory(a, d) and np.shares_memory(a, d):
            raise AnnotationError(f"{kind}(x, dx): the shadow dx aliases the primal x")
        return
    if _is_traced(val) and (_is_traced(dval) or is_float_scalar(dval)):
        return  # nested AD inside a trace: isozyme.frontends.python.nested checks them
    raise AnnotationError(
        f"{kind}(x, dx): x must be a float, an array or a pytree of them, got {describe(val)}"
    )


def _is_traced(x: object) -> bool:
    """Whether ``x`` is a traced value (an annotation built inside a traced function,
    for a nested ``autodiff``); only asked when ``x`` is not a float or an array."""
    from isozyme.frontends.python.tracer import Tracer  # noqa: PLC0415

    return isinstance(x, Tracer)


#: Return activities may be given as these classes (``autodiff(Reverse, f, Active, ...)``).
RETURN_ACTIVITIES = (Const, Active, Duplicated, DuplicatedNoNeed, BatchDuplicated,
                     BatchDuplicatedNoNeed)


def shadows_of(a: Annotation) -> tuple | None:
    """The shadows an annotation carries: ``(dx,)`` for ``Duplicated(x, dx)``, the
    ``W`` shadows of ``BatchDuplicated(x, (dx1, ..., dxW))``, None otherwise."""
    if isinstance(a, Duplicated):
        return (a.dval,)
    if isinstance(a, BatchDuplicated):
        return a.dvals
    return None
