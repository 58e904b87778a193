"""Nested AD: ``autodiff``/``gradient`` called on traced values inside a traced function.

When converted code calls :func:`isozyme.autodiff` (or :func:`isozyme.gradient`) and an
argument holds a traced value, nothing runs at trace time: the differentiated function
``g`` is traced into its own private ``func.func`` of the module, and an
``enzyme.autodiff`` (reverse modes) or ``enzyme.fwddiff`` (forward modes) request on it
is emitted where the call stands.  The request's results become the Python values the
call returns, shaped exactly as the public API shapes them:

* ``Reverse``: ``((d_args...),)`` with ``None`` for every non-Active argument;
  ``ReverseWithPrimal``: ``((d_args...), primal)``.  A ``Duplicated`` array's gradient
  is accumulated (``+=``) into its traced shadow buffer.
* ``Forward``: ``(derivative,)``; ``ForwardWithPrimal``: ``(derivative, primal)``.

``enzyme-differentiate`` differentiates inner requests first, so the outer derivative
meets a ``func.call`` of ``diffe<g>``/``fwddiffe<g>`` and differentiates that function
(forward over reverse is how :mod:`isozyme.hessians` computes Hessian-vector products).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects import memref
from xdsl.dialects.builtin import Float32Type, Float64Type, MemRefType, f64
from xdsl.ir import Attribute, Block, SSAValue

from isozyme.annotations import (
    Active,
    Annotation,
    BatchDuplicated,
    Const,
    Duplicated,
    DuplicatedNoNeed,
    Mode,
    RETURN_ACTIVITIES,
)
from isozyme.dialects.enzyme import (
    SEEDED,
    Activity,
    AutoDiffOp,
    DerivativeSignature,
    ForwardDiffOp,
)
from isozyme.errors import AnnotationError, UnsupportedError
from isozyme.pytree import flatten as flatten_tree
from isozyme.pytree import is_node

from .arrays import wrap
from .context import FunctionBuilder, HelperEntry, TraceSession, current_builder
from .functions import flatten, trace_function
from .whole_array.array_builders import _hidden_argument
from .tracer import (
    EscapedValueError,
    Tracer,
    Undefined,
    as_tracer,
    constant,
    emit,
    is_array_value,
    is_number,
    ssa,
)

__all__ = ["has_traced_argument", "traced_autodiff", "traced_gradient"]


def _leaf_is_traced(x: object) -> bool:
    if isinstance(x, Tracer):
        return True
    if isinstance(x, Annotation):
        return _leaf_is_traced(x.val) or _leaf_is_traced(getattr(x, "dval", None))
    return is_node(x) and any(_leaf_is_traced(v) for v in flatten_tree(x)[0])


def has_traced_argument(f: object, args: Sequence[object]) -> bool:
    """Whether an argument (annotated or not, pytree leaves included) or a closure
    variable of ``f`` holds a traced value: inside a trace (:func:`.context.tracing`),
    the call is a nested AD request."""
    cells = getattr(f, "__closure__", None) or ()
    return any(_leaf_is_traced(a) for a in args) or any(
        _leaf_is_traced(c.cell_contents) for c in cells if _has_contents(c))


def _has_contents(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


def _is_float(t: Attribute) -> bool:
    return isinstance(t, (Float64Type, Float32Type)) or (
        isinstance(t, MemRefType) and isinstance(t.element_type, (Float64Type, Float32Type))
    )


def _split(args: Sequence[object]) -> tuple[type | None, list[Annotation]]:
    """The return activity class (or None) and the annotated arguments."""
    ret_cls: type | None = None
    if args and isinstance(args[0], type) and issubclass(args[0], Annotation):
        if args[0] not in RETURN_ACTIVITIES:
            raise AnnotationError(f"{args[0].__name__} is not a return activity")
        ret_cls, args = args[0], args[1:]
    return ret_cls, [a if isinstance(a, Annotation) else Const(a) for a in args]


def _float_tracer(x: object, what: str) -> Tracer:
    """``x`` as a scalar float tracer (a Python float becomes a constant)."""
    if is_array_value(x):
        raise AnnotationError(f"{what}: got an array, which must be Duplicated(x, dx)")
    if isinstance(x, Tracer):
        if not isinstance(x.type, (Float64Type, Float32Type)):
            raise AnnotationError(f"{what}: a traced value of type {x.type} cannot be "
                                  "differentiated; only floats can")
        return x
    if not is_number(x) or isinstance(x, (bool, int)):
        raise AnnotationError(f"{what}: only floats can be differentiated, got "
                              f"{type(x).__name__}")
    return as_tracer(float(x), f64)


class _Request:
    """The arguments of one nested request: what ``g`` is traced with (``leaves``), the
    activity of each traced leaf, and the request's operands."""

    def __init__(self, mode: Mode, anns: Sequence[Annotation]) -> None:
        self.leaves: list[object] = []
        self.activities: list[Activity] = []
        self.shadows: list[Tracer | None] = []  # per traced leaf
        for i, a in enumerate(anns):
            what = f"argument {i} of a nested autodiff"
            if isinstance(a, BatchDuplicated):
                raise UnsupportedError(f"{what}: BatchDuplicated inside a traced function "
                                       "(nested batch mode) is not supported")
            if is_node(a.val):
                raise UnsupportedError(f"{what}: pytree arguments of a nested autodiff are "
                                       "not supported; pass their leaves as arguments")
            if isinstance(a, Active):
                if not mode.reverse:
                    raise AnnotationError(f"{what}: Active is for reverse mode; in forward "
                                          "mode pass Duplicated(x, dx)")
                self._add(_float_tracer(a.val, what), Activity.ACTIVE, None)
            elif isinstance(a, Duplicated):
                self._add_duplicated(mode, a, what)
            elif isinstance(a.val, Tracer):
                self._add(a.val, Activity.CONST, None)
            else:
                self.leaves.append(a.val)  # a constant baked into g's trace

    def _add(self, v: Tracer, act: Activity, shadow: Tracer | None) -> None:
        self.leaves.append(v)
        self.activities.append(act)
        self.shadows.append(shadow)

    def _add_duplicated(self, mode: Mode, a: Duplicated, what: str) -> None:
        if is_array_value(a.val):
            if not is_array_value(a.dval):
                raise AnnotationError(f"{what}: Duplicated(x, dx) with a traced array x "
                                      "needs an array shadow dx")
            x, dx = a.val, a.dval
            if x.type.element_type != dx.type.element_type or (  # type: ignore[union-attr]
                    x.type.get_num_dims() != dx.type.get_num_dims()):  # type: ignore[union-attr]
                raise AnnotationError(f"{what}: the shadow's type {dx.type} does not match "
                                      f"the primal's {x.type}")
            self._add(x, Activity.DUP, dx)  # type: ignore[arg-type]
            return
        if mode.reverse:
            raise AnnotationError(f"{what}: Duplicated on an immutable scalar in reverse "
                                  "mode: its derivative cannot be written back; mark it Active")
        x = _float_tracer(a.val, what)
        self._add(x, Activity.DUP, as_tracer(_float_tracer(a.dval, what), x.type))

    def operands(self) -> list[SSAValue]:
        """Per traced leaf its primal, then its shadow when it is Duplicated (cast to the
        primal's memref type: a derivative's shadow has its primal's type)."""
        out: list[SSAValue] = []
        for leaf, sh in zip((x for x in self.leaves if isinstance(x, Tracer)), self.shadows):
            out.append(ssa(leaf))
            if sh is not None:
                v = ssa(sh)
                if v.type != leaf.type:
                    v = emit(memref.CastOp.get(v, leaf.type)).results[0]
                out.append(v)
        return out


