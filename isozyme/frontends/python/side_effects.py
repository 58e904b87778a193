"""Calls whose effect or value would be fixed at trace time: refused, or done at run time.

A traced function runs once per compilation, not once per call, so a call made while
tracing happens once and its value is baked into the compiled code.  For most calls
that is what the user wants (``len(x)``, ``range(n)``...), but not for these:

* ``hash(x)``/``id(x)`` of a traced value: the hash or address of the *tracer* object,
  a meaningless constant;
* ``random.*``, ``np.random.*`` (the module functions and methods of ``random.Random``,
  ``np.random.RandomState``/``Generator``/``BitGenerator`` objects), ``time.time`` and
  the other clocks, ``datetime.now``, ``os.urandom``, ``uuid.uuid4``: a value that
  would be the same on every call;
* ``open`` and ``input``: I/O at trace time.

They raise :class:`isozyme.errors.TraceError` naming the file and line.  ``print`` runs
at *run time* instead (see :mod:`.debug_print`), and ``isinstance`` answers for the
value a tracer stands for (:func:`traced_isinstance`, :func:`traced_type`); ``bool`` of an
array follows numpy's rule (:func:`traced_bool`).

:func:`intercept` is what :func:`.functions.converted_call` consults first.
"""

from __future__ import annotations

import builtins
import datetime
import os
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.dialects.builtin import Float32Type, MemRefType

from isozyme.errors import TraceError

from .diagnostics import trace_error
from .tracer import Tracer, is_bool_type, is_float_type, is_int_type, to_bool

_FIXED = "the value would be fixed at trace time"

#: Clocks and entropy sources: their value would be fixed at trace time.
_CLOCKS: dict[Any, str] = {
    fn: f"time.{fn.__name__}"
    for fn in (
        time.time, time.time_ns, time.perf_counter, time.perf_counter_ns,
        time.monotonic, time.monotonic_ns, time.process_time, time.process_time_ns,
        time.thread_time, time.thread_time_ns, time.localtime, time.gmtime,
        time.ctime, time.asctime, time.strftime,
    )
}
_CLOCKS.update({
    datetime.datetime.now: "datetime.datetime.now",
    datetime.datetime.utcnow: "datetime.datetime.utcnow",
    datetime.datetime.today: "datetime.datetime.today",
    datetime.date.today: "datetime.date.today",
    os.urandom: "os.urandom",
    uuid.uuid1: "uuid.uuid1",
    uuid.uuid4: "uuid.uuid4",
})

#: Objects whose methods draw random numbers (their state would advance once, at trace time).
_RANDOM_OWNERS: tuple[type, ...] = (
    random.Random, np.random.RandomState, np.random.Generator, np.random.BitGenerator,
    np.random.SeedSequence,
)


def _contains_tracer(obj: object) -> bool:
    if isinstance(obj, Tracer):
        return True
    if isinstance(obj, (tuple, list)):
        return any(_contains_tracer(x) for x in obj)
    if isinstance(obj, dict):
        return any(_contains_tracer(x) for x in obj.values())
    return False


def _random_name(f: object) -> str | None:
    """``random.random``, ``np.random.normal``, ``rng.normal``...: the name to report for
    a call that draws random numbers, or ``None`` when ``f`` does not."""
    owner = getattr(f, "__self__", None)
    name = getattr(f, "__name__", None) or "?"
    if isinstance(owner, random.Random):
        return f"random.{name}" if owner is getattr(random, "_inst", None) else f".{name}"
    if isinstance(owner, np.random.RandomState):
        return (f"np.random.{name}" if owner is getattr(np.random.mtrand, "_rand", None)
                else f".{name}")
    if isinstance(owner, _RANDOM_OWNERS):
        return f"{type(owner).__name__}.{name}"
    if isinstance(f, type) and issubclass(f, _RANDOM_OWNERS):
        return None  # constructing a generator is harmless; drawing from it is refused
    # any other numpy.random function is refused, np.random.default_rng included: the
    # generator it makes would be seeded once, at trace time
    module = getattr(f, "__module__", None) or ""
    if module == "numpy.random" or module.startswith("numpy.random."):
        return f"np.random.{name}"
    return None


