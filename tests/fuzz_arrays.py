"""Differential fuzzing of random whole-array numpy programs (issue 6, item 9).

A generator writes random straight-line numpy programs as Python source: elementwise
ufuncs, broadcasting (also over dimensions that are 1 only at run time), views (``.T``,
``[:, None]``, ``reshape``, ``ravel``, slices with steps), reductions and in-place
writes into the array arguments, directly and through views.  Every program returns a
float.  :func:`check_program` runs it

* with plain numpy arrays (the reference: the returned value and the final contents of
  every argument),
* through isozyme in ``ForwardWithPrimal`` mode (primal, argument contents, the tangent
  of the result and the tangents left in the shadows, both against central differences)
  and in ``ReverseWithPrimal`` or ``Reverse`` mode (primal, argument contents, the
  gradient left in the shadows against central differences and against the forward
  tangent; the shadows start at zero or, for every other example, with random seeds,
  the adjoints of the final contents as in Enzyme).

A program is checked under several *size assignments* (values of the symbolic sizes
``M`` and ``N``, 0 and 1 included), so one compiled signature serves several examples.
The generator keeps the shapes of every value under all assignments at once, so that
the same source is valid numpy for each of them (except for a few programs made on
purpose to be invalid for some sizes: there numpy raises, and isozyme must raise an
:class:`~isozyme.errors.IsozymeError`).

Arguments (and shadows) lie in a larger buffer, contiguous, strided or column-major,
with guard elements around them: a write outside an argument is caught.

A refusal (an ``IsozymeError`` raised where numpy gives an answer) is allowed but
counted, if raised before anything was written; a wrong number, a write outside an
argument, any other exception or an ``OutOfBoundsError`` for an index numpy accepts is
a :class:`Mismatch`.

The hypothesis test is ``tests/test_fuzz_arrays.py``; run more examples by hand with
``python -m tests.fuzz_arrays --examples 5000`` (random programs from a seed, every
distinct mismatch printed once).
"""

from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import importlib.util
import itertools
import json
import math
import os
import pathlib
import random
import signal
import sys
import tempfile
import textwrap
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from isozyme import (Active, Duplicated, ForwardWithPrimal, Reverse, ReverseWithPrimal,
                     autodiff)
from isozyme.errors import IsozymeError, OutOfBoundsError

Dim = tuple[int, ...]
"""The length of one dimension under each size assignment."""
Shape = tuple[Dim, ...]

SIZE_SYMBOLS = ("M", "N")
ASSIGNMENTS = 8
"""Size assignments per program: each is checked against the same compiled code."""
ARG_NAMES = ("x", "y", "z")
# argument shapes in terms of the size symbols; a literal 1 is 1 under every assignment
ARG_TEMPLATES: tuple[tuple[str | int, ...], ...] = (
    ("M",), ("N",), ("M", "N"), ("M", "N"), ("N", "M"), ("M", 1), (1, "N"), ("N", 1),
    (1,), ("M", "M"),
)
# slices with steps (negative too); "0:2" and "2:3" are the A[:, 0:2] / A[:, 2:3]
SLICES = ("1:", ":-1", "::2", "::-1", "1::2", "::-2", "1:-1", ":2", "-2:", "-1:", "0:1",
          "0:2", "2:3", "-2::-1")
UNARY = ("np.sin({a})", "np.cos({a})", "np.tanh({a})", "np.exp(0.5 * {a})", "({a}) ** 2",
         "-({a})", "np.log(1.0 + ({a}) ** 2)", "({a}) / (1.0 + ({a}) ** 2)",
         "np.sqrt(1.0 + ({a}) ** 2)", "np.square({a})", "0.5 * ({a})", "np.arctan({a})",
         "np.log1p(({a}) ** 2)", "np.cosh(0.5 * {a})")
BINARY = ("({a} + {b})", "({a} - {b})", "({a} * {b})", "({a} / (1.5 + np.sin({b})))",
          "({a} * 2.0 - {b})")
# kinds of view that isozyme refuses today: rarer, so that a refusal does not hide the
# rest of a program from the checks (a rank-3 intermediate, reshape from 2-D to 2-D)
RARE_KINDS = ("newaxis3", "reshape2d")
CONSTANTS = ("0.5", "1.5", "2.0", "-0.7")


class Chooser(Protocol):
    """Where the generator's decisions come from."""

    def choice(self, options: Sequence[Any]) -> Any:
        """One of ``options`` (a non-empty sequence)."""

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""

    def chance(self, p: float) -> bool:
        """True with probability about ``p``."""


