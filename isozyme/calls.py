"""One autodiff call: its signature (the compile-cache key), its compilation, and the
runner that marshals values in and out of the compiled entry point.

:mod:`isozyme.api` builds the key on every call and comes here on a cache miss.
"""

from __future__ import annotations

import io
import weakref
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from xdsl.dialects.builtin import Float32Type, Float64Type, MemRefType
from xdsl.dialects import func
from xdsl.ir import Attribute, Operation
from xdsl.printer import Printer

from isozyme.compiler.analysis.buffers import collapsed_arguments, written_arguments

from isozyme.annotations import (
    RETURN_ACTIVITIES,
    Active,
    Annotation,
    BatchDuplicated,
    BatchDuplicatedNoNeed,
    Const,
    Duplicated,
    DuplicatedNoNeed,
    Mode,
    describe,
    is_array,
    shadows_of,
)
from isozyme.compiler.pipeline import run_pipeline
from isozyme.compiler.targets import RUNTIME_STAGES, LLVMArtefact, get_target
from isozyme.pytree import (
    TreeDef,
    describe_path,
    immutable_container,
    is_node,
    leaf_paths,
)
from isozyme.pytree import flatten as flatten_tree
from isozyme.pytree import unflatten as unflatten_tree
from isozyme.arguments import (
    array_type,
    arg_unit_inner,
    ir_type,
    layout,
    view,
)
from isozyme.compiler.request import REQUEST_NAME, add_request
from isozyme.runner import make_runner
from isozyme.dialects.enzyme import Activity, DerivativeSignature
from isozyme.reads import (
    build_guard,
    collect_reads,
    hidden_array_ok,
    make_guard,
)
from isozyme.reads import unit_inner as _unit_inner
from isozyme.runtime.marshal import on_device
from isozyme.errors import AnnotationError, UnsupportedError

#: Counters of the expensive steps, for tests and benchmarks.
stats: dict[str, int] = {"traces": 0, "compiles": 0}

#: Functions whose traced code writes one of its arguments (in place), as found when
#: a signature of theirs compiled (weak: dropped with the function).
_WRITERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def writes_arguments(fn: Callable) -> bool | None:
    """Whether a compiled signature of ``fn`` writes one of its arguments in place;
    None when none has compiled yet (or ``fn`` cannot be weakly referenced)."""
    try:
        return _WRITERS.get(fn)
    except TypeError:
        return None

GradientResult = namedtuple("GradientResult", ["derivs", "val"])
GradientResult.__doc__ = "What ``gradient(...WithPrimal...)`` returns: derivatives and value."


@dataclass
class _Spec:
    """Everything the compiler needs for one signature."""

    fn: Callable
    mode: Mode
    annotations: list[Annotation]
    ret_cls: type | None
    trace_args: list[object] = field(default_factory=list)  # per argument (may be a pytree)
    trees: list[TreeDef | None] = field(default_factory=list)  # per argument: pytree or None
    # per traced leaf (one entry per IR argument):
    activities: list[Activity] = field(default_factory=list)
    # per leaf of every argument: does it carry a runtime value (False: baked in the IR)
    runtime: list[bool] = field(default_factory=list)
    # per traced leaf: the layout of an array argument (layout), None for scalars
    layouts: list[str | None] = field(default_factory=list)
    #: the compilation target's name (isozyme.compiler.targets)
    target: str = "cpu"
    #: the batch width (the number of shadows of the BatchDuplicated arguments)
    width: int = 1
    #: batch mode (BatchDuplicated arguments or vjp's seeds=): results per lane, in a
    #: tuple, also for a width of 1
    batched: bool = False
    #: reverse mode with explicit seeds (:func:`isozyme.vjp`): per return value, what
    #: its seed is (:data:`SeedKind`); None: ``autodiff``'s unit seed of a float return
    seed_kinds: tuple["SeedKind", ...] | None = None
    #: with ``seed_kinds``: whether the seed is a tuple (of a function returning one)
    seed_is_tuple: bool = False


#: What the seed (cotangent) of one return value is: None (no seed: the return is
#: Const), ``("float",)``, or ``("array", dtype, ndim)`` (host or device array).
SeedKind = tuple | None


