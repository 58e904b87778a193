"""Iteration in converted code over arrays and traced ranges (the run-time side of
:mod:`.iteration`).

``for row in X``, ``for a, b in zip(X, Y)``, ``for i, x in enumerate(X)``,
``for i in reversed(range(n))``: the converted loop asks :func:`iterate` for the
sequence; when it is an array (or a ``zip``/``enumerate``/``reversed``/``range`` of
arrays and traced ranges) it is a :class:`TracedSequence`, iterated by a loop over
``range(length(seq))`` reading ``item(seq, i)`` — one ``scf.for`` (or ``scf.while``
with an exit) whatever the length.  Anything else is iterated by Python, as before.
(Converted code reaches these functions through :mod:`.converted_ops`.)
"""

from __future__ import annotations

import abc
import builtins
import operator
from typing import Any

from .arrays import np_len
from .control_flow import range_operand, trip_count
from .diagnostics import trace_error
from .tracer import Tracer, check_defined, is_array_value


class TracedSequence(abc.ABC):
    """A sequence a traced loop iterates: ``length`` (a tracer or an int) and
    :meth:`item`."""

    length: Any

    @abc.abstractmethod
    def item(self, i: Any) -> Any:
        """The element at (traced) position ``i``."""


class _ArraySeq(TracedSequence):
    def __init__(self, x: Any) -> None:
        self.x = x
        self.length = np_len(x)

    def item(self, i: Any) -> Any:
        return self.x[i]  # a row of a 2-D array is a view


class _RangeSeq(TracedSequence):
    def __init__(self, start: Any, stop: Any, step: Any) -> None:
        self.start, self.step = start, step
        self.length = trip_count(start, stop, step)

    def item(self, i: Any) -> Any:
        return self.start + i * self.step


class _ZipSeq(TracedSequence):
    def __init__(self, seqs: list[TracedSequence]) -> None:
        self.seqs = seqs
        self.length = seqs[0].length
        for s in seqs[1:]:
            self.length = _min(self.length, s.length)

    def item(self, i: Any) -> Any:
        return tuple(s.item(i) for s in self.seqs)


class _EnumerateSeq(TracedSequence):
    def __init__(self, seq: TracedSequence, start: Any) -> None:
        self.seq, self.start = seq, start
        self.length = seq.length

    def item(self, i: Any) -> Any:
        index = i if not isinstance(self.start, Tracer) and self.start == 0 else self.start + i
        return (index, self.seq.item(i))


class _ReversedSeq(TracedSequence):
    def __init__(self, seq: TracedSequence) -> None:
        self.seq = seq
        self.length = seq.length

    def item(self, i: Any) -> Any:
        return self.seq.item(self.length - 1 - i)


def _min(a: Any, b: Any) -> Any:
    from .functions import converted_call  # noqa: PLC0415 (functions imports this package)

    return converted_call(builtins.min, a, b)


def _traced(obj: Any) -> TracedSequence | None:
    if isinstance(obj, TracedSequence):
        return obj
    if is_array_value(obj):
        return _ArraySeq(obj)
    return None


def iterate(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """What ``for t in fn(*args, **kwargs)`` iterates (``fn`` None: ``for t in
    args[0]``): a :class:`TracedSequence` for arrays, traced ranges and ``zip``/
    ``enumerate``/``reversed`` of them; else the Python iterable itself."""
    check_defined(fn, *args, *kwargs.values())
    if fn is None:
        (obj,) = args
        return _traced(obj) or obj
    if fn is builtins.range and not kwargs and any(isinstance(a, Tracer) for a in args):
        start, stop, step = (0, args[0], 1) if len(args) == 1 else \
            (args[0], args[1], 1) if len(args) == 2 else args
        start, stop = range_operand(start, "start"), range_operand(stop, "stop")
        step = range_operand(step, "step")
        if isinstance(step, Tracer):
            raise trace_error("iterating range() with a traced step",
                              "write the loop as `for i in range(start, stop, step)`")
        if step == 0:
            raise ValueError("range() arg 3 must not be zero")
        return _RangeSeq(start, stop, step)
    traced = [_traced(a) for a in args]
    if not any(t is not None for t in traced):
        return fn(*args, **kwargs)
    if fn is builtins.zip and not kwargs:
        traced = [_RangeSeq(a.start, a.stop, a.step) if t is None and isinstance(a, range)
                  else t for a, t in zip(args, traced)]  # zip(range(3), X)
        if any(t is None for t in traced):
            raise trace_error(
                "zip() of an array and a Python iterable in a traced loop",
                "zip arrays (or ranges) only, or index the Python list with a Python int")
        return _ZipSeq(traced)  # type: ignore[arg-type]
    if fn is builtins.enumerate and len(args) <= 2 and traced[0] is not None:
        start = kwargs.get("start", args[1] if len(args) == 2 else 0)
        return _EnumerateSeq(traced[0], operator.index(start)
                             if not isinstance(start, Tracer) else start)
    if fn is builtins.reversed and len(args) == 1 and not kwargs:
        return _ReversedSeq(traced[0])  # type: ignore[arg-type]
    from .functions import converted_call  # noqa: PLC0415

    return converted_call(fn, *[a.x if isinstance(a, _ArraySeq) else a for a in args],
                          **kwargs)


def is_traced(seq: Any) -> bool:
    """Whether a loop over ``seq`` (from :func:`iterate`) is a traced loop."""
    return isinstance(seq, TracedSequence)


def length(seq: TracedSequence) -> Any:
    """The length of a traced sequence (a tracer or an int)."""
    return seq.length


def item(seq: TracedSequence, i: Any) -> Any:
    """The element at position ``i`` of a traced sequence."""
    return seq.item(i)