class RandomChooser:
    """A :class:`Chooser` over :class:`random.Random` (the command-line fuzzer)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choice(self, options: Sequence[Any]) -> Any:
        """One of ``options``."""
        return options[self.rng.randrange(len(options))]

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""
        return self.rng.randint(lo, hi)

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self.rng.random() < p


# ---------------------------------------------------------------------------- shapes

def const_dim(value: int, k: int) -> Dim:
    """A dimension of the same length under all ``k`` assignments."""
    return (value,) * k


def fits(b: Shape, s: Shape) -> bool:
    """True when a value of shape ``b`` broadcasts to exactly ``s`` under every
    assignment (numpy's rule for the right side of an assignment)."""
    if len(b) > len(s):
        return False
    return all(x == y or x == 1 for bd, sd in zip(reversed(b), reversed(s))
               for x, y in zip(bd, sd))


def broadcast(a: Shape, b: Shape) -> Shape | None:
    """numpy's broadcast of ``a`` and ``b`` under every assignment, or None."""
    if len(a) < len(b):
        a, b = b, a
    b = (None,) * (len(a) - len(b)) + b
    out = []
    for ad, bd in zip(a, b):
        if bd is None:
            out.append(ad)
            continue
        dim = []
        for x, y in zip(ad, bd):
            if x == y or y == 1:
                dim.append(x)
            elif x == 1:
                dim.append(y)
            else:
                return None
        out.append(tuple(dim))
    return tuple(out)


def slice_dim(d: Dim, text: str) -> Dim:
    """The length of ``d`` after the slice ``text`` (e.g. ``"1::2"``), per assignment."""
    parts = [int(p) if p else None for p in text.split(":")]
    sl = slice(*parts)
    return tuple(len(range(n)[sl]) for n in d)


def positive(d: Dim) -> bool:
    """True when the dimension is at least 1 under every assignment."""
    return all(n >= 1 for n in d)


@dataclasses.dataclass
class Var:
    """A name in the generated program: its shape and the argument it may alias."""

    shape: Shape
    base: str | None  # the argument (or array temporary) whose memory it may share
    array: bool


@dataclasses.dataclass
class Program:
    """A generated program: ``def f(args): body; return result``, and the argument
    shapes under each size assignment."""

    args: tuple[str, ...]
    body: list[str]
    result: str
    arg_shapes: list[tuple[tuple[int, ...], ...]]  # one tuple of shapes per assignment
    sizes: list[dict[str, int]]
    layouts: tuple[str, ...]  # how each argument lies in memory (see LAYOUTS)
    reverse_mode: Any = ReverseWithPrimal  # or Reverse (no primal returned)

    @property
    def source(self) -> str:
        """The module's source text."""
        body = "".join(textwrap.indent(line, "    ") + "\n" for line in self.body)
        return (f"import numpy as np\n\n\ndef f({', '.join(self.args)}):\n{body}"
                f"    return {self.result}\n")


# ------------------------------------------------------------------------- generator

class Generator:
    """Builds one random program; every decision comes from ``chooser``."""

    def __init__(self, chooser: Chooser, n_assignments: int = ASSIGNMENTS,
                 exclude: frozenset[str] = frozenset()) -> None:
        self.c = chooser
        self.exclude = exclude
        self.k = n_assignments
        self.env: dict[str, Var] = {}
        self.mutated: set[str] = set()
        self.lines: list[str] = []
        self.temps = itertools.count()

    # -- sizes and arguments

    def draw_sizes(self) -> list[dict[str, int]]:
        """Size assignments: the first with sizes >= 2, the others anything in 0..4."""
        sizes = [{s: self.c.integer(2, 4) for s in SIZE_SYMBOLS}]
        for _ in range(self.k - 1):
            sizes.append({s: self.c.choice((0, 1, 1, 2, 3, 4)) for s in SIZE_SYMBOLS})
        return sizes

    # -- views

    def views(self, src: str, shape: Shape, strict: bool = True
              ) -> list[tuple[str, str, Shape]]:
        """Views of ``src`` (one step): (kind, source, shape).  With ``strict`` an index
        is offered only where it is in range for every assignment."""
        one = const_dim(1, self.k)
        out: list[tuple[str, str, Shape]] = [("name", src, shape)]
        if shape and src.isidentifier():  # new arrays from a shape (not for views' views)
            out += [("fresh", f"np.ones_like({src})", shape),
                    ("fresh", f"np.ones(({src}.shape[0], 1))", (shape[0], one)),
                    ("fresh", f"np.full_like({src}, 0.5)", shape)]
        if len(shape) == 1:
            (n,) = shape
            out += [("slice", f"{src}[{t}]", (slice_dim(n, t),)) for t in SLICES]
            out += [("newaxis", f"{src}[:, None]", (n, one)),
                    ("newaxis", f"{src}[None, :]", (one, n)),
                    ("reshape", f"{src}.reshape(-1, 1)", (n, one)),
                    ("reshape", f"{src}.reshape(1, -1)", (one, n)),
                    ("transpose", f"{src}.T", shape), ("reshape", f"np.asarray({src})", shape),
                    ("reshape", f"{src}.ravel()", shape),
                    ("copy", f"{src}.flatten()", shape), ("copy", f"{src}.copy()", shape),
                    ("reshape", f"{src}.reshape({src}.shape[0], 1)", (n, one)),
                    ("reshape", f"{src}.reshape(1, len({src}))", (one, n))]
            if not strict or positive(n):
                out += [("index", f"{src}[0:1]", (slice_dim(n, "0:1"),))]
        elif len(shape) == 2:
            m, n = shape
            mn = tuple(a * b for a, b in zip(m, n))
            out += [("transpose", f"{src}.T", (n, m)),
                    ("transpose", f"np.transpose({src})", (n, m)),
                    ("reshape", f"{src}.ravel()", (mn,)), ("reshape", f"{src}.reshape(-1)", (mn,)),
                    ("reshape2d", f"{src}.reshape(-1, 1)", (mn, one)),
                    ("reshape", f"{src}.T.ravel()", (mn,)),
                    ("newaxis3", f"{src}[:, None, :][:, 0, :]", shape),
                    ("copy", f"{src}.flatten()", (mn,)), ("copy", f"{src}.copy()", shape)]
            for t1 in (":",) + SLICES:
                for t2 in (":",) + SLICES:
                    if (t1, t2) != (":", ":"):
                        out.append(("slice", f"{src}[{t1}, {t2}]",
                                    (m if t1 == ":" else slice_dim(m, t1),
                                     n if t2 == ":" else slice_dim(n, t2))))
            if not strict or positive(m):
                out += [("index", f"{src}[0]", (n,)), ("index", f"{src}[-1, :]", (n,))]
            if not strict or positive(n):
                out += [("index", f"{src}[:, 0]", (m,)), ("index", f"{src}[:, -1]", (m,))]
            if src.isidentifier():
                out += [("fresh", f"np.ones((1, {src}.shape[1]))", (one, n)),
                        ("reshape", f"{src}.ravel().reshape({src}.shape)", shape)]
            if positive(m):  # numpy cannot infer -1 for an empty array of 0 rows
                out += [("reshape2d", f"{src}.reshape({src}.shape[0], -1)", shape)]
        return out

    def pick(self, cands: list[tuple[str, Any]]) -> Any:
        """One of ``(kind, item)`` candidates: a kind first, so that the many slices
        do not crowd out the other kinds of view."""
        kinds = sorted({k for k, _ in cands if k not in self.exclude}
                       or {k for k, _ in cands})
        kinds = [k for k in kinds if k not in RARE_KINDS or self.c.chance(0.15)] or kinds
        kind = self.c.choice(kinds)
        return self.c.choice([item for k, item in cands if k == kind])

    def names(self, array_only: bool = True) -> list[str]:
        """The names defined so far (arguments first), arrays only by default."""
        return [n for n, v in self.env.items() if v.array or not array_only]

    # -- expressions

    def leaf(self, target: Shape, pristine: bool = False) -> tuple[str, Shape, str | None]:
        """A view of a defined name that broadcasts to ``target`` (or a constant)."""
        strict = not self.c.chance(0.03)  # rarely: an index numpy may reject
        cands = []
        for name in self.names():
            var = self.env[name]
            if pristine and (var.base is None or var.base in self.mutated
                             or var.base not in ARG_NAMES):
                continue
            for kind, src, shape in self.views(name, var.shape, strict):
                if fits(shape, target):
                    cands.append((kind, (src, shape, var.base)))
        if not cands or (not pristine and self.c.chance(0.05)):
            if pristine:
                return "1.5", (), None
            return self.c.choice(CONSTANTS), (), None
        return self.pick(cands)

    def any_shape(self) -> Shape:
        """A shape some view of a defined array has (rank <= 2)."""
        pool = []
        for name in self.names():
            for kind, _, shape in self.views(name, self.env[name].shape):
                if 1 <= len(shape) <= 2:
                    pool.append((kind, shape))
        return self.pick(pool) if pool else ()

    def expr(self, target: Shape, depth: int) -> tuple[str, Shape, str | None]:
        """An expression whose value broadcasts to ``target``: (source, shape, base),
        where ``base`` is the name it may alias (a plain view) or None."""
        if depth <= 0 or self.c.chance(0.25):
            return self.leaf(target)
        kinds = ("unary", "binary", "binary", "where", "reduce", "reduce", "divide",
                 "contract")
        kind = self.c.choice([k for k in kinds if k not in self.exclude])
        if kind == "unary":
            a, sa, _ = self.expr(target, depth - 1)
            return self.c.choice(UNARY).format(a=a), sa, None
        if kind == "binary":
            a, sa, _ = self.expr(target, depth - 1)
            b, sb, _ = self.expr(target, depth - 1)
            return self.c.choice(BINARY).format(a=a, b=b), broadcast(sa, sb), None
        if kind == "divide":  # by a view of an argument not written yet: values in [0.5, 1.5]
            a, sa, _ = self.expr(target, depth - 1)
            b, sb, _ = self.leaf(target, pristine=True)
            return f"({a} / {b})", broadcast(sa, sb), None
        if kind == "where":
            p, sp, _ = self.expr(target, depth - 1)
            q, sq, _ = self.expr(target, depth - 1)
            a, sa, _ = self.expr(target, depth - 1)
            b, sb, _ = self.expr(target, depth - 1)
            shape = broadcast(broadcast(broadcast(sp, sq), sa), sb)
            return f"np.where({p} > {q}, {a}, {b})", shape, None
        if kind == "contract":
            return self.contraction(target, depth)
        return self.reduction(target, depth)

    def contraction(self, target: Shape, depth: int) -> tuple[str, Shape, str | None]:
        """``np.dot`` of two vectors or ``A @ v`` (sizes must match exactly, not
        broadcast): falls back to ``np.sum(a * b)`` when the operands came out
        broadcastable only."""
        if len(target) >= 1 and self.c.chance(0.5):  # A @ v, a vector fitting the target
            m = target[-1]
            n = self.c.choice([d for name in self.names() for d in self.env[name].shape]
                              or [const_dim(2, self.k)])
            a, sa, _ = self.expr((m, n), depth - 1)
            v, sv, _ = self.expr((n,), depth - 1)
            if sa == (m, n) and sv == (n,):
                return f"({a} @ {v})", (m,), None
            return self.sum_of_product(a, sa, v, sv)
        d = self.c.choice([d for name in self.names() for d in self.env[name].shape]
                          or [const_dim(2, self.k)])
        a, sa, _ = self.expr((d,), depth - 1)
        b, sb, _ = self.expr((d,), depth - 1)
        if sa == sb == (d,):
            return f"np.dot({a}, {b})", (), None
        return self.sum_of_product(a, sa, b, sb)

    @staticmethod
    def sum_of_product(a: str, sa: Shape, b: str, sb: Shape) -> tuple[str, Shape, None]:
        """``np.sum(a * b)``, or ``a * b`` when both are scalars (np.sum of a float is
        numpy, but not the point here)."""
        if broadcast(sa, sb) == ():
            return f"({a} * {b})", (), None
        return f"np.sum({a} * {b})", (), None

    def reduction(self, target: Shape, depth: int) -> tuple[str, Shape, str | None]:
        """``np.sum``/``np.max``/``np.mean`` over everything, over one axis or with
        ``keepdims``, of an expression whose shape fits the target."""
        how = self.c.choice(("all", "axis", "axis", "keepdims"))
        fn = self.c.choice(("np.sum", "np.sum", "np.max", "np.min", "np.mean", "np.prod",
                            "method"))
        if how == "axis" and len(target) < 2:
            # the inner expression has one dimension more than the target
            inner_target = self.insert_dim(target)
        else:
            inner_target = target if how == "keepdims" else self.any_shape()
        a, sa, _ = self.expr(inner_target, depth - 1)
        if len(sa) == 0:  # np.sum of a float is numpy, but not the point here
            return a, sa, None
        if how == "all" or len(sa) == 0 or (how == "axis" and len(sa) != len(target) + 1):
            axis = None
            shape: Shape = ()
            reduced = tuple(math.prod(ns) for ns in zip(*sa)) if sa else const_dim(1, self.k)
        else:
            axis = self.c.integer(0, len(sa) - 1)
            reduced = sa[axis]
            if how == "keepdims":
                shape = sa[:axis] + (const_dim(1, self.k),) + sa[axis + 1:]
            else:
                shape = sa[:axis] + sa[axis + 1:]
                if not fits(shape, target):
                    axis, shape = None, ()
                    reduced = tuple(math.prod(ns) for ns in zip(*sa))
        empty = not positive(reduced)
        if fn in ("np.max", "np.min") and empty and self.c.chance(0.05):
            pass  # numpy raises for the max of nothing: isozyme must raise too
        elif fn in ("np.max", "np.min", "np.mean") and empty:
            fn = "np.sum"  # np.max of nothing raises, np.mean of nothing is nan
        args = "" if axis is None else f", axis={axis}"
        if how == "keepdims" and axis is not None:
            args += ", keepdims=True"
        if fn == "method":
            method = self.c.choice(("sum", "max") if not empty else ("sum",))
            return f"({a}).{method}({args[2:]})", shape, None
        return f"{fn}({a}{args})", shape, None

    def insert_dim(self, target: Shape) -> Shape:
        """``target`` with a dimension of some defined array inserted somewhere."""
        dims = [d for name in self.names() for d in self.env[name].shape]
        dim = self.c.choice(dims) if dims else const_dim(2, self.k)
        pos = self.c.integer(0, len(target))
        return target[:pos] + (dim,) + target[pos:]

    # -- statements

    def statement(self) -> None:
        """A temporary, a view kept in a temporary, or an in-place write."""
        kind = self.c.choice(("temp", "view", "write", "write", "write"))
        if kind in ("temp", "view"):
            name = f"t{next(self.temps)}"
            if kind == "view":
                src, shape, base = self.leaf(self.any_shape())
            else:
                src, shape, base = self.expr(self.any_shape(), self.c.integer(1, 3))
            self.lines.append(f"{name} = {src}")
            array = len(shape) > 0
            self.env[name] = Var(shape, base if base is not None else (name if array else None),
                                 array)
            return
        targets = self.names()
        name = self.c.choice(targets)
        var = self.env[name]
        # writes through a new axis are rarer: x[:, None] has few uses as a target
        views = [(kind, (s, sh)) for kind, s, sh in self.views(name, var.shape)
                 if (s == name or s.startswith(name + "["))
                 and (kind != "newaxis" or self.c.chance(0.2))]
        lhs, shape = self.pick(views)
        op = self.c.choice(("=", "+=", "-=", "*=", "+="))
        rhs, _, _ = self.expr(shape, self.c.integer(0, 2))
        if lhs == name and op == "=":
            lhs = f"{name}[...]"
        if self.c.chance(0.15):  # repeated: reverse mode must keep what the loop overwrites
            self.lines.append(f"for _ in range(2):\n    {lhs} {op} {rhs}")
        else:
            self.lines.append(f"{lhs} {op} {rhs}")
        if var.base is not None:
            self.mutated.add(var.base)
        self.mutated.add(name)

    def program(self) -> Program:
        """A whole program: arguments, 1-4 statements, a float result."""
        sizes = self.draw_sizes()
        n_args = self.c.integer(1, 3)
        templates = [self.c.choice(ARG_TEMPLATES) for _ in range(n_args)]
        for name, template in zip(ARG_NAMES, templates):
            shape = tuple(const_dim(t, self.k) if isinstance(t, int)
                          else tuple(s[t] for s in sizes) for t in template)
            self.env[name] = Var(shape, name, True)
        for _ in range(self.c.integer(1, 4)):
            self.statement()
        final, shape, _ = self.expr(self.any_shape(), self.c.integer(1, 3))
        result = f"np.sum({final})" if shape else f"({final})"
        args = ARG_NAMES[:n_args]
        read = sorted(self.mutated & set(args)) or list(args)
        arg = self.c.choice(read)  # read an argument after the writes
        result += f" + 0.3 * np.sum({self.c.choice(('{a} * {a}', 'np.sin({a})', '{a}'))})"
        result = result.format(a=arg)
        arg_shapes = [tuple(tuple(d[i] for d in self.env[a].shape) for a in args)
                      for i in range(self.k)]
        layouts = tuple(self.c.choice(LAYOUTS) for _ in args)
        reverse_mode = self.c.choice((ReverseWithPrimal, Reverse))
        return Program(tuple(args), list(self.lines), result, arg_shapes, sizes, layouts,
                       reverse_mode)


def generate(chooser: Chooser, n_assignments: int = ASSIGNMENTS,
             exclude: frozenset[str] = frozenset()) -> Program:
    """A random program from ``chooser``'s decisions, without the kinds of expression
    and view in ``exclude`` (e.g. ``where``, ``newaxis``: to look past a known bug)."""
    return Generator(chooser, n_assignments, exclude).program()


# --------------------------------------------------------------------------- checking

class Mismatch(AssertionError):
    """isozyme disagrees with numpy or with finite differences, or crashed."""


_modules = itertools.count()
_tmpdir: pathlib.Path | None = None


def load(source: str, directory: pathlib.Path | None = None) -> Callable[..., Any]:
    """Write ``source`` into a module file (isozyme reads function source) and return
    its ``f``."""
    global _tmpdir
    if directory is None:
        if _tmpdir is None:
            _tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="isozyme_fuzz_"))
        directory = _tmpdir
    name = f"fuzz_arrays_prog_{next(_modules)}"
    path = directory / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.f


