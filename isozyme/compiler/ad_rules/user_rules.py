"""User derivative rules (``isozyme.rules``, Enzyme's EnzymeRules) as registry entries.

A call of a function with a user rule stays a ``func.call`` through the ``optimized``
stage (the ``inline`` pass leaves it alone until AD has run), marked with the
:data:`RULE_ATTR` attribute naming its rule.  :func:`isozyme.compiler.ad_rules.registry.lookup`
returns :class:`UserCallRule` for such a call, so forward mode, reverse mode and the
activity analysis find the user's rule exactly where they find the built-in ones.

The rule itself lives in the frontend (a Python function traced like user code): it is a
:class:`UserRule` registered here under the id the attribute holds.  When AD reaches the
call, :class:`UserCallRule` asks the rule to *build* the function it needs, described by
a :class:`RuleRequest`, and emits a call of it:

``forward``
    operands: per argument its primal, then ``width`` tangents when the argument is
    ``enzyme_dup`` (a buffer's tangents are its shadow buffers);
    results: the primal results when ``needs_primal``, then per result whose tangent is
    wanted (``active_results``) ``width`` tangents, lane after lane.
``augmented`` (reverse mode's forward sweep, Enzyme's ``augmented_primal``)
    operands: per argument its primal (no shadows: shadows of buffers made inside loops
    exist only in the reverse sweep);
    results: the primal results when ``needs_primal``, then the *tape*: any number of
    scalars (and, at the function's top level, buffers) the rule chooses.
``reverse`` (Enzyme's ``reverse``)
    operands: per argument its primal, then ``width`` shadow buffers when the argument
    is ``enzyme_dup`` (a buffer: the rule adds into them); then per result in
    ``active_results`` ``width`` seeds; then the tape (``tape_types``);
    results: per ``enzyme_active`` argument ``width`` adjoints.

Calls of rules with ``inactive`` set get no derivative code and no activity edges.
"""

from __future__ import annotations

import abc
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

from xdsl.dialects import func, memref
from xdsl.dialects.builtin import ArrayAttr, IntegerAttr, StringAttr
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.traits import is_side_effect_free

from isozyme.compiler.ad_rules.registry import RULE_ATTR, CallRule, Edge
from isozyme.compiler.analysis.buffers import is_buffer
from isozyme.compiler.emitter import Emitter
from isozyme.dialects.enzyme import Activity
from isozyme.errors import UnsupportedError

RuleMode = Literal["forward", "augmented", "reverse"]

#: Attribute of a function a :class:`UserRule` built: per result, whether it is an
#: array the function allocated (``i1`` values); the reverse sweep frees such tape
#: arrays after the reverse call.
OWNED_RESULTS_ATTR = "isozyme.owned_results"


@dataclass(frozen=True)
class RuleRequest:
    """What derivative function of a user rule AD needs at one call (see the module
    docstring for each mode's operands and results)."""

    mode: RuleMode
    #: the call's operand and result types
    arg_types: tuple[Attribute, ...]
    result_types: tuple[Attribute, ...]
    #: per argument: ``CONST`` or ``DUP`` (forward; ``DUP`` for scalars too), ``CONST``,
    #: ``ACTIVE`` (scalars) or ``DUP`` (buffers) in augmented/reverse mode
    activities: tuple[Activity, ...]
    #: per result: whether its tangent (forward) or seed (reverse) is wanted
    active_results: tuple[bool, ...]
    #: Enzyme's ``needs_primal``/``needs_shadow``/``width``/``overwritten`` (one flag
    #: per argument; the frontend prepends the function's own, False)
    needs_primal: bool
    needs_shadow: bool
    width: int
    overwritten: tuple[bool, ...]
    #: reverse mode: the tape's types, as the augmented function returned them
    tape_types: tuple[Attribute, ...] = ()


class UserRule(abc.ABC):
    """A user rule, implemented by the frontend (``isozyme.rules``).

    ``name`` names it in messages ("the forward rule of mysin").  ``inactive``: calls get
    no derivative at all.  :meth:`build` returns a new private ``func.func`` named
    ``name`` for ``request`` (not yet in any module); the compiler adds it to the module
    being differentiated, and may call :meth:`build` several times per call site (one
    function per distinct request).
    """

    name: str = "a user rule"
    inactive: bool = False

    def depends(self, arg: int, result: int) -> bool:
        """Whether result ``result`` of a call may depend differentiably on argument
        ``arg`` (an activity edge); by default every one does (an easy rule's
        ``Constant`` entries may say otherwise)."""
        return True

    @abc.abstractmethod
    def build(self, request: RuleRequest, name: str, module: Operation) -> func.FuncOp:
        """The function that implements ``request``; ``module`` is the module it will
        be added to (for the names it already holds and the functions it may add)."""


