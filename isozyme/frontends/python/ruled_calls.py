"""Calls of functions that have a user rule (``isozyme.rules``), at trace time.

:func:`converted_call` asks :func:`ruled_call` first: a call of a function with a
matching rule and a traced argument becomes a ``func.call`` of a private ``func.func``
(``f``'s body, traced once per (function, rules, signature) like a helper) marked with
the attribute :data:`~isozyme.compiler.ad_rules.registry.RULE_ATTR`, whose value names
the :class:`~.rule_builds.PythonRule` registered for this call signature.  The call
stays in the traced IR; AD asks that object to build the rule's derivative functions
(:mod:`.rule_builds`).

A body isozyme cannot trace (a built-in or C function such as ``scipy.special.expit``
or a ``ctypes`` function, or a Python function whose tracing raises a TraceError)
becomes a host call (:func:`.host_calls.host_call`: scalars only).  Its results'
structure comes from the rule: an ``easy_rule`` has as many results as its Jacobian
has rows (one row: one scalar; k rows: a k-tuple); the other rules one scalar; their
type is the arguments' float type (``f32`` when every float argument is ``f32``, else
``f64``).
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import StringAttr, f32, f64
from xdsl.ir import Attribute, BlockArgument

from isozyme import pytree
from isozyme.compiler.ad_rules.registry import RULE_ATTR
from isozyme.compiler.ad_rules.user_rules import register_user_rule
from isozyme.errors import TraceError

from . import functions as _functions
from .accumulation import in_parallel_body
from .arrays import ARRAY_AWARE, wrap
from .ast_transform import mark_converted
from .buffer_ownership import adopt, returned_array
from .builtins_table import lookup as table_lookup
from .context import HelperEntry, current_builder, tracing
from .diagnostics import trace_error
from .side_effects import traced_isinstance
from .tracer import (
    EscapedValueError,
    Tracer,
    Undefined,
    as_tracer,
    is_array_value,
    is_float_type,
    is_number,
    ssa,
)

#: What :func:`ruled_call` returns when the call is not a ruled call.
NOT_RULED = object()


@dataclass
class RuledEntry(HelperEntry):
    """A traced ruled function: a helper entry plus the id of its rule object."""

    rule_id: str = ""


_REGISTRY_MODULE: Any = None


def _registry() -> Any:
    """``isozyme.rules.registry`` (imported on first use: the public package sits
    above the frontend)."""
    global _REGISTRY_MODULE
    if _REGISTRY_MODULE is None:
        from isozyme.rules import registry  # noqa: PLC0415

        _REGISTRY_MODULE = registry
    return _REGISTRY_MODULE


def ruled_call(f: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Emit the ruled call ``f(*args, **kwargs)`` when ``f`` has a rule matching the
    arguments and one of them holds a traced value; else return :data:`NOT_RULED`."""
    registry = _registry()
    if not registry.has_rules(f) or not tracing():
        return NOT_RULED
    leaves, _ = pytree.flatten((list(args), kwargs))
    if not any(isinstance(x, Tracer) for x in leaves):
        return NOT_RULED  # plain Python at trace time, as any call without traced values
    given = _positional(f, args, kwargs, defaults=False)
    rules = registry.lookup(f, given, traced_isinstance)
    if rules is None and isinstance(getattr(f, "__func__", f), types.FunctionType):
        # a typed rule for the whole parameter list: f(x) with f(x, s=2.0)
        full = _positional(f, args, kwargs, defaults=True)
        if len(full) != len(given):
            given, rules = full, registry.lookup(f, full, traced_isinstance)
    if rules is None:
        return NOT_RULED
    return _emit(f, rules, given)


def _positional(f: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                defaults: bool) -> tuple[Any, ...]:
    """``args`` and ``kwargs`` bound to ``f``'s positional parameters (a rule receives
    positional arguments only), with the defaults of the parameters left out when
    ``defaults`` (a Python function's only: a ufunc's ``out=None``... are no
    arguments of a rule)."""
    if not kwargs and not defaults:
        return args
    name = _registry().function_name(f)
    try:
        bound = inspect.signature(f).bind(*args, **kwargs)
        if defaults:
            bound.apply_defaults()
    except (TypeError, ValueError) as exc:
        raise trace_error(f"a call of {name}() with keyword arguments",
                          f"a function with a rule is called with positional arguments "
                          f"({exc})") from None
    given = [k for k in bound.kwargs if k in kwargs]  # (defaulted ones stay f's own)
    if given:
        raise trace_error(f"a call of {name}() with keyword-only arguments "
                          f"{', '.join(given)}",
                          "a function with a rule receives positional arguments only")
    return tuple(bound.args)