SENTINEL = 7.25
"""The value of the guard elements around (and between) an argument's elements."""
GUARD = 3
LAYOUTS = ("C", "C", "C", "C", "strided", "F")
"""How an argument lies in memory: contiguous, every other element, column-major."""


class Buffer:
    """An array with the values given, placed in a larger buffer in ``layout``: guard
    elements before and after it (and between its elements for ``strided``) catch a
    write outside the array."""

    def __init__(self, values: np.ndarray, layout: str) -> None:
        size = values.size
        if layout == "strided":
            self.buf = np.full(2 * size + 2 * GUARD, SENTINEL)
            inner = self.buf[GUARD:GUARD + 2 * size].reshape(values.shape + (2,))
            self.array = inner[..., 0]
        else:
            self.buf = np.full(size + 2 * GUARD, SENTINEL)
            inner = self.buf[GUARD:GUARD + size]
            if layout == "F" and values.ndim == 2:
                self.array = inner.reshape(values.shape[::-1]).T
            else:
                self.array = inner.reshape(values.shape)
        self.array[...] = np.nan
        self.owned = np.isnan(self.buf)
        self.array[...] = values

    def guards_intact(self) -> bool:
        """True when nothing outside the array was written."""
        return bool(np.all(self.buf[~self.owned] == SENTINEL))


