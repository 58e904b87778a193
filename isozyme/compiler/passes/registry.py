"""The pass registry: every pass the pipeline and the targets run, once, by name.

One table (:data:`_BUILTIN`) maps each MLIR-style pass name to the module and class
that implement it: isozyme's own passes (:mod:`isozyme.compiler.passes`), the lowering
to the ``llvm`` dialect (:mod:`isozyme.compiler.lowering`), the GPU targets' passes
(:mod:`isozyme.compiler.gpu`, :mod:`isozyme.compiler.targets`) and the xDSL passes the
pipeline uses (``dce``, ``licm``, ``lower-affine``). Classes
are imported on first use, so importing the registry imports no pass.

The pipeline (:data:`isozyme.compiler.pipeline.STAGE_PIPELINES`) and the targets name
their passes here and build them with :func:`build_passes`, in xdsl-opt's spelling
(``inline{keep-ruled=true},canonicalize``), parsed by xDSL's own
:func:`xdsl.utils.arg_spec.parse_pipeline`.

What the registry knows of a pass, :func:`pass_info` returns as a :class:`PassInfo`
(name, class, options with type, default and help, docstring): enough to generate the
reference documentation. :func:`run_pass` runs one by name on a module. A user's pass
joins with :func:`register_pass` (then ``Pipeline.parse`` and ``run_pass`` know it).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, get_type_hints

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.arg_spec import ArgSpec, parse_pipeline
from xdsl.utils.exceptions import ArgSpecParseError
from xdsl.utils.hints import isa, type_repr

from isozyme.errors import IsozymeError

#: name -> (module, class, origin) of every built-in pass, in the order of the docs:
#: isozyme's target-independent passes, the ``llvm`` lowering, the GPU targets', xDSL's.
_BUILTIN: dict[str, tuple[str, str, str]] = {
    # -- isozyme: before and after AD (isozyme.compiler.passes)
    "inline": ("isozyme.compiler.passes.inline", "InlinePass", "isozyme"),
    "resolve-shaped-type-result-dims": (
        "isozyme.compiler.passes.resolve_shaped_dims", "ResolveShapedTypeResultDimsPass",
        "isozyme"),
    "linalg-fuse-elementwise": (
        "isozyme.compiler.passes.fuse_elementwise", "FuseElementwisePass", "isozyme"),
    "convert-linalg-to-parallel-loops": (
        "isozyme.compiler.passes.convert_linalg_to_parallel_loops",
        "ConvertLinalgToParallelLoopsPass", "isozyme"),
    "hoist-checks": ("isozyme.compiler.passes.hoist_checks", "HoistChecksPass", "isozyme"),
    "enzyme-differentiate": (
        "isozyme.compiler.passes.differentiate", "DifferentiatePass", "isozyme"),
    "enzyme": ("isozyme.compiler.passes.enzyme", "EnzymePass", "isozyme"),
    "lift-cf-to-scf": ("isozyme.compiler.passes.lift_cf_to_scf", "LiftCfToScfPass", "isozyme"),
    "simplify-ad": ("isozyme.compiler.passes.simplify_ad", "SimplifyADPass", "isozyme"),
    "eliminate-dead-caches": (
        "isozyme.compiler.passes.eliminate_dead_caches", "EliminateDeadCachesPass", "isozyme"),
    "split-accumulations": (
        "isozyme.compiler.passes.split_accumulations", "SplitAccumulationsPass", "isozyme"),
    "gather-accumulations": (
        "isozyme.compiler.passes.gather_accumulations", "GatherAccumulationsPass", "isozyme"),
    "eliminate-dead-stores": (
        "isozyme.compiler.passes.eliminate_dead_stores", "EliminateDeadStoresPass", "isozyme"),
    "shrink-fills": ("isozyme.compiler.passes.shrink_fills", "ShrinkFillsPass", "isozyme"),
    # isozyme's own CSE: xDSL's is quadratic on long straight-line code (see cse.py)
    "cse": ("isozyme.compiler.passes.cse", "CSEPass", "isozyme"),
    # xDSL's, with loop constants hoisted in one walk first (see canonicalize.py)
    "canonicalize": ("isozyme.compiler.passes.canonicalize", "CanonicalizePass", "isozyme"),
    "verify-buffer-lifetimes": (
        "isozyme.compiler.passes.verify_buffer_lifetimes", "VerifyBufferLifetimesPass",
        "isozyme"),
    # -- isozyme: lowering to the llvm dialect (isozyme.compiler.lowering)
    "convert-parallel-to-for": (
        "isozyme.compiler.lowering.convert_parallel_to_for", "ConvertParallelToForPass",
        "isozyme"),
    "outline-parallel-loops-cpu": (
        "isozyme.compiler.lowering.outline_parallel_loops_cpu",
        "OutlineParallelLoopsCpuPass", "isozyme"),
    "convert-parallel-dispatch-to-llvm": (
        "isozyme.compiler.lowering.convert_parallel_dispatch_to_llvm",
        "ConvertParallelDispatchToLLVMPass", "isozyme"),
    "expand-memref-copy": (
        "isozyme.compiler.lowering.expand_memref_copy", "ExpandMemrefCopyPass", "isozyme"),
    "convert-scf-to-cf": (
        "isozyme.compiler.lowering.convert_scf_to_cf", "ConvertScfToCfPass", "isozyme"),
    "convert-memref-to-llvm": (
        "isozyme.compiler.lowering.convert_memref_to_llvm", "ConvertMemrefToLLVMPass",
        "isozyme"),
    "convert-arith-to-llvm": (
        "isozyme.compiler.lowering.convert_arith_to_llvm", "ConvertArithToLLVMPass",
        "isozyme"),
    "convert-math-to-llvm": (
        "isozyme.compiler.lowering.convert_math_to_llvm", "ConvertMathToLLVMPass",
        "isozyme"),
    "convert-enzyme-cache-to-llvm": (
        "isozyme.compiler.lowering.convert_enzyme_cache_to_llvm",
        "ConvertEnzymeCacheToLLVMPass", "isozyme"),
    "convert-func-to-llvm": (
        "isozyme.compiler.lowering.convert_func_to_llvm", "ConvertFuncToLLVMPass",
        "isozyme"),
    "convert-cf-to-llvm": (
        "isozyme.compiler.lowering.convert_cf_to_llvm", "ConvertCfToLLVMPass", "isozyme"),
    "convert-isz-check-to-llvm": (
        "isozyme.compiler.lowering.convert_check_to_llvm", "ConvertCheckToLLVMPass",
        "isozyme"),
    "add-c-entry-points": (
        "isozyme.compiler.lowering.add_c_entry_points", "AddCEntryPointsPass", "isozyme"),
    # -- isozyme: the GPU targets (isozyme.compiler.gpu, isozyme.compiler.targets)
    "parallelize-host-loops": (
        "isozyme.compiler.targets.parallel_host_loops", "ParallelizeHostLoopsPass",
        "isozyme"),
    "wrap-serial-loops": (
        "isozyme.compiler.targets.serial_kernels", "WrapSerialLoopsPass", "isozyme"),
    "gpu-outline-parallel-loops": (
        "isozyme.compiler.gpu.outline_parallel_loops", "OutlineParallelLoopsPass",
        "isozyme"),
    "convert-gpu-launch-to-llvm": (
        "isozyme.compiler.lowering.convert_gpu_launch_to_llvm",
        "ConvertGpuLaunchToLLVMPass", "isozyme"),
    "convert-host-memory-access-to-copies": (
        "isozyme.compiler.targets.cuda", "ConvertHostMemoryAccessToCopiesPass", "isozyme"),
    "use-device-allocator": (
        "isozyme.compiler.targets.cuda", "UseDeviceAllocatorPass", "isozyme"),
    # -- xDSL's generic passes
    "dce": ("xdsl.transforms.dead_code_elimination", "DeadCodeElimination", "xdsl"),
    "licm": ("xdsl.transforms.loop_invariant_code_motion", "LoopInvariantCodeMotionPass",
             "xdsl"),
    "lower-affine": ("xdsl.transforms.lower_affine", "LowerAffinePass", "xdsl"),
}

#: Docstrings for the xDSL passes that have none (or a terse one) upstream.
_XDSL_DOCS: dict[str, str] = {
    "dce": "Dead code elimination: erase ops without side effects whose results are "
           "unused, and unreachable blocks.",
    "licm": "Loop-invariant code motion: move ops without side effects out of loops when "
            "their operands are defined outside the loop.",
    "lower-affine": "Lower the ``affine`` dialect (``affine.apply``, ``affine.for``, "
                    "``affine.load``...) to ``arith``, ``scf`` and ``memref``.",
}

#: Passes registered at run time (:func:`register_pass`): name -> class.
_USER: dict[str, type[ModulePass]] = {}


@dataclass(frozen=True)
class PassOption:
    """One option of a pass: a field of its dataclass.

    ``name`` is the spelling of pipelines (``keep-ruled``), ``field`` the Python
    keyword (``keep_ruled``); ``type`` is the annotation as text, ``default`` the
    default value (``dataclasses.MISSING``: required), ``help`` one line from the
    field's ``metadata["help"]``."""

    name: str
    field: str
    type: str
    default: Any
    help: str

    @property
    def required(self) -> bool:
        """Whether a pipeline must give this option (it has no default)."""
        return self.default is dataclasses.MISSING

    @property
    def default_text(self) -> str:
        """The default as a pipeline spells it (``true``, ``"text"``, ``1,2``), or
        ``(required)`` (shown by ``isozyme-opt --list-passes`` and ``docs/passes.md``)."""
        return "(required)" if self.required else _spell(self.default)