_LOCK = threading.Lock()
_RULES: dict[str, UserRule] = {}
_IDS = itertools.count()


def register_user_rule(rule: UserRule, hint: str = "rule") -> str:
    """Register ``rule`` and return the id to put in a call's :data:`RULE_ATTR`."""
    with _LOCK:
        rid = f"{hint}#{next(_IDS)}"
        _RULES[rid] = rule
        return rid


def user_rule_of(op: Operation) -> UserRule | None:
    """The user rule a ``func.call`` is marked with, or None."""
    attr = op.attributes.get(RULE_ATTR)
    if not isinstance(attr, StringAttr):
        return None
    rule = _RULES.get(attr.data)
    if rule is None:
        raise UnsupportedError(
            f"the call of {op.callee} is marked with user rule {attr.data!r}, which is "  # type: ignore[attr-defined]
            "not registered in this process (rules are Python functions: register them "
            "with isozyme.rules before differentiating this IR)"
        )
    return rule


# --------------------------------------------------------------------------- the AD side
def overwritten_arguments(fn: func.FuncOp, call: Operation) -> tuple[bool, ...]:
    """Enzyme's ``overwritten`` for ``call`` in ``fn``: per operand, whether memory it
    points to may be written by anything else in ``fn`` (before or after the call: in a
    loop both are the same), so a reverse rule cannot read it back unchanged.  Scalars
    are values: never overwritten."""
    from isozyme.compiler.analysis.buffers import buffers_written, is_buffer, root_buffer  # noqa: PLC0415

    written: set[SSAValue] = set()
    for op in fn.walk():
        if op is call or op.regions:  # a region op's nested ops are walked themselves
            continue
        written.update(root_buffer(b) for b in buffers_written(op))
    return tuple(
        is_buffer(a) and root_buffer(a) in written for a in call.operands
    )


@dataclass
class _RuledCall:
    """Reverse mode's record of one ruled call: the augmented call made in the forward
    sweep, its request, and its tape (forward-sweep values)."""

    aug: func.CallOp
    request: RuleRequest
    n_primal: int
    tape: list[SSAValue]


