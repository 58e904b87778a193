"""The pass pipeline, stage by stage (names used by ``--print-ir`` and the docs).

=================  ==========================================================
``traced``         frontend output plus the ``enzyme`` request
``optimized``      raise cf branches to scf, inline, fuse elementwise linalg, linalg
                   to parallel loops, canonicalize, CSE, DCE, LICM, hoist run-time
                   checks out of loops (before AD)
``differentiated`` ``enzyme-differentiate``: derivative functions generated
``simplified``     ``simplify-ad``, canonicalize, CSE, DCE, ``eliminate-dead-caches``,
                   LICM, ``split-accumulations``
=================  ==========================================================

Then the target's own stages (:mod:`isozyme.compiler.targets`): ``llvm`` for ``cpu``;
``gpu``, ``cuda``, ``host``, ``llvm`` for ``cuda`` and ``cuda-emu``. The runtime adds
``llvm-ir`` and ``llvm-ir-optimized`` (LLVM IR before and after LLVM's O3 pipeline).

Each stage's passes are named in :data:`STAGE_PIPELINES`, in xdsl-opt's spelling, and
built from the pass registry (:mod:`isozyme.compiler.passes.registry`).

**Custom passes.** An :class:`Insertion` puts a user's xDSL ``ModulePass`` es at a
named point: ``after``/``before`` a stage (``"differentiated"``, ``"llvm"``...) or a
registered pass (``"canonicalize"``: after/before each run of it, target passes
included). Insertions are active process-wide (:func:`insert`, :func:`remove`) or in a
``with`` block (:func:`extra_passes`: per thread and per asyncio task);
:class:`Pipeline` runs the active ones, and :func:`custom_passes_key` is part of the
compile-cache key. Each inserted pass adds the stage ``after:<pass name>`` (the IR
right after its last run) to the stages ``isozyme.ir`` and ``--print-ir`` know.
:mod:`isozyme.pipeline` is the public face of this module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from isozyme.compiler.context import make_context
from isozyme.compiler.passes.registry import (
    build_passes,
    parse_pass_pipeline,
    pass_names,
    pipeline_spelling,
)
from isozyme.compiler.passes.verify_buffer_lifetimes import VerifyBufferLifetimesPass
from isozyme.compiler.targets import (
    COMMON_STAGES,
    Artefact,
    OnStage,
    Target,
    get_target,
)
from isozyme.errors import IsozymeError
from isozyme.timings import phase

#: The IR stages of the ``cpu`` target (the compiler's; see :func:`stages_of`).
IR_STAGES = COMMON_STAGES + ("llvm",)
#: Every stage of the ``cpu`` target, the runtime's LLVM IR included.
ALL_STAGES = IR_STAGES + ("llvm-ir", "llvm-ir-optimized")

#: The passes of each target-independent stage, one pass per string, by registry name.
STAGE_PIPELINES: dict[str, tuple[str, ...]] = {
    "optimized": (
        # Whole-array code: fuse elementwise chains, then lower to loops over buffers
        # before AD, so that the loop and shadow-memory rules differentiate it (see
        # docs/architecture.md); parallel dimensions become scf.parallel, which stays
        # parallel through AD and becomes a kernel on GPU targets.
        # (calls with a user derivative rule stay calls until AD has used the rule)
        # cf branches raised to scf first: in every function, also those AD never
        # reaches, and before inlining (the inliner skips multi-block callees); what
        # cannot be raised stays multi-block for the lowering (strict=false).
        "lift-cf-to-scf{strict=false}",
        "inline{keep-ruled=true}",
        # one SSA value per array size, so inlined helpers' broadcast views fold and fuse
        "resolve-shaped-type-result-dims",
        "linalg-fuse-elementwise",
        "convert-linalg-to-parallel-loops",
        "lower-affine",
        "inline{keep-ruled=true}",
        "canonicalize",
        "cse",
        "dce",
        "licm",
        # Bounds checks of affine indices: once before each loop instead of per
        # iteration (after LICM, so that invariant sizes are outside the loops).
        "hoist-checks",
    ),
    "differentiated": ("enzyme-differentiate",),
    "simplified": (
        "simplify-ad",
        "inline",
        "canonicalize",
        "simplify-ad",
        "cse",
        "dce",
        "eliminate-dead-caches",
        "dce",
        "licm",
        # after LICM (a loop's zeroed adjoint is then seen dead); dce drops what
        # computed a dead store's value
        "eliminate-dead-stores",
        "dce",
        "split-accumulations",
        "gather-accumulations",
        "shrink-fills",
    ),
}


def stage_passes(stage: str) -> tuple[ModulePass, ...]:
    """Fresh instances of the passes of a target-independent ``stage``."""
    return build_passes(STAGE_PIPELINES[stage])


#: stage -> a function building its passes (what :data:`STAGE_PIPELINES` names).
STAGE_PASSES: dict[str, Callable[[], Sequence[ModulePass]]] = {
    s: partial(stage_passes, s) for s in STAGE_PIPELINES
}

#: Stages whose output is text, not a module: nothing can run right after them.
_TEXT_STAGES = frozenset({"cuda"})
#: Every stage any target has (to check insertion points).
_KNOWN_STAGES = ("traced", "optimized", "differentiated", "simplified", "gpu", "cuda",
                 "host", "llvm")


# -- custom passes at named points ----------------------------------------------------
def _pass_name(p: ModulePass) -> str:
    return getattr(type(p), "name", None) or type(p).__name__


def _identity(p: ModulePass) -> object:
    """What the cache key holds for ``p``: the pass itself when hashable (equal passes
    share compiled code), else its identity."""
    try:
        hash(p)
    except TypeError:
        return (type(p), id(p))
    return p


@dataclass(frozen=True, eq=False)
class Insertion:
    """Custom passes run ``after`` or ``before`` a stage (``at_stage``) or a registered
    pass (exactly one of the two is given). ``key`` identifies it in the compile-cache
    key."""

    passes: tuple[ModulePass, ...]
    after: str | None = None
    before: str | None = None
    at_stage: bool = True
    key: tuple = field(default=(), repr=False)

    @property
    def anchor(self) -> str:
        """The stage or pass name the passes are placed against."""
        return self.after if self.after is not None else self.before  # type: ignore[return-value]

    def stage_names(self) -> tuple[str, ...]:
        """The IR stages it adds: ``after:<name>`` per pass."""
        return tuple(f"after:{_pass_name(p)}" for p in self.passes)


def _as_passes(passes: ModulePass | str | Iterable[ModulePass | str]) -> tuple[ModulePass, ...]:
    """Normalise the ``passes`` argument: instances, or registered names in xdsl-opt's
    spelling."""
    items = [passes] if isinstance(passes, (ModulePass, str, type)) else list(passes)
    out: list[ModulePass] = []
    for p in items:
        if isinstance(p, str):
            out.extend(parse_pass_pipeline(p))
        elif isinstance(p, ModulePass):
            out.append(p)
        elif isinstance(p, type) and issubclass(p, ModulePass):
            raise IsozymeError(f"pass an instance of {p.__name__} (e.g. {p.__name__}()), "
                               "not the class")
        else:
            raise IsozymeError(f"not an xDSL ModulePass: {p!r}")
    if not out:
        raise IsozymeError("no passes to insert")
    return tuple(out)


def make_insertion(
    passes: ModulePass | str | Iterable[ModulePass | str],
    *,
    after: str | None = None,
    before: str | None = None,
) -> Insertion:
    """An :class:`Insertion`, checked: exactly one of ``after``/``before``, naming a
    stage (not ``cuda``, whose output is text; not ``before="traced"``) or a registered
    pass."""
    if (after is None) == (before is None):
        raise IsozymeError("give exactly one of after= and before= (a stage or a pass name)")
    anchor = after if after is not None else before
    assert anchor is not None
    if anchor not in _KNOWN_STAGES and anchor not in pass_names():
        raise IsozymeError(
            f"no stage or pass named {anchor!r}; stages: {', '.join(_KNOWN_STAGES)}; "
            "passes: see isozyme.pipeline.registered_passes()"
        )
    if (after in _TEXT_STAGES) or before == "host":
        raise IsozymeError("the cuda stage is text (CUDA C): insert passes after 'gpu' "
                           "or after 'host' instead")
    if before == "traced":
        raise IsozymeError("nothing runs before 'traced'; use after='traced'")
    ps = _as_passes(passes)
    key = (after, before, tuple(_identity(p) for p in ps))
    return Insertion(ps, after, before, anchor in _KNOWN_STAGES, key)


#: (insertions, their keys): process-wide ones, and those of ``with`` blocks.
_GLOBAL: tuple[tuple[Insertion, ...], tuple] = ((), ())
_LOCAL: ContextVar[tuple[tuple[Insertion, ...], tuple]] = ContextVar(
    "isozyme_custom_passes", default=((), ())
)


#: The insertions of the pipeline running now (:meth:`Pipeline.run`), None outside.
_RUNNING: ContextVar[tuple[Insertion, ...] | None] = ContextVar(
    "isozyme_running_insertions", default=None
)


#: ``on_stage`` of the pipeline running now, for the custom passes a target runs.
_ON_STAGE: ContextVar[OnStage | None] = ContextVar("isozyme_on_stage", default=None)


@dataclass(frozen=True)
class _Reported(ModulePass):
    """A custom pass in a target's list while a pipeline runs: after it, the stage
    ``after:<name>`` is reported to the pipeline's ``on_stage``."""

    name = "isozyme-reported-pass"

    inner: ModulePass

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        """Run the wrapped pass, then report its stage."""
        self.inner.apply(ctx, op)
        on_stage = _ON_STAGE.get()
        if on_stage is not None:
            on_stage(f"after:{_pass_name(self.inner)}", op)