def run_numpy(f: Callable[..., Any], args: Sequence[np.ndarray], layouts: Sequence[str]
              ) -> tuple[float, list[np.ndarray]]:
    """The reference: ``f`` on copies of ``args`` placed in ``layouts`` (numpy's
    view-or-copy decisions depend on them); (result, final argument contents)."""
    work = [Buffer(a, layout).array for a, layout in zip(args, layouts)]
    with np.errstate(all="raise"):
        result = f(*work)
    if np.ndim(result) != 0:  # a program of the reducer's that no longer returns a float
        raise NotAFloat(repr(result))
    return float(result), [w.copy() for w in work]


class NotAFloat(Exception):
    """The program returned something else than a float (not a numpy error)."""


def fd_direction(f: Callable[..., Any], args: Sequence[np.ndarray],
                 dirs: Sequence[np.ndarray], h: float, layouts: Sequence[str]
                 ) -> tuple[float, list[np.ndarray]]:
    """Central differences along ``dirs``: of the result and of the final contents."""
    rp, fp = run_numpy(f, [a + h * d for a, d in zip(args, dirs)], layouts)
    rm, fm = run_numpy(f, [a - h * d for a, d in zip(args, dirs)], layouts)
    return (rp - rm) / (2 * h), [(p - m) / (2 * h) for p, m in zip(fp, fm)]


