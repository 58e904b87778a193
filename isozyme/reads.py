"""What compiled code read at trace time, and the guard that re-checks it on every call.

Tracing runs the user's Python once; everything it reads from outside its arguments
(module globals, closure cells, the globals and closures of the helper functions it
calls) is either baked into the IR (a scalar becomes a constant, a plain-Python call's
result becomes a constant) or decides which code is traced.  A compiled function is
therefore valid only while those values are what they were at trace time.

After a trace, :func:`after_trace` collects the reads: the globals and closure cells of
the traced function, of every function the converted code called
(``_iz_.converted_call`` records them in the trace session) and, recursively, of the
user functions those read as globals (plain-Python calls at trace time are not routed
through ``converted_call``).  Global names come from the bytecode (``LOAD_GLOBAL``), so
attribute names are not mistaken for globals.  Each read becomes one guard entry:

* functions, modules, classes, builtins and ufuncs: by identity, holding a strong
  reference (a freed object's ``id`` can never match again);
* numbers, strings, tuples, lists, dicts, sets, small numpy arrays and plain objects:
  by value (:func:`freeze`, arrays by dtype, shape and bytes), so a global list mutated
  in place misses as a rebound global does;
* a large numpy array (more than :data:`HIDDEN_MIN_SIZE` elements) read as a global or
  closure variable by converted code (``_iz_.array_read``), or that reached whole-array
  code, is not baked at all: it is a hidden ``Const`` argument of the compiled function
  with run-time sizes (loops over its rows stay loops), fetched from its global or cell
  on every call, so in-place changes are seen without recompiling; the guard checks its
  dtype, shape and whether rows are contiguous, so a rebinding to an array of another
  shape traces again (the trace may have read the shape in Python: ``for row in X``);
* a name that was not a global (a builtin) must still not be one;
* anything else (a lock, a generator, a C object) cannot be compared by value: tracing
  raises a ``TraceError`` naming the global.

:func:`make_guard` turns the entries into one function, run on every cache hit, that
returns ``None`` when anything changed (the cache then traces again) or the values of
the hidden arguments.
"""

from __future__ import annotations

import ctypes
import dis
import enum
import functools
import os
import sys
import sysconfig
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isozyme.annotations import Mode
from isozyme.errors import TraceError

#: Arrays with more elements than this that reach whole-array code are passed to the
#: compiled code as hidden arguments instead of being baked into the IR.
HIDDEN_MIN_SIZE = 64

_MISSING = object()  # a name absent from a globals dict
_EMPTY = object()  # an empty closure cell
_UNEQUAL = object()  # what a value that cannot be frozen any more compares as


class Unfreezable(Exception):
    """A value :func:`freeze` cannot represent by value."""

    def __init__(self, value: object, why: str = "") -> None:
        super().__init__(why)
        self.value = value
        self.why = why


