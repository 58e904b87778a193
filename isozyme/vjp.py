"""``vjp``: reverse mode from an explicit seed (the vector-Jacobian product).

``autodiff(Reverse, f, Active, ...)`` seeds a float return with 1.0.  A function that
returns an array, or a tuple, needs a seed (cotangent) per return value, as
Enzyme-MLIR's ``enzyme.autodiff`` takes one seed operand per ``enzyme_active`` return
(a buffer shaped like the result for a memref return).  The reverse sweep starts from
it: the seed is added into the shadow of the returned buffer, and the user's seed
array is only read.

Compilation and the compile cache are :mod:`isozyme.api`'s; the cache key of a vjp
call adds the seed's kind (float, or array dtype and rank, per return value).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from isozyme import api
from isozyme.annotations import (
    Annotation,
    BatchDuplicated,
    Const,
    Duplicated,
    Mode,
    describe,
    is_array,
    is_float_scalar,
)
from isozyme.arguments import arg_key
from isozyme.calls import Compiled, SeedKind, build, prepare
from isozyme.compiler.ad.reverse import SEED_SHAPE_MESSAGE
from isozyme.compiler.pipeline import custom_passes_key
from isozyme.errors import AnnotationError, ShapeError
from isozyme.runtime.marshal import device_view, on_device

__all__ = ["vjp"]

#: Marks a vjp call's entries in the compile cache (beside autodiff's).
_VJP = "vjp"


def vjp(mode: Mode, f: Callable, *args: Any, seeds: tuple | None = None) -> tuple:
    """Reverse mode of ``f`` seeded with ``seed``: ``vjp(mode, f, seed, *args)``.

    ``seed`` has the structure of ``f``'s return value: a float for a float return, an
    array of the returned array's shape and dtype (host or device, like the arguments)
    for an array return, a tuple of those for a tuple return; ``None`` in place of a
    return value's seed leaves that value undifferentiated.  ``args`` are annotated as
    for :func:`isozyme.autodiff` (``Active`` floats, ``Duplicated`` arrays, ``Const``).

    Returns ``(derivs,)`` (``Reverse``) or ``(derivs, primal)`` (``ReverseWithPrimal``):
    ``derivs`` has one entry per argument, the derivative of ``seed · f(args)`` for an
    ``Active`` argument, ``None`` otherwise; a ``Duplicated`` argument's shadow
    receives its derivative by ``+=``.  The seed is not modified.

    Batched reverse mode: ``vjp(mode, f, *args, seeds=(s1, ..., sW))`` takes W seeds
    (each like ``seed``) in place of ``seed``, and array arguments as
    ``BatchDuplicated(x, (dx1, ..., dxW))`` (lane k's derivative is added into
    ``dxk``); one reverse sweep computes every lane.  ``derivs`` is then a tuple of W
    per-lane ``derivs`` tuples.

    A seed that does not fit the return value (structure, dtype, rank or sizes) is an
    :class:`~isozyme.errors.AnnotationError`, raised before any shadow is written.

    >>> x, dx = np.array([1.0, 2.0]), np.zeros(2)
    >>> vjp(Reverse, lambda x: x * x, np.array([1.0, 10.0]), Duplicated(x, dx))
    ((None,),)
    >>> dx
    array([ 2., 40.])
    """
    if not isinstance(mode, Mode) or not mode.reverse:
        raise AnnotationError(
            f"vjp is reverse mode: the first argument must be Reverse or "
            f"ReverseWithPrimal, got {mode!r}"
        )
    if seeds is None:
        if not args:
            raise AnnotationError("vjp(mode, f, seed, *args) needs a seed")
        seed, rest = args[0], args[1:]
        lanes: tuple = (seed,)
    else:
        if not isinstance(seeds, tuple) or not seeds:
            raise AnnotationError(
                f"seeds= takes a non-empty tuple of seeds, one per lane, got {describe(seeds)}"
            )
        seed, rest, lanes = seeds, args, seeds
    for s in lanes:
        if isinstance(s, type) and issubclass(s, Annotation):
            raise AnnotationError(
                f"vjp takes a seed, not the return activity {s.__name__}: "
                "vjp(mode, f, seed, *args)"
            )
    kinds = seed_kinds(lanes[0])
    for k, s in enumerate(lanes[1:], 1):
        if seed_kinds(s) != kinds:
            raise AnnotationError(
                f"seeds[{k}] differs from seeds[0] in structure, dtype or rank: every "
                "lane's seed has the structure of the return value"
            )
    for i, a in enumerate(rest):
        if isinstance(a, type) and issubclass(a, Annotation):
            raise AnnotationError(
                f"vjp takes no return activity (argument {i} is the class "
                f"{a.__name__}): the seed says what is differentiated, "
                "vjp(mode, f, seed, *args)"
            )
    anns = [a if isinstance(a, Annotation) else Const(a) for a in rest]
    width = None if seeds is None else len(seeds)
    _check_width(anns, width)
    forced = api._FORCED_TARGET.get()
    key = (f, mode, _VJP, forced, width, kinds, *map(arg_key, anns),
           custom_passes_key())  # code compiled with other custom passes is not reused
    compiled, hidden = _compiled(key, lambda: _build(mode, f, rest, forced, kinds, width))
    try:
        if hidden:
            return compiled.run_hidden(anns, hidden, seed)  # type: ignore[misc]
        return compiled.run(anns, seed)  # type: ignore[call-arg]
    except ShapeError as exc:
        if str(exc).startswith(SEED_SHAPE_MESSAGE):
            raise AnnotationError(str(exc)) from None
        raise


def _check_width(anns: list[Annotation], width: int | None) -> None:
    """BatchDuplicated arguments go with ``seeds=`` of as many lanes, Duplicated ones
    with a single ``seed``."""
    for i, a in enumerate(anns):
        if isinstance(a, BatchDuplicated):
            if width is None:
                raise AnnotationError(
                    f"argument {i} is BatchDuplicated with {len(a.dvals)} shadows: pass one "
                    "seed per lane, vjp(mode, f, *args, seeds=(s1, ...))"
                )
            if len(a.dvals) != width:
                raise AnnotationError(
                    f"argument {i} is BatchDuplicated with {len(a.dvals)} shadows, but "
                    f"{width} seeds are given: one shadow per lane"
                )
        elif isinstance(a, Duplicated) and width is not None:
            raise AnnotationError(
                f"argument {i} is Duplicated, but {width} seeds are given (batched "
                "reverse mode): pass BatchDuplicated(x, (dx1, ...)) with one shadow per lane"
            )


def seed_kinds(seed: object) -> tuple[SeedKind, ...]:
    """The kind of each return value's seed (part of the compile-cache key): None,
    ``("float",)`` or ``("array", dtype, ndim)``; a tuple seed gives one per element."""
    parts = seed if type(seed) is tuple else (seed,)
    kinds: list[SeedKind] = []
    for s in parts:
        if s is None:
            kinds.append(None)
        elif is_float_scalar(s) or (isinstance(s, int) and not isinstance(s, bool)):
            kinds.append(("float",))
        elif is_array(s):
            a = device_view(s) if on_device(s) else np.asarray(s)
            kinds.append(("array", a.dtype, a.ndim))
        else:
            raise AnnotationError(
                f"a seed must be a float, an array or a tuple of them, got {describe(s)}"
            )
    if type(seed) is tuple:
        return (("tuple", len(parts)), *kinds)
    return tuple(kinds)


def _build(
    mode: Mode, f: Callable, args: tuple, target: str | None, kinds: tuple,
    width: int | None,
) -> Compiled:
    """Compile ``f``'s reverse mode seeded as ``kinds`` says (``width`` lanes)."""
    spec = prepare(mode, f, args, target=target)
    if width is not None:
        spec.width, spec.batched = width, True
    spec.seed_is_tuple = bool(kinds) and kinds[0] is not None and kinds[0][0] == "tuple"
    spec.seed_kinds = kinds[1:] if spec.seed_is_tuple else kinds
    return build(spec, keep_stages=False)


def _compiled(key: tuple, make: Callable[[], Compiled]) -> tuple[Compiled, tuple | None]:
    """The compiled variant of ``key`` whose guard holds (compiling it on a miss,
    under the compile lock), and the hidden arguments its guard returned."""
    while True:
        variants = api._CACHE.get(key, ())
        for compiled in variants:
            if compiled.guard is None:
                return compiled, None
            hidden = compiled.guard()
            if hidden is not None:
                return compiled, hidden
        with api._COMPILE_LOCK:
            variants = api._CACHE.get(key, ())
            if not any(c.guard is None or c.guard() is not None for c in variants):
                compiled = make()
                api._CACHE[key] = (compiled, *variants[: api._MAX_VARIANTS - 1])