def _leaf_key(x: object) -> object:
    """The part of the cache key of g's trace one argument leaf contributes: the type
    of a traced value, else the value (its identity when unhashable)."""
    if isinstance(x, Tracer):
        return ("traced", x.type)
    try:
        hash(x)
    except TypeError:
        return ("object", id(x))
    return ("const", type(x), x)


@dataclass
class _TargetEntry(HelperEntry):
    """A nested request's traced target, with the large numpy arrays (globals, closure
    cells) its whole-array code reads: trailing arguments of the target, in order."""

    hidden: list[Any] = field(default_factory=list)


class _HiddenArrays:
    """While a target is traced, the large numpy arrays it reads become trailing
    arguments of the target instead of the public function's: the session's
    hidden-argument state (see ``array_builders._hidden_argument``) is swapped for the
    target's, and restored after.  The request then passes the caller's value of each
    array (the public function's hidden argument, or the enclosing target's) as a
    ``Const`` operand, so the compile cache fetches the array on every call as it does
    for a top-level trace."""

    def __init__(self, session: TraceSession, arg_types: list[Attribute]) -> None:
        self.session = session
        self.arg_types = arg_types  # the target's argument types: hidden ones appended
        # Only when arrays are hidden at all (under the compile cache): else baked.
        self.active = session.hidden_type is not None and session.public_builder is not None
        self.saved: tuple[Any, ...] | None = None
        self.arrays: dict[int, tuple[Any, Any]] = {}

    def enter(self, block: Block, fb: FunctionBuilder) -> None:
        """``trace_function``'s ``on_entry``: hidden arrays become ``block``'s."""
        if not self.active:
            return
        s = self.session
        self.saved = (s.public_builder, s.public_arg_types, s.hidden)
        # Not public_entry: shape checks and layouts of the public arguments keep it.
        s.public_builder, s.public_arg_types, s.hidden = fb, self.arg_types, self.arrays

    def restore(self) -> list[Any]:
        """Give the session back its caller's state; the arrays the target took."""
        if self.saved is not None:
            s = self.session
            s.public_builder, s.public_arg_types, s.hidden = self.saved
            self.saved = None
        return [a for a, _ in self.arrays.values()]


