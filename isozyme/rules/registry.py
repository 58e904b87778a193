"""Registration of user rules and their lookup for one call.

Rules attach to a Python callable ``f`` (a function, a method, a numpy or C function)
and, optionally, to the types of its positional arguments.  Every kind of rule is
stored as one of four *general* rules (``inactive``, ``forward``, ``augmented``,
``reverse``): ``easy_rule`` and the ChainRules imports register the general rules they
derive (:mod:`.easy`, :mod:`.chainrules`).  For a call, :func:`lookup` picks per kind the
last registered rule whose types match the arguments; an ``inactive`` match wins over
everything.

Types match like ``isinstance`` on what a traced value stands for: a traced ``f64``
scalar is a ``float`` and ``np.float64``, ``f32`` an ``np.float32``, ``i64`` an ``int``,
a traced array an ``np.ndarray``; any other object (a dataclass whose fields hold traced
values, a user class) by ``isinstance`` itself.  No types: every call of ``f``.

Registering a rule clears isozyme's compile cache (``isozyme.clear_cache``), so a
function compiled before uses the rule when it is next called.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from isozyme.errors import RuleError

RuleKind = Literal["inactive", "forward", "augmented", "reverse"]

#: How messages name each kind of rule.
KIND_NAMES: dict[str, str] = {
    "inactive": "inactive rule", "forward": "forward rule",
    "augmented": "augmented_primal rule", "reverse": "reverse rule",
}


@dataclass(frozen=True, eq=False)
class RuleEntry:
    """One registered rule: its kind, the argument types it applies to (empty: all),
    the Python function implementing it (Enzyme's signature) and where it came from
    (``"forward"``, ``"easy_rule"``, ``"import_frule"``...) for messages."""

    kind: RuleKind
    types: tuple[type, ...]
    impl: Callable[..., Any] | None
    origin: str
    seq: int


@dataclass(frozen=True)
class RuleSet:
    """The rules that apply to one call of ``f``: ``inactive``, or the general rules
    found per kind (None where none matches)."""

    f: Any
    inactive: RuleEntry | None
    forward: RuleEntry | None
    augmented: RuleEntry | None
    reverse: RuleEntry | None

    @property
    def key(self) -> tuple[int, ...]:
        """Identifies the choice of rules (a traced call is cached per rule set)."""
        return tuple(-1 if e is None else e.seq for e in
                     (self.inactive, self.forward, self.augmented, self.reverse))

    def entry(self, kind: RuleKind) -> RuleEntry | None:
        """The rule of ``kind``, or None."""
        return getattr(self, kind)


_LOCK = threading.Lock()
_SEQ = itertools.count()
_REGISTRY: dict[Any, list[RuleEntry]] = {}
_HELD: dict[int, Any] = {}


def function_name(f: object) -> str:
    """``f``'s name for messages."""
    return str(getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f))


def _check_types(f: object, types: Sequence[object], what: str) -> tuple[type, ...]:
    for t in types:
        if not isinstance(t, type) and not (
            isinstance(t, tuple) and all(isinstance(x, type) for x in t)
        ):
            raise RuleError(
                f"isozyme.rules.{what}({function_name(f)}, ...): argument types must be "
                f"classes (float, np.ndarray, a dataclass...), got {t!r}"
            )
    return tuple(types)  # type: ignore[arg-type]


def register(f: object, kind: RuleKind, types: Sequence[object], impl: Callable[..., Any] | None,
             origin: str) -> RuleEntry:
    """Register a rule of ``kind`` for calls of ``f`` with arguments of ``types`` and
    clear the compile cache (code compiled before may call ``f``)."""
    if not callable(f):
        raise RuleError(f"isozyme.rules.{origin}: the function a rule attaches to must be "
                        f"callable, got {f!r}")
    if impl is not None and not callable(impl):
        raise RuleError(f"isozyme.rules.{origin}({function_name(f)}): the rule must be a "
                        f"function, got {impl!r}")
    entry = RuleEntry(kind, _check_types(f, types, origin), impl, origin, next(_SEQ))
    with _LOCK:
        _REGISTRY.setdefault(_key(f), []).append(entry)
        _HELD[id(f)] = f  # an unhashable f is keyed by id: keep it alive
    _invalidate()
    return entry


def unregister(f: object) -> None:
    """Forget every rule of ``f`` (and clear the compile cache)."""
    with _LOCK:
        _REGISTRY.pop(_key(f), None)
    _invalidate()


def _invalidate() -> None:
    from isozyme.api import clear_cache  # noqa: PLC0415 (the public API sits above)

    clear_cache()


def _key(f: object) -> object:
    """``f`` itself (equal bound methods are one key), or its id when it is unhashable
    (a ``ctypes`` function)."""
    try:
        hash(f)
    except TypeError:
        return ("unhashable", id(f))
    return f


def has_rules(f: object) -> bool:
    """Whether any rule is registered for ``f`` (cheap)."""
    if not _REGISTRY:
        return False
    return _key(f) in _REGISTRY


def ruled_callable_named_by(fn: Any) -> str | None:
    """The name of a global or closure callable with rules that the code of Python
    function ``fn`` (or a function or lambda nested in it) names, else None: used to
    refuse running ``fn`` unconverted, which would skip those rules."""
    if not _REGISTRY:
        return None
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    values: dict[str, Any] = {}
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
        try:
            values[name] = cell.cell_contents
        except ValueError:  # an empty cell
            pass
    scope = getattr(fn, "__globals__", {})
    stack = [code]
    while stack:
        c = stack.pop()
        for name in (*c.co_names, *c.co_freevars):
            value = values.get(name, scope.get(name))
            try:
                if value is not None and has_rules(value):
                    return name
            except TypeError:  # an unhashable value
                continue
        stack += [k for k in c.co_consts if isinstance(k, type(code))]
    return None


def _matches(types: tuple[type, ...], args: Sequence[object],
             isinstance_: Callable[[object, Any], bool]) -> bool:
    if not types:
        return True
    return len(types) == len(args) and all(isinstance_(a, t) for a, t in zip(args, types))


def lookup(f: object, args: Sequence[object],
           isinstance_: Callable[[object, Any], bool] = isinstance) -> RuleSet | None:
    """The rules for the call ``f(*args)`` (``isinstance_`` answers for traced values),
    or None when no rule of ``f`` matches."""
    if not has_rules(f):
        return None
    with _LOCK:
        entries = list(_REGISTRY.get(_key(f), ()))
    found: dict[str, RuleEntry] = {}
    for e in entries:  # later registrations win
        if _matches(e.types, args, isinstance_):
            found[e.kind] = e
    if not found:
        return None
    if "inactive" in found:
        return RuleSet(f, found["inactive"], None, None, None)
    return RuleSet(f, None, found.get("forward"), found.get("augmented"), found.get("reverse"))