def active_insertions() -> tuple[Insertion, ...]:
    """The insertions in force here: the process-wide ones, then those of the
    enclosing ``with extra_passes(...)`` blocks, outermost first."""
    return _GLOBAL[0] + _LOCAL.get()[0]


def custom_passes_key() -> tuple:
    """The part of the compile-cache key that names the active custom passes (``()``
    when there is none): code compiled without a pass is not reused with it."""
    return _GLOBAL[1] + _LOCAL.get()[1]


def _pack(insertions: tuple[Insertion, ...]) -> tuple[tuple[Insertion, ...], tuple]:
    return insertions, tuple(i.key for i in insertions)


def insert(
    passes: ModulePass | str | Iterable[ModulePass | str],
    *,
    after: str | None = None,
    before: str | None = None,
) -> Insertion:
    """Insert ``passes`` at a point of every pipeline from now on, process-wide; return
    the :class:`Insertion` (hand it to :func:`remove`). See :func:`extra_passes`."""
    global _GLOBAL
    ins = make_insertion(passes, after=after, before=before)
    _GLOBAL = _pack(_GLOBAL[0] + (ins,))
    return ins


def remove(what: Insertion | str | None = None) -> None:
    """Undo :func:`insert`: one :class:`Insertion`, every insertion of a pass named
    ``what``, or (``None``) every process-wide insertion. Removing what is not
    inserted raises :class:`IsozymeError`."""
    global _GLOBAL
    current = _GLOBAL[0]
    if what is None:
        kept: tuple[Insertion, ...] = ()
    elif isinstance(what, Insertion):
        kept = tuple(i for i in current if i is not what)
    else:
        kept = tuple(i for i in current if what not in {_pass_name(p) for p in i.passes})
    if what is not None and len(kept) == len(current):
        raise IsozymeError(f"no custom pass inserted as {what!r}")
    _GLOBAL = _pack(kept)


