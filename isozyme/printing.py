"""Printing from compiled code: ``print`` in a traced function prints on every call.

A traced function runs once per compilation, so a ``print`` executed while tracing
would print once, and print tracers rather than numbers.  The frontend
(:mod:`isozyme.frontends.python.debug_print`) turns ``print(...)`` into calls of four
host functions, made in order by the compiled code each time it runs:

* ``__iz_print_begin()``, which drops values a failed print left behind;
* ``__iz_print_f64(double v)`` / ``__iz_print_i64(int64 v)`` for each traced value
  (for an array: each size, then each element in C order);
* ``__iz_print_end(int64 format)``, which prints the values collected on this thread
  with the :class:`PrintFormat` registered under that number (the text arguments,
  ``sep``, ``end``, ``file``, ``flush``) as Python's ``print`` would, in one write.

The host functions are ctypes callbacks registered with llvmlite under those names
(:func:`register_host_functions`), so MCJIT resolves them like libm's functions.  A
callback takes the GIL (the compiled code runs without it), and the values waiting
for ``__iz_print_end`` are kept per thread, so threads printing at once do not mix
their values.  Formats live for the whole process (a compiled function may run at any
time later); identical formats share one number.

This module is a leaf (like :mod:`isozyme.errors`): the frontend registers formats, the
runtime needs only the symbol names to be registered before it links a module.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The host functions' symbol names, as the compiled code calls them.
PRINT_F64 = "__iz_print_f64"
PRINT_I64 = "__iz_print_i64"
PRINT_END = "__iz_print_end"
PRINT_BEGIN = "__iz_print_begin"

#: How a value passed to ``__iz_print_f64``/``__iz_print_i64`` is shown, by kind.
_CONVERT: dict[str, Any] = {
    "float64": float,
    "float32": np.float32,
    "int": int,
    "bool": bool,
}


@dataclass(frozen=True)
class PrintFormat:
    """One ``print`` call site: ``pieces`` holds the text of each argument known at trace
    time, or ``None`` where the next run-time value goes; ``kinds`` the kind of each
    run-time value (``float64``, ``float32``, ``int``, ``bool``, or
    ``array:<dtype>:<rank>`` for an array)."""

    pieces: tuple[str | None, ...]
    kinds: tuple[str, ...]
    sep: str = " "
    end: str = "\n"
    file: Any = None  # None/STDOUT/STDERR: sys.stdout/sys.stderr when the code runs
    flush: bool = False


#: ``PrintFormat.file`` for ``file=sys.stdout``/``file=sys.stderr``: looked up when the
#: compiled code runs, as Python's ``print`` evaluates ``sys.stderr`` on each call (the
#: streams may be replaced after compiling: redirection, pytest's capture).
STDOUT = "<sys.stdout>"
STDERR = "<sys.stderr>"


_LOCK = threading.Lock()
_FORMATS: list[PrintFormat] = []
_IDS: dict[PrintFormat, int] = {}
_PENDING = threading.local()


def register_format(fmt: PrintFormat) -> int:
    """The number of ``fmt`` for ``__iz_print_end`` (registered once per process)."""
    with _LOCK:
        k = _IDS.get(fmt)
        if k is None:
            k = _IDS[fmt] = len(_FORMATS)
            _FORMATS.append(fmt)
        return k


def _pending() -> list[float | int]:
    values = getattr(_PENDING, "values", None)
    if values is None:
        values = _PENDING.values = []
    return values


def _report(e: BaseException) -> None:
    # An exception must not cross back into compiled code: report it in one line.
    try:
        sys.stderr.write(f"isozyme: print from compiled code failed: {e!r}\n")
    except Exception:  # noqa: BLE001 (nowhere left to report to)
        pass


def _value(kind: str, values: Any) -> Any:
    """The next printed value of ``kind`` from the iterator of collected ``values``: one
    number, or for ``array:<dtype>:<rank>`` the sizes and then the elements in C order."""
    if not kind.startswith("array:"):
        return _CONVERT[kind](next(values))
    _, dtype, rank = kind.split(":")
    shape = tuple(int(next(values)) for _ in range(int(rank)))
    count = int(np.prod(shape, dtype=np.int64))
    return np.array([next(values) for _ in range(count)]).astype(dtype).reshape(shape)


def _begin() -> None:
    # Drop values left by a print that did not reach its end (an error in between).
    _pending().clear()


def _take_f64(v: float) -> None:
    _pending().append(v)


def _take_i64(v: int) -> None:
    _pending().append(v)


def _end(k: int) -> None:
    values = _pending()
    taken = list(values)
    values.clear()
    try:
        fmt = _FORMATS[k]
        values = iter(taken)
        kinds = iter(fmt.kinds)
        args: list[Any] = []
        for p in fmt.pieces:
            args.append(p if p is not None else _value(next(kinds), values))
        # One write per print, so that lines printed by threads at once stay whole.
        file = (sys.stdout if fmt.file in (None, STDOUT) else sys.stderr
                if fmt.file == STDERR else fmt.file)
        if file is None:  # no standard output (pythonw): print() does nothing either
            return
        file.write(fmt.sep.join(map(str, args)) + fmt.end)
        if fmt.flush:
            file.flush()
    except Exception as e:  # noqa: BLE001
        _report(e)


_F64_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_double)
_I64_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_int64)
# Module globals: the callbacks must outlive every compiled function that calls them.
_CALLBACKS: dict[str, Any] = {
    PRINT_F64: _F64_TYPE(_take_f64),
    PRINT_I64: _I64_TYPE(_take_i64),
    PRINT_END: _I64_TYPE(_end),
    PRINT_BEGIN: ctypes.CFUNCTYPE(None)(_begin),
}
_registered = False


def register_host_functions() -> None:
    """Make the host functions resolvable by MCJIT (``llvmlite.binding.add_symbol``);
    idempotent.  Called by the frontend when it emits a ``print``."""
    global _registered
    if _registered:
        return
    import llvmlite.binding as llb  # noqa: PLC0415 (only needed once a print is traced)

    with _LOCK:
        if not _registered:
            for name, cb in _CALLBACKS.items():
                llb.add_symbol(name, ctypes.cast(cb, ctypes.c_void_p).value)
            _registered = True