class UserCallRule(CallRule):
    """``func.call`` marked with :data:`RULE_ATTR`: differentiated by the user's rule
    (the module docstring gives the functions' conventions)."""

    def flow_edges(self, op: Operation) -> Iterator[Edge]:
        """The rule, not the body, says what is differentiable: every argument flows
        into every result unless the rule declares less (:meth:`UserRule.depends`), so
        a rule giving a derivative where the body has none (a straight-through rule of
        ``floor``) is used; an argument flows into a buffer argument when the body
        writes that buffer (the primal's effect)."""
        rule = user_rule_of(op)
        assert rule is not None
        if rule.inactive:
            return
        from isozyme.compiler.analysis.buffers import written_arguments  # noqa: PLC0415

        callee = _callee(op)
        args = list(op.operands)
        if callee is not None and callee.body.blocks:
            written = written_arguments(callee)
        else:
            written = {i for i, a in enumerate(args) if is_buffer(a)}
        for i, a in enumerate(args):
            for j, r in enumerate(op.results):
                if rule.depends(i, j):
                    yield a, r
            for k in written:
                if k != i:
                    yield a, args[k]

    # -- helpers ----------------------------------------------------------------------
    @staticmethod
    def _function(builder: Any, op: Operation, rule: UserRule, req: RuleRequest) -> func.FuncOp:
        """The function ``rule`` builds for ``req`` (built once per request per module)."""
        factory = builder.factory
        memo: dict[tuple, func.FuncOp] = factory.__dict__.setdefault("user_rule_functions", {})
        key = (op.attributes[RULE_ATTR].data, req)  # type: ignore[attr-defined]
        fn = memo.get(key)
        if fn is None:
            prefix = {"forward": "fwdrule_", "augmented": "augrule_", "reverse": "revrule_"}
            name = factory.unique_name(prefix[req.mode] + op.callee.string_value())  # type: ignore[attr-defined]
            fn = rule.build(req, name, factory.module)
            factory.module.body.block.add_op(fn)
            memo[key] = fn
        return fn

    # -- forward mode -----------------------------------------------------------------
    def forward(self, fwd: Any, e: Emitter, op: Operation) -> None:
        assert isinstance(op, func.CallOp)
        rule = user_rule_of(op)
        assert rule is not None
        acts = tuple(
            Activity.DUP if fwd.tan.get(a) is not None else Activity.CONST
            for a in op.arguments
        )
        act_res = tuple(fwd.info.is_active(r) for r in op.results)
        dup_buffers = any(
            act is Activity.DUP and is_buffer(a) for a, act in zip(op.arguments, acts)
        )
        if rule.inactive or not (any(act_res) or dup_buffers) or Activity.DUP not in acts:
            e.insert(op.clone(value_mapper=fwd.vmap))
            return
        w = fwd.width
        operands: list[SSAValue] = []
        for a, act in zip(op.arguments, acts):
            operands.append(fwd.vmap.get(a, a))
            if act is Activity.DUP:
                operands += fwd.tan[a]
        req = RuleRequest(
            "forward", tuple(a.type for a in op.arguments), tuple(op.result_types),
            acts, act_res, needs_primal=True, needs_shadow=any(act_res), width=w,
            overwritten=(False,) * len(acts),
        )
        call = self._emit(fwd, e, op, rule, req, operands)
        n = len(op.results)
        for r, v in zip(op.results, call.results[:n]):
            fwd.vmap[r] = v
        k = n
        for r, active in zip(op.results, act_res):
            if active:
                fwd.tan[r] = tuple(call.results[k : k + w])
                k += w
        fwd.finalizers.append(lambda: self._drop_primal(fwd, op, rule, req, call, operands))

    def _emit(self, builder: Any, e: Emitter, op: Operation, rule: UserRule,
              req: RuleRequest, operands: list[SSAValue]) -> func.CallOp:
        fn = self._function(builder, op, rule, req)
        types = list(fn.function_type.outputs.data)
        return e.insert(func.CallOp(fn.sym_name.data, operands, types))

    def _drop_primal(self, fwd: Any, op: Operation, rule: UserRule, req: RuleRequest,
                     call: func.CallOp, operands: list[SSAValue]) -> None:
        """Once the whole derivative is built: when nothing used the primal results, call
        the rule's ``needs_primal = False`` variant instead (Enzyme asks the rule for
        what the derivative needs, and only for that)."""
        n = len(op.results)
        if any(_live(r) for r in call.results[:n]):
            return
        lean = replace(req, needs_primal=False)
        new = self._emit(fwd, Emitter(InsertPoint.before(call)), op, rule, lean, operands)
        for old_r, new_r in zip(call.results[n:], new.results, strict=True):
            old_r.replace_all_uses_with(new_r)
        _erase_with_dead_users(call)

    # -- reverse mode -----------------------------------------------------------------
    @staticmethod
    def _reverse_activities(rev: Any, op: func.CallOp) -> tuple[Activity, ...]:
        return tuple(
            (Activity.DUP if is_buffer(a) else Activity.ACTIVE)
            if rev.info.is_active(a) else Activity.CONST
            for a in op.arguments
        )

    def _augment(self, rev: Any, e: Emitter, op: func.CallOp, rule: UserRule,
                 operands: list[SSAValue]) -> _RuledCall | None:
        """Emit the augmented call for ``op`` at ``e`` (or nothing when the call needs no
        reverse: inactive rule, nothing active)."""
        if rule.inactive:
            return None
        acts = self._reverse_activities(rev, op)
        act_res = tuple(rev.info.is_active(r) for r in op.results)
        if not any(act_res) and Activity.DUP not in acts:
            # no seed can reach an Active argument through it (its adjoints are zero)
            # and no shadow to update: the primal call is enough (Enzyme drops it too)
            return None
        for r, active in zip(op.results, act_res):
            if active and is_buffer(r):
                # its shadow would have to come from the rule (Enzyme's needs_shadow in
                # augmented_primal); without one the adjoints flowing into it would be lost
                raise UnsupportedError(
                    f"{rule.name}: reverse mode of a ruled function that returns an array "
                    f"({op.callee}); rules of functions returning arrays work in forward "
                    "mode; in reverse mode return floats, or write the result into a "
                    "Duplicated array argument"
                )
        req = RuleRequest(
            "augmented", tuple(a.type for a in op.arguments), tuple(op.result_types),
            acts, act_res, needs_primal=True, needs_shadow=False, width=rev.width,
            overwritten=overwritten_arguments(rev.fn, op),
        )
        aug = self._emit(rev, e, op, rule, req, operands)
        n = len(op.results)
        return _RuledCall(aug, req, n, list(aug.results[n:]))

    def forward_sweep(self, rev: Any, e: Emitter, op: Operation) -> bool:
        assert isinstance(op, func.CallOp)
        rule = user_rule_of(op)
        assert rule is not None
        operands = [rev.fwd_map.get(a, a) for a in op.arguments]
        got = self._augment(rev, e, op, rule, operands)
        if got is None:
            return False
        for r, v in zip(op.results, got.aug.results):
            rev.fwd_map[r] = v
        rev.__dict__.setdefault("ruled_calls", {})[op] = got
        return True

    def prepare_reverse(self, rev: Any, op: Operation) -> None:
        """A ruled call inside a loop or branch was cloned with its region op: replace
        the clone by the augmented call."""
        assert isinstance(op, func.CallOp)
        ruled = rev.__dict__.setdefault("ruled_calls", {})
        clone = rev.op_map.get(op)
        if op in ruled or clone is None:
            return
        rule = user_rule_of(op)
        assert rule is not None
        got = self._augment(rev, Emitter(InsertPoint.before(clone)), op, rule,
                            list(clone.operands))
        if got is None:
            return
        remap = dict(zip(clone.results, got.aug.results))
        for old_r, new_r in remap.items():
            old_r.replace_all_uses_with(new_r)
        Rewriter.erase_op(clone)
        for k, v in rev.fwd_map.items():
            if v in remap:
                rev.fwd_map[k] = remap[v]
        rev.op_map[op] = got.aug
        ruled[op] = got

    def reverse(self, rev: Any, ctx: Any, op: Operation) -> None:
        assert isinstance(op, func.CallOp)
        got: _RuledCall | None = rev.__dict__.get("ruled_calls", {}).get(op)
        if got is None:
            return
        rule = user_rule_of(op)
        assert rule is not None
        req, w, e = got.request, rev.width, ctx.e
        if ctx.parallels and Activity.DUP in req.activities:
            # the reverse rule updates the shadows with plain stores: concurrent
            # iterations would race on them
            raise UnsupportedError(
                f"{rule.name}: reverse mode of a ruled call with a Duplicated array "
                f"argument inside a parallel loop (prange or whole-array code) "
                f"({op.callee}); call it from a serial loop"
            )
        operands: list[SSAValue] = []
        for a, act in zip(op.arguments, req.activities):
            operands.append(rev.primal(a, ctx))
            if act is Activity.DUP:
                shadow = rev.shadow.get(a)
                if shadow is None:
                    raise UnsupportedError(
                        f"{rule.name}: the shadow of array argument "
                        f"{list(op.arguments).index(a)} of {op.callee} is not known here"
                    )
                operands += shadow
        for r, active in zip(op.results, req.active_results):
            if active:
                operands += rev.adj_or_zero(ctx, ctx, r)
        if ctx.parent is not None and any(is_buffer(t) for t in got.tape):
            raise UnsupportedError(
                f"{rule.name}: its tape holds an array, and the call of {op.callee} is "
                "inside a loop or branch, where the reverse sweep caches scalars only; "
                "put floats on the tape (or call it outside the loop)"
            )
        operands += [rev.fetch(t, ctx) for t in got.tape]
        rreq = replace(req, mode="reverse", tape_types=tuple(t.type for t in got.tape))
        call = self._emit(rev, e, op, rule, rreq, operands)
        active_args = [a for a, act in zip(op.arguments, req.activities)
                       if act is Activity.ACTIVE]
        if len(call.results) != w * len(active_args):
            raise UnsupportedError(
                f"{rule.name}: its reverse function returns {len(call.results)} values, "
                f"expected {w * len(active_args)}"
            )
        for k, a in enumerate(active_args):
            rev.accumulate(ctx, a, rev.lanes(call.results, k))
        for t in _owned_tape(self._function(rev, op, rule, req), got):
            e.insert(memref.DeallocOp.get(t))  # the augmented function allocated it
        rev.finalizers.append(lambda: self._drop_aug_primal(rev, op, rule, got, call))

    def _drop_aug_primal(self, rev: Any, op: Operation, rule: UserRule,
                         got: _RuledCall, rcall: func.CallOp) -> None:
        """Once the whole derivative is built: when nothing used the augmented call's
        primal results, call the ``needs_primal = False`` variants of the augmented and
        reverse functions instead (kept when their tape differs: the reverse function
        was built for the first one's)."""
        aug, n = got.aug, got.n_primal
        if any(_live(r) for r in aug.results[:n]):
            return
        lean = replace(got.request, needs_primal=False)
        fn = self._function(rev, op, rule, lean)
        tape_types = list(fn.function_type.outputs.data)
        if tape_types != [t.type for t in got.tape]:
            return
        new = Emitter(InsertPoint.before(aug)).insert(
            func.CallOp(fn.sym_name.data, list(aug.operands), tape_types))
        for old_r, new_r in zip(aug.results[n:], new.results, strict=True):
            old_r.replace_all_uses_with(new_r)
        _erase_with_dead_users(aug)
        rreq = replace(lean, mode="reverse", tape_types=tuple(tape_types))
        rfn = self._function(rev, op, rule, rreq)
        new_r = Emitter(InsertPoint.before(rcall)).insert(
            func.CallOp(rfn.sym_name.data, list(rcall.operands), list(rcall.result_types)))
        for old_v, new_v in zip(rcall.results, new_r.results, strict=True):
            old_v.replace_all_uses_with(new_v)
        Rewriter.erase_op(rcall)


