"""Host calls in traced code: :func:`host_call` emits a call of a Python function that
runs each time the compiled code runs (like ``jax.pure_callback``).

The rules frontend uses it for the primal of a function isozyme cannot trace (one that
calls ``scipy.special``, say): the derivative comes from the user's rule, the value
from the function itself.  The emitted IR, for ``host_call(f, [x, n], [f64])``::

    %s = func.call @__iz_host_call_dq(%id, %x, %n) {isozyme.host_call = "m.f"}
           : (i64, f64, i64) -> i64
    %ok = arith.cmpi eq, %s, %c0
    isz.check %ok, %s {kind = "host", message = "f.py:7: m.f raised"}
    %r = func.call @__iz_host_result_f64(%c0) {isozyme.host_call = "m.f"} : (i64) -> f64

(the host functions of :mod:`isozyme.host_calls`; ``%id`` the number ``f`` is
registered under).  A failing call stops the compiled call and raises
``HostCallError("f.py:7: m.f raised ValueError: ...")``.

The calls have no buffer operands and their float results come from calls whose only
operand is a constant, so AD sees them as opaque and inactive: forward mode and the
forward sweep of reverse mode copy them (like ``print``), and nothing is
differentiated through them (a rule supplies the derivative).  They are not pure, so
no pass removes, merges or moves them.  A GPU target refuses them inside a kernel
(``isozyme.compiler.gpu.outline_parallel_loops``).

Scalars only: ``f64``, ``f32`` and ``i64`` (``index`` values are passed as ``i64``);
Python and numpy numbers are passed as constants of their type (``i64``, ``f64``,
``f32``).  Arrays and bools are refused (``TraceError`` naming the function).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from xdsl.dialects import arith, func
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
    StringAttr,
    f64,
    i1,
    i64,
)
from xdsl.ir import Attribute, SSAValue

from isozyme import host_calls

from .context import current_builder
from .diagnostics import trace_error
from .runtime_checks import require
from .tracer import Tracer, as_tracer, is_array_value, scalar_type_of, ssa


def _declare(name: str, arg_types: list[Attribute], result_types: list[Attribute]) -> None:
    """Declare the host function ``name`` once in the module being traced."""
    session = current_builder().session
    if name in session.used_names:
        return
    session.used_names.add(name)
    session.add_function(func.FuncOp.external(name, arg_types, result_types))


def _call(name: str, operands: list[SSAValue], result: Attribute, label: str) -> SSAValue:
    """Emit ``func.call @name(operands)`` with one ``result``, marked as a host call."""
    _declare(name, [o.type for o in operands], [result])
    call = func.CallOp(name, operands, [result])
    call.attributes[host_calls.HOST_CALL_ATTR] = StringAttr(label)
    return current_builder().insert(call).res[0]


def _i64(value: int) -> SSAValue:
    return current_builder().insert(arith.ConstantOp.from_int_and_width(value, i64)).result


def _argument(a: object, label: str) -> tuple[str, SSAValue]:
    """The kind letter and the value passed for one argument of a host call."""
    if is_array_value(a) or (not isinstance(a, Tracer) and scalar_type_of(a) is None):
        what = "an array" if is_array_value(a) else f"a {type(a).__name__}"
        raise trace_error(
            f"a host call of {label} with {what} argument",
            "host calls take scalars (f64, f32 or i64)",
        )
    t = as_tracer(a)
    typ = t.type
    v = ssa(t)
    if isinstance(typ, Float64Type):
        return "d", v
    if isinstance(typ, Float32Type):
        return "f", v
    if isinstance(typ, IndexType):
        return "q", current_builder().insert(arith.IndexCastOp(v, i64)).result
    if isinstance(typ, IntegerType) and typ.width.data == 64:
        return "q", v
    raise trace_error(
        f"a host call of {label} with {'a bool' if typ == i1 else f'an {typ}'} argument",
        "host calls take scalars (f64, f32 or i64)",
    )


def _result_kind(t: Attribute, label: str) -> str:
    """The kind letter of a result type (f64, f32, i64)."""
    if isinstance(t, Float64Type):
        return "d"
    if isinstance(t, Float32Type):
        return "f"
    if isinstance(t, IntegerType) and t.width.data == 64:
        return "q"
    raise trace_error(
        f"a host call of {label} returning {t}",
        "host calls return scalars (f64, f32 or i64)",
    )


def host_call(
    f: Callable[..., Any], args: Sequence[Tracer], result_types: Sequence[Attribute]
) -> list[Tracer]:
    """Emit, in the function being traced, a call of the Python function ``f`` made
    each time the compiled code runs: ``f(*args)`` with the run-time values as Python
    numbers (``float``, ``numpy.float32``, ``int``), returning one number per entry of
    ``result_types`` (one value, or a tuple of them).  Returns the results as tracers.

    When ``f`` raises (or returns the wrong number or kind of values) the compiled
    call stops and raises :class:`~isozyme.errors.HostCallError` naming ``f`` and the
    exception.  Raises :class:`~isozyme.errors.TraceError` (naming ``f``) for an
    argument or result that is not an ``f64``/``f32``/``i64`` scalar."""
    label = host_calls.function_name(f)
    passed = [_argument(a, label) for a in args]
    kinds = "".join(k for k, _ in passed)
    results = "".join(_result_kind(t, label) for t in result_types)
    k = host_calls.register(host_calls.HostFunction(f, label, kinds, results))
    symbol = host_calls.register_signature(kinds)
    status = _call(symbol, [_i64(k), *(v for _, v in passed)], i64, label)
    ok = current_builder().insert(arith.CmpiOp(status, _i64(0), "eq")).result
    # the runtime appends the exception (isozyme.host_calls.host_failure)
    require(ok, "host", label.replace("{", "{{").replace("}", "}}") + " raised", status)
    out: list[Tracer] = []
    for i, (kind, t) in enumerate(zip(results, result_types)):
        if kind == "q":
            out.append(Tracer(_call(host_calls.RESULT_I64, [_i64(i)], i64, label)))
            continue
        v = _call(host_calls.RESULT_F64, [_i64(i)], f64, label)
        if kind == "f":  # rounded to nearest, as np.float32(value) rounds
            v = current_builder().insert(arith.TruncFOp(v, t)).result
        out.append(Tracer(v))
    return out


__all__ = ["host_call"]