@contextmanager
def extra_passes(
    passes: ModulePass | str | Iterable[ModulePass | str],
    *,
    after: str | None = None,
    before: str | None = None,
) -> Iterator[Insertion]:
    """Run ``passes`` at a named point of the pipeline for the calls made in the
    ``with`` block (per thread and per asyncio task)::

        with isozyme.pipeline.extra_passes([MyPass()], after="differentiated"):
            isozyme.autodiff(Reverse, f, Active, Active(1.0))
            print(isozyme.ir(Reverse, f, Active, Active(1.0), stage="after:my-pass"))

    ``after``/``before``: a stage (``traced``, ``optimized``, ``differentiated``,
    ``simplified``, a target's ``gpu``/``host``/``llvm``) or a registered pass name
    (the passes run after/before each run of it, in any stage or target). A point the
    target's pipeline lacks (``gpu`` on ``cpu``) does nothing. ``passes``: xDSL
    ``ModulePass`` instances, or registered pass names in xdsl-opt's spelling."""
    ins = make_insertion(passes, after=after, before=before)
    token = _LOCAL.set(_pack(_LOCAL.get()[0] + (ins,)))
    try:
        yield ins
    finally:
        _LOCAL.reset(token)


def with_insertions(
    passes: Sequence[ModulePass], insertions: Sequence[Insertion] | None = None
) -> tuple[ModulePass, ...]:
    """``passes`` with the custom passes anchored on their names (``after``/``before``
    a pass) placed around each of them (how the targets build their pass lists)."""
    report = False
    if insertions is None:
        running = _RUNNING.get()
        insertions = active_insertions() if running is None else running
        report = running is not None  # a target building its list in a pipeline run
    ins = [i for i in insertions if not i.at_stage]
    if not ins:
        return tuple(passes)

    def placed(q: ModulePass) -> ModulePass:
        return _Reported(q) if report else q

    out: list[ModulePass] = []
    for p in passes:
        name = _pass_name(p)
        out.extend(placed(q) for i in ins if i.before == name for q in i.passes)
        out.append(p)
        out.extend(placed(q) for i in ins if i.after == name for q in i.passes)
    return tuple(out)


