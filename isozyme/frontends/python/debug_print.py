"""``print`` in traced code: print the run-time values on every call of the compiled code.

Like ``jax.debug.print``, but spelled ``print``: ``print("x =", x, "n =", n)`` becomes
calls of the host functions of :mod:`isozyme.printing` (one that starts the print, one
per traced value, then one that prints with the registered format).  ``file=sys.stdout``
and ``file=sys.stderr`` are looked up when the code runs, as Python does.  Arguments that are not traced (strings,
Python numbers, other objects) are converted with ``str`` at trace time and printed on
every call too, so a ``print`` in a traced function prints once per call, whether or not
it shows traced values.

The calls have no results and are not pure, so no pass removes, merges or moves them;
the AD passes copy them into the forward sweep like any op without active results, so
forward mode prints the primal values and reverse mode prints once, in its forward
sweep (never in the reverse sweep).

A traced array is printed as numpy prints it: its sizes and then its elements (in C
order, by nested loops) are handed to the host, which rebuilds a numpy array.

Refused (TraceError): a container or object whose text would show tracers (pass the
values as separate arguments), and a traced ``file``/``flush``.
"""

from __future__ import annotations

import sys
from typing import Any

from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import Float32Type, IndexType, f64, i64

from isozyme import printing

from .context import current_builder
from .diagnostics import trace_error
from .tracer import Tracer, is_array_value, is_bool_type, is_float_type, ssa


def _declare(name: str, arg_types: list[Any]) -> None:
    """Declare the host function ``name`` once in the module being traced."""
    session = current_builder().session
    if name in session.used_names:
        return
    session.used_names.add(name)
    session.add_function(func.FuncOp.external(name, arg_types, []))


def _call(name: str, value: Any, arg_type: Any) -> None:
    """Emit ``func.call @name(value)`` (no argument when ``value`` is None)."""
    _declare(name, [] if value is None else [arg_type])
    current_builder().insert(func.CallOp(name, [] if value is None else [value], []))


def _pass_value(t: Tracer) -> str:
    """Emit the call that hands ``t`` to the host; return its kind for the format."""
    typ = t.type
    v = ssa(t)
    if is_float_type(typ):
        if isinstance(typ, Float32Type):
            v = current_builder().insert(arith.ExtFOp(v, f64)).result  # exact
            kind = "float32"
        else:
            kind = "float64"
        _call(printing.PRINT_F64, v, f64)
        return kind
    if is_bool_type(typ):
        v = current_builder().insert(arith.ExtUIOp(v, i64)).result
        _call(printing.PRINT_I64, v, i64)
        return "bool"
    if isinstance(typ, IndexType):
        v = current_builder().insert(arith.IndexCastOp(v, i64)).result
    _call(printing.PRINT_I64, v, i64)
    return "int"


def _pass_array(a: Any) -> str:
    """Emit the calls that hand array ``a`` to the host: its sizes, then its elements in
    C order (nested ``scf.for`` loops); return its kind, ``array:<dtype>:<rank>``."""
    from .arrays import _for_each_index, numpy_dtype  # noqa: PLC0415 (import cycle)

    sizes = [a.dim_index(k) for k in range(a.ndim)]
    for size in sizes:
        _pass_value(Tracer(current_builder().insert(arith.IndexCastOp(size, i64)).result))
    dtype = numpy_dtype(a.element_type)

    def element(ivs: list[Any]) -> None:
        load = current_builder().insert(memref.LoadOp.get(ssa(a), ivs))
        _pass_value(Tracer(load.results[0]))

    _for_each_index(sizes, element)
    return f"array:{dtype.name}:{a.ndim}"


def _plain_text(obj: object) -> str:
    text = str(obj)
    if "Tracer(%" in text:  # a tuple, list, dict or object holding traced values
        raise trace_error(
            f"print of a {type(obj).__name__} holding traced values",
            "its text would show tracers, not numbers; pass the values to print as "
            "separate arguments: print('x, y =', x, y)",
        )
    return text


def _option(name: str, value: object, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, Tracer) or not isinstance(value, str):
        raise TypeError(f"{name} must be None or a string, not {type(value).__name__}")
    return value


def traced_print(*args: object, sep: object = " ", end: object = "\n", file: Any = None,
                 flush: bool = False) -> None:
    """``print(*args, sep=, end=, file=, flush=)`` in converted code: emit the calls that
    print these arguments each time the compiled code runs (see the module docstring)."""
    if isinstance(file, Tracer) or isinstance(flush, Tracer):
        raise trace_error("print with a traced `file` or `flush`", "they must be Python values")
    sep_s, end_s = _option("sep", sep, " "), _option("end", end, "\n")
    # Check every argument before emitting anything.
    pieces: list[str | None] = []
    for a in args:
        pieces.append(None if isinstance(a, Tracer) else _plain_text(a))
    if file is sys.stdout or file is sys.stderr:  # looked up again on every call
        file = printing.STDOUT if file is sys.stdout else printing.STDERR
    printing.register_host_functions()
    _call(printing.PRINT_BEGIN, None, None)
    kinds = [_pass_array(a) if is_array_value(a) else _pass_value(a)
             for a in args if isinstance(a, Tracer)]
    fmt = printing.PrintFormat(tuple(pieces), tuple(kinds), sep_s, end_s, file, bool(flush))
    k = printing.register_format(fmt)
    c = current_builder().insert(arith.ConstantOp.from_int_and_width(k, i64)).result
    _call(printing.PRINT_END, c, i64)