class Ident:
    """A key part that compares by identity and keeps its object alive (a bare ``id()``
    could be reused by a new object once the old one is freed)."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return type(other) is Ident and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __repr__(self) -> str:
        return f"Ident({self.obj!r})"


_IDENT_TYPES = (
    types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type, np.ufunc,
    types.MethodDescriptorType, types.WrapperDescriptorType, types.BuiltinMethodType,
    Mode,  # Forward, Reverse...: immutable singletons a nested autodiff reads
    # a C function loaded with ctypes (libm's erfc): called through a user rule's host
    # call, it traces the same for as long as it is the same object
    ctypes._CFuncPtr,  # type: ignore[attr-defined]
)
_SIMPLE = frozenset({int, bool, str, bytes, complex, type(None), type(Ellipsis), range, slice})
_MAX_ELEMENTS = 1_000_000  # a frozen value larger than this is refused, not compared


def freeze(v: object) -> object:
    """A hashable value that equals ``freeze(w)`` exactly when ``w`` would trace the
    same: numbers with their type (``-0.0`` and ``nan`` kept apart), containers
    element by element, numpy arrays by dtype, shape and bytes, plain objects by their
    attributes, functions and modules by identity.  Raises :class:`Unfreezable`."""
    budget = [_MAX_ELEMENTS]
    return _freeze(v, budget, 0)


def _freeze(v: object, budget: list[int], depth: int) -> object:
    t = type(v)
    if t is float:
        if v == 0.0 or v != v:  # -0.0 == 0.0 and nan != nan: compare their bits
            return (float, v.hex())  # type: ignore[attr-defined]
        return (float, v)
    if t in _SIMPLE:
        return (t, v)
    if depth > 16:
        raise Unfreezable(v, "is nested too deeply")
    budget[0] -= 1
    if budget[0] < 0:
        raise Unfreezable(v, "is too large to compare on every call")
    if isinstance(v, np.ndarray):
        if v.dtype.hasobject:
            raise Unfreezable(v, "is an array of Python objects")
        budget[0] -= v.size
        if budget[0] < 0:
            raise Unfreezable(v, "is too large to compare on every call")
        return (t, v.dtype.str, v.shape, v.tobytes())  # t: a subclass traces differently
    if isinstance(v, np.generic):
        return (t, v.tobytes())
    if t is tuple or t is list:
        return (t, tuple(_freeze(x, budget, depth + 1) for x in v))  # type: ignore[attr-defined]
    if t is dict:
        return (t, tuple((_freeze(k, budget, depth + 1), _freeze(x, budget, depth + 1))
                         for k, x in v.items()))  # type: ignore[attr-defined]
    if t is set or t is frozenset:
        return (t, frozenset(_freeze(x, budget, depth + 1) for x in v))  # type: ignore[attr-defined]
    if isinstance(v, np.vectorize):  # np.vectorize(math.lgamma): its parts decide the trace
        return (np.vectorize, *(_freeze(x, budget, depth + 1)
                                for x in (v.pyfunc, v.otypes, v.excluded, v.signature)))
    if isinstance(v, _IDENT_TYPES) or isinstance(v, enum.Enum):
        return Ident(v)
    if isinstance(v, np.dtype):
        return (np.dtype, v.str)
    if isinstance(v, tuple):  # NamedTuple
        return (t, tuple(_freeze(x, budget, depth + 1) for x in v))
    if isinstance(v, types.MethodType):
        return (types.MethodType, Ident(v.__func__), _freeze(v.__self__, budget, depth + 1))
    if isinstance(v, functools.partial):
        return (functools.partial, _freeze(v.func, budget, depth + 1),
                _freeze(v.args, budget, depth + 1), _freeze(v.keywords, budget, depth + 1))
    if isinstance(v, (float, int, str)):  # subclasses of the simple types
        return (t, v, _freeze(getattr(v, "__dict__", {}), budget, depth + 1))
    d = getattr(v, "__dict__", None)
    slots = [s for c in t.__mro__ for s in getattr(c, "__slots__", ())
             if isinstance(s, str) and s not in ("__dict__", "__weakref__")]
    if type(d) is dict or slots:
        if _is_library_class(t):  # a logger, a lock, a file: not walked through
            raise Unfreezable(v, f"isozyme cannot compare a {t.__module__}.{t.__qualname__} "
                                 "by value")
        parts = tuple(
            (s, _freeze(getattr(v, s, _EMPTY_SLOT), budget, depth + 1)) for s in slots
        )
        return (Ident(t), _freeze(d, budget, depth + 1) if type(d) is dict else (), parts)
    raise Unfreezable(v, f"isozyme cannot compare a {t.__module__}.{t.__qualname__} by value")


class _EmptySlot:
    pass


#: Plain-data classes of the standard library that are compared by their attributes.
_DATA_CLASSES = frozenset({"types.SimpleNamespace", "argparse.Namespace"})


def _is_library_class(t: type) -> bool:
    """Whether instances of ``t`` are library state (standard library, C extensions,
    numpy, isozyme) rather than the user's data."""
    module_name = getattr(t, "__module__", "") or ""
    if f"{module_name}.{t.__qualname__}" in _DATA_CLASSES:
        return False
    if module_name == "builtins":
        return True
    if module_name.split(".")[0] in _LIBRARY_PACKAGES:
        return True
    module = sys.modules.get(module_name)
    filename = getattr(module, "__file__", None)
    if filename is None:
        # a built-in module; not a notebook's or an interactive session's __main__
        return module_name in sys.builtin_module_names
    filename = os.path.realpath(filename)
    return filename.startswith(_STDLIB_DIRS) and not filename.startswith(_SITE_DIRS)


_EMPTY_SLOT = Ident(_EmptySlot)


def freeze_or_unequal(v: object) -> object:
    """:func:`freeze`, or a value equal to nothing when ``v`` cannot be frozen."""
    try:
        return freeze(v)
    except Unfreezable:
        return _UNEQUAL