def _live(v: SSAValue) -> bool:
    """Whether the value of ``v`` is needed: some use is not a pure op (a return, a
    store, a call, a region op's operand), or is a pure op whose results are live.
    (Forward mode clones every primal op, so a primal the derivative does not need
    may still feed dead arithmetic when the finalizers run.)"""
    seen: set[Operation] = set()
    todo = [v]
    while todo:
        for use in todo.pop().uses:
            user = use.operation
            if user in seen:
                continue
            seen.add(user)
            if user.regions or not is_side_effect_free(user) or not user.results:
                return True
            todo.extend(user.results)
    return False


def _erase_with_dead_users(call: Operation) -> None:
    """Erase ``call``, whose remaining results feed only dead pure ops (see
    :func:`_live`), with those ops."""
    dead: list[Operation] = []
    todo = list(call.results)
    while todo:
        for use in todo.pop().uses:
            if use.operation not in dead:
                dead.append(use.operation)
                todo.extend(use.operation.results)
    while dead:
        for op in [o for o in dead if not any(r.uses for r in o.results)]:
            Rewriter.erase_op(op)
            dead.remove(op)
    Rewriter.erase_op(call)


def _owned_tape(aug: func.FuncOp, got: _RuledCall) -> list[SSAValue]:
    """The tape arrays of ``got`` that ``aug`` allocated, each returned once (its
    :data:`OWNED_RESULTS_ATTR` says which): the reverse sweep frees them after the
    reverse call.  A tape entry that is an argument or a view of one is not the
    tape's to free."""
    ret = aug.body.block.last_op
    assert isinstance(ret, func.ReturnOp)
    owned_attr = aug.attributes.get(OWNED_RESULTS_ATTR)
    if not isinstance(owned_attr, ArrayAttr):
        return []
    owned = [isinstance(a, IntegerAttr) and a.value.data != 0 for a in owned_attr.data]
    start = len(ret.operands) - len(got.tape)
    out: list[SSAValue] = []
    for k, t in enumerate(got.tape):
        value = ret.operands[start + k]
        if is_buffer(value) and start + k < len(owned) and owned[start + k] \
                and sum(1 for o in ret.operands if o is value) == 1:
            out.append(t)
    return out


def _callee(op: Operation) -> func.FuncOp | None:
    from xdsl.traits import SymbolTable  # noqa: PLC0415

    callee = SymbolTable.lookup_symbol(op, op.callee)  # type: ignore[attr-defined]
    return callee if isinstance(callee, func.FuncOp) else None


#: The one rule object for every ruled call (it reads the call's user rule).
USER_CALL_RULE = UserCallRule()