def _spell(value: Any) -> str:
    """A value as a pipeline spells it (``true``, ``"text"``, ``1,2``)."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return ",".join(_spell(v) for v in value) or "(empty)"
    return str(value)


@dataclass(frozen=True)
class PassInfo:
    """What the registry knows of one pass (the record the docs are generated from).

    ``name``: the MLIR-style name; ``cls``: the :class:`~xdsl.passes.ModulePass`;
    ``options``: its :class:`PassOption` s; ``doc``: its docstring, dedented;
    ``origin``: ``"isozyme"``, ``"xdsl"`` or ``"user"``; ``module``: where ``cls`` is
    defined."""

    name: str
    cls: type[ModulePass]
    options: tuple[PassOption, ...]
    doc: str
    origin: str
    module: str

    @property
    def summary(self) -> str:
        """The first sentence (up to the first blank line) of ``doc``, on one line."""
        return " ".join(self.doc.split("\n\n")[0].split())

    def build(self, **options: Any) -> ModulePass:
        """An instance with ``options`` (Python keywords or pipeline spellings);
        unknown or ill-typed options raise :class:`IsozymeError`."""
        fields = {o.field: o for o in self.options}
        hints = get_type_hints(self.cls)
        kwargs: dict[str, Any] = {}
        for key, value in options.items():
            opt = fields.get(key.replace("-", "_"))
            if opt is None:
                raise IsozymeError(_unknown_option(self, key))
            if not isa(value, hints[opt.field]):
                raise IsozymeError(f"pass {self.name!r}: option {opt.name!r} takes "
                                   f"{opt.type}, not {value!r}")
            kwargs[opt.field] = value
        missing = [o.name for o in self.options if o.required and o.field not in kwargs]
        if missing:
            raise IsozymeError(f"pass {self.name!r} requires option(s) {', '.join(missing)}")
        try:
            return self.cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise IsozymeError(f"pass {self.name!r}: bad options: {_one_line(e)}") from None

    def from_spec(self, spec: ArgSpec) -> ModulePass:
        """An instance from a parsed pipeline element (``name{opt=value}``)."""
        for key in spec.parameters:
            if key.replace("-", "_") not in {o.field for o in self.options}:
                raise IsozymeError(_unknown_option(self, key))
        try:
            return self.cls.from_spec(spec)
        except (TypeError, ValueError) as e:
            raise IsozymeError(f"pass {self.name!r}: bad options: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _unknown_option(info: PassInfo, key: str) -> str:
    known = ", ".join(o.name for o in info.options) or "none"
    return f"pass {info.name!r} has no option {key!r}; its options: {known}"


def _options(cls: type[ModulePass]) -> tuple[PassOption, ...]:
    """The options of ``cls``: its init fields, typed, with defaults and help."""
    if not dataclasses.is_dataclass(cls):
        return ()
    hints = get_type_hints(cls)
    out: list[PassOption] = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name == "name":
            continue
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out.append(PassOption(
            name=f.name.replace("_", "-"), field=f.name,
            type=type_repr(hints.get(f.name, f.type)), default=default,
            help=" ".join(str(f.metadata.get("help", "")).split()),
        ))
    return tuple(out)


def _info(name: str, cls: type[ModulePass], origin: str) -> PassInfo:
    doc = inspect.cleandoc(cls.__doc__ or "")
    if origin == "xdsl" and name in _XDSL_DOCS:
        doc = _XDSL_DOCS[name]
    return PassInfo(name, cls, _options(cls), doc, origin, cls.__module__)


@cache
def _builtin_info(name: str) -> PassInfo:
    module, cls_name, origin = _BUILTIN[name]
    cls = getattr(importlib.import_module(module), cls_name)
    assert cls.name == name, f"{module}.{cls_name}.name is {cls.name!r}, not {name!r}"
    return _info(name, cls, origin)


def pass_names() -> tuple[str, ...]:
    """The names of every registered pass: the built-ins in the docs' order, then the
    user's (imports nothing)."""
    return (*_BUILTIN, *(n for n in _USER if n not in _BUILTIN))


