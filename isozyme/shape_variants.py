"""Compiled code per shape, for the functions whose trace needed sizes as Python ints.

Array arguments are traced with dynamic sizes: one compilation serves every shape.  When
Python code in the traced function needs a size of an argument as a Python int
(``tuple(range(A.shape[0]))``, ``[0.0] * n``; see
:mod:`isozyme.frontends.python.static_shapes`), the function is traced with that
argument's shape static, and the compiled code is only valid for that shape.  The
compile cache's entry for the signature is then a :class:`ShapeVariants`: the compiled
variants keyed on the shapes of the arguments their traces made static, compiling a new
variant for a new shape, as ``jax.jit`` recompiles per shape.

:mod:`isozyme.calls` builds it (``build``); :mod:`isozyme.api` and :mod:`isozyme.vjp`
call its ``run`` like any compiled signature's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from isozyme.annotations import Annotation, is_array
from isozyme.arguments import view
from isozyme.frontends.python.context import COMPILE_LOCK
from isozyme.pytree import flatten as flatten_tree

if TYPE_CHECKING:
    from isozyme.calls import Compiled, _Spec

#: Where a traced argument comes from: (the user's argument, leaf of its pytree or None).
Place = tuple[int, int | None]

#: Shapes kept per signature (the oldest compiled shape is dropped beyond it).
MAX_SHAPES = 64


def traced_places(spec: "_Spec") -> list[Place]:
    """Per traced argument of ``spec`` (before hidden arguments are appended): which
    argument, and which leaf of a pytree argument, it is."""
    places: list[Place] = []
    pos = 0
    for i, tree in enumerate(spec.trees):
        n = 1 if tree is None else tree.num_leaves
        for j in range(n):
            if spec.runtime[pos + j]:
                places.append((i, None if tree is None else j))
        pos += n
    return places


def _leaf(anns: Sequence[Annotation], place: Place) -> object:
    i, j = place
    value = anns[i].val
    return value if j is None else flatten_tree(value)[0][j]


def traced_shapes(spec: "_Spec", places: Sequence[Place]) -> list[tuple[int, ...] | None]:
    """Per traced argument: the shape of the array the call passes, None for a scalar."""
    out: list[tuple[int, ...] | None] = []
    for place in places:
        x = _leaf(spec.annotations, place)
        out.append(tuple(view(x).shape) if is_array(x) else None)
    return out


class ShapeVariants:
    """The compiled variants of one signature whose traces needed argument shapes:
    per set of static arguments (usually one), the variant compiled for each shape of
    them.  Lookups take no lock; compiling a new shape takes the compile lock."""

    def __init__(self, spec: "_Spec", n_user: int, rebuild: Callable[["_Spec"], tuple]) -> None:
        # what a new shape's spec copies from the first (not its arguments: the cache
        # must not hold the first call's arrays)
        self.mode, self.fn, self.ret_cls, self.target = spec.mode, spec.fn, spec.ret_cls, spec.target
        self.fields = {"width": spec.width, "batched": spec.batched,
                       "seed_kinds": spec.seed_kinds, "seed_is_tuple": spec.seed_is_tuple}
        self.n_user = n_user
        #: ``rebuild(spec)`` -> (Compiled, static places): trace and compile one variant
        self.rebuild = rebuild
        #: static places -> {their shapes: compiled variants of those shapes, newest first}
        self.tables: dict[tuple[Place, ...], dict[tuple, tuple["Compiled", ...]]] = {}

    def add(self, places: tuple[Place, ...], anns: Sequence[Annotation],
            compiled: "Compiled") -> None:
        """Record ``compiled``, traced with ``places`` static for the shapes of ``anns``."""
        table = dict(self.tables.get(places, {}))
        key = _shapes(anns, places)
        table[key] = (compiled, *table.get(key, ())[:7])
        while len(table) > MAX_SHAPES:
            del table[next(iter(table))]
        self.tables = {**self.tables, places: table}

    def run(self, anns: Sequence[Annotation], *seed: object) -> tuple:
        """Run the variant for the shapes of ``anns`` (compiling it on a miss)."""
        while True:
            for places, table in self.tables.items():
                for compiled in table.get(_shapes(anns, places), ()):
                    guard = compiled.guard
                    if guard is None:
                        return compiled.run(anns, *seed)
                    hidden = guard()
                    if hidden is not None:
                        if hidden:
                            return compiled.run_hidden(anns, hidden, *seed)  # type: ignore[misc]
                        return compiled.run(anns, *seed)
            self._compile(anns)

    def _compile(self, anns: Sequence[Annotation]) -> None:
        with COMPILE_LOCK:
            for places, table in self.tables.items():  # another thread compiled it?
                for compiled in table.get(_shapes(anns, places), ()):
                    if compiled.guard is None or compiled.guard() is not None:
                        return
            from isozyme.calls import prepare  # noqa: PLC0415  (calls imports this module)

            user = list(anns[: self.n_user])
            spec = prepare(self.mode, self.fn, [self.ret_cls, *user] if self.ret_cls else user,
                           target=self.target)
            spec = replace(spec, **self.fields)
            compiled, places = self.rebuild(spec)
            self.add(places, user, compiled)


def _shapes(anns: Sequence[Annotation], places: Sequence[Place]) -> tuple:
    """The shapes of the arrays at ``places`` (on every call: numpy arrays directly)."""
    out = []
    for i, j in places:
        x = anns[i].val
        if j is not None:
            x = flatten_tree(x)[0][j]
        out.append(x.shape if type(x) is np.ndarray else view(x).shape)
    return tuple(out)


def compiled_variants(spec: "_Spec", n_user: int, places: tuple[Place, ...],
                      compiled: "Compiled", rebuild: Callable[["_Spec"], tuple]) -> "Compiled":
    """The compiled signature of a trace that made ``places`` static: a
    :class:`ShapeVariants` holding ``compiled``, as a ``Compiled`` whose ``run``
    dispatches on shapes."""
    from isozyme.calls import Compiled  # noqa: PLC0415

    variants = ShapeVariants(spec, n_user, rebuild)
    variants.add(places, spec.annotations[:n_user], compiled)
    out = Compiled(variants.run, compiled.stages)
    out.variants = variants  # type: ignore[attr-defined]
    return out
