"""Hessian-vector products: ``hvp``, ``hvp_``, ``hvp_and_gradient_`` (Enzyme.jl's
``hvp``, ``hvp!``, ``hvp_and_gradient!``).

Forward over reverse, with no finite differences: for scalar-valued ``f`` the inner
function ``_gradient_into(x, dx)`` computes the gradient of ``f`` into ``dx`` by a
nested reverse-mode ``autodiff`` (:mod:`isozyme.frontends.python.nested`); forward mode
of it with ``Duplicated(x, v)`` and ``Duplicated(dx, res)`` leaves the directional
derivative of the gradient, ``H(x) v``, in ``res`` (and the gradient in ``dx``).  The
compiler differentiates the IR the reverse pass produced (``fwddiffe`` of ``diffe f``).

The inner function is made once per ``f`` and kept while ``f`` lives, so repeated calls
hit the compile cache (no new trace).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from isozyme.annotations import Active, Duplicated, Forward, Reverse, is_array
from isozyme.api import autodiff
from isozyme.errors import AnnotationError, ReadOnlyError

__all__ = ["hvp", "hvp_", "hvp_and_gradient_"]

#: f -> its gradient-into-a-buffer function (weak: dropped with f).
_INNER: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: for callables that cannot be weakly referenced (kept while the process lives)
_INNER_STRONG: dict[Any, Callable[..., None]] = {}


def _gradient_into(f: Callable[..., Any]) -> Callable[..., None]:
    """The function ``(x, dx) -> None`` that adds the gradient of ``f`` at ``x`` into
    ``dx`` by reverse mode; one per ``f``."""
    try:
        inner = _INNER.get(f)
    except TypeError:
        inner = _INNER_STRONG.get(f)
    if inner is not None:
        return inner

    def gradient_into(x: Any, dx: Any) -> None:
        autodiff(Reverse, f, Active, Duplicated(x, dx))

    try:
        _INNER[f] = gradient_into
    except TypeError:
        _INNER_STRONG[f] = gradient_into
    return gradient_into


def _float_array(x: Any, what: str) -> np.ndarray:
    """``x`` as a float64/float32 numpy array (a list becomes float64), or an
    AnnotationError naming ``what``."""
    if isinstance(x, list):
        x = np.asarray(x, dtype=np.float64)
    if not is_array(x) or np.asarray(x).dtype not in (np.float64, np.float32):
        got = f"{np.asarray(x).dtype} array" if is_array(x) else type(x).__name__
        raise AnnotationError(f"{what} must be a float64 or float32 array, got a {got}")
    return x


def _check(x: Any, v: Any, outs: dict[str, Any]) -> tuple[Any, Any]:
    """Validate ``x``, ``v`` and the output arrays (same shape and dtype as ``x``,
    writeable, not aliasing ``x`` or ``v`` or each other) before anything is written."""
    x = _float_array(x, "x")
    v = _float_array(v, "v")
    arrays = {"x": x, "v": v}
    for name, a in outs.items():
        if not is_array(a):
            raise AnnotationError(f"{name} must be a float array like x, got "
                                  f"{type(a).__name__}")
        arrays[name] = a
    xa = np.asarray(x)
    for name, a in arrays.items():
        if name == "x":
            continue
        aa = np.asarray(a)
        if aa.shape != xa.shape or aa.dtype != xa.dtype:
            raise AnnotationError(f"hvp: {name} has shape/dtype {aa.shape}/{aa.dtype}, but x "
                                  f"has {xa.shape}/{xa.dtype}")
    for name, a in outs.items():
        if not np.asarray(a).flags.writeable:
            raise ReadOnlyError(f"hvp: {name} is read-only; it receives the result")
    names = list(arrays)
    for i, p in enumerate(names):
        for q in names[i + 1:]:
            if (p in outs or q in outs) and np.shares_memory(arrays[p], arrays[q]):
                raise AnnotationError(f"hvp: {p} and {q} share memory")
    if np.shares_memory(x, v):  # H(x) x: the tangent of x needs memory of its own
        v = np.array(v, copy=True)
    return x, v


def _run(f: Callable[..., Any], x: Any, v: Any, res: Any, grad: Any) -> None:
    """Zero ``res`` and ``grad``, then one forward-over-reverse call writing H v into
    ``res`` and the gradient into ``grad``; on failure both hold their old values."""
    saved = (res.copy(), grad.copy())
    res[...] = 0
    grad[...] = 0
    try:
        autodiff(Forward, _gradient_into(f), Duplicated(x, v), Duplicated(grad, res))
    except BaseException:
        res[...], grad[...] = saved
        raise


def hvp(f: Callable[..., Any], x: Any, v: Any) -> np.ndarray:
    """The Hessian of scalar-valued ``f`` at array ``x`` times the vector ``v``
    (``H(x) @ v`` for a flat ``x``), by forward mode over reverse mode.

    >>> hvp(lambda x: np.sin(x[0] * x[1]), np.array([2.0, 3.0]), np.array([5.0, 2.7]))
    array([19.69268827, 16.20100376])
    """
    x, v = _check(x, v, {})
    res = np.zeros_like(np.asarray(x))
    _run(f, x, v, res, np.zeros_like(res))
    return res


def hvp_(res: Any, f: Callable[..., Any], x: Any, v: Any) -> Any:
    """``hvp`` into ``res`` (overwritten, and returned); on bad input or failure ``res``
    is untouched."""
    x, v = _check(x, v, {"res": res})
    _run(f, x, v, res, np.zeros_like(np.asarray(x)))
    return res


def hvp_and_gradient_(res: Any, grad: Any, f: Callable[..., Any], x: Any, v: Any) -> tuple:
    """``hvp`` into ``res`` and the gradient of ``f`` at ``x`` into ``grad`` (both
    overwritten) in one forward-over-reverse sweep; returns ``(res, grad)``. On bad
    input or failure both are untouched."""
    x, v = _check(x, v, {"res": res, "grad": grad})
    _run(f, x, v, res, grad)
    return res, grad