# --------------------------------------------------------------------------- reads


_NAMES: dict[types.CodeType, tuple[str, ...]] = {}


def forget_names() -> None:
    """Drop the per-code-object cache of global names (``clear_cache`` calls it, so the
    code objects of cleared functions are not kept alive)."""
    _NAMES.clear()
_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"})


def global_names(code: types.CodeType) -> tuple[str, ...]:
    """Global names a code object (and the code nested in it) loads: ``LOAD_GLOBAL``
    operands, not attribute names (``x.shape`` does not read a global ``shape``)."""
    names = _NAMES.get(code)
    if names is None:
        found: list[str] = []
        for ins in dis.get_instructions(code):
            if ins.opname in _GLOBAL_OPS:
                found.append(ins.argval)
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                found.extend(global_names(c))
        names = _NAMES[code] = tuple(dict.fromkeys(found))
    return names


def _stdlib_dirs() -> tuple[str, ...]:
    dirs = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib")}
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


_STDLIB_DIRS = _stdlib_dirs()
_SITE_DIRS = tuple(
    os.path.realpath(d) + os.sep
    for d in {sysconfig.get_paths().get(k) for k in ("purelib", "platlib")} if d
)
#: Packages whose functions' globals are not followed: they do not change between calls
#: and following them would walk through large libraries.
_LIBRARY_PACKAGES = frozenset({
    "numpy", "scipy", "math", "isozyme", "xdsl", "llvmlite", "functools", "typing",
    "builtins", "operator", "itertools", "collections",
})


def _is_library(fn: types.FunctionType) -> bool:
    """numpy, isozyme and the standard library are not followed (user code installed in
    site-packages is)."""
    module = (getattr(fn, "__module__", None) or "").split(".")[0]
    if module in _LIBRARY_PACKAGES:
        return True
    filename = os.path.realpath(fn.__code__.co_filename)
    return filename.startswith(_STDLIB_DIRS) and not filename.startswith(_SITE_DIRS)


def _functions_in(v: object) -> list[types.FunctionType]:
    """User functions a read value leads to (called as plain Python at trace time)."""
    if isinstance(v, types.FunctionType):
        return [v]
    if isinstance(v, types.MethodType) and isinstance(v.__func__, types.FunctionType):
        return [v.__func__]
    if isinstance(v, functools.partial):
        return _functions_in(v.func)
    return []


@dataclass
class Read:
    """One global name or closure cell the compiled code depends on."""

    source: Any  # a globals dict, or a cell
    name: str
    owner: str  # the function that read it, for messages
    value: object  # the value at trace time (or _MISSING / _EMPTY)


def collect_reads(functions: Sequence[Callable[..., Any]]) -> list[Read]:
    """The globals and closure cells ``functions`` read, and recursively those of the
    user functions they read as globals or cells."""
    reads: dict[tuple[int, str], Read] = {}
    seen: set[int] = set()
    keep: list[object] = []  # keeps the ids in `seen` unique while we run
    work = [f for fn in functions for f in _functions_in(fn)]
    while work:
        fn = work.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        keep.append(fn)
        if _is_library(fn):
            continue
        code = fn.__code__
        g = fn.__globals__
        owner = getattr(fn, "__qualname__", code.co_name)
        for name in global_names(code):
            key = (id(g), name)
            if key not in reads:
                v = g.get(name, _MISSING)
                reads[key] = Read(g, name, owner, v)
                work.extend(_functions_in(v))
        for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
            key = (id(cell), name)
            if key not in reads:
                try:
                    v = cell.cell_contents
                except ValueError:
                    v = _EMPTY
                reads[key] = Read(cell, name, owner, v)
                work.extend(_functions_in(v))
    return list(reads.values())


# --------------------------------------------------------------------------- guards


def unit_inner(a: np.ndarray) -> bool:
    """Whether the innermost dimension is contiguous (or has at most one element)."""
    return a.shape[-1] <= 1 or a.strides[-1] == a.itemsize


def array_meta(a: np.ndarray) -> tuple:
    """What a hidden array argument's guard compares: the compiled code was traced for
    this dtype, this exact shape (plain Python may have read it) and row contiguity."""
    return (a.dtype, a.shape, unit_inner(a))