def _hidden_operands(entry: HelperEntry) -> list[SSAValue]:
    """The caller's values of the hidden arrays ``entry``'s target reads (hidden
    arguments of the caller's function, added as needed)."""
    out: list[SSAValue] = []
    for a in getattr(entry, "hidden", ()):
        t = _hidden_argument(a)
        if t is None:  # the same session hid it while tracing the target
            raise UnsupportedError(f"nested autodiff of {entry.name}(): a global array it "
                                   "reads cannot be passed to it")
        out.append(ssa(t))
    return out


def _trace_target(f: Callable[..., Any], leaves: list[object]) -> HelperEntry:
    """The private ``func.func`` traced from ``f`` for these leaves (once per session
    and signature), refusing closures over the caller's traced values.  Large global
    arrays ``f`` reads become trailing arguments (``_TargetEntry.hidden``)."""
    if not callable(f):
        raise AnnotationError(f"expected a function to differentiate, got {type(f).__name__}")
    session = current_builder().session
    # Its globals and closure are part of the compiled code's cache key (isozyme/reads.py)
    # even when the function that calls autodiff is isozyme's own (hessians.py).
    session.note_function(f)
    args_tree = flatten((list(leaves), {}))[1]
    key = ("nested-ad", f, tuple(_leaf_key(x) for x in leaves))
    entry = session.helpers.get(key)
    if entry is not None:
        return entry
    name = session.unique_name(getattr(f, "__name__", "fn"))
    types_ = [x.type for x in leaves if isinstance(x, Tracer)]
    returned: dict[str, bool] = {}

    def collect(result: object) -> list[Tracer]:
        returned["tuple"] = type(result) is tuple
        if result is None:
            return []
        values = list(result) if type(result) is tuple else [result]
        out = []
        for v in values:
            if isinstance(v, Undefined):
                raise v.error()
            if is_array_value(v):
                raise UnsupportedError(
                    f"nested autodiff of {name}(), which returns an array: return a "
                    "float, or write the array into a Duplicated argument")
            out.append(v if isinstance(v, Tracer) else as_tracer(v))
        return out

    hidden = _HiddenArrays(session, types_)
    try:
        func_op, _ = trace_function(session, f, list(leaves), args_tree, name, types_,
                                    collect, private=True, on_entry=hidden.enter)
    except EscapedValueError as exc:
        session.used_names.discard(name)
        raise UnsupportedError(
            f"nested autodiff of {name}(): it reads a traced value of the enclosing "
            "function through its closure or a global; pass that value as an argument "
            "(Const(v) if it is not differentiated)") from exc
    finally:
        arrays = hidden.restore()
    session.add_function(func_op)
    as_tuple = returned.get("tuple", False)

    def rebuild(values: list[object]) -> object:
        """g's results (primals or tangents) shaped as g returned them."""
        return tuple(values) if as_tuple else (values[0] if values else None)

    entry = _TargetEntry(name, list(func_op.function_type.outputs.data), rebuild,
                         hidden=arrays)
    session.helpers[key] = entry
    return entry


def _return_activities(mode: Mode, ret_cls: type | None, types_: Sequence[Attribute],
                       name: str) -> list[Activity]:
    """The return activities of a nested request (as :mod:`isozyme.calls` chooses them
    for a top-level call)."""
    acts: list[Activity] = []
    if mode.reverse and len(types_) > 1:
        raise UnsupportedError(f"nested reverse-mode autodiff of {name}(), which returns a "
                               "tuple: return one float")
    for t in types_:
        active = _is_float(t) and ret_cls is not Const
        if mode.reverse:
            if ret_cls is not None and ret_cls not in (Active, Const):
                raise AnnotationError(f"return activity {ret_cls.__name__} is not valid in "
                                      "reverse mode; use Active or Const")
            acts.append(DerivativeSignature.return_activity(True, active, mode.with_primal))
        else:
            if ret_cls is Active:
                raise AnnotationError("return activity Active is for reverse mode; use "
                                      "Duplicated in forward mode")
            noneed = active and ret_cls is DuplicatedNoNeed
            acts.append(DerivativeSignature.return_activity(
                False, active, mode.with_primal and not noneed))
    return acts


