"""Run-time checks emitted while tracing: :func:`require` and the array bounds checks.

:func:`require` appends an ``isz.check`` op (``isozyme/dialects/check.py``) at the
current insertion point: when its condition is false at run time the compiled call
stops before any later op and the Python call raises the isozyme error of ``kind``, with
the message (prefixed by the user's ``file:line``) formatted with the run-time values.

:func:`assert_` is Python's ``assert`` in converted code: on a traced condition, a check
of kind ``"assert"`` (``AssertionFailedError``, an ``AssertionError``).

:func:`check_index` is the bounds check of one array index (numpy's rule: ``-n <= i <
n``), emitted unless ``isozyme.config(boundscheck=False)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdsl.dialects import arith
from xdsl.dialects.builtin import IndexType, IntegerType, i1
from xdsl.ir import SSAValue

from isozyme.config import boundscheck
from isozyme.dialects.check import CHECK_KINDS, CheckOp
from isozyme.errors import OutOfBoundsError

from .diagnostics import format_location, trace_error, user_location
from .tracer import (
    Tracer,
    check_defined,
    constant,
    emit,
    emit1,
    is_bool_type,
    ssa,
    to_bool,
)


def _value(v: object) -> SSAValue:
    """An integer (``iN``/``index``) SSA value for a tracer, an SSA value or an int."""
    if isinstance(v, Tracer):
        t = v.type
        if not isinstance(t, (IntegerType, IndexType)):
            raise TypeError(f"require: values must be integers, got a {t} tracer")
        return ssa(v)
    if isinstance(v, SSAValue):
        return v
    if isinstance(v, int):
        return ssa(constant(v, IntegerType(64)))
    raise TypeError(f"require: values must be integer tracers or ints, got {type(v).__name__}")


def require(
    cond: Tracer | SSAValue | bool, kind: str, message: str, *values: Tracer | SSAValue | int
) -> None:
    """Assert ``cond`` (an ``i1`` tracer) when the compiled code runs.

    When it is false the compiled call stops, no later op of the call runs (so no later
    write lands), and the Python call raises the error of ``kind`` (``"index"`` ->
    ``OutOfBoundsError``, ``"shape"`` -> ``ShapeError``, ``"unsupported"`` ->
    ``UnsupportedError``) with ``"{file}:{line}: " + message.format(*values)``, ``file``
    and ``line`` those of the user's code being traced, ``values`` the run-time values
    of the integer tracers (``{0}``, ``{1}``...; use ``{{``/``}}`` for braces).  A
    Python bool ``cond`` emits nothing when true and an always-failing check when false
    (the code may not run: only reaching it at run time is an error).
    """
    if kind not in CHECK_KINDS:
        raise ValueError(f"require: unknown kind {kind!r} (one of {', '.join(CHECK_KINDS)})")
    if isinstance(cond, bool):
        if cond:
            return
        c = ssa(constant(0, i1))
    elif isinstance(cond, Tracer):
        if not is_bool_type(cond.type):
            raise TypeError(f"require: the condition must be an i1 tracer, got {cond.type}")
        c = ssa(cond)
    else:
        c = cond
    filename, line = user_location()
    # the location is text, not a format string: a brace in a path stays a brace
    where = format_location(filename, line).replace("{", "{{").replace("}", "}}")
    text = f"{where}: {message}"
    emit(CheckOp(c, kind, text, [_value(v) for v in values]))


def check_index(index: Tracer | SSAValue | int, wrapped: SSAValue, size: SSAValue,
                axis: int) -> None:
    """Emit the bounds check of ``index`` (the user's integer, before wrapping) in a
    dimension of ``size`` (``index``), given ``wrapped`` (``index``: ``index``, plus
    ``size`` when negative).  In bounds iff ``0 <= wrapped < size`` (numpy's
    ``-size <= index < size``), which is one unsigned comparison.  Nothing is emitted
    when ``isozyme.config(boundscheck=False)``.
    """
    if not boundscheck():
        return
    ok = emit1(arith.CmpiOp(wrapped, size, "ult"))
    require(ok, "index",
            f"index {{0}} is out of bounds for axis {axis} with size {{1}}",
            index, size)


def static_index_error(i: int, axis: int, size: int) -> OutOfBoundsError:
    """The error of a Python-int index outside a static size, found while tracing."""
    return OutOfBoundsError(
        f"{format_location(*user_location())}: index {i} is out of bounds for axis "
        f"{axis} with size {size}"
    )


def assert_(cond: Any, message: Callable[[], Any] | None) -> None:
    """``assert cond, message()`` in converted code.  A Python ``cond`` asserts now, as
    Python does; a traced one is checked when the compiled code runs (an
    ``AssertionFailedError``, an ``AssertionError``, with ``file:line: message``).  The
    message is computed at trace time and must not depend on traced values."""
    check_defined(cond)
    if not isinstance(cond, Tracer):
        if not cond:
            raise AssertionError(*(() if message is None else (message(),)))
        return
    c = to_bool(cond)  # an array's truth raises as numpy's does
    text = "assertion failed"
    if message is not None:
        value = message()
        if isinstance(value, Tracer):
            raise trace_error("an `assert` message computed from traced values",
                              "its text is fixed when the code is traced; use a constant "
                              "message")
        text = str(value)
    require(c, "assert", text.replace("{", "{{").replace("}", "}}"))