@dataclass
class Guard:
    """The re-check of every read, as lists per kind (see :func:`make_guard`)."""

    idents: list[tuple[dict, str, object]] = field(default_factory=list)
    absent: list[tuple[dict, str]] = field(default_factory=list)
    cell_idents: list[tuple[Any, object]] = field(default_factory=list)
    values: list[tuple[Any, str, object]] = field(default_factory=list)  # (dict|cell, name, frozen)
    hidden: list[tuple[Any, str, object]] = field(default_factory=list)  # (dict|cell|None, name, meta|array)


def _describe(r: Read) -> str:
    kind = "closure variable" if not isinstance(r.source, dict) else "global"
    return f"{kind} '{r.name}' (read by {r.owner})"


def build_guard(reads: Sequence[Read], hidden: Sequence[np.ndarray]) -> Guard:
    """Classify each read (see the module docstring); raise ``TraceError`` for a value
    that can be compared neither by identity nor by value."""
    guard = Guard()
    by_id = {id(a): i for i, a in enumerate(hidden)}
    sources: list[tuple[Any, str, object] | None] = [None] * len(hidden)
    for r in reads:
        v = r.value
        is_cell = not isinstance(r.source, dict)
        if v is _MISSING:
            guard.absent.append((r.source, r.name))
            continue
        if type(v) is np.ndarray and id(v) in by_id:
            i = by_id[id(v)]
            if sources[i] is None:
                sources[i] = (r.source, r.name, array_meta(v))
                continue
            # the same hidden array under another name: it must stay that very array
            # (its contents reach the compiled code through the first name)
            if is_cell:
                guard.cell_idents.append((r.source, v))
            else:
                guard.idents.append((r.source, r.name, v))
            continue
        if v is _EMPTY or isinstance(v, _IDENT_TYPES) or isinstance(v, enum.Enum):
            if is_cell:
                guard.cell_idents.append((r.source, v))
            else:
                guard.idents.append((r.source, r.name, v))
            continue
        try:
            frozen = freeze(v)
        except Unfreezable as exc:
            raise TraceError(
                f"the compiled code depends on {_describe(r)}, a {type(v).__name__} "
                f"that {exc.why or 'cannot be compared by value'}, so isozyme cannot tell "
                "whether it changed between calls; pass it as an argument, or make it a "
                "number, a tuple, a list, a dict or a numpy array"
            ) from None
        guard.values.append((r.source, r.name, frozen))
    for i, a in enumerate(hidden):
        # An array that reached whole-array code without being a global or a cell (an
        # object's attribute, an array computed at trace time): pass that same object.
        guard.hidden.append(sources[i] if sources[i] is not None else (None, "", a))
    return guard


def _read(source: Any, name: str) -> object:
    if isinstance(source, dict):
        return source.get(name, _MISSING)
    try:
        return source.cell_contents
    except ValueError:
        return _EMPTY


def make_guard(g: Guard) -> Callable[[], tuple | None] | None:
    """The function a cache hit runs: ``None`` when a read changed, else the hidden
    arguments' values (``()`` when there are none).  ``None`` instead of a function when
    nothing was read."""
    idents, absent, cell_idents = tuple(g.idents), tuple(g.absent), tuple(g.cell_idents)
    values, hidden = tuple(g.values), tuple(g.hidden)
    if not (idents or absent or cell_idents or values or hidden):
        return None

    def guard() -> tuple | None:
        for d, n, e in idents:
            if d.get(n, _MISSING) is not e:
                return None
        for d, n in absent:
            if n in d:
                return None
        for c, e in cell_idents:
            if _read(c, "") is not e:
                return None
        for src, n, frozen in values:
            if freeze_or_unequal(_read(src, n)) != frozen:
                return None
        if not hidden:
            return ()
        out = []
        for src, n, meta in hidden:
            if src is None:
                out.append(meta)  # a fixed array
                continue
            v = _read(src, n)
            if type(v) is not np.ndarray or array_meta(v) != meta:  # type: ignore[arg-type]
                return None
            out.append(v)
        return tuple(out)

    return guard


def hidden_array_ok(a: np.ndarray) -> bool:
    """Whether a numpy array reaching whole-array code becomes a hidden argument."""
    return a.ndim >= 1 and a.size > HIDDEN_MIN_SIZE and a.dtype in (
        np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.int64))


__all__ = [
    "HIDDEN_MIN_SIZE", "Guard", "Ident", "Read", "Unfreezable", "array_meta", "build_guard",
    "collect_reads", "freeze", "freeze_or_unequal", "global_names", "hidden_array_ok",
    "make_guard", "unit_inner",
]
