"""Compilation targets, one module each (in the manner of xDSL's backends).

A :class:`Target` takes a module at the ``simplified`` stage (the end of the
target-independent pipeline of :mod:`isozyme.compiler.pipeline`), runs the IR stages
it adds (:attr:`Target.stages`) and returns the artefact it emits. The runtime has one
executor per artefact kind (``runtime/jit.py`` for LLVM, ``runtime/cuda_emu.py`` and
``runtime/cuda.py`` for the GPU targets); the compiler never imports the runtime.

========== ===================================================== ======================
target     stages after ``simplified``                           artefact
========== ===================================================== ======================
cpu        ``llvm``                                              :class:`LLVMArtefact`
cuda       ``gpu``, ``cuda``, ``host``, ``llvm``                 :class:`GpuArtefact`
cuda-emu   ``gpu``, ``cuda``, ``host``, ``llvm``                 :class:`GpuArtefact`
========== ===================================================== ======================

The runtime adds ``llvm-ir`` and ``llvm-ir-optimized`` (LLVM IR of the ``llvm``-stage
module, before and after LLVM's O3) for every target.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from isozyme.errors import IsozymeError

#: The target-independent stages, run by :func:`isozyme.compiler.pipeline.run_pipeline`.
COMMON_STAGES: tuple[str, ...] = ("traced", "optimized", "differentiated", "simplified")

#: The stages the runtime adds when it compiles a target's ``llvm``-stage module.
RUNTIME_STAGES: tuple[str, ...] = ("llvm-ir", "llvm-ir-optimized")

#: Called after each stage with its name and its IR (a module, or text such as CUDA C).
OnStage = Callable[[str, object], None]


@dataclass
class LLVMArtefact:
    """What the ``cpu`` target emits: the ``llvm``-dialect module with its C entry
    points (``isozyme.abi.ENTRY_PREFIX``)."""

    module: ModuleOp


@dataclass
class GpuArtefact:
    """What the ``cuda`` and ``cuda-emu`` targets emit.

    ``host``: the host program in the ``llvm`` dialect (C entry points, launches through
    ``launch_symbol`` of the kernel handles in ``isozyme.abi.KERNEL_TABLE``);
    ``kernels``: the kernel names, in the order of the table; ``source``: the kernels'
    source (CUDA C for ``cuda``, the emulation's C++ for ``cuda-emu``)."""

    target: str
    host: ModuleOp
    kernels: tuple[str, ...]
    source: str
    launch_symbol: str


Artefact = LLVMArtefact | GpuArtefact


class Target(ABC):
    """A compilation target: its stages after ``simplified``, its ``llvm`` lowering
    passes and its compile step."""

    #: the name users pass (``isozyme.target("cuda")``)
    name: ClassVar[str]
    #: the IR stages this target adds after ``simplified``, in order
    stages: ClassVar[tuple[str, ...]]

    @classmethod
    def all_stages(cls) -> tuple[str, ...]:
        """Every stage of this target, in order: common, its own, the runtime's."""
        return COMMON_STAGES + cls.stages + RUNTIME_STAGES

    def stage_passes(self, stage: str) -> Sequence[ModulePass]:
        """The passes this target runs in its IR stage ``stage`` (none by default)."""
        del stage
        return ()

    @abstractmethod
    def lowering_passes(self) -> Sequence[ModulePass]:
        """The passes that lower (the host part of) a module to the ``llvm`` dialect."""

    @abstractmethod
    def compile(
        self,
        module: ModuleOp,
        ctx: Context,
        *,
        upto: str,
        on_stage: OnStage | None = None,
    ) -> Artefact | None:
        """Run this target's stages on a ``simplified`` module (in place) up to and
        including ``upto``; return the artefact when ``upto`` is the last one."""


#: name -> module path and class name, imported on first use (the GPU targets import
#: the ``gpu`` compiler only when they are used).
_REGISTRY: dict[str, tuple[str, str]] = {
    "cpu": ("isozyme.compiler.targets.cpu", "CpuTarget"),
    "cuda": ("isozyme.compiler.targets.cuda", "CudaTarget"),
    "cuda-emu": ("isozyme.compiler.targets.cuda_emu", "CudaEmuTarget"),
}

#: The names of the targets, in the order the docs list them.
TARGET_NAMES: tuple[str, ...] = tuple(_REGISTRY)

_INSTANCES: dict[str, Target] = {}


def get_target(name: str | Target) -> Target:
    """The target called ``name`` (``"cpu"``, ``"cuda"``, ``"cuda-emu"``); a
    :class:`Target` is returned as is. Unknown names raise :class:`IsozymeError`."""
    if isinstance(name, Target):
        return name
    target = _INSTANCES.get(name)
    if target is not None:
        return target
    entry = _REGISTRY.get(name)
    if entry is None:
        raise IsozymeError(
            f"unknown target {name!r}; targets are: {', '.join(TARGET_NAMES)}"
        )
    import importlib  # noqa: PLC0415

    cls = getattr(importlib.import_module(entry[0]), entry[1])
    target = _INSTANCES[name] = cls()
    return target


def build_target_passes(items: Iterable[str | ModulePass]) -> tuple[ModulePass, ...]:
    """A target's pass list: registered passes by name in xdsl-opt's spelling
    (``expand-memref-copy{parallel=true}``) or already built, with the custom passes
    anchored on their names placed around them (:mod:`isozyme.compiler.pipeline`)."""
    from isozyme.compiler.passes.registry import parse_pass_pipeline  # noqa: PLC0415
    # (the pipeline imports the targets: its insertions are looked up on use)
    from isozyme.compiler.pipeline import with_insertions  # noqa: PLC0415

    passes = [p for item in items
              for p in (parse_pass_pipeline(item) if isinstance(item, str) else (item,))]
    return with_insertions(passes)


def stages_of(target: str | Target) -> tuple[str, ...]:
    """Every stage name of ``target`` (see :meth:`Target.all_stages`), with the stages
    ``after:<pass>`` of the active custom passes (:mod:`isozyme.compiler.pipeline`)."""
    from isozyme.compiler.pipeline import active_insertions, stages_of  # noqa: PLC0415

    tgt = get_target(target)
    if not active_insertions():
        return tgt.all_stages()
    return stages_of(tgt) + RUNTIME_STAGES


__all__ = [
    "COMMON_STAGES",
    "RUNTIME_STAGES",
    "TARGET_NAMES",
    "Artefact",
    "build_target_passes",
    "GpuArtefact",
    "LLVMArtefact",
    "OnStage",
    "Target",
    "get_target",
    "stages_of",
]
