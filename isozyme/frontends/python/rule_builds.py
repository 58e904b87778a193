"""The derivative functions of a user rule, traced at AD time.

:class:`PythonRule` is the :class:`~isozyme.compiler.ad_rules.user_rules.UserRule` of one
ruled call signature (made by :mod:`.ruled_calls`).  When AD needs a derivative of the
call it asks :meth:`PythonRule.build` for a function following the operand/result
conventions of ``user_rules.py`` (forward, augmented, reverse); the user's Python rule
is traced into it like user code, in a trace session whose module is the module being
differentiated (``print`` in a rule prints when the compiled code runs).

The rule receives Enzyme's arguments: ``config`` (:class:`isozyme.rules.Config`),
``Const(f)``, the return activity class (forward, augmented) or the seeds
(``Active(seed)``, or the class ``Const``: reverse), the tape (reverse), then per
argument ``Const(v)``, ``Active(v)``, ``Duplicated(v, dv)`` or
``BatchDuplicated(v, (dv1, ...))``.  What it returns is checked against the call (one
value per result, each of its primal's type) and a :class:`~isozyme.errors.RuleError`
names the rule and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from xdsl.dialects import builtin, func, memref
from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Attribute, Operation

from isozyme import pytree
from isozyme.annotations import (
    Active,
    BatchDuplicated,
    BatchDuplicatedNoNeed,
    Const,
    Duplicated,
    DuplicatedNoNeed,
)
from isozyme.compiler.ad_rules.user_rules import OWNED_RESULTS_ATTR, RuleRequest, UserRule
from isozyme.dialects.enzyme import Activity
from isozyme.errors import AnnotationError, IsozymeError, RuleError

from . import functions as _functions
from .arrays import is_array_type, wrap
from .ast_transform import convert, mark_converted
from .buffer_ownership import returned_array
from .context import COMPILE_LOCK, TraceSession, current_builder
from .tracer import Tracer, constant, emit1, is_array_value, is_number


class _AugmentedDuplicated(Duplicated):
    """``Duplicated(v, dv)`` given to ``augmented_primal``: isozyme passes shadows to
    the reverse rule only, so ``dval`` raises."""

    __slots__ = ("_rule",)

    def __init__(self, val: object, rule: str) -> None:  # noqa: D107
        self.val = val
        self._rule = rule

    @property  # type: ignore[override]
    def dval(self) -> Any:
        raise RuleError(
            f"{self._rule}: isozyme gives the shadow of a Duplicated argument to the "
            "reverse rule (x.dval there), not to augmented_primal; update it in reverse"
        )

    def __repr__(self) -> str:
        return f"Duplicated({self.val!r}, <shadow given to reverse>)"


def _lower_whole_array(module: builtin.ModuleOp) -> None:
    """Lower the whole-array (``linalg``) code of a rule's functions to loops: they
    are built during AD, after the ``optimized`` stage did so for the user's code."""
    from isozyme.compiler.context import make_context  # noqa: PLC0415
    from isozyme.compiler.passes.convert_linalg_to_parallel_loops import (  # noqa: PLC0415
        ConvertLinalgToParallelLoopsPass,
    )
    from xdsl.transforms.lower_affine import LowerAffinePass  # noqa: PLC0415

    if not any(op.name.startswith("linalg.") for op in module.walk()):
        return
    ctx = make_context()
    ConvertLinalgToParallelLoopsPass().apply(ctx, module)
    LowerAffinePass().apply(ctx, module)


def _config(request: RuleRequest, overwritten: tuple[bool, ...], needs_shadow: bool,
            result_shape: tuple[bool, int]) -> Any:
    from isozyme.rules.config import Config  # noqa: PLC0415

    return Config(request.needs_primal, needs_shadow, request.width, (False, *overwritten),
                  result_shape)