def _emit(f: Any, rules: Any, args: tuple[Any, ...]) -> Any:
    fb = current_builder()
    session = fb.session
    leaves, treedef = pytree.flatten((args, {}))
    key = ("ruled", _registry()._key(f), rules.key, tuple(_functions._key_of(x) for x in leaves),
           treedef,
           in_parallel_body())
    entry = session.helpers.get(key)
    if entry is None:
        if (id(session), key) in _HOST_PROBES:
            return _probe_stand_in(f, args)
        if key in session.in_progress:
            raise trace_error(f"a recursive call of {_registry().function_name(f)}()",
                              "a function with a rule calls itself with traced arguments "
                              "while its body is traced")
        entry = _trace_ruled(f, rules, args, leaves, treedef, key)
    traced = [x for x in leaves if isinstance(x, Tracer)]
    call = func.CallOp(entry.name, [ssa(t) for t in traced], entry.result_types)
    call.attributes[RULE_ATTR] = StringAttr(entry.rule_id)
    fb.insert(call)
    for r, owned in zip(call.results, entry.owned or []):
        if owned:
            adopt(r)  # an array the ruled function allocated: freed by the caller
    return entry.rebuild([wrap(r) for r in call.results], traced)


def _trace_ruled(f: Any, rules: Any, args: tuple[Any, ...], leaves: list[Any],
                 treedef: Any, key: Any) -> RuledEntry:
    """Trace ``f``'s body (or a host call of it) into a private function for this call
    signature and register the rule object AD will ask for derivatives."""
    from .rule_builds import PythonRule  # noqa: PLC0415 (it builds on this module)

    session = current_builder().session
    session.in_progress.add(key)
    fname = _registry().function_name(f)
    name = session.unique_name(getattr(f, "__name__", None) or "ruled")
    try:
        traced_types = [x.type for x in leaves if isinstance(x, Tracer)]
        out: dict[str, Any] = {}

        def collect(result: object) -> list[Tracer]:
            values, is_tuple = _outputs(result, fname)
            out["tuple"] = is_tuple
            return values

        owned: list[bool] = []
        body = _body(f)
        try:
            if body is None:
                raise _NotTraceable
            func_op, _ = _functions.trace_function(
                session, body, leaves, treedef, name, traced_types, collect,
                private=True, owned=owned)
        except EscapedValueError as exc:
            raise trace_error(f"the call of {fname}()",
                              "a function with a rule reads a traced value of its caller "
                              "through a closure or a global; pass it as an argument") \
                from exc
        except (_NotTraceable, TraceError) as exc:
            if not _host_callable(leaves):
                if isinstance(exc, TraceError):
                    raise
                raise trace_error(f"a call of {fname}() on arrays",
                                  "its body cannot be traced and isozyme calls untraceable "
                                  "functions on the host with scalar arguments only") \
                    from None
            owned = []
            _HOST_PROBES.add((id(session), key))
            try:
                host_body = _host_body(f, rules, args)
            finally:
                _HOST_PROBES.discard((id(session), key))
            func_op, _ = _functions.trace_function(
                session, host_body, leaves, treedef, name, traced_types,
                collect, private=True, owned=owned)
        session.add_function(func_op)
        # (the rules' own globals are not part of the cache key: rule bodies are traced
        # during AD, after the cache guard read its values, and may append to a list)
        result_types = list(func_op.function_type.outputs.data)
        rule = PythonRule(f, rules, args, leaves, treedef, out["tuple"],
                          tuple(result_types))
        rule_id = register_user_rule(rule, getattr(f, "__name__", None) or "rule")
        is_tuple = out["tuple"]

        def rebuild(results: list[Any], _args: list[Tracer]) -> Any:
            return tuple(results) if is_tuple else results[0]

        entry = RuledEntry(name, result_types, rebuild, owned=owned, rule_id=rule_id)
        entry.atomic = _functions._has_atomic(func_op, session)
        session.helpers[key] = entry
    finally:
        session.in_progress.discard(key)
    if not rule.inactive:  # an easy rule's Constant entries are no activity edges
        # (probed once the entry is registered: jac may call f itself)
        try:
            rule.pattern = jacobian_pattern(f, rules, args, (is_tuple, len(result_types)))
        except TraceError:
            # jac cannot be probed here (e.g. f called inside jac while a rule's jac is
            # traced): every entry may be nonzero; jac's own errors show when it is used
            rule.pattern = None
    return entry