def _hidden_type(a: object) -> Attribute | None:
    """The memref type of a large numpy array passed as a hidden argument; None for an
    array baked into the IR (small, or of an unsupported dtype)."""
    if not hidden_array_ok(a):  # type: ignore[arg-type]
        return None
    return array_type(a, _unit_inner(a))  # type: ignore[arg-type]


def _reads_guard(spec: "_Spec", traced) -> Callable[[], tuple | None] | None:
    """The cache guard of a trace (:mod:`isozyme.reads`); hidden arrays become extra
    ``Const`` arguments of ``spec`` (after the user's), as they are of the traced
    function."""
    reads = collect_reads(traced.functions)
    guard = build_guard(reads, traced.hidden)
    for a in traced.hidden:
        spec.annotations.append(Const(a))
        spec.trace_args.append(None)
        spec.trees.append(None)
        spec.activities.append(Activity.CONST)
        spec.runtime.append(True)
    return make_guard(guard)


def _guarded(compiled: "Compiled", spec: "_Spec", guard, n_hidden: int) -> "Compiled":
    """Attach the guard; with hidden arguments, ``run_hidden`` appends them to the
    user's annotations and drops their (always None) gradients."""
    compiled.guard = guard
    if n_hidden:
        run = compiled.run
        n_user = len(spec.annotations) - n_hidden
        reverse, batched = spec.mode.reverse, spec.batched

        def run_hidden(anns: Sequence[Annotation], hidden: tuple, seeds: object = None) -> tuple:
            if reverse:
                out = run([*anns, *map(Const, hidden)], seeds)
                derivs = tuple(lane[:n_user] for lane in out[0]) if batched else (
                    out[0][:n_user])
                return (derivs, *out[1:])
            return run([*anns, *map(Const, hidden)])

        run_hidden.keepalive = run.keepalive  # type: ignore[attr-defined]
        compiled.run_hidden = run_hidden
    return compiled


def _split_return_activity(args: Sequence[object]) -> tuple[type | None, list[object]]:
    if args and isinstance(args[0], type) and issubclass(args[0], Annotation):
        if args[0] not in RETURN_ACTIVITIES:
            raise AnnotationError(f"{args[0].__name__} is not a return activity")
        return args[0], list(args[1:])
    return None, list(args)


def _annotate(x: object) -> Annotation:
    return x if isinstance(x, Annotation) else Const(x)


def _array_places(anns: Sequence[Annotation]) -> tuple[list[str], list[str]]:
    """The names of the host arrays and of the device arrays among the arguments
    (leaves of pytrees and shadows included)."""
    host: list[str] = []
    device: list[str] = []
    for i, a in enumerate(anns):
        pairs = [(a.val, f"argument {i}")]
        for k, d in enumerate(shadows_of(a) or ()):
            lane = f" (lane {k})" if isinstance(a, BatchDuplicated) else ""
            pairs.append((d, f"the shadow of argument {i}{lane}"))
        for value, name in pairs:
            if is_node(value):
                leaves = [(x, f"leaf {j} of {name}")
                          for j, x in enumerate(flatten_tree(value)[0])]
            else:
                leaves = [(value, name)]
            for x, where in leaves:
                if on_device(x):
                    device.append(where)
                elif is_array(x):
                    host.append(where)
    return host, device


def choose_target(anns: Sequence[Annotation], forced: str | None) -> str:
    """The target of a call: ``forced`` (``isozyme.target(...)`` or ``ir(...,
    target=)``) when given, else ``cuda`` when an argument is a device array (it
    exposes ``__cuda_array_interface__``), else ``cpu``. Mixing host and device arrays
    in one call, or device arrays under a CPU target, is an :class:`AnnotationError`."""
    host, device = _array_places(anns)
    if host and device:
        raise AnnotationError(
            "one call mixes host arrays (numpy: " + ", ".join(host) + ") and device "
            "arrays (__cuda_array_interface__: " + ", ".join(device) + "); pass all "
            "of them on the device (cupy.asarray) or all on the host (cupy.asnumpy)"
        )
    if forced is not None:
        name = get_target(forced).name
        if device and name != "cuda":
            raise AnnotationError(
                f"the {name} target runs on host memory, but " + ", ".join(device)
                + " is a device array (__cuda_array_interface__); use the cuda target "
                "or pass numpy arrays"
            )
        return name
    return "cuda" if device else "cpu"