class PythonRule(UserRule):
    """The rules of one ruled call signature: ``f``, the rules that matched, the call's
    arguments (traced leaves replaced by the operands when a rule is traced) and its
    results' structure and types."""

    def __init__(self, f: Any, rules: Any, args: tuple[Any, ...], leaves: list[Any],
                 treedef: Any, returns_tuple: bool,
                 result_types: tuple[Attribute, ...]) -> None:
        from isozyme.rules.registry import function_name  # noqa: PLC0415

        self.f = f
        self.rules = rules
        self.fname = function_name(f)
        self.name = f"the rules of {self.fname}"
        self.inactive = rules.inactive is not None
        self.leaves = leaves
        self.treedef = treedef
        self.returns_tuple = returns_tuple
        self.result_types = result_types
        # per positional argument: the indices of its traced leaves among the operands
        self.arg_operands: list[list[int]] = []
        k = 0
        for a in args:
            n = sum(isinstance(x, Tracer) for x in pytree.flatten(a)[0])
            self.arg_operands.append(list(range(k, k + n)))
            k += n
        self.bare = [isinstance(a, Tracer) for a in args]
        # per result, per positional argument: False where an easy rule's Jacobian
        # entry is Constant (set by ruled_calls; None: every entry may be nonzero)
        self.pattern: list[tuple[bool, ...]] | None = None
        # the augmented functions' tapes: (structure, leaves with None for traced ones)
        self._tapes: dict[RuleRequest, tuple[Any, list[Any]]] = {}

    def depends(self, arg: int, result: int) -> bool:
        """Whether result ``result`` may depend differentiably on operand ``arg``:
        not where an easy rule's Jacobian entry is ``Constant``."""
        if self.pattern is None:
            return True
        for p, ops in enumerate(self.arg_operands):
            if arg in ops:
                return not self.bare[p] or self.pattern[result][p]
        return True

    # -- entry point ------------------------------------------------------------------
    def build(self, request: RuleRequest, name: str, module: Operation) -> func.FuncOp:
        """The function implementing ``request`` (see ``user_rules.py``)."""
        kind = {"forward": "forward", "augmented": "augmented", "reverse": "reverse"}[
            request.mode]
        entry = self.rules.entry(kind)
        if entry is None or (request.mode != "forward" and (
                self.rules.augmented is None or self.rules.reverse is None)):
            raise RuleError(self._missing(request.mode))
        body = {"forward": self._forward, "augmented": self._augmented,
                "reverse": self._reverse}[request.mode]
        operand_types = self._operand_types(request)
        # Traced into a module of its own (new names avoid every symbol of `module`),
        # lowered like the `optimized` stage lowers whole-array code, then moved over.
        scratch = builtin.ModuleOp([])
        session = TraceSession(module=scratch)
        session.used_names = {name} | {
            op.sym_name.data for op in module.regions[0].block.ops  # type: ignore[attr-defined]
            if hasattr(op, "sym_name")
        }
        leaves, treedef = pytree.flatten((tuple(operand_types), {}))
        label = self._label(entry)
        impl = convert(entry.impl)

        @mark_converted
        def traced(*values: Tracer) -> list[Tracer]:
            return body(request, impl, label, list(values))

        owned: list[bool] = []
        with COMPILE_LOCK:
            func_op, _ = _functions.trace_function(
                session, traced, leaves, treedef, name, list(operand_types),
                lambda r: r, private=True, owned=owned)
            # which results are arrays the function allocated (the AD side frees a
            # tape's such arrays after the reverse call: user_rules.OWNED_RESULTS_ATTR)
            func_op.attributes[OWNED_RESULTS_ATTR] = builtin.ArrayAttr(
                [builtin.IntegerAttr(int(o), 1) for o in owned])
            session.add_function(func_op)
            _lower_whole_array(scratch)
        for op in list(scratch.body.block.ops):
            op.detach()
            if op is not func_op:
                module.regions[0].block.add_op(op)
        return func_op

    def _label(self, entry: Any) -> str:
        from isozyme.rules.registry import KIND_NAMES  # noqa: PLC0415

        label = f"the {KIND_NAMES[entry.kind]} of {self.fname}"
        if entry.origin not in ("forward", "augmented_primal", "reverse"):
            label += f" (from {entry.origin})"
        return label

    def _missing(self, mode: str) -> str:
        if mode == "forward":
            return (f"{self.fname} has no forward rule for these arguments: forward mode "
                    f"needs @isozyme.rules.forward({self.fname}) (or an easy_rule or "
                    "import_frule)")
        have = [k for k in ("augmented", "reverse") if self.rules.entry(k) is not None]
        return (f"{self.fname} has no {'reverse' if 'augmented' in have else 'augmented_primal'} "
                f"rule for these arguments: reverse mode needs both "
                f"@isozyme.rules.augmented_primal({self.fname}) and "
                f"@isozyme.rules.reverse({self.fname}) (or an easy_rule or import_rrule)")

    @staticmethod
    def _operand_types(request: RuleRequest) -> list[Attribute]:
        w = request.width
        types: list[Attribute] = []
        for t, act in zip(request.arg_types, request.activities):
            types.append(t)
            if request.mode != "augmented" and act is Activity.DUP:
                types += [t] * w
        if request.mode == "reverse":
            for t, active in zip(request.result_types, request.active_results):
                if active:
                    types += [t] * w
            types += list(request.tape_types)
        return types

    # -- arguments --------------------------------------------------------------------
    def _args(self, primals: list[Tracer]) -> list[Any]:
        """The call's positional arguments with ``primals`` for the traced leaves."""
        it = iter(primals)
        leaves = [next(it) if isinstance(x, Tracer) else x for x in self.leaves]
        args, _ = pytree.unflatten(self.treedef, leaves)
        return list(args)

    def _annotations(self, request: RuleRequest, label: str, primals: list[Tracer],
                     shadows: list[list[Tracer] | None]) -> list[Any]:
        """Per positional argument, its annotation for the rule."""
        anns: list[Any] = []
        w = request.width
        for p, arg in enumerate(self._args(primals)):
            ops = self.arg_operands[p]
            acts = [request.activities[k] for k in ops]
            if all(a is Activity.CONST for a in acts):
                anns.append(Const(arg))
                continue
            if not self.bare[p]:
                raise RuleError(
                    f"{label}: argument {p} holds differentiated values inside a "
                    f"{type(arg).__name__}; rules take active scalars and arrays as "
                    "arguments of their own")
            act, k = acts[0], ops[0]
            if act is Activity.ACTIVE:
                anns.append(Active(arg))
            elif request.mode == "augmented":
                anns.append(_AugmentedDuplicated(arg, label))
            elif w == 1:
                anns.append(Duplicated(arg, shadows[k][0]))  # type: ignore[index]
            else:
                anns.append(BatchDuplicated(arg, tuple(shadows[k])))  # type: ignore[arg-type]
        return anns

    def _overwritten(self, request: RuleRequest) -> tuple[bool, ...]:
        return tuple(any(request.overwritten[k] for k in ops) if ops else False
                     for ops in self.arg_operands)

    # -- results ----------------------------------------------------------------------
    def _per_output(self, value: Any, label: str, what: str) -> list[Any]:
        """``value`` (one value, or a tuple for a tuple-returning function) as a list
        with one entry per result."""
        n = len(self.result_types)
        if self.returns_tuple:
            if not isinstance(value, (tuple, list)) or len(value) != n:
                raise RuleError(f"{label} returned {_describe(value)} as {what}; expected "
                                f"a tuple of {n} values ({self.fname} returns a tuple)")
            return list(value)
        if isinstance(value, (tuple, list)):
            raise RuleError(f"{label} returned a {type(value).__name__} as {what}; "
                            f"expected one value ({self.fname} returns one value)")
        return [value]

    def _check(self, value: Any, t: Attribute, label: str, what: str,
               seen: set[int] | None = None) -> Tracer:
        """``value`` as a tracer of type ``t`` (Python numbers are converted; a traced
        value must have ``t``'s type, an array ``t``'s rank and element type).  ``seen``
        holds the buffers already returned by this function: an array returned twice
        (one tangent for two results) is copied, each result being a buffer of its own."""
        if isinstance(value, Tracer) and value.type == t:
            if is_array_value(value):
                return _distinct(returned_array(value, public=True), seen)  # type: ignore[arg-type]
            return value
        if is_array_type(t):
            assert isinstance(t, MemRefType)
            if not is_array_value(value):
                raise RuleError(f"{label} returned {_describe(value)} as {what}; expected "
                                f"an array of {t.element_type} with {len(t.shape)} "
                                "dimensions")
            vt = value.type
            if vt.element_type != t.element_type or len(vt.shape) != len(t.shape):
                raise RuleError(f"{label} returned an array of {vt.element_type} with "
                                f"{len(vt.shape)} dimensions as {what}; expected "
                                f"{t.element_type} with {len(t.shape)} dimensions")
            fresh = _distinct(returned_array(value, public=True), seen)  # type: ignore[arg-type]
            if fresh.type == t:
                return fresh
            cast = wrap(emit1(memref.CastOp.get(_functions.ssa(fresh), t)).value)
            # the buffer is returned (not freed) under the cast's type
            fb = current_builder()
            fb.allocs = [(cast.value if v is fresh.value else v, b) for v, b in fb.allocs]
            return cast
        if is_number(value) and not isinstance(value, Tracer):
            return constant(value, t)
        if isinstance(value, Tracer) and not is_array_value(value):
            raise RuleError(f"{label} returned a value of type {value.type} as {what}; "
                            f"expected {t}, its primal's type")
        raise RuleError(f"{label} returned {_describe(value)} as {what}; expected a "
                        f"value of type {t}")

    def _results(self, value: Any, label: str, what: str,
                 seen: set[int] | None = None) -> list[Tracer]:
        return [self._check(v, t, label, f"{what} {i}" if self.returns_tuple else what, seen)
                for i, (v, t) in enumerate(zip(self._per_output(value, label, what),
                                               self.result_types))]

    # -- forward ----------------------------------------------------------------------
    def _forward(self, request: RuleRequest, impl: Callable[..., Any], label: str,
                 values: list[Tracer]) -> list[Tracer]:
        w = request.width
        it = iter(values)
        primals, shadows = _arguments(request, it)
        anns = self._annotations(request, label, primals, shadows)
        config = _config(request, self._overwritten(request), request.needs_shadow,
                         (self.returns_tuple, len(self.result_types)))
        if not request.needs_shadow:
            rt: type = Const
        elif w == 1:
            rt = Duplicated if request.needs_primal else DuplicatedNoNeed
        else:
            rt = BatchDuplicated if request.needs_primal else BatchDuplicatedNoNeed
        out = _call_rule(label, impl, config, Const(self.f), rt, *anns)
        primal, lanes = self._split_forward(out, request, label)
        results: list[Tracer] = []
        seen: set[int] = set()
        if request.needs_primal:
            results += self._results(primal, label, "the primal", seen)
        if request.needs_shadow:
            per_lane = [self._per_output(s, label, "a tangent") for s in lanes]
            for j, (t, active) in enumerate(zip(self.result_types, request.active_results)):
                if active:
                    what = f"the tangent of result {j}" if self.returns_tuple else "the tangent"
                    for lane in range(w):
                        what_l = what if w == 1 else f"{what} (lane {lane})"
                        tangent = self._check(per_lane[lane][j], t, label, what_l, seen)
                        if request.needs_primal and is_array_value(tangent):
                            _check_sizes(tangent, results[j], label, what_l)
                        results.append(tangent)
        return results

    @staticmethod
    def _split_forward(out: Any, request: RuleRequest, label: str) -> tuple[Any, list[Any]]:
        """(primal, one shadow per lane) from what a forward rule returned."""
        w = request.width
        if request.needs_primal and request.needs_shadow:
            if w == 1 and isinstance(out, Duplicated) and not isinstance(out, _AugmentedDuplicated):
                return out.val, [out.dval]
            if w > 1 and isinstance(out, BatchDuplicated) and len(out.dvals) == w:
                return out.val, list(out.dvals)
            expected = "Duplicated(primal, tangent)" if w == 1 else \
                f"BatchDuplicated(primal, ({w} tangents))"
            raise RuleError(f"{label} returned {_describe(out)}; with needs_primal and "
                            f"needs_shadow it returns {expected}")
        if request.needs_shadow:
            if w == 1:
                if isinstance(out, (Duplicated, BatchDuplicated, Const, Active)):
                    raise RuleError(f"{label} returned {_describe(out)}; without "
                                    "needs_primal it returns the tangent alone")
                return None, [out]
            if not isinstance(out, tuple) or len(out) != w:
                raise RuleError(f"{label} returned {_describe(out)}; without needs_primal "
                                f"and with width {w} it returns a tuple of {w} tangents")
            return None, list(out)
        return out, []

    # -- augmented primal -------------------------------------------------------------
    def _augmented(self, request: RuleRequest, impl: Callable[..., Any], label: str,
                   values: list[Tracer]) -> list[Tracer]:
        from isozyme.rules.config import AugmentedReturn  # noqa: PLC0415

        anns = self._annotations(request, label, values, [None] * len(values))
        config = _config(request, self._overwritten(request), request.needs_shadow,
                         (self.returns_tuple, len(self.result_types)))
        rt: type = Const
        if any(request.active_results):
            rt = Duplicated if any(is_array_type(t) for t in self.result_types) else Active
        out = _call_rule(label, impl, config, Const(self.f), rt, *anns)
        if not isinstance(out, AugmentedReturn):
            raise RuleError(f"{label} returned {_describe(out)}; expected "
                            "isozyme.rules.AugmentedReturn(primal, shadow, tape)")
        results: list[Tracer] = []
        seen: set[int] = set()
        if request.needs_primal:
            results += self._results(out.primal, label, "the primal", seen)
        tape_leaves, tape_def = pytree.flatten(out.tape)
        traced = []
        for x in tape_leaves:
            if isinstance(x, Tracer):
                traced.append(x)
        self._tapes[self._tape_key(request)] = (
            tape_def, [_TRACED if isinstance(x, Tracer) else x for x in tape_leaves])
        return results + traced

    @staticmethod
    def _tape_key(request: RuleRequest) -> RuleRequest:
        return replace(request, mode="augmented", tape_types=())

    # -- reverse ----------------------------------------------------------------------
    def _reverse(self, request: RuleRequest, impl: Callable[..., Any], label: str,
                 values: list[Tracer]) -> list[Tracer]:
        w = request.width
        it = iter(values)
        primals, shadows = _arguments(request, it)
        seeds = [[next(it) for _ in range(w)] if active else None
                 for active in request.active_results]
        tape_values = list(it)
        tape = self._rebuild_tape(request, tape_values, label)
        anns = self._annotations(request, label, primals, shadows)
        config = _config(request, self._overwritten(request), request.needs_shadow,
                         (self.returns_tuple, len(self.result_types)))
        dret: Any = Const
        if any(request.active_results):
            def lane_seed(lane: int) -> Any:
                per = [s[lane] if s is not None else 0.0 for s in seeds]
                return tuple(per) if self.returns_tuple else per[0]
            dret = Active(lane_seed(0) if w == 1 else tuple(lane_seed(k) for k in range(w)))
        out = _call_rule(label, impl, config, Const(self.f), dret, tape, *anns)
        n = len(anns)
        if not isinstance(out, (tuple, list)) or len(out) != n:
            raise RuleError(f"{label} returned {_describe(out)}; expected a tuple with one "
                            f"entry per argument ({n}): the adjoint of each Active argument, "
                            "None for the others")
        results: list[Tracer] = []
        seen: set[int] = set()
        for p, (ann, adj) in enumerate(zip(anns, out)):
            if isinstance(ann, (Duplicated, BatchDuplicated)) and adj is not None:
                raise RuleError(
                    f"{label} returned {_describe(adj)} for argument {p}, which is "
                    f"{type(ann).__name__}: its adjoint is added into its shadow in place "
                    "(x.dval), and the rule returns None for it")
            if not isinstance(ann, Active):
                continue
            t = primals[self.arg_operands[p][0]].type
            what = f"the adjoint of argument {p}"
            if adj is None and dret is Const:
                adj = 0.0 if w == 1 else (0.0,) * w  # no result is differentiated
            if adj is None:
                raise RuleError(f"{label} returned None as {what}, which is Active; "
                                "expected its adjoint")
            lanes = [adj]
            if w > 1:
                if not isinstance(adj, (tuple, list)) or len(adj) != w:
                    raise RuleError(f"{label} returned {_describe(adj)} as {what}; with "
                                    f"width {w} expected a tuple of {w} adjoints")
                lanes = list(adj)
            results += [self._check(v, t, label, what, seen) for v in lanes]
        return results

    def _rebuild_tape(self, request: RuleRequest, values: list[Tracer], label: str) -> Any:
        if not request.tape_types and self._tape_key(request) not in self._tapes:
            return None
        got = self._tapes.get(self._tape_key(request))
        if got is None:
            raise RuleError(f"{label}: its augmented primal was not built for this call "
                            "(the tape is unknown)")
        tape_def, template = got
        it = iter(values)
        leaves = [next(it) if x is _TRACED else x for x in template]
        return pytree.unflatten(tape_def, leaves)