def traced_autodiff(mode: Mode, f: Callable[..., Any], args: Sequence[object]) -> tuple:
    """``autodiff(mode, f, *args)`` inside a trace: emit the request, return its results
    as the public API shapes them (see the module docstring)."""
    if not isinstance(mode, Mode):
        raise AnnotationError(f"the first argument must be a mode, got {mode!r}")
    ret_cls, anns = _split(args)
    req = _Request(mode, anns)
    entry = _trace_target(f, req.leaves)
    name = entry.name
    res_types = entry.result_types
    ret_acts = _return_activities(mode, ret_cls, res_types, name)
    hidden = _hidden_operands(entry)  # Const: after the leaves, before the seeds
    activities = req.activities + [Activity.CONST] * len(hidden)
    sig = DerivativeSignature(activities, ret_acts, 1,
                              "reverse" if mode.reverse else "forward")
    arg_types = [x.type for x in req.leaves if isinstance(x, Tracer)]
    arg_types += [v.type for v in hidden]
    operands = req.operands() + hidden
    if mode.reverse:  # a seed of 1 per active return
        operands += [ssa(constant(1.0, t)) for t, a in zip(res_types, ret_acts)
                     if a in SEEDED]
    op_cls = AutoDiffOp if mode.reverse else ForwardDiffOp
    op = emit(op_cls(name, operands, sig.result_types(arg_types, res_types),
                     activities, ret_acts))
    results = [wrap(r) for r in op.results]
    if mode.reverse:
        has_primal = bool(ret_acts) and ret_acts[0] in (Activity.ACTIVE, Activity.CONST)
        k = 1 if has_primal else 0
        grads: list[object] = []
        it = iter(req.activities)
        for a in anns:
            if isinstance(a, Const) and not isinstance(a.val, Tracer):
                grads.append(None)
                continue
            act = next(it)
            if act is Activity.ACTIVE:
                grads.append(results[k])
                k += 1
            else:
                grads.append(None)
        if mode.with_primal:
            return (tuple(grads), results[0] if has_primal else None)
        return (tuple(grads),)
    primals, tangents = sig.split_forward_results(results)
    deriv = entry.rebuild([lanes[0] for lanes in tangents])
    return (deriv, entry.rebuild(primals)) if mode.with_primal else (deriv,)


def traced_gradient(mode: Mode, f: Callable[..., Any], args: Sequence[object]) -> Any:
    """``gradient(mode, f, *args)`` inside a trace (Reverse modes): float scalars are
    Active, float arrays Duplicated with a fresh zero shadow (the gradient returned);
    ``Const(...)`` arguments and integers get ``None``."""
    from isozyme.calls import GradientResult  # noqa: PLC0415

    from .arrays import np_zeros_like  # noqa: PLC0415

    if not mode.reverse:
        raise UnsupportedError(
            "gradient(Forward, ...) on traced values inside a traced function is not "
            "supported; use gradient(Reverse, ...) or autodiff(Forward, ...) per direction")
    anns: list[object] = []
    shadows: list[object] = []
    for i, a in enumerate(args):
        if isinstance(a, Annotation) and not isinstance(a, Const):
            raise AnnotationError(
                f"argument {i}: gradient takes plain values or Const(...), not "
                f"{type(a).__name__}")
        if is_array_value(a) and _is_float(a.type):  # type: ignore[union-attr]
            sh = np_zeros_like(a)
            anns.append(Duplicated.__new__(Duplicated))
            anns[-1].val, anns[-1].dval = a, sh  # type: ignore[attr-defined]
            shadows.append(sh)
        elif (isinstance(a, Tracer) and not is_array_value(a)
              and isinstance(a.type, (Float64Type, Float32Type))) or isinstance(a, float):
            anns.append(_active(a))
            shadows.append(None)
        else:
            anns.append(a if isinstance(a, Const) else Const(a))
            shadows.append(None)
    res = traced_autodiff(mode, f, [Active, *anns])
    derivs = tuple(sh if sh is not None else res[0][i] for i, sh in enumerate(shadows))
    return GradientResult(derivs, res[1]) if mode.with_primal else derivs


def _active(x: object) -> Active:
    """``Active(x)`` for a float or a scalar float tracer."""
    a = Active.__new__(Active)
    a.val = x
    return a

