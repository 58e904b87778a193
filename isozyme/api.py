"""The public API: ``autodiff``, ``gradient`` and ``ir``.

This module and :mod:`isozyme.calls` are the only places that tie the frontend, the
compiler and the runtime together.  A call is split into its *signature* (function,
mode, activities, argument types: the compile-cache key) and its *values*.  The first
call of a signature traces, optimizes, differentiates, lowers and JIT-compiles
(:mod:`isozyme.calls`); later calls only marshal values into the compiled entry point.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from isozyme.annotations import (
    Active,
    Annotation,
    Const,
    Duplicated,
    Mode,
    is_array,
)
from isozyme.arguments import arg_key
from isozyme.calls import (
    GradientResult,
    build,
    choose_target,
    Compiled,
    prepare,
    stats,
)
from isozyme.compiler.pipeline import custom_passes_key
from isozyme.compiler.targets import TARGET_NAMES, get_target, stages_of
from isozyme.frontends.python.context import COMPILE_LOCK, tracing
from isozyme.frontends.python.nested import (
    has_traced_argument,
    traced_autodiff,
    traced_gradient,
)
from isozyme.runtime.marshal import device_view, on_device
from isozyme.seeds import array_module, forget_seeds
from isozyme.errors import AnnotationError, IsozymeError, ReadOnlyError, UnsupportedError

__all__ = [
    "GradientResult", "autodiff", "clear_cache", "gradient", "gradient_", "ir", "ir_stages",
    "stats", "target",
]

#: The target forced by ``with isozyme.target(...)`` in this context (thread, task);
#: None: the arguments choose (:func:`isozyme.calls.choose_target`).
_FORCED_TARGET: ContextVar[str | None] = ContextVar("isozyme_target", default=None)


@contextmanager
def target(name: str) -> Iterator[str]:
    """Force the compilation target of the calls made inside the ``with`` block:
    ``"cpu"``, ``"cuda"`` or ``"cuda-emu"`` (per thread and per asyncio task).

    Without it a call runs on ``cuda`` when an argument is a device array (CuPy, or
    anything exposing ``__cuda_array_interface__``), else on ``cpu``. ``cuda-emu``
    runs the CUDA target's kernels and host program on the CPU with numpy arrays.

    >>> with target("cuda-emu"):
    ...     autodiff(Reverse, f, Active, Active(1.0))    # doctest: +SKIP
    """
    if name not in TARGET_NAMES:
        raise IsozymeError(f"unknown target {name!r}; targets are: {', '.join(TARGET_NAMES)}")
    token = _FORCED_TARGET.set(name)
    try:
        yield name
    finally:
        _FORCED_TARGET.reset(token)


#: The compile cache: signature (function, mode, return activity, argument keys) -> the
#: compiled variants of that signature, newest first.  A variant is valid while what
#: its trace read from globals and closures is unchanged (``Compiled.guard``).  Replaced
#: as a whole tuple under ``_COMPILE_LOCK``, read without it.
_CACHE: dict[tuple, tuple[Compiled, ...]] = {}
#: Variants kept per signature (a global that keeps changing value compiles each value).
_MAX_VARIANTS = 8
#: Held while tracing and compiling (the frontend and LLVM are not thread-safe, and
#: each signature must compile once); calls of compiled code never take it.  Reentrant:
#: code running at trace time may call autodiff.
_COMPILE_LOCK = COMPILE_LOCK


# -- public functions ----------------------------------------------------------------
def autodiff(mode: Mode, f: Callable, *args: Any) -> tuple:
    """Differentiate ``f`` at the given arguments (Enzyme.jl's ``autodiff``).

    ``args`` may start with a return activity class (``Active``, ``Const``,
    ``Duplicated``, ``DuplicatedNoNeed``); the rest are the arguments, each annotated
    ``Const(x)``, ``Active(x)``, ``Duplicated(x, dx)`` or ``DuplicatedNoNeed(x, dx)``
    (unannotated means ``Const``).

    Returns, exactly as Enzyme.jl does:

    * ``Reverse``: ``(derivs,)`` with one entry per argument (``None`` unless Active);
      ``ReverseWithPrimal``: ``(derivs, primal)``.
    * ``Forward``: ``(derivative,)``; ``ForwardWithPrimal``: ``(derivative, primal)``.

    >>> autodiff(Reverse, lambda x, y: (1.0 - x)**2 + 100.0 * (y - x**2)**2,
    ...          Active, Active(1.0), Active(2.0))
    ((-400.0, 200.0),)
    """
    if tracing() and has_traced_argument(f, args):  # nested AD: called inside a trace
        return traced_autodiff(mode, f, args)
    # The hot path: build the cache key from types alone; validate only on a miss
    # (every check depends on nothing but the key).
    if args and isinstance(args[0], type) and issubclass(args[0], Annotation):
        ret_cls, rest = args[0], args[1:]
    else:
        ret_cls, rest = None, args
    anns = [a if isinstance(a, Annotation) else Const(a) for a in rest]
    key = (f, mode, ret_cls, _FORCED_TARGET.get(), *map(arg_key, anns),
           custom_passes_key())  # code compiled with other custom passes is not reused
    for compiled in _CACHE.get(key, ()):
        guard = compiled.guard
        if guard is None:
            return compiled.run(anns)
        hidden = guard()
        if hidden is not None:
            return compiled.run_hidden(anns, hidden) if hidden else compiled.run(anns)
    return _compile_and_run(key, mode, f, args, anns)


#: converted code calls it at trace time, also on traced values (nested AD)
autodiff.runs_on_traced_values = True  # type: ignore[attr-defined]


def _compile_and_run(key: tuple, mode: Mode, f: Callable, args: tuple, anns: list) -> tuple:
    """The cache missed: trace and compile under the compile lock (unless another thread
    compiled the same variant meanwhile), then run outside it."""
    while True:
        with _COMPILE_LOCK:
            variants = _CACHE.get(key, ())
            for compiled in variants:
                if compiled.guard is None or compiled.guard() is not None:
                    break
            else:
                spec = prepare(mode, f, args, target=key[3])
                compiled = build(spec, keep_stages=False)
                _CACHE[key] = (compiled, *variants[: _MAX_VARIANTS - 1])
        guard = compiled.guard
        if guard is None:
            return compiled.run(anns)
        hidden = guard()
        if hidden is not None:  # else a read changed since the trace (another thread)
            return compiled.run_hidden(anns, hidden) if hidden else compiled.run(anns)


def clear_cache() -> None:
    """Drop every compiled function and free its machine code and LLVM module.

    The next call of each signature traces and compiles again.  Code that another
    thread is running at that moment is freed when that call returns.  Also useful
    after changing something the cache cannot see, such as an attribute of a module or
    class that a traced function reads.
    """
    from isozyme.reads import forget_names  # noqa: PLC0415

    with _COMPILE_LOCK:
        _CACHE.clear()
        forget_names()
    forget_seeds()  # jacobian's cached unit seeds
    gc.collect()  # runners in reference cycles hold their compiled modules
    from isozyme.runtime.jit import release_freed_code  # noqa: PLC0415

    release_freed_code()


def _is_float_array(x: object) -> bool:
    """A float64/float32 array on the host or on the device."""
    if not is_array(x):
        return False
    dtype = device_view(x).dtype if on_device(x) else np.asarray(x).dtype
    return dtype in (np.float64, np.float32)


def _writeable(x: object) -> bool:
    """Whether array ``x`` may be written (a device array: its
    ``__cuda_array_interface__``'s read-only flag; CuPy has no ``flags.writeable``)."""
    return bool(device_view(x).flags.writeable if on_device(x) else np.asarray(x).flags.writeable)


def gradient(mode: Mode, f: Callable, *args: Any, chunk: int | None = None) -> Any:
    """The gradient of scalar-valued ``f`` with respect to each argument.

    Float scalars and float arrays are differentiated (lists are taken as float64
    arrays); ``Const(...)`` arguments and integers get ``None``.  Returns a tuple with
    one entry per argument — a float for a scalar, an array shaped like the argument
    for an array; with a ``...WithPrimal`` mode a named tuple ``(derivs, val)``.

    Reverse mode takes one reverse sweep.  Forward mode takes one batch (vector)
    forward sweep per ``chunk`` scalar inputs (elements of each array; default
    ``min(size, 16)``, ``chunk=1``: one plain forward sweep per element).
    Device arrays (CuPy) get device arrays of their own library as shadows, seeds and
    gradients.
    """
    from isozyme.jacobians import (  # noqa: PLC0415  (they import this module)
        argument_kinds,
        check_chunk,
        forward_gradient,
        plain_arguments,
    )

    check_chunk(chunk)
    if tracing() and has_traced_argument(f, args):  # nested AD: called inside a trace
        return traced_gradient(mode, f, args)
    args = plain_arguments(args, "gradient")
    kinds = argument_kinds(args)
    if mode.reverse:
        shadows = [array_module(a).zeros_like(a) if k == "array" else None
                   for a, k in zip(args, kinds)]
        anns = [
            Active(a) if k == "scalar" else Duplicated(a, sh) if k == "array" else a
            for a, k, sh in zip(args, kinds, shadows)
        ]
        res = autodiff(mode, f, Active, *anns)
        derivs = tuple(
            res[0][i] if k == "scalar" else shadows[i] if k == "array" else None
            for i, k in enumerate(kinds)
        )
        return GradientResult(derivs, res[1]) if mode.with_primal else derivs
    # Forward mode: the Jacobian of a float-valued function, `chunk` lanes per sweep
    return forward_gradient(mode, f, args, kinds, chunk)


gradient.runs_on_traced_values = True  # type: ignore[attr-defined]


def gradient_(mode: Mode, dx: Any, f: Callable, x: Any) -> tuple:
    """In-place ``gradient``: overwrite array ``dx`` with the gradient of ``f`` at ``x``.

    Returns ``(dx,)`` (Enzyme.jl's ``gradient!``).  Reverse mode only.  When the call
    fails (a trace, shape or annotation error, or an error raised while the compiled
    code runs), ``dx`` holds what it held before and the error propagates.
    """
    if not mode.reverse:
        raise UnsupportedError("gradient_ is implemented for Reverse/ReverseWithPrimal")
    x = np.asarray(x, dtype=np.float64) if isinstance(x, list) else x
    if not (_is_float_array(x) and _is_float_array(dx)):
        raise AnnotationError("gradient_(mode, dx, f, x) needs float arrays dx and x")
    if not _writeable(dx):
        raise ReadOnlyError("gradient_: dx is read-only; it receives the gradient")
    shadow = Duplicated(x, dx)  # validates shape, dtype and aliasing before writing
    # dx must be zero when the compiled code accumulates into it, and an error may come
    # after that (tracing, compiling, or the compiled code itself): keep its old values.
    saved = dx.copy()
    dx[...] = 0
    try:
        res = autodiff(mode, f, Active, shadow)
    except BaseException:
        dx[...] = saved
        raise
    return GradientResult((dx,), res[1]) if mode.with_primal else (dx,)


def ir(
    mode: Mode, f: Callable, *args: Any, stage: str = "simplified", target: str | None = None,
    generic: bool = False,
) -> str:
    """The text of one IR stage for ``autodiff(mode, f, *args)``.

    Stages of every target: ``traced``, ``optimized``, ``differentiated``,
    ``simplified``; then ``llvm`` for ``cpu``, ``gpu``, ``cuda`` (the kernels' CUDA
    C), ``host`` (the program around them) and ``llvm`` (the host program) for
    ``cuda`` and ``cuda-emu``; and ``llvm-ir``, ``llvm-ir-optimized`` (LLVM IR before
    and after LLVM's optimizer). ``target``: as ``with isozyme.target(...)``
    (default: the forced target, else the one the arguments select). ``generic``:
    the MLIR stages in MLIR's generic form (as ``mlir-opt --mlir-print-op-generic``
    prints them: ``"builtin.module"() ({ ...``), which upstream MLIR tools read.
    Printing needs no GPU, CuPy or C++ compiler.
    """
    return ir_stages(mode, f, *args, stages=(stage,), target=target, generic=generic)[stage]


def ir_stages(
    mode: Mode,
    f: Callable,
    *args: Any,
    stages: Sequence[str] | None = None,
    target: str | None = None,
    generic: bool = False,
) -> dict[str, str]:
    """Texts of several IR stages (see :func:`ir`; default: all of the target's),
    keyed by stage name; ``generic``: MLIR's generic form."""
    forced = target if target is not None else _FORCED_TARGET.get()
    if forced is not None:
        get_target(forced)  # an unknown name fails before any work
    has_ret = bool(args) and isinstance(args[0], type) and issubclass(args[0], Annotation)
    anns = [a if isinstance(a, Annotation) else Const(a) for a in args[1 if has_ret else 0:]]
    name = choose_target(anns, forced)
    known = stages_of(name)
    stages = known if stages is None else tuple(stages)
    for s in stages:
        if s not in known:
            raise IsozymeError(
                f"unknown IR stage '{s}' for the {name} target; stages are: {', '.join(known)}"
            )
    spec = prepare(mode, f, args, target=name)
    last = max(stages, key=known.index)
    with _COMPILE_LOCK:
        built = build(spec, keep_stages=True, upto=last, load=name == "cpu",
                      generic=generic)
    return {s: built.stages[s] for s in stages}
