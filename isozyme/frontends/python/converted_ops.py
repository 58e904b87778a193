"""The second namespace converted code calls into (bound to ``_iz_x_`` in it, beside
:mod:`.ops` as ``_iz_``): the builders of the constructs :mod:`.iteration` rewrites
(iteration over arrays, :mod:`.sequences`), of ``assert``
(:func:`.runtime_checks.assert_`), of ``return`` inside loops (:func:`loop_return`,
for :mod:`.loop_exits`), and the reads of variables a traced loop may leave unassigned
(:func:`.late_values.read_var`)."""

from __future__ import annotations

from typing import Any

from .diagnostics import trace_error
from .late_values import read_var
from .runtime_checks import assert_
from .sequences import is_traced, item, iterate, length
from .tracer import Tracer, is_array_value, is_number

__all__ = ["assert_", "is_traced", "item", "iterate", "length", "loop_return", "python_break",
           "read_var"]


def loop_return(value: Any, exit_flag: Any) -> Any:
    """The value of a ``return`` inside a loop, stored in the variable the loop carries
    out (:mod:`.loop_exits`); ``exit_flag`` is the loop's exit flag, traced when the
    loop is.  A traced loop carries numbers only: anything else (an array, ``None``, a
    list) raises a TraceError naming the ``return``; a Python loop returns any value,
    as Python does."""
    if not isinstance(exit_flag, Tracer) or is_number(value) \
            or (isinstance(value, Tracer) and not is_array_value(value)):
        return value
    what = "an array" if is_array_value(value) else f"a {type(value).__name__}"
    raise trace_error(
        f"`return` of {what} inside a loop on a traced condition",
        "only numbers can be returned from inside a traced loop; assign the result to a "
        "variable, `break`, and return it after the loop",
    )


def python_break(exit_flag: Any, iterable: Any) -> bool:
    """Whether a Python ``for`` loop (over ``iterable``) ends now: its exit flag is a
    Python ``True``.  A traced flag keeps it iterating, each later iteration guarded
    by the flag; over an iterable without a length (a generator, ``itertools.count()``)
    that would unroll without end, so it raises a TraceError naming the loop."""
    if isinstance(exit_flag, Tracer):
        if not hasattr(iterable, "__len__"):
            raise trace_error(
                f"`break`/`return` on a traced condition in a `for` loop over "
                f"a {type(iterable).__name__}",
                "Python iterates it while tracing, unrolled, and cannot tell when to stop; "
                "loop over range(...) or an array instead",
            )
        return False
    return exit_flag is True
