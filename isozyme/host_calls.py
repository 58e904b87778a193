"""Host calls: compiled code calling a Python function (like ``jax.pure_callback``).

A custom derivative rule (:mod:`isozyme.rules`) makes a function that isozyme cannot
trace (one calling ``scipy.special``, a C library...) differentiable: the derivative
comes from the rule, but the primal value must still be computed when the compiled
code runs.  The frontend (:mod:`isozyme.frontends.python.host_calls`) registers the
Python callable here under a number and emits calls of these host functions:

* ``__iz_host_call_<sig>(int64 id, args...) -> int64 status``: one symbol per argument
  signature ``<sig>``, a letter per argument (``d`` double, ``f`` float, ``q`` int64;
  ``n`` for no argument).  It calls the function registered under ``id`` with Python
  numbers (``float``, ``numpy.float32``, ``int``), keeps its results for this thread
  and returns 0; or, when the function raises (or returns the wrong number or kind of
  results), keeps the exception under a fresh error number and returns that number.
* ``__iz_host_result_f64(int64 k) -> double`` / ``__iz_host_result_i64(int64 k) ->
  int64``: the ``k``-th result of this thread's last host call.

The compiled code tests the status with an ``isz.check`` of kind ``"host"``; the runtime
turns a failure into a :class:`~isozyme.errors.HostCallError` with
:func:`host_failure`, which takes the kept exception back (its message names the
function and the Python exception, which is the error's ``__cause__``).  An exception
never crosses into C.

The host functions are ctypes callbacks registered with llvmlite under those names
(:func:`register_signature`), so MCJIT resolves them like libm's functions.  A callback
takes the GIL (the compiled code runs without it).  Results are kept per OS thread
(``threading.get_ident``, which stays the same across the callbacks of one native
thread even when ctypes makes a fresh Python thread state for each), so threads calling
at once do not mix them.  A registered function lives for the whole process (a compiled
function may run at any time later); identical registrations share one number.

This module is a leaf (like :mod:`isozyme.printing`): the frontend registers functions,
the runtime needs only the symbols to be registered before it links a module.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Prefix of the per-signature call symbols: ``__iz_host_call_<sig>``.
CALL_PREFIX = "__iz_host_call_"
#: The result symbols, by result kind.
RESULT_F64 = "__iz_host_result_f64"
RESULT_I64 = "__iz_host_result_i64"
#: Attribute on every ``func.call`` of a host function: the Python function's name
#: (a GPU target names it when it refuses a host call inside a kernel).
HOST_CALL_ATTR = "isozyme.host_call"

#: Argument kinds: signature letter -> (ctypes type, conversion to the Python value).
_ARG_KINDS: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "d": (ctypes.c_double, float),
    "f": (ctypes.c_float, np.float32),
    "q": (ctypes.c_int64, int),
}
#: Result kinds: letter -> conversion of the Python result to the value returned to C.
_RESULT_KINDS: dict[str, Callable[[Any], Any]] = {"d": float, "f": float, "q": int}


@dataclass(frozen=True)
class HostFunction:
    """A Python callable the compiled code calls: ``name`` for messages, ``args`` and
    ``results`` the kind letters (``d`` f64, ``f`` f32, ``q`` i64) of its scalars."""

    function: Callable[..., Any]
    name: str
    args: str
    results: str


_LOCK = threading.Lock()
_FUNCTIONS: list[HostFunction] = []
_IDS: dict[HostFunction, int] = {}
#: Results of each thread's last successful host call (by ``threading.get_ident``).
_RESULTS: dict[int, tuple[float | int, ...]] = {}
#: Exceptions of failed host calls not yet taken by :func:`host_failure`, by number.
_ERRORS: dict[int, BaseException] = {}
_next_error = 1


def function_name(f: Callable[..., Any]) -> str:
    """``module.qualname`` of ``f`` as messages show it (``math.erfc``)."""
    module = getattr(f, "__module__", None)
    qualname = getattr(f, "__qualname__", None) or getattr(f, "__name__", None)
    if qualname is None:
        return repr(f)
    return f"{module}.{qualname}" if module and module != "builtins" else qualname


def register(fn: HostFunction) -> int:
    """The number of ``fn`` for ``__iz_host_call_<sig>`` (registered once per process;
    an unhashable callable gets a new number each time)."""
    with _LOCK:
        try:
            k = _IDS.get(fn)
        except TypeError:  # an unhashable callable
            _FUNCTIONS.append(fn)
            return len(_FUNCTIONS) - 1
        if k is None:
            k = _IDS[fn] = len(_FUNCTIONS)
            _FUNCTIONS.append(fn)
        return k


def call_symbol(args: str) -> str:
    """The symbol of the host call taking arguments of kinds ``args``."""
    return CALL_PREFIX + (args or "n")


def _keep_error(e: BaseException) -> int:
    """Keep ``e`` for :func:`host_failure`; its number (the call's status)."""
    global _next_error
    with _LOCK:
        k = _next_error
        _next_error += 1
        _ERRORS[k] = e
    return k


def _results(fn: HostFunction, value: Any) -> tuple[float | int, ...]:
    """The results of ``fn`` as numbers, from what it returned (one value, or a tuple
    or list of ``len(fn.results)`` values)."""
    n = len(fn.results)
    values = tuple(value) if isinstance(value, (tuple, list)) and n != 1 else (value,)
    if len(values) != n:
        raise TypeError(f"returned {len(values)} values, expected {n}")
    out = []
    for kind, v in zip(fn.results, values):
        if isinstance(v, np.ndarray) and v.ndim == 0:
            v = v[()]
        if kind == "q" and not isinstance(v, (int, np.integer)):
            raise TypeError(f"returned a {type(v).__name__} where an int was expected")
        if not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"returned a {type(v).__name__} where a number was expected")
        out.append(_RESULT_KINDS[kind](v))
    return tuple(out)