def pass_info(name: str) -> PassInfo:
    """The record of the pass called ``name``; an unknown name raises
    :class:`IsozymeError` listing the known ones."""
    cls = _USER.get(name)
    if cls is not None:
        return _info(name, cls, "user")
    if name in _BUILTIN:
        return _builtin_info(name)
    raise IsozymeError(f"unknown pass {name!r}; passes: {', '.join(sorted(pass_names()))}")


def registered_passes() -> tuple[PassInfo, ...]:
    """The records of every registered pass, in :func:`pass_names`'s order."""
    return tuple(pass_info(n) for n in pass_names())


def available_passes() -> dict[str, type[ModulePass]]:
    """Pass name -> class, for ``isozyme-opt`` and the helpers that look passes up by
    name (the registry's view; the classes are imported)."""
    return {info.name: info.cls for info in registered_passes()}


def pass_factories() -> dict[str, Callable[[], type[ModulePass]]]:
    """Pass name -> a function returning its class, as ``xdsl.universe.Universe`` and
    ``PassPipeline.parse_spec`` take them (imports each class only when called)."""
    return {n: (lambda n=n: pass_info(n).cls) for n in pass_names()}


def register_pass(cls: type[ModulePass], *, replace: bool = False) -> type[ModulePass]:
    """Register a user's pass under ``cls.name`` so that pipelines and
    :func:`run_pass` find it by name; usable as a class decorator. A name already
    registered raises :class:`IsozymeError` unless ``replace`` (a built-in can not
    be replaced)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise IsozymeError(f"{cls.__name__} has no pass name (a class attribute 'name')")
    if name in _BUILTIN or (name in _USER and not replace and _USER[name] is not cls):
        raise IsozymeError(f"a pass named {name!r} is already registered")
    _USER[name] = cls
    return cls


def unregister_pass(name: str) -> None:
    """Forget the user's pass ``name`` (see :func:`register_pass`)."""
    _USER.pop(name, None)