def fd_gradient(f: Callable[..., Any], args: Sequence[np.ndarray], h: float,
                layouts: Sequence[str], seeds: Sequence[np.ndarray] | None = None
                ) -> list[np.ndarray]:
    """Central differences, with respect to every argument element, of the result plus
    ``sum(seeds[k] * final contents of argument k)`` (reverse mode's shadows on entry
    are the adjoints of the final contents)."""
    grads = []
    for k, a in enumerate(args):
        g = np.zeros(a.shape)
        for idx in np.ndindex(a.shape):
            dirs = [np.zeros(b.shape) for b in args]
            dirs[k][idx] = 1.0
            t, t_finals = fd_direction(f, args, dirs, h, layouts)
            if seeds is not None:
                t += sum(float(np.sum(s * tf)) for s, tf in zip(seeds, t_finals))
            g[idx] = t
        grads.append(g)
    return grads


class Rejected(Exception):
    """The example cannot be checked (overflow, or a kink within the difference step)."""


def close(got: Any, want: Any, scale: float, rtol: float) -> bool:
    """Elementwise closeness with an absolute floor relative to ``scale``."""
    got = np.asarray(got, dtype=float)
    want = np.asarray(want, dtype=float)
    return got.shape == want.shape and bool(
        np.allclose(got, want, rtol=rtol, atol=rtol * scale, equal_nan=False))


def describe(program: Program, args: Sequence[np.ndarray], what: str, want: Any,
             got: Any) -> str:
    """The message of a :class:`Mismatch`: the program, inputs and both answers."""
    with np.printoptions(precision=17):
        inputs = "\n".join(f"  {n} = np.array({a.tolist()!r})  # shape {a.shape}, {lay}"
                           for n, a, lay in zip(program.args, args, program.layouts))
        return (f"{what}\n--- program ---\n{program.source}--- inputs ---\n{inputs}\n"
                f"--- expected ---\n{want!r}\n--- isozyme ---\n{got!r}")


PRE_RUN_ERRORS = ("TraceError", "UnsupportedError", "ShapeError", "AnnotationError",
                  "CompileError", "ReadOnlyError")


def refusal_key(err: BaseException) -> str:
    """A short key for a refusal: the error type and the first line of its message,
    with the program's file name and line numbers dropped."""
    msg = str(err).splitlines()[0] if str(err) else ""
    msg = msg.split(": ", 1)[-1] if ".py:" in msg.split(": ", 1)[0] else msg
    return f"{type(err).__name__}: {msg[:100]}"