#: (session id, key) of the ruled calls whose host body's result count is being probed:
#: a call of ``f`` in its own ``jac`` then stands in as a one-result host call.
_HOST_PROBES: set[tuple[int, Any]] = set()


def _probe_stand_in(f: Any, args: tuple[Any, ...]) -> Any:
    """``f(*args)`` in the dropped probe function of ``f``'s own Jacobian: a host call
    with one scalar result (only the Jacobian's structure is read from the probe)."""
    from .host_calls import host_call  # noqa: PLC0415

    traced = [a for a in pytree.flatten(args)[0] if isinstance(a, Tracer)]
    floats = [a.type for a in traced if is_float_type(a.type)]
    rtype: Attribute = f32 if floats and all(t == f32 for t in floats) else f64
    return host_call(f, traced, [rtype])[0]


class _NotTraceable(Exception):
    """``f`` is not a Python function isozyme can trace."""


def _body(f: Any) -> Callable[..., Any] | None:
    """What to trace as ``f``'s body: ``f`` itself (a Python function, converted), the
    builtins table's emitter for ``f`` (``math.sin``, a numpy function), or None (a C
    function: a host call)."""
    if isinstance(f, types.FunctionType):
        return f
    if isinstance(f, types.MethodType) and isinstance(f.__func__, types.FunctionType):
        return mark_converted(functools.partial(_functions.converted_call, f.__func__,
                                                f.__self__))
    emitter = table_lookup(f)
    if emitter is not None:
        return mark_converted(functools.partial(_table_body, f, emitter))
    return None


def _table_body(f: Any, emitter: Callable[..., Any], *args: Any) -> Any:
    """``f(*args)`` from the builtins table: the scalar emitter, or, with an array
    argument, ``f``'s whole-array form (``np.sin(v)``)."""
    if not any(is_array_value(x) for x in pytree.flatten(list(args))[0]):
        return emitter(*args)
    aware = _functions._table_get(ARRAY_AWARE, f)
    if aware is None:
        raise trace_error(f"a call of {_registry().function_name(f)}() on an array",
                          "its rule applies to scalar arguments only here: call it "
                          "on scalars, or give the rule to a function of your own")
    return aware(*args)


def _host_callable(leaves: list[Any]) -> bool:
    """Whether a host call can stand for the body: scalar traced arguments only."""
    return not any(is_array_value(x) for x in leaves)


def _host_body(f: Any, rules: Any, args: tuple[Any, ...]) -> Callable[..., Any]:
    """A body calling ``f`` on the host with the traced arguments (module docstring)."""
    from .host_calls import host_call  # noqa: PLC0415

    n_results = _host_result_count(f, rules, args)
    floats = [a.type for a in pytree.flatten(args)[0]
              if isinstance(a, Tracer) and is_float_type(a.type)]
    rtype: Attribute = f32 if floats and all(t == f32 for t in floats) else f64

    @mark_converted
    def body(*call_args: Any) -> Any:
        traced = [a for a in pytree.flatten(call_args)[0] if isinstance(a, Tracer)]
        results = host_call(f, traced, [rtype] * n_results)
        return results[0] if n_results == 1 else tuple(results)

    return body


def _host_result_count(f: Any, rules: Any, args: tuple[Any, ...]) -> int:
    """How many results a host-called body has: an easy rule's Jacobian rows, else 1."""
    try:
        pattern = jacobian_pattern(f, rules, args, None)
    except TraceError:
        # jac calls f while a rule's jac is traced (f's own Jacobian in jac): one
        # scalar, as the other rules; a jac with more rows is refused when it is used
        return 1
    return 1 if pattern is None else len(pattern)