@cache
def _parsed(spec: str) -> tuple[ArgSpec, ...]:
    try:
        return tuple(parse_pipeline(spec))
    except ArgSpecParseError as e:  # a BaseException in xDSL: keep it from escaping
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise IsozymeError(
            f"bad pass pipeline {spec!r}: {lines[-1] if lines else 'does not parse'}"
        ) from None


def parse_pass_pipeline(spec: str) -> tuple[ModulePass, ...]:
    """The passes of ``spec``, in xdsl-opt's spelling: ``a,b{opt=1 other=x},c``
    (parsed by xDSL's :func:`~xdsl.utils.arg_spec.parse_pipeline`). Unknown passes
    or options raise :class:`IsozymeError`."""
    return tuple(pass_info(s.name).from_spec(s) for s in _parsed(spec))


def build_passes(specs: Iterable[str]) -> tuple[ModulePass, ...]:
    """The passes of several pipeline strings, concatenated (how the pipeline and the
    targets build their lists: one string per pass)."""
    return tuple(p for spec in specs for p in parse_pass_pipeline(spec))


def make_pass(name: str, **options: Any) -> ModulePass:
    """The pass ``name`` built with ``options`` (Python keywords or ``a-b``
    spellings): ``make_pass("inline", keep_ruled=True)``."""
    return pass_info(name).build(**options)


def run_pass(
    module: ModuleOp,
    name: str | ModulePass | Sequence[ModulePass],
    ctx: Context | None = None,
    **options: Any,
) -> ModuleOp:
    """Run a registered pass on ``module`` in place and return it.

    ``name``: a pass name (``run_pass(m, "inline", keep_ruled=True)``), a pipeline in
    xdsl-opt's spelling (``run_pass(m, "canonicalize,cse")``; options only inside the
    string then), a pass instance, or a sequence of them. ``ctx``: by default isozyme's
    context (every dialect of its IR stages)."""
    if isinstance(name, ModulePass):
        passes: tuple[ModulePass, ...] = (name,)
    elif isinstance(name, str):
        if options:
            passes = (make_pass(name, **options),)
        else:
            passes = parse_pass_pipeline(name)
    else:
        passes = tuple(name)
    if ctx is None:
        from isozyme.compiler.context import make_context  # noqa: PLC0415

        ctx = make_context()
    for p in passes:
        p.apply(ctx, module)
    return module


def pipeline_spelling(passes: Iterable[ModulePass]) -> str:
    """``passes`` in xdsl-opt's spelling (``inline{keep-ruled=true},cse``), options at
    their default left out (the inverse of :func:`parse_pass_pipeline`)."""
    out = []
    for p in passes:
        spec = p.spec()
        params = " ".join(
            ArgSpec._spec_parameter_list_type_str(k.replace("_", "-"), v)
            for k, v in spec.parameters.items()
        )
        out.append(f"{spec.name}{{{params}}}" if params else spec.name)
    return ",".join(out)


__all__ = [
    "PassInfo",
    "PassOption",
    "available_passes",
    "build_passes",
    "make_pass",
    "parse_pass_pipeline",
    "pass_factories",
    "pass_info",
    "pass_names",
    "pipeline_spelling",
    "register_pass",
    "registered_passes",
    "run_pass",
    "unregister_pass",
]