def prepare(
    mode: Mode, fn: Callable, args: Sequence[object], target: str | None = None
) -> _Spec:
    """Validate a call and describe its signature for the compiler: for ``target``
    when given, else for the target the arguments select (:func:`choose_target`)."""
    if not isinstance(mode, Mode):
        raise AnnotationError(
            f"the first argument must be a mode (Forward, ForwardWithPrimal, Reverse, "
            f"ReverseWithPrimal), got {mode!r}"
        )
    if isinstance(fn, type) and issubclass(fn, Annotation):
        raise AnnotationError(
            f"got the annotation {fn.__name__} where the function belongs: the order is "
            "autodiff(mode, f, [return activity,] args...)"
        )
    if not callable(fn):
        raise AnnotationError(f"expected a function to differentiate, got {describe(fn)}")
    ret_cls, rest = _split_return_activity(args)
    anns = [_annotate(a) for a in rest]
    spec = _Spec(fn, mode, anns, ret_cls, target=choose_target(anns, target),
                 width=_batch_width(anns, ret_cls),
                 batched=any(isinstance(a, BatchDuplicated) for a in anns))
    for i, a in enumerate(anns):
        if is_node(a.val):
            leaves, tree = flatten_tree(a.val)
            if isinstance(a, BatchDuplicated):
                lanes = [flatten_tree(d)[0] for d in a.dvals]
                leaf_anns = [type(a)(v, tuple(ds)) for v, *ds in zip(leaves, *lanes)]
            elif isinstance(a, Duplicated):
                shadows = flatten_tree(a.dval)[0]  # type: ignore[attr-defined]
                leaf_anns = [type(a)(v, d) for v, d in zip(leaves, shadows)]
                if mode.reverse:
                    leaf_anns = _reverse_float_leaves(i, tree, leaf_anns)
            else:
                leaf_anns = [type(a)(v) for v in leaves]
            types = [_prepare_leaf(spec, i, la) for la in leaf_anns]
            spec.trace_args.append(unflatten_tree(tree, types))
            spec.trees.append(tree)
        else:
            spec.trace_args.append(_prepare_leaf(spec, i, a))
            spec.trees.append(None)
    return spec


def _reverse_float_leaves(
    i: int, tree: TreeDef, leaf_anns: list[Annotation]
) -> list[Annotation]:
    """The leaves of Duplicated pytree argument ``i`` in reverse mode: a float leaf is
    Active (an immutable scalar: the runner adds its derivative into the shadow
    pytree's leaf, Enzyme.jl's answer for a float in a mutable container), which its
    shadow's container must allow."""
    paths = leaf_paths(tree)
    out: list[Annotation] = []
    for a, path in zip(leaf_anns, paths):
        if is_array(a.val):
            out.append(a)
            continue
        container = immutable_container(path[-1])
        if container is not None:
            raise AnnotationError(
                f"argument {i}: the float leaf {describe_path(path)} of a Duplicated pytree "
                f"sits in an immutable {container}: reverse mode adds its derivative into "
                "the shadow's leaf, which cannot be written (an immutable scalar in an "
                "immutable container); use a list, dict or dataclass there, or pass the "
                "float as an Active argument"
            )
        out.append(Active(a.val))
    return out


def _batch_width(anns: Sequence[Annotation], ret_cls: type | None) -> int:
    """The batch width of a call: the number of shadows of its ``BatchDuplicated``
    arguments (all must have the same), 1 without any."""
    widths = {len(a.dvals) for a in anns if isinstance(a, BatchDuplicated)}
    if not widths:
        if ret_cls is not None and issubclass(ret_cls, BatchDuplicated):
            raise AnnotationError(
                "return activity BatchDuplicated needs BatchDuplicated arguments"
            )
        return 1
    if len(widths) > 1:
        raise AnnotationError(
            f"BatchDuplicated arguments with different numbers of shadows {sorted(widths)}; "
            "every batched argument needs one shadow per lane"
        )
    if any(isinstance(a, Duplicated) for a in anns):
        raise AnnotationError(
            "one call mixes Duplicated and BatchDuplicated arguments; pass the Duplicated "
            "ones as BatchDuplicated(x, (dx1, ..., dxW)) with a shadow of their own per lane"
        )
    if ret_cls in (Duplicated, DuplicatedNoNeed):
        raise AnnotationError(
            f"return activity {ret_cls.__name__} with BatchDuplicated arguments; use "
            f"Batch{ret_cls.__name__}"
        )
    return widths.pop()


