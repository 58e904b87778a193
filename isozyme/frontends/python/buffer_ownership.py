"""Who frees which buffer: arrays the traced code allocates are freed
(``memref.dealloc``) at the end of the block that allocated them (function body, loop
body, branch), except the ones a function returns, whose ownership passes to its
caller (:func:`free_allocs`, :func:`owned_results`, :func:`returned_array`,
:func:`adopt`); a helper returns each buffer once (:class:`HelperReturns`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xdsl.dialects import memref
from xdsl.ir import Block, SSAValue

from .context import FunctionBuilder, current_builder
from .tracer import Tracer, is_array_value

if TYPE_CHECKING:
    from .arrays import ArrayTracer


def record_alloc(fb: FunctionBuilder, value: SSAValue) -> None:
    """Record ``value`` as allocated in the current block of ``fb`` (freed at its end)."""
    fb.allocs.append((value, fb.block))


def free_allocs(block: Block, keep: Sequence[object] = ()) -> None:
    """Emit ``memref.dealloc`` (at the current insertion point, which must be in
    ``block``) of the arrays allocated directly in ``block``, except those in ``keep``
    (tracers or SSA values returned)."""
    fb = current_builder()
    kept = {id(k.value if isinstance(k, Tracer) else k) for k in keep}
    remaining = []
    for value, b in fb.allocs:
        if b is block:
            if id(value) not in kept:
                fb.insert(memref.DeallocOp.get(value))
        else:
            remaining.append((value, b))
    fb.allocs = remaining


def owned_results(block: Block, results: Sequence[object]) -> list[bool]:
    """For each result: whether it is an array allocated directly in ``block`` (its
    ownership passes to the caller)."""
    fb = current_builder()
    ids = {id(v) for v, b in fb.allocs if b is block}
    return [isinstance(r, Tracer) and id(r.value) in ids for r in results]


def returned_array(t: "ArrayTracer", *, public: bool) -> "ArrayTracer":
    """The array to return for ``t`` from the function being built (whose body block is
    the current block): ``t`` itself when the function allocated it (ownership passes to
    the caller), else a fresh copy (a new allocation, also owned by the caller) when the
    function is the public one (``t`` is an argument or a view of one, or a view of a
    local array), or, in a helper, when ``t`` views an array the helper allocated (that
    array is freed on return).  A helper may return its arguments and views of them."""
    fb = current_builder()
    local = {id(v) for v, b in fb.allocs if b is fb.block}
    if id(t.value) in local:
        return t
    root = t._cache.get("root")
    if public or (root is not None and id(root) in local):
        from .whole_array import copy_to_new  # noqa: PLC0415

        return copy_to_new(t)
    return t


def adopt(value: SSAValue) -> None:
    """Record ``value`` (an array a helper allocated and returned) as allocated here."""
    record_alloc(current_builder(), value)


@dataclass
class HelperReturns:
    """How the values a helper returns map onto its ``func.return`` operands.

    Each distinct SSA value is returned once (``return z, z`` returns ``%z`` once, so
    the caller adopts, and frees, that buffer once and gets one array twice, as numpy
    gives one object twice); an argument returned as it is is not returned at all (the
    caller uses its own value, as ``h(x) is x`` in numpy).  ``slots`` says, per returned
    tracer, where its value comes from: ``("result", j)`` or ``("arg", k)``; ``views``
    says which results view another result or an argument (``return z[1:], z``), so
    that the caller knows the memory they share (:func:`.views.root_of`)."""

    values: list[Tracer] = field(default_factory=list)
    slots: list[tuple[str, int]] = field(default_factory=list)
    views: dict[int, tuple[str, int]] = field(default_factory=dict)

    def resolve(self, results: Sequence[Tracer], args: Sequence[Tracer]) -> list[Tracer]:
        """The caller's value per returned tracer, from the call's ``results`` and the
        call's traced ``args``; results that are views get the root they view."""
        from .views import root_of  # noqa: PLC0415 (import cycle)

        def source(slot: tuple[str, int]) -> Tracer:
            return results[slot[1]] if slot[0] == "result" else args[slot[1]]

        for j, slot in self.views.items():
            viewed = source(slot)
            if is_array_value(results[j]) and is_array_value(viewed):
                results[j]._cache["root"] = root_of(viewed)  # type: ignore[union-attr]
        return [source(slot) for slot in self.slots]


def helper_returns(results: Sequence[Tracer]) -> HelperReturns:
    """Plan the ``func.return`` of the helper being built, which returns ``results``
    (the tracers it returns, in order), see :class:`HelperReturns`.

    An array the helper allocated is returned as it is (the caller owns it); a view of
    one is returned as it is when the array it views is returned too, else copied (the
    array it views is freed on return, see :func:`returned_array`); arguments and views
    of arguments are returned as they are."""
    fb = current_builder()
    local = {id(v) for v, b in fb.allocs if b is fb.block}
    arg_of = {id(a): k for k, a in enumerate(fb.entry.args)}
    returned_locals = {id(r.value) for r in results if id(r.value) in local}
    plan = HelperReturns()
    index_of: dict[int, int] = {}
    for r in results:
        if id(r.value) in arg_of:
            plan.slots.append(("arg", arg_of[id(r.value)]))
            continue
        if is_array_value(r) and not {id(r.value), id(_root(r))} & returned_locals:
            r = returned_array(r, public=False)  # type: ignore[arg-type]
        j = index_of.get(id(r.value))
        if j is None:
            j = index_of[id(r.value)] = len(plan.values)
            plan.values.append(r)
        plan.slots.append(("result", j))
    for j, r in enumerate(plan.values):
        root = _root(r)
        if root is not None and id(root) in arg_of:
            plan.views[j] = ("arg", arg_of[id(root)])
        elif root is not None and id(root) in index_of:
            plan.views[j] = ("result", index_of[id(root)])
    return plan


def _root(t: Tracer) -> SSAValue | None:
    """The array a view ``t`` looks into; None when ``t`` is not a view of an array."""
    return t._cache.get("root") if is_array_value(t) else None  # type: ignore[union-attr]