def _invoke(k: int, *args: Any) -> int:
    """The body of every ``__iz_host_call_<sig>`` callback (see the module docstring)."""
    try:
        fn = _FUNCTIONS[k]
        values = [_ARG_KINDS[kind][1](a) for kind, a in zip(fn.args, args)]
        _RESULTS[threading.get_ident()] = _results(fn, fn.function(*values))
        return 0
    except BaseException as e:  # noqa: BLE001 (never into C; re-raised by the runtime)
        try:
            return _keep_error(e)
        except BaseException:  # noqa: BLE001 (nothing to keep it in: a generic failure)
            return -1


def _result(k: int) -> float | int:
    got = _RESULTS.get(threading.get_ident(), ())
    return got[k] if 0 <= k < len(got) else 0


def _result_f64(k: int) -> float:
    return float(_result(k))


def _result_i64(k: int) -> int:
    return int(_result(k))


# Module globals: the callbacks must outlive every compiled function that calls them.
_CALLBACKS: dict[str, Any] = {
    RESULT_F64: ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64)(_result_f64),
    RESULT_I64: ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(_result_i64),
}
_registered: set[str] = set()


def _callback(args: str) -> Any:
    """A new ctypes callback ``int64 (*)(int64 id, args...)``."""
    ftype = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64,
                             *(_ARG_KINDS[kind][0] for kind in args))
    return ftype(_invoke)


def register_signature(args: str) -> str:
    """Make ``__iz_host_call_<args>`` and the result functions resolvable by MCJIT
    (``llvmlite.binding.add_symbol``); idempotent.  Returns the call's symbol."""
    name = call_symbol(args)
    if name in _registered:
        return name
    import llvmlite.binding as llb  # noqa: PLC0415 (only needed once a host call is traced)

    with _LOCK:
        if name not in _CALLBACKS:
            _CALLBACKS[name] = _callback(args)
        for sym in (name, RESULT_F64, RESULT_I64):
            if sym not in _registered:
                llb.add_symbol(sym, ctypes.cast(_CALLBACKS[sym], ctypes.c_void_p).value)
                _registered.add(sym)
    return name


def host_failure(message: str, status: int) -> BaseException:
    """The error of a failed host call: ``message`` (the check's, naming the function)
    followed by the Python exception kept under ``status``, which becomes its cause.
    A ``KeyboardInterrupt`` or ``SystemExit`` is returned as it is (re-raised)."""
    from isozyme.errors import HostCallError  # noqa: PLC0415 (leaf: errors is a leaf too)

    with _LOCK:
        e = _ERRORS.pop(status, None)
    if e is None:
        return HostCallError(f"{message} an exception that was not kept")
    if not isinstance(e, Exception):
        return e
    error = HostCallError(f"{message} {type(e).__name__}: {e}")
    error.__cause__ = e
    return error


__all__ = [
    "CALL_PREFIX",
    "HOST_CALL_ATTR",
    "RESULT_F64",
    "RESULT_I64",
    "HostFunction",
    "call_symbol",
    "function_name",
    "host_failure",
    "register",
    "register_signature",
]