def _prepare_leaf(spec: _Spec, i: int, a: Annotation) -> object:
    """Check one leaf of argument ``i``; record its activity; return what to trace."""
    mode = spec.mode
    if isinstance(a, Active) and not mode.reverse:
        raise AnnotationError(
            f"argument {i}: Active is for reverse mode; in forward mode pass "
            "Duplicated(x, dx)"
        )
    if isinstance(a, BatchDuplicated) and mode.reverse and not is_array(a.val):
        raise AnnotationError(
            f"argument {i}: BatchDuplicated({a.val!r}, ...) on an immutable scalar in "
            "reverse mode: its derivatives cannot be written back; mark it Active (one "
            "derivative per lane is returned)"
        )
    if isinstance(a, Duplicated) and mode.reverse and not is_array(a.val):
        raise AnnotationError(
            f"argument {i}: Duplicated({a.val!r}, ...) on an immutable scalar in reverse "
            "mode: its derivative cannot be written back; mark it Active"
        )
    t = ir_type(a.val, is_array(a.val) and arg_unit_inner(a))
    if t is None and not isinstance(a, Const):
        raise AnnotationError(f"argument {i}: cannot differentiate a {describe(a.val)}")
    if isinstance(a, Active):
        spec.activities.append(Activity.ACTIVE)
    elif isinstance(a, (Duplicated, BatchDuplicated)):
        spec.activities.append(Activity.DUP)
    elif t is not None:
        spec.activities.append(Activity.CONST)
    spec.runtime.append(t is not None)
    if t is not None:
        spec.layouts.append(layout(view(a.val)) if is_array(a.val) else None)
    return t if t is not None else a.val


def _return_activities(spec: _Spec, result_types: Sequence[Attribute]) -> list[Activity]:
    mode, ret = spec.mode, spec.ret_cls
    if mode.reverse:
        return _reverse_return_activities(spec, result_types)
    acts = []
    for t in result_types:
        is_f = _is_float_type(t)
        if ret is Active:
            raise AnnotationError(
                "return activity Active is for reverse mode; use Duplicated in forward mode"
            )
        shadow = is_f and ret is not Const
        noneed = shadow and ret in (DuplicatedNoNeed, BatchDuplicatedNoNeed)
        acts.append(DerivativeSignature.return_activity(False, shadow,
                                                        mode.with_primal and not noneed))
    return acts


def _is_float_type(t: Attribute) -> bool:
    """A float scalar type, or a memref of floats."""
    if isinstance(t, MemRefType):
        t = t.element_type
    return isinstance(t, (Float64Type, Float32Type))


def _reverse_return_activities(spec: _Spec, result_types: Sequence[Attribute]) -> list[Activity]:
    """The return activities of a reverse-mode call: from the return activity class
    (``autodiff``: a float return is seeded with 1.0) or from the seeds
    (:func:`isozyme.vjp`: one per return value, checked against its type)."""
    mode, ret = spec.mode, spec.ret_cls
    seeded = DerivativeSignature.return_activity(True, True, mode.with_primal)
    unseeded = DerivativeSignature.return_activity(True, False, mode.with_primal)
    if ret is not None and ret is not Active and ret is not Const:
        raise AnnotationError(
            f"return activity {ret.__name__} is not valid in reverse mode; use "
            "Active or Const"
        )
    if spec.seed_kinds is not None:
        return [seeded if _check_seed(k, t, i, len(result_types)) else unseeded
                for i, (k, t) in enumerate(zip(spec.seed_kinds, result_types))]
    if len(result_types) > 1:
        # (the message is quoted in the docs)
        raise UnsupportedError(
            "reverse mode of a function returning a tuple; return one float, or seed "
            "each result with isozyme.vjp(mode, f, seeds_tuple, ...) (or use jacobian)"
        )
    acts = []
    for t in result_types:
        is_f = _is_float_type(t)
        if isinstance(t, MemRefType):
            if is_f and ret is not Const:
                # (the message is quoted in the docs)
                raise AnnotationError(
                    "reverse mode of a function that returns an array: pass its seed with "
                    "isozyme.vjp(mode, f, seed, ...), or return a float, or use Forward mode"
                )
            acts.append(unseeded)
            continue
        if ret is Active and not is_f:
            raise AnnotationError(
                f"the function returns a value of type {t}, which cannot be Active"
            )
        acts.append(seeded if is_f and ret is not Const else unseeded)
    return acts


