"""isozyme's dialects and passes for plain ``xdsl-opt``: an ``xdsl.universe`` plug-in.

``pyproject.toml`` names :data:`ISOZYME_UNIVERSE` under the ``xdsl.universe`` entry
points, so with isozyme installed ``xdsl-opt`` parses isozyme's dialects (``enzyme``,
``isz``, ``isz_gpu``, ``memref_ext``) and runs its passes::

    xdsl-opt square.mlir -p enzyme-differentiate,simplify-ad

xDSL refuses two universes that define the same name, so the dialects and passes xDSL
has itself (``func``, ``arith``..., ``canonicalize``, ``cse``...) are left to xDSL; an
isozyme pass whose name an xDSL pass already has (``convert-scf-to-cf``) is offered as
``isozyme-<name>``.  Everything is imported only when ``xdsl-opt`` asks for it.

Limits: ``xdsl-opt`` loads a dialect by the prefix of an op's name, so
``memref.transpose`` (isozyme's ``memref_ext``) is not found through the ``memref``
prefix there; ``isozyme-opt`` reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xdsl.ir import Dialect
from xdsl.passes import ModulePass
from xdsl.universe import Universe

#: name -> (module, attribute) of isozyme's own dialects.
_DIALECTS: dict[str, tuple[str, str]] = {
    "enzyme": ("isozyme.dialects.enzyme", "Enzyme"),
    "isz": ("isozyme.dialects.check", "Isz"),
    "isz_gpu": ("isozyme.dialects.gpu_ext", "IszGpu"),
    "memref_ext": ("isozyme.dialects.memref_ext", "MemRefExt"),
}

#: The prefix of an isozyme pass whose name an xDSL pass already has.
CLASH_PREFIX = "isozyme-"


def _dialect(module: str, attr: str) -> Callable[[], Dialect]:
    def load() -> Dialect:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(module), attr)

    return load


def _renamed(cls: type[ModulePass], name: str) -> type[ModulePass]:
    """``cls`` under another pass name (``from_spec`` checks the name)."""
    return dataclass(frozen=True)(
        type(cls.__name__, (cls,), {"name": name, "__doc__": cls.__doc__,
                                    "__module__": cls.__module__}))


def _pass(name: str, as_name: str) -> Callable[[], type[ModulePass]]:
    def load() -> type[ModulePass]:
        cls = _registry().pass_info(name).cls
        return cls if as_name == name else _renamed(cls, as_name)

    return load


def _registry():
    """isozyme's pass registry, imported when xdsl-opt first asks for a pass."""
    from isozyme.compiler.passes import registry  # noqa: PLC0415
    return registry


def _isozyme_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    """Pass name (as xdsl-opt sees it) -> loader, for every pass of isozyme's registry
    that is not xDSL's own."""
    from xdsl.transforms import get_all_passes  # noqa: PLC0415

    registry = _registry()
    xdsl_names = set(get_all_passes())
    out: dict[str, Callable[[], type[ModulePass]]] = {}
    for info in registry.registered_passes():
        if info.origin == "xdsl":
            continue  # canonicalize, cse...: xDSL's universe has them
        as_name = f"{CLASH_PREFIX}{info.name}" if info.name in xdsl_names else info.name
        out[as_name] = _pass(info.name, as_name)
    return out


ISOZYME_UNIVERSE = Universe(
    all_dialects={name: _dialect(*where) for name, where in _DIALECTS.items()},
    all_passes=_isozyme_passes(),
)