def jacobian_pattern(f: Any, rules: Any, args: tuple[Any, ...],
                     result_shape: tuple[bool, int] | None) -> list[tuple[bool, ...]] | None:
    """Per result, per positional argument: whether the easy rule's Jacobian entry is
    not ``Constant`` (its ``jac`` traced on the arguments into a function that is then
    dropped); None when the rules do not all come from one easy rule."""
    impls = [e.impl for e in (rules.forward, rules.augmented, rules.reverse) if e is not None]
    jacs = {id(getattr(impl, "jacobian", None)) for impl in impls}
    jac = getattr(impls[0], "jacobian", None) if impls else None
    if jac is None or len(jacs) != 1:
        return None
    from isozyme.rules.config import Constant  # noqa: PLC0415
    from isozyme.rules.easy import rows_of  # noqa: PLC0415

    session = current_builder().session
    leaves, treedef = pytree.flatten((args, {}))
    traced_types = [x.type for x in leaves if isinstance(x, Tracer)]
    found: dict[str, list[tuple[bool, ...]]] = {}

    def probe(*call_args: Any) -> None:
        rows = rows_of(_functions.converted_call(jac, *call_args), len(call_args),
                       f"the easy_rule of {_registry().function_name(f)}", result_shape)
        found["rows"] = [tuple(e is not Constant for e in row) for row in rows]

    name = session.unique_name("jacobian_probe")
    _functions.trace_function(session, mark_converted(probe), leaves, treedef, name,
                              traced_types, lambda r: [], private=True)
    session.used_names.discard(name)
    return found["rows"]


def _outputs(result: object, fname: str) -> tuple[list[Tracer], bool]:
    """The values a ruled function returns (one value, or a flat tuple), as tracers;
    arrays are each a distinct buffer the caller owns."""
    is_tuple = type(result) is tuple
    values = list(result) if is_tuple else [result]  # type: ignore[arg-type]
    out: list[Tracer] = []
    seen: set[int] = set()
    for v in values:
        if isinstance(v, Undefined):
            raise v.error()
        if is_array_value(v):
            _refuse_argument_alias(v, fname)
            v = returned_array(v, public=True)  # type: ignore[arg-type]
            if id(v.value) in seen:
                from .whole_array import copy_to_new  # noqa: PLC0415

                v = copy_to_new(v)  # type: ignore[arg-type]
        elif isinstance(v, Tracer):
            pass
        elif is_number(v):
            v = as_tracer(v)
        else:
            raise trace_error(
                f"{fname}() returning a value of type {type(v).__name__}",
                "a function with a rule returns numbers, arrays, or a flat tuple of them"
                + (" (one that only writes into an argument returns, e.g., 0.0)"
                   if v is None else ""),
            )
        seen.add(id(v.value))
        out.append(v)
    return out, is_tuple


def _refuse_argument_alias(v: Any, fname: str) -> None:
    """Refuse an array argument (or a view of one) returned by a ruled function: the
    ruled call returns a new array where Python returns the argument itself, so a
    write through the result would not reach the argument."""
    root = v._cache.get("root", v.value)
    if isinstance(root, BlockArgument) and root.owner is current_builder().block:
        raise trace_error(f"{fname}() returning an array argument",
                          "a function with a rule returns an array argument or a view of "
                          "it: return a new array (e.g. x.copy())")


def route_ruled_callables(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` with each callable that has rules replaced by a function calling it
    through ``converted_call`` (for a builtin such as ``map`` that calls it)."""
    registry = _registry()
    if not registry._REGISTRY:
        return args
    out = []
    for a in args:
        try:
            ruled = callable(a) and registry.has_rules(a)
        except TypeError:
            ruled = False
        out.append(_routed(a) if ruled else a)
    return tuple(out)


def _routed(f: Any) -> Callable[..., Any]:
    """``f`` called through ``converted_call`` (marked converted: converted code that
    gets it back, from ``dict(key=f)`` say, calls it as it is)."""
    @functools.wraps(f)
    def routed(*args: Any, **kwargs: Any) -> Any:
        return _functions.converted_call(f, *args, **kwargs)

    return mark_converted(routed)


def ruled_entry(fn: Any) -> Any:
    """``fn`` itself, or, when ``fn`` has a rule, a function whose body is a (ruled)
    call of ``fn``: the public function of ``gradient(Forward, mysin, 2.0)`` calls
    ``mysin`` so that its rule applies."""
    if not _registry().has_rules(fn):
        return fn

    @functools.wraps(fn)
    def entry(*args: Any) -> Any:
        return _functions.converted_call(fn, *args)

    return mark_converted(entry)