def _check_seed(kind: "SeedKind", t: Attribute, i: int, n: int) -> bool:
    """Whether return value ``i`` (of type ``t``, one of ``n``) takes a seed of
    ``kind``; an AnnotationError when the seed does not fit it."""
    what = "the seed" if n == 1 else f"the seed of return value {i}"
    if kind is None:
        return False
    if not _is_float_type(t):
        raise AnnotationError(
            f"{what}: the function returns a value of type {t}, which takes no seed "
            "(pass None)"
        )
    if isinstance(t, MemRefType):
        dtype = np.dtype(np.float64 if isinstance(t.element_type, Float64Type) else np.float32)
        rank = len(t.get_shape())
        if kind[0] != "array" or kind[1] != dtype or kind[2] != rank:
            got = "a float" if kind[0] == "float" else f"an array of dtype {kind[1]} and rank {kind[2]}"
            raise AnnotationError(
                f"{what} must be an array of dtype {dtype} and rank {rank} like the "
                f"returned array, got {got}"
            )
        return True
    if kind[0] != "float":
        raise AnnotationError(
            f"{what} must be a float like the returned value, got an array of dtype "
            f"{kind[1]} and rank {kind[2]}"
        )
    return True


# -- compilation -----------------------------------------------------------------------
@dataclass
class Compiled:
    """A compiled signature: the entry point and how to map values in and out."""

    run: Callable[[Sequence[Annotation]], tuple]
    stages: dict[str, str]
    #: what the compile cache runs before ``run`` (see :mod:`isozyme.reads`): None when
    #: the code read no globals, else a function returning None when a read changed, or
    #: the values of the hidden array arguments to pass to ``run_hidden``
    guard: Callable[[], tuple | None] | None = None
    run_hidden: Callable[[Sequence[Annotation], tuple], tuple] | None = None
    #: the traced arguments its trace made static (sizes needed as Python ints)
    static_arguments: frozenset[int] = frozenset()


def _stage_text(ir: object, generic: bool) -> str:
    """A stage's text: an xDSL op in MLIR's generic form with ``generic`` (what
    ``mlir-opt --mlir-print-op-generic`` prints), else custom; other stages (the CUDA C
    of kernels) as they are."""
    if generic and isinstance(ir, Operation):
        out = io.StringIO()
        Printer(stream=out, print_generic_format=True).print_op(ir)
        return out.getvalue()
    return str(ir)


def build(
    spec: _Spec, keep_stages: bool, upto: str = "llvm-ir-optimized", load: bool = True,
    variants: bool = True, generic: bool = False,
) -> Compiled:
    """:func:`_build`, timed as one compilation (:mod:`isozyme.timings`)."""
    from isozyme.timings import compilation

    name = getattr(spec.fn, "__qualname__", None) or getattr(spec.fn, "__name__", "?")
    with compilation(f"{spec.mode} of {name} ({spec.target})"):
        return _build(spec, keep_stages, upto, load, variants, generic)