def _refuse_in_traced_code(what: str, why: str) -> TraceError:
    return trace_error(f"`{what}()` in traced code", why)


def _refusal(name: str, why: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise _refuse_in_traced_code(name, why)

    return call


def _hash_or_id(f: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if _contains_tracer(args) or _contains_tracer(kwargs):
            raise trace_error(
                f"`{f.__name__}` of a traced value",
                f"it would be the {f.__name__} of the tracer object, fixed at trace time, "
                "not of the number the compiled code computes",
            )
        return f(*args, **kwargs)

    return call


def _io(name: str) -> Callable[..., Any]:
    return _refusal(
        name,
        "it would run once, when the function is traced, not on every call; do the "
        "I/O outside the differentiated function and pass the values as arguments",
    )


def traced_isinstance(obj: object, classinfo: Any) -> bool:
    """``isinstance`` for converted code: a tracer is an instance of the types of the
    value it stands for (``np.ndarray`` for an array; ``float``/``np.float64`` for an
    ``f64`` scalar, ``np.float32`` for ``f32``, ``int``/``np.int64`` for an integer,
    ``bool``/``np.bool_`` for ``i1``, and their numpy/``numbers`` base classes)."""
    if not isinstance(obj, Tracer):
        return builtins.isinstance(obj, classinfo)
    builtins.isinstance(0, classinfo)  # numpy/Python's own TypeError for a bad classinfo
    if builtins.isinstance(obj, classinfo):  # isinstance(x, object) and the like
        return True
    return any(issubclass(s, classinfo) for s in _stands_for(obj))


def _stands_for(obj: Tracer) -> tuple[type, ...]:
    """The Python/numpy types of the value a tracer stands for, the most common first."""
    t = obj.value.type
    if isinstance(t, MemRefType):
        return (np.ndarray,)
    if is_bool_type(t):
        return (bool, np.bool_)
    if is_int_type(t):
        return (int, np.int64)
    if isinstance(t, Float32Type):
        return (np.float32,)
    if is_float_type(t):
        return (float, np.float64)
    return (type(obj),)  # pragma: no cover (every traced type is one of the above)


def traced_type(*args: Any, **kwargs: Any) -> Any:
    """``type(x)`` for converted code: for a tracer, the type of the value it stands for
    (``np.ndarray``, ``float``, ``np.float32``, ``int``, ``bool``); else ``type``'s own
    answer (and the three-argument form creates a class, as usual)."""
    if len(args) == 1 and not kwargs and isinstance(args[0], Tracer):
        return _stands_for(args[0])[0]
    return builtins.type(*args, **kwargs)


def traced_bool(x: object = False) -> Any:
    """``bool(x)`` for converted code: the truth value of a tracer as an ``i1`` tracer;
    for an array, numpy's rule (refused unless it has exactly one element)."""
    return to_bool(x) if isinstance(x, Tracer) else bool(x)


def _build_table() -> dict[Any, Callable[..., Any]]:
    table: dict[Any, Callable[..., Any]] = {
        builtins.bool: traced_bool,
        builtins.hash: _hash_or_id(builtins.hash),
        builtins.id: _hash_or_id(builtins.id),
        builtins.open: _io("open"),
        builtins.input: _io("input"),
        builtins.isinstance: traced_isinstance,
        builtins.type: traced_type,
    }
    for fn, name in _CLOCKS.items():
        table[fn] = _refusal(name, f"{_FIXED}; pass the value as an argument")
    return table


_TABLE = _build_table()


def intercept(f: object) -> Callable[..., Any] | None:
    """The replacement of ``f`` in converted code (a function raising the TraceError, or
    doing the call right), or ``None`` when ``f`` is an ordinary callable."""
    try:
        special = _TABLE.get(f)
    except TypeError:  # unhashable callable
        special = None
    if special is not None:
        return special
    name = _random_name(f)
    if name is not None:
        return _refusal(name, f"{_FIXED}; pass random numbers as an argument")
    return None