def _call_rule(label: str, impl: Callable[..., Any], *args: Any) -> Any:
    """``impl(*args)``: the user's rule, an error it raises (a Python error, a bad
    ``Duplicated`` it builds) re-raised as a RuleError naming the rule (the cause
    kept); isozyme's other errors carry their own location and pass as they are."""
    try:
        return impl(*args)
    except AnnotationError as exc:
        raise RuleError(f"{label}: {exc} (a Duplicated or BatchDuplicated a rule builds "
                        "pairs each primal with shadows of the same structure, type and "
                        "shape)") from exc
    except IsozymeError:
        raise
    except (ValueError, TypeError, AttributeError, IndexError, KeyError,
            ZeroDivisionError) as exc:
        raise RuleError(f"{label} raised {type(exc).__name__}: {exc}") from exc


def _check_sizes(value: Any, primal: Any, label: str, what: str) -> None:
    """Check that ``value`` (a tangent) has the sizes of ``primal`` (the primal result
    the rule returned): at trace time where both are known, else when the compiled
    code runs (a ``ShapeError`` naming the rule, as the easy rules' checks)."""
    from .runtime_checks import require  # noqa: PLC0415

    for k, (vk, pk) in enumerate(zip(value.shape, primal.shape)):
        message = (f"{label} returned {what} with size {{0}} in dimension {k}, where "
                   f"the primal result has size {{1}}")
        if isinstance(vk, int) and isinstance(pk, int):
            if vk != pk:
                raise RuleError(message.format(vk, pk))
            continue
        require(vk == pk, "shape", message, vk, pk)


def _distinct(value: Any, seen: set[int] | None) -> Any:
    """``value`` (an array the built function returns), copied when ``seen`` holds its
    buffer already: each result is freed on its own (returning one buffer twice freed
    it twice)."""
    if seen is None:
        return value
    if id(value.value) in seen:
        from .whole_array import copy_to_new  # noqa: PLC0415

        value = copy_to_new(value)
    seen.add(id(value.value))
    return value


#: A traced leaf's place in a remembered tape.
_TRACED = object()


def _arguments(request: RuleRequest, it: Any) -> tuple[list[Tracer], list[list[Tracer] | None]]:
    """Take the call's arguments from the operands iterator ``it``: per argument its
    primal, and its ``width`` shadows when it is Duplicated (None otherwise)."""
    primals: list[Tracer] = []
    shadows: list[list[Tracer] | None] = []
    for act in request.activities:
        primals.append(next(it))
        shadows.append([next(it) for _ in range(request.width)]
                       if act is Activity.DUP else None)
    return primals, shadows


def _describe(value: object) -> str:
    if isinstance(value, Tracer):
        return f"a traced value of type {value.type}"
    if value is None:
        return "None"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"