def _build(
    spec: _Spec, keep_stages: bool, upto: str = "llvm-ir-optimized", load: bool = True,
    variants: bool = True, generic: bool = False,
) -> Compiled:
    """Trace, compile (for ``spec.target``) and load one signature; with ``upto``
    before the runtime's stages, stop there (the runner then does nothing).
    ``keep_stages``: record the text of every stage in ``Compiled.stages``;
    ``load=False``: only print (the LLVM IR stages without loading the code: no GPU
    nor C++ compiler needed); ``generic``: record the MLIR stages in MLIR's generic
    form (``--print-op-generic``).  A trace that needed argument shapes as Python ints is
    compiled for these shapes: with ``variants``, the result then compiles again per
    shape (:mod:`isozyme.shape_variants`)."""
    from isozyme.frontends.python import trace
    from isozyme.timings import phase
    from isozyme.shape_variants import compiled_variants, traced_places, traced_shapes

    if load and upto in RUNTIME_STAGES and spec.target == "cuda":
        host = _array_places(spec.annotations)[0]
        if host:
            raise AnnotationError(
                "the cuda target runs on device arrays, but these are host (numpy) "
                "arrays: " + ", ".join(host) + "; pass cupy arrays (cupy.asarray)"
            )

    stats["traces"] += 1
    n_user, places = len(spec.annotations), traced_places(spec)
    with phase("trace", "trace"):
        traced = trace(spec.fn, spec.trace_args, hidden_type=_hidden_type,
                       layouts=spec.layouts, shapes=traced_shapes(spec, places))
    guard = _reads_guard(spec, traced)  # before the spec's arguments are used below
    # What the runner checks before each call (read from the traced IR, before AD).
    fn_op = next(op for op in traced.module.ops
                 if isinstance(op, func.FuncOp) and op.sym_name.data == traced.func_name)
    written, collapsed = written_arguments(fn_op), collapsed_arguments(fn_op)
    n_user = len(spec.activities) - len(traced.hidden)  # (hidden ones come last)
    try:
        _WRITERS[spec.fn] = _WRITERS.get(spec.fn, False) or any(i < n_user for i in written)
    except TypeError:  # not weakly referenceable
        pass
    result_types = list(traced.result_types)
    # A function may return nothing and write its outputs into Duplicated arrays.
    if spec.seed_kinds is not None and (
        len(spec.seed_kinds) != len(result_types)
        or spec.seed_is_tuple != traced.returns_tuple
    ):
        def shape(n: int, is_tuple: bool) -> str:
            return f"a tuple of {n}" if is_tuple else "one value"

        raise AnnotationError(
            f"the seed must have the structure of the return value: "
            f"{getattr(spec.fn, '__name__', 'the function')} returns "
            f"{shape(len(result_types), traced.returns_tuple)}, the seed is "
            f"{shape(len(spec.seed_kinds), spec.seed_is_tuple)}"
        )
    ret_acts = _return_activities(spec, result_types)
    arg_types = list(traced.arg_types)
    sig = DerivativeSignature(
        tuple(spec.activities), tuple(ret_acts), spec.width,
        "reverse" if spec.mode.reverse else "forward",
    )
    add_request(traced.module, traced.func_name, arg_types, result_types, sig)
    stages: dict[str, str] = {}

    def record(stage: str, module) -> None:
        if keep_stages:
            stages[stage] = _stage_text(module, generic)

    target = get_target(spec.target)
    ir_upto = upto if upto not in RUNTIME_STAGES else target.stages[-1]
    from isozyme.runtime import disk_cache

    # A disk cache hit stands in for the artefact: no pipeline, no LLVM (only for code
    # that is loaded and whose stages are not recorded).
    cache_key = (disk_cache.front_key(traced.module, spec.target)
                 if load and not keep_stages and upto in RUNTIME_STAGES else None)
    artefact = disk_cache.lookup(cache_key) or run_pipeline(
        traced.module, target=target, upto=ir_upto, on_stage=record
    )
    if upto not in RUNTIME_STAGES or artefact is None:
        return Compiled(lambda anns: (), stages)
    if not load:
        from isozyme.runtime.jit import llvm_ir_stages

        host = artefact.module if isinstance(artefact, LLVMArtefact) else artefact.host
        stages["llvm-ir"], stages["llvm-ir-optimized"] = llvm_ir_stages(host)
        return Compiled(lambda anns: (), stages)

    from isozyme.runtime import load_artefact

    stats["compiles"] += 1
    compiled = load_artefact(artefact, cache_key)
    if keep_stages:
        stages["llvm-ir"] = compiled.llvm_ir
        stages["llvm-ir-optimized"] = compiled.llvm_ir_optimized
    with phase("runtime/entry", "runtime"):  # the callable that marshals arguments
        entry = compiled.entry(
            REQUEST_NAME, sig.operand_types(arg_types, result_types),
            sig.result_types(arg_types, result_types),
        )
        run = make_runner(
            spec, entry, sig, result_types, traced.returns_tuple,
            traced.shape_constraints, written, collapsed,
        )
    run.keepalive = compiled  # type: ignore[attr-defined]
    done = _guarded(Compiled(run, stages), spec, guard, len(traced.hidden))
    static = tuple(places[k] for k in sorted(traced.static_arguments))
    if variants and static:
        def rebuild(new: _Spec) -> tuple[Compiled, tuple]:
            places = traced_places(new)
            out = build(new, keep_stages=False, variants=False)
            return out, tuple(places[k] for k in sorted(out.static_arguments))

        return compiled_variants(spec, n_user, static, done, rebuild)
    done.static_arguments = traced.static_arguments
    return done