def call_isozyme(mode: Any, f: Callable[..., Any], args: Sequence[np.ndarray],
                 shadows: Sequence[np.ndarray], program: Program
                 ) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
    """Call ``autodiff`` on the values ``args`` and ``shadows`` placed in the program's
    layouts: (its answer, the final arguments, the final shadows).  A write outside an
    array is a :class:`Mismatch`; an :class:`IsozymeError` propagates, after checking
    that an error raised before the run left every buffer untouched."""
    bufs = [Buffer(a, lay) for a, lay in zip(args, program.layouts)]
    sbufs = [Buffer(s, lay) for s, lay in zip(shadows, program.layouts)]
    dup = [Duplicated(a.array, s.array) for a, s in zip(bufs, sbufs)]
    try:
        if mode in (Reverse, ReverseWithPrimal):
            answer = autodiff(mode, f, Active, *dup)
        else:
            answer = autodiff(mode, f, *dup)
    except IsozymeError as err:
        if type(err).__name__ in PRE_RUN_ERRORS:
            for a, b in zip(bufs + sbufs, list(args) + list(shadows)):
                if not np.array_equal(a.array, b):
                    raise Mismatch(describe(program, args, f"{mode}: {type(err).__name__} "
                                            "was raised after a buffer was written", b,
                                            a.array)) from err
        raise
    except Exception as err:  # anything else is a bug, not a refusal
        last = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        # the frames, without the IR that some messages carry
        frames = "".join(traceback.format_tb(err.__traceback__)[-6:])
        raise Mismatch(describe(program, args, f"{mode} raised {last}",
                                "no exception", f"{frames}{last}")) from err
    finally:
        for what, group in (("argument", bufs), ("shadow of", sbufs)):
            for name, buf in zip(program.args, group):
                if not buf.guards_intact():
                    hit = np.flatnonzero(~buf.owned & (buf.buf != SENTINEL))
                    raise Mismatch(describe(
                        program, args, f"{mode} wrote outside {what} {name}",
                        f"guard elements {hit.tolist()} of the buffer untouched",
                        f"buffer = {buf.buf.tolist()}, array at "
                        f"{np.flatnonzero(buf.owned).tolist()}"))
    return answer, [b.array.copy() for b in bufs], [s.array.copy() for s in sbufs]


def check_example(f: Callable[..., Any], program: Program, args: list[np.ndarray],
                  rng: np.random.Generator, seeded: bool = False) -> str:
    """Check one (program, inputs) pair; return ``"ok"``, ``"numpy-error"`` (numpy and
    isozyme both raised) or ``"refused: ..."``; raise :class:`Rejected` or
    :class:`Mismatch`.  With ``seeded`` the reverse-mode shadows start with random
    values (adjoints of the final contents) instead of zeros."""
    layouts = program.layouts
    try:
        want, finals = run_numpy(f, args, layouts)
    except FloatingPointError as err:
        raise Rejected(str(err)) from err
    except NotAFloat:
        raise
    except Exception as numpy_err:  # numpy refuses: isozyme must raise too
        for mode in (ForwardWithPrimal, ReverseWithPrimal):
            try:
                got = call_isozyme(mode, f, args, [np.zeros_like(a) for a in args], program)[0]
            except IsozymeError:
                continue
            raise Mismatch(describe(program, args, f"{mode}: numpy raises "
                                    f"{type(numpy_err).__name__}, isozyme does not",
                                    repr(numpy_err), got))
        return "numpy-error"
    scale = 1.0 + max([abs(want)] + [float(np.max(np.abs(x))) for x in finals if x.size])
    if not math.isfinite(want) or scale > 1e6:
        raise Rejected("large values")
    dirs = [rng.uniform(-1.0, 1.0, a.shape) for a in args]

    def check_primal(mode: str, prim: Any, work: list[np.ndarray]) -> None:
        if not close(prim, want, scale, 1e-9):
            reject_ties(f, args, layouts, want, finals, scale)
            raise Mismatch(describe(program, args, f"{mode}: wrong result", want, prim))
        for name, got_a, want_a in zip(program.args, work, finals):
            if not close(got_a, want_a, scale, 1e-9):
                reject_ties(f, args, layouts, want, finals, scale)
                raise Mismatch(describe(program, args, f"{mode}: wrong final contents of "
                                        f"argument {name}", want_a, got_a))

    try:
        # forward mode: primal, contents, tangent of the result and of the contents
        (tangent, prim), work, shadows = call_isozyme(ForwardWithPrimal, f, args, dirs,
                                                      program)
        check_primal("ForwardWithPrimal", prim, work)
        fd_t, fd_finals = fd_direction(f, args, dirs, 1e-6, layouts)
        fd_bad = not close(tangent, fd_t, scale, 1e-5) or not all(
            close(s, t, scale, 1e-5) for s, t in zip(shadows, fd_finals))
        if fd_bad:
            smooth_or_reject(f, args, dirs, layouts)
            if not close(tangent, fd_t, scale, 1e-5):
                raise Mismatch(describe(program, args, "ForwardWithPrimal: wrong tangent "
                                        f"\nalong {[d.tolist() for d in dirs]}", fd_t, tangent))
            for name, s, t in zip(program.args, shadows, fd_finals):
                if not close(s, t, scale, 1e-5):
                    raise Mismatch(describe(program, args, "ForwardWithPrimal: wrong tangent "
                                            f"of the final contents of {name}\nalong "
                                            f"{[d.tolist() for d in dirs]}", t, s))
        # reverse mode: primal, contents, gradient (+ what the seeds pass on)
        rev = program.reverse_mode
        seeds = [rng.uniform(-1.0, 1.0, a.shape) if seeded else np.zeros(a.shape)
                 for a in args]
        answer, work, grads = call_isozyme(rev, f, args, seeds, program)
        check_primal(str(rev), answer[1] if rev is ReverseWithPrimal else want, work)
        fd_g = fd_gradient(f, args, 1e-6, layouts, seeds)
        seeded_by = (f" (seeded)\nreverse-mode shadows on entry: {[s.tolist() for s in seeds]}"
                     if seeded else "")
        for k, (name, g, w) in enumerate(zip(program.args, grads, fd_g)):
            if not close(g, w, scale, 1e-5):
                if not close(w, fd_gradient(f, args, 1e-5, layouts, seeds)[k], scale, 1e-4):
                    raise Rejected("kink")
                raise Mismatch(describe(program, args, f"{rev}: wrong gradient of {name}"
                                        f"{seeded_by}", w, g))
        # the two modes agree with each other far more tightly than with differences:
        # <gradient, d> is the tangent of result + sum(seeds * final contents) along d
        dot = sum(float(np.sum(g * d)) for g, d in zip(grads, dirs))
        fwd = tangent + sum(float(np.sum(s * t)) for s, t in zip(seeds, shadows))
        if not close(dot, fwd, scale, 1e-8):
            raise Mismatch(describe(program, args, f"forward tangent != {rev} gradient . "
                                    f"direction{seeded_by}", dot, fwd))
    except OutOfBoundsError as err:
        raise Mismatch(describe(program, args, "OutOfBoundsError for an index numpy accepts",
                                "no exception", str(err)))
    except IsozymeError as err:
        return "refused: " + refusal_key(err)
    return "ok"