# -- the pipeline ---------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """A target-independent stage: its name and its passes, in order."""

    name: str
    passes: tuple[ModulePass, ...] = ()


@dataclass(frozen=True)
class Pipeline:
    """A pass pipeline: named :class:`Stage` s run here, then (optionally) a target's
    stages, with :class:`Insertion` s of custom passes.

    ``Pipeline.default(target="cpu")`` is the one ``autodiff`` runs (with the active
    insertions); ``Pipeline.parse("canonicalize,cse")`` is a list of passes in
    xdsl-opt's spelling. Pipelines are values: :meth:`insert` returns a new one."""

    stages: tuple[Stage, ...]
    target: Target | None = None
    insertions: tuple[Insertion, ...] = ()

    @classmethod
    def default(cls, target: str | Target = "cpu", *, custom: bool = True) -> Pipeline:
        """autodiff's pipeline for ``target``: ``traced``, ``optimized``,
        ``differentiated``, ``simplified``, then the target's stages; with the active
        insertions unless ``custom`` is false."""
        stages = (Stage("traced"), *(Stage(s, stage_passes(s)) for s in COMMON_STAGES[1:]))
        return cls(stages, get_target(target), active_insertions() if custom else ())

    @classmethod
    def parse(cls, spec: str, *, stage: str = "passes") -> Pipeline:
        """A pipeline of one stage named ``stage`` from ``spec`` in xdsl-opt's
        spelling (``a,b{opt=1},c``), without target."""
        return cls((Stage(stage, parse_pass_pipeline(spec)),))

    def insert(
        self,
        passes: ModulePass | str | Iterable[ModulePass | str],
        *,
        after: str | None = None,
        before: str | None = None,
    ) -> Pipeline:
        """This pipeline with ``passes`` inserted (see :func:`extra_passes`; here a
        stage name may also be one of this pipeline's own stages)."""
        own = self._own_stage_names()
        if (after is None) != (before is None) and (after in own or before in own):
            ins = Insertion(_as_passes(passes), after, before, at_stage=True)
        else:
            ins = make_insertion(passes, after=after, before=before)
        return Pipeline(self.stages, self.target, (*self.insertions, ins))

    def _own_stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def _base_stages(self) -> tuple[str, ...]:
        target = self.target.stages if self.target is not None else ()
        return self._own_stage_names() + target

    def _after_stage(self, ins: Insertion) -> str | None:
        """The stage after which a stage-anchored insertion runs here (None: not in
        this pipeline)."""
        base = self._base_stages()
        if ins.after is not None:
            return ins.after if ins.after in base else None
        if ins.before not in base:
            return None
        i = base.index(ins.before)  # type: ignore[arg-type]
        return base[i - 1] if i > 0 else None

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The IR stages this pipeline produces, in order, with ``after:<pass>`` for
        the custom passes (where their last run is)."""
        names: list[str] = []
        for s in self._base_stages():
            for ins in self.insertions:
                if not ins.at_stage and self._runs_in(ins, s):
                    names.extend(ins.stage_names())
            names.append(s)
            for ins in self.insertions:
                if ins.at_stage and self._after_stage(ins) == s:
                    names.extend(ins.stage_names())
        seen: dict[str, int] = {}
        for i, n in enumerate(names):
            seen[n] = i  # the last occurrence
        return tuple(n for i, n in enumerate(names) if seen[n] == i)

    def _runs_in(self, ins: Insertion, stage: str) -> bool:
        """Whether a pass-anchored insertion runs in ``stage`` of this pipeline."""
        if self.target is not None and stage in self.target.stages:
            names = [_pass_name(p) for p in self.target.stage_passes(stage)]
        else:
            names = [_pass_name(p) for s in self.stages if s.name == stage for p in s.passes]
        return ins.anchor in names

    def passes(self, stage: str | None = None) -> tuple[ModulePass, ...]:
        """The passes of one of this pipeline's own stages (default: all of them, in
        order), with the custom passes anchored on pass names in place."""
        stages = [s for s in self.stages if stage is None or s.name == stage]
        if stage is not None and not stages:
            raise IsozymeError(f"no stage {stage!r} in this pipeline; stages: "
                               f"{', '.join(self._own_stage_names())}")
        return with_insertions([p for s in stages for p in s.passes], self.insertions)

    def __str__(self) -> str:
        """The passes of its own stages in xdsl-opt's spelling (what
        :meth:`Pipeline.parse` reads back)."""
        return pipeline_spelling(self.passes())

    def run(
        self,
        module: ModuleOp,
        *,
        upto: str | None = None,
        on_stage: OnStage | None = None,
        ctx: Context | None = None,
    ) -> Artefact | None:
        """Run the stages up to and including ``upto`` (default: all), in place; return
        the target's artefact when its last stage ran, else None.

        ``on_stage(name, ir)`` is called after each stage (for the first stage, which
        is ``traced`` in :meth:`default`, before anything runs) with the module, or the
        text of a stage that is text (``cuda``). Passes inserted after a stage run
        before the run stops there. ``upto`` may name a custom stage
        (``after:<pass>``): the run goes to the end of the stage that runs it."""
        known = self.stage_names
        upto = upto or known[-1]
        if upto not in known:
            where = f"the {self.target.name} target" if self.target else "this pipeline"
            raise IsozymeError(f"{where} has no IR stage {upto!r}; stages: {', '.join(known)}")
        upto = self._base_stage_of(upto)
        ctx = ctx or make_context()
        # The target builds its pass lists from the insertions of the running pipeline.
        token, reporting = _RUNNING.set(self.insertions), _ON_STAGE.set(on_stage)
        try:
            return self._run(module, upto, on_stage, ctx)
        finally:
            _ON_STAGE.reset(reporting)
            _RUNNING.reset(token)

    def _base_stage_of(self, name: str) -> str:
        """The base stage whose run includes stage ``name`` (itself when base): for
        ``after:<pass>``, the stage after which (anchored on a stage) or in which
        (anchored on a pass) that pass runs last."""
        base = self._base_stages()
        if name in base:
            return name
        found = base[-1]
        for ins in self.insertions:
            if name not in ins.stage_names():
                continue
            if ins.at_stage:
                found = self._after_stage(ins) or found
            else:
                found = next((s for s in reversed(base) if self._runs_in(ins, s)), found)
        return found

    def _run_after(self, stage: str, module: object, ctx: Context,
                   on_stage: OnStage | None) -> None:
        """Run the insertions anchored after ``stage`` (or before the next one)."""
        for ins in self.insertions:
            if ins.at_stage and self._after_stage(ins) == stage:
                if not isinstance(module, ModuleOp):
                    raise IsozymeError(f"stage {stage!r} is text: no pass can run after it")
                for p in ins.passes:
                    with phase(f"{stage}/{_pass_name(p)}"):
                        p.apply(ctx, module)
                    if on_stage is not None:
                        on_stage(f"after:{_pass_name(p)}", module)

    def _run(self, module: ModuleOp, upto: str, on_stage: OnStage | None,
             ctx: Context) -> Artefact | None:
        # the test suite's check that no stage reads a freed buffer (autodiff's stages)
        verify = os.environ.get("ISOZYME_VERIFY") == "1" and self.target is not None
        custom = {id(p): f"after:{_pass_name(p)}"
                  for ins in self.insertions if not ins.at_stage for p in ins.passes}
        for stage in self.stages:
            for p in self.passes(stage.name) if stage.passes else ():
                with phase(f"{stage.name}/{_pass_name(p)}"):
                    p.apply(ctx, module)
                if on_stage is not None and id(p) in custom:
                    on_stage(custom[id(p)], module)
            if verify:
                VerifyBufferLifetimesPass().apply(ctx, module)
            if on_stage is not None:
                on_stage(stage.name, module)
            self._run_after(stage.name, module, ctx, on_stage)
            if stage.name == upto:
                return None
        if self.target is None:
            return None

        def hook(name: str, ir: object) -> None:
            if on_stage is not None:
                on_stage(name, ir)
            if name not in _TEXT_STAGES:
                self._run_after(name, ir, ctx, on_stage)

        return self.target.compile(module, ctx, upto=upto, on_stage=hook)


def run_pipeline(
    module: ModuleOp,
    *,
    target: str | Target = "cpu",
    upto: str | None = None,
    on_stage: OnStage | None = None,
    ctx: Context | None = None,
) -> Artefact | None:
    """Run the stages after ``traced`` up to and including ``upto`` (by default the
    target's last IR stage), in place; return the target's artefact when its stages
    ran, else None.

    ``on_stage(name, ir)`` is called after each stage (and for ``traced`` first) with
    the module, or the text of a stage that is text (``cuda``), e.g. to print it.
    The active custom passes (:func:`insert`, :func:`extra_passes`) run too.
    """
    with phase("pipeline/setup", "setup"):  # the first time: imports the passes
        pipeline = Pipeline.default(target)
    return pipeline.run(module, upto=upto, on_stage=on_stage, ctx=ctx)


def stages_of(target: str | Target) -> tuple[str, ...]:
    """The IR stages of ``target``'s pipeline with the active custom passes (without
    the runtime's LLVM IR stages)."""
    return Pipeline.default(target).stage_names


__all__ = [
    "ALL_STAGES",
    "IR_STAGES",
    "STAGE_PASSES",
    "STAGE_PIPELINES",
    "Insertion",
    "Pipeline",
    "Stage",
    "active_insertions",
    "custom_passes_key",
    "extra_passes",
    "insert",
    "make_insertion",
    "remove",
    "run_pipeline",
    "stage_passes",
    "stages_of",
    "with_insertions",
]