def reject_ties(f: Callable[..., Any], args: Sequence[np.ndarray], layouts: Sequence[str],
                want: float, finals: Sequence[np.ndarray], scale: float) -> None:
    """Raise :class:`Rejected` when numpy's own answer jumps under relative changes of
    1e-12 of the inputs: a comparison of ``np.where`` between two values equal up to
    rounding, which isozyme may round the other way."""
    rng = np.random.default_rng(0)
    for _ in range(4):
        moved = [a * (1.0 + 1e-12 * rng.uniform(-1.0, 1.0, a.shape)) for a in args]
        got, got_finals = run_numpy(f, moved, layouts)
        if not close(got, want, scale, 1e-9) or not all(
                close(g, w, scale, 1e-9) for g, w in zip(got_finals, finals)):
            raise Rejected("tie")


def smooth_or_reject(f: Callable[..., Any], args: Sequence[np.ndarray],
                     dirs: Sequence[np.ndarray], layouts: Sequence[str]) -> None:
    """Raise :class:`Rejected` when differences with two step sizes disagree (a kink of
    ``np.where``/``np.max`` within the step)."""
    t1, f1 = fd_direction(f, args, dirs, 1e-6, layouts)
    t2, f2 = fd_direction(f, args, dirs, 1e-5, layouts)
    if not close(t1, t2, 1.0 + abs(t1), 1e-4) or not all(
            close(a, b, 1.0 + float(np.max(np.abs(a), initial=0.0)), 1e-4)
            for a, b in zip(f1, f2)):
        raise Rejected("kink")


def make_args(program: Program, i: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Arguments for assignment ``i``: values in [0.5, 1.5] (so that a division by an
    argument stays bounded)."""
    return [rng.uniform(0.5, 1.5, shape) for shape in program.arg_shapes[i]]


VALUES_PER_ASSIGNMENT = 3
"""Examples per size assignment (fresh values each: the compiled code is reused)."""


def check_program(program: Program, seed: int, stats: collections.Counter,
                  directory: pathlib.Path | None = None) -> None:
    """Check ``program`` under each of its size assignments, with
    :data:`VALUES_PER_ASSIGNMENT` draws of values each; count the outcomes in ``stats``
    (``ok``, ``refused: ...``, ``rejected``, ``numpy-error``)."""
    f = load(program.source, directory)
    rng = np.random.default_rng(seed)
    for i in range(len(program.sizes)):
        for j in range(VALUES_PER_ASSIGNMENT):
            args = make_args(program, i, rng)
            try:
                stats[check_example(f, program, args, rng, seeded=j % 2 == 1)] += 1
            except Rejected:
                stats["rejected"] += 1


def summary(stats: collections.Counter) -> str:
    """Counts of outcomes, with the refusal ratio."""
    checked = sum(v for k, v in stats.items() if k != "rejected")
    refused = sum(v for k, v in stats.items() if k.startswith("refused"))
    lines = [f"{checked} examples checked, {stats['ok']} ok, {refused} refused "
             f"({refused / max(checked, 1):.1%}), {stats['numpy-error']} raised by both, "
             f"{stats['rejected']} rejected (overflow or kink)"]
    for key, count in stats.most_common():
        if key.startswith("refused"):
            lines.append(f"  {count:5d}  {key}")
    return "\n".join(lines)


def check_isolated(program: Program, seed: int, directory: pathlib.Path
                   ) -> tuple[collections.Counter, str | None]:
    """:func:`check_program` in a forked child, so that a crash (a segfault, a heap
    corruption) is reported as a mismatch instead of ending the run: (the child's
    counts, the mismatch message or None)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: check, send the outcome, exit without cleanup
        os.close(read_fd)
        stats: collections.Counter = collections.Counter()
        message = None
        try:
            check_program(program, seed, stats, directory)
        except Mismatch as err:
            message = str(err)
        except BaseException as err:  # noqa: BLE001 - a bug of the harness itself
            message = "harness error\n" + "".join(traceback.format_exception(err))
        with os.fdopen(write_fd, "w") as out:
            json.dump({"stats": dict(stats), "message": message}, out)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        what = f"signal {signal.Signals(sig).name}" if sig else f"exit {status >> 8}"
        return collections.Counter(), (
            f"crash: the process died ({what})\n--- program ---\n{program.source}"
            f"--- argument shapes, layouts ---\n{program.arg_shapes} {program.layouts}")
    result = json.loads(data)
    return collections.Counter(result["stats"]), result["message"]


def mismatch_key(message: str) -> str:
    """What identifies a mismatch across reductions: its first line, without the
    random direction of a tangent check."""
    return message.splitlines()[0]


def simpler_expressions(code: str) -> list[str]:
    """``code`` (a statement) with one call, operation or view replaced by one of its
    operands, for each such choice: candidates for :func:`reduce_program`."""
    tree = ast.parse(code)
    parents = {child: (node, field, index)
               for node in ast.walk(tree)
               for field, value in ast.iter_fields(node)
               for index, child in enumerate(value if isinstance(value, list) else [value])
               if isinstance(child, ast.AST)}
    out = []
    for node in list(ast.walk(tree)):
        if isinstance(node, ast.Call):
            method = isinstance(node.func, ast.Attribute) and not (
                isinstance(node.func.value, ast.Name) and node.func.value.id == "np")
            subs = list(node.args) + ([node.func.value] if method else [])
        elif isinstance(node, ast.BinOp):
            subs = [node.left, node.right]
        elif isinstance(node, ast.UnaryOp) and not isinstance(node.operand, ast.Constant):
            subs = [node.operand]
        elif isinstance(node, (ast.Subscript, ast.Attribute)) and node in parents and not (
                isinstance(parents[node][0], ast.Call) and parents[node][1] == "func"):
            subs = [node.value]
        else:
            continue
        if node not in parents:
            continue
        parent, field, index = parents[node]
        for sub in subs:
            if not isinstance(sub, ast.expr) or isinstance(sub, ast.Compare):
                continue
            value = getattr(parent, field)
            if isinstance(value, list):
                value[index] = sub
                out.append(ast.unparse(tree))
                value[index] = node
            else:
                setattr(parent, field, sub)
                out.append(ast.unparse(tree))
                setattr(parent, field, node)
    if isinstance(tree.body[0], ast.For):  # the loop's body, once
        out.insert(0, "\n".join(ast.unparse(stmt) for stmt in tree.body[0].body))
    return [c for c in dict.fromkeys(out) if c != code]


def reduce_program(program: Program, seed: int, directory: pathlib.Path,
                   budget: int = 150) -> tuple[Program, str] | None:
    """A smaller program with the same mismatch: greedily drop statements, keep one
    size assignment, simplify the result.  None when ``program`` has no mismatch."""
    _, message = check_isolated(program, seed, directory)
    if message is None:
        return None
    key = mismatch_key(message)

    tries = itertools.count()

    def same(candidate: Program) -> str | None:
        if next(tries) >= budget:
            return None
        _, msg = check_isolated(candidate, seed, directory)
        return msg if msg is not None and mismatch_key(msg) == key else None

    for i in range(len(program.sizes)):  # one size assignment
        cand = dataclasses.replace(program, sizes=[program.sizes[i]],
                                   arg_shapes=[program.arg_shapes[i]])
        if (msg := same(cand)) is not None:
            program, message = cand, msg
            break
    changed = True
    while changed:
        changed = False
        for i in range(len(program.body)):
            cand = dataclasses.replace(program, body=program.body[:i] + program.body[i + 1:])
            if (msg := same(cand)) is not None:
                program, message, changed = cand, msg, True
                break
        results = program.result.split(" + 0.3 * ") + [f"np.sum({a})" for a in program.args]
        for result in results:
            if len(result) < len(program.result):
                cand = dataclasses.replace(program, result=result)
                if (msg := same(cand)) is not None:
                    program, message, changed = cand, msg, True
                    break
        if changed:
            continue
        for i, line in enumerate(program.body + [f"return {program.result}"]):
            for simpler in simpler_expressions(line):
                if i < len(program.body):
                    cand = dataclasses.replace(program, body=program.body[:i] + [simpler]
                                               + program.body[i + 1:])
                else:
                    cand = dataclasses.replace(program, result=simpler[len("return "):])
                if (msg := same(cand)) is not None:
                    program, message, changed = cand, msg, True
                    break
            if changed:
                break
        for i in range(len(program.args)):  # drop an argument nothing mentions
            name = program.args[i]
            if any(name in line for line in program.body + [program.result]):
                continue
            cand = dataclasses.replace(
                program, args=program.args[:i] + program.args[i + 1:],
                arg_shapes=[s[:i] + s[i + 1:] for s in program.arg_shapes],
                layouts=program.layouts[:i] + program.layouts[i + 1:])
            if (msg := same(cand)) is not None:
                program, message, changed = cand, msg, True
                break
    return program, message


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: check random programs, each in a forked child; print each distinct
    mismatch once."""
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz_arrays",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000,
                        help="(program, inputs) pairs to check (24 per program)")
    parser.add_argument("--seed", type=int, default=0, help="the first program's seed")
    parser.add_argument("--progress", action="store_true", help="counts every 50 programs")
    parser.add_argument("--reduce", action="store_true",
                        help="print a reduced program for each distinct mismatch")
    parser.add_argument("--exclude", default="",
                        help="comma-separated kinds not to generate (where, reduce, divide, "
                        "slice, newaxis, reshape, transpose, index, copy, fresh, ...)")
    opts = parser.parse_args(argv)
    exclude = frozenset(filter(None, opts.exclude.split(",")))
    stats: collections.Counter = collections.Counter()
    seen: dict[str, int] = {}
    programs = 0
    with tempfile.TemporaryDirectory(prefix="isozyme_fuzz_") as tmp:
        for seed in itertools.count(opts.seed):
            if sum(stats.values()) >= opts.examples:
                break
            program = generate(RandomChooser(seed), exclude=exclude)
            programs += 1
            counts, message = check_isolated(program, seed, pathlib.Path(tmp))
            stats.update(counts)
            if message is not None:
                stats["MISMATCH"] += 1
                key = mismatch_key(message)
                if key not in seen:
                    seen[key] = seed
                    if opts.reduce:
                        reduced = reduce_program(program, seed, pathlib.Path(tmp))
                        if reduced is not None:
                            message = reduced[1]
                    print(f"=== mismatch (seed {seed}) ===\n{message}\n", flush=True)
            if opts.progress and programs % 50 == 0:
                print(summary(stats), flush=True)
    print(summary(stats))
    print(f"{programs} programs, {stats['MISMATCH']} with a mismatch; distinct first lines:")
    for key, seed in seen.items():
        print(f"  seed {seed}: {key}")
    return 1 if stats["MISMATCH"] else 0


if __name__ == "__main__":
    sys.exit(main())
