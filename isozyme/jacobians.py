"""``jacobian``: full Jacobians, in forward mode (columns, ``chunk`` per sweep in batch
mode) or reverse mode (rows: vector-Jacobian products), Enzyme.jl's convenience function.

The result of ``jacobian(mode, f, *args)`` has one entry per argument (``None`` for
``Const`` arguments and integers); for an argument ``x`` and an output ``y`` it is an
array ``J`` with ``J.shape == y.shape + x.shape`` and ``J[i..., j...] = dy[i...] /
dx[j...]`` (a float when both are scalars).  A function returning a tuple gives a tuple
of such arrays per argument.  ``...WithPrimal`` modes return ``(derivs, val)`` as a
:class:`~isozyme.GradientResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from isozyme.annotations import (
    Active,
    Annotation,
    BatchDuplicated,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Mode,
    Reverse,
    ReverseWithPrimal,
    is_array,
    is_float_scalar,
)
from isozyme.calls import writes_arguments
from isozyme.errors import AnnotationError, ReadOnlyError
from isozyme.runtime.marshal import device_view, on_device
from isozyme.seeds import array_module, make_zero, unit_seed_chunks

#: Lanes per forward sweep when ``chunk`` is not given (Enzyme.jl picks a chunk too):
#: wide enough to amortize the primal, narrow enough to keep the code small.
DEFAULT_CHUNK = 16


def _meta(x: object) -> np.ndarray:
    return device_view(x) if on_device(x) else np.asarray(x)


def argument_kinds(args: Sequence[object]) -> list[str]:
    """Per argument: ``"scalar"`` (a float), ``"array"`` (a float array), or
    ``"const"`` (``Const(...)``, integers, anything else: not differentiated)."""
    kinds = []
    for a in args:
        if isinstance(a, Const):
            kinds.append("const")
        elif is_array(a) and _meta(a).dtype in (np.float64, np.float32):
            kinds.append("array")
        elif is_float_scalar(a):
            kinds.append("scalar")
        else:
            kinds.append("const")
    return kinds


def plain_arguments(args: Sequence[object], who: str = "jacobian") -> tuple:
    """Lists as float64 arrays; other annotations than ``Const`` refused."""
    out = []
    for i, a in enumerate(args):
        if isinstance(a, Annotation) and not isinstance(a, Const):
            raise AnnotationError(
                f"argument {i}: {who} takes plain values or Const(...), not "
                f"{type(a).__name__}"
            )
        out.append(np.asarray(a, dtype=np.float64) if isinstance(a, list) else a)
    return tuple(out)


def check_chunk(chunk: object) -> int | None:
    """``chunk`` must be None or a positive int."""
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise AnnotationError(f"chunk must be a positive int, got {chunk!r}")
    return chunk


def _stack(parts: list[object], inner_shape: tuple[int, ...], template: object) -> object:
    """Stack columns (scalars or arrays of one output) along new trailing axes:
    ``out.shape + inner_shape``."""
    if not inner_shape:  # a scalar argument: its one derivative as it is
        return parts[0]
    xp = array_module(template)
    if all(not is_array(p) for p in parts):
        return xp.asarray(parts, dtype=_meta(template).dtype).reshape(inner_shape)
    stacked = xp.stack([xp.asarray(p) for p in parts], axis=-1)
    return stacked.reshape(tuple(stacked.shape[:-1]) + inner_shape)


def _batch(x: object, seeds: tuple) -> BatchDuplicated:
    """``BatchDuplicated(x, seeds)`` without re-checking each lane: the seeds were made
    here, with ``x``'s shape and dtype, in memory of their own."""
    ann = BatchDuplicated.__new__(BatchDuplicated)
    ann.val, ann.dvals = x, seeds
    return ann


def _duplicated(x: object, seed: object) -> Duplicated:
    """``Duplicated(x, seed)`` without re-checking a seed made here."""
    ann = Duplicated.__new__(Duplicated)
    ann.val, ann.dval = x, seed
    return ann


class _SameInputs:
    """Every sweep of a Jacobian must see the same inputs: a function that writes its
    arguments (``x[0] *= 2``) changes them in each sweep.  Holds copies of the host
    arrays among the arguments; :meth:`after_sweep` puts back what a sweep changed, and
    :meth:`finish` leaves the arrays as one call of ``f`` leaves them."""

    def __init__(self, f: Callable, args: Sequence[object]) -> None:
        self.f = f
        arrays = [a.val if isinstance(a, Const) else a for a in args]
        # (before the first call nobody knows whether f writes its arguments)
        self.saved = ([] if writes_arguments(f) is False
                      else [(a, a.copy()) for a in arrays if type(a) is np.ndarray])
        self.after_one_call: list[tuple[np.ndarray, np.ndarray]] | None = None

    def after_sweep(self) -> None:
        if self.saved and writes_arguments(self.f) is False:
            self.saved = []  # compiled now: f's code writes none of its arguments
        changed = [(a, s) for a, s in self.saved if not np.array_equal(a, s, equal_nan=True)]
        if changed:
            if self.after_one_call is None:
                self.after_one_call = [(a, a.copy()) for a, _ in changed]
            for a, s in changed:
                a[...] = s
        elif self.after_one_call is None:
            self.after_one_call = []

    def finish(self) -> None:
        for a, s in self.after_one_call or ():
            a[...] = s


def _columns(fwd: Mode, f: Callable, anns: list[object], i: int, x: object, n: int,
             width: int, cache: bool, inputs: _SameInputs) -> tuple[list[object], object]:
    """The derivatives along each element of argument ``i`` (``anns[i]`` is replaced),
    ``width`` lanes per sweep, and the primal of the first sweep."""
    from isozyme.api import autodiff  # noqa: PLC0415  (api imports this module)

    if not is_array(x):  # a float: one plain forward sweep
        anns[i] = Duplicated(x, type(x)(1.0))
        out = autodiff(fwd, f, *anns)
        inputs.after_sweep()
        return [out[0]], out[1] if fwd.with_primal else None
    columns: list[object] = []
    val: object = None
    for start, seeds in zip(range(0, n, width), unit_seed_chunks(x, width, cache)):
        if width == 1:
            anns[i] = _duplicated(x, seeds[0])
            out = autodiff(fwd, f, *anns)
            columns.append(out[0])
        else:
            anns[i] = _batch(x, seeds)
            out = autodiff(fwd, f, *anns)
            columns += out[0][: n - start]
        inputs.after_sweep()
        if start == 0 and fwd.with_primal:
            val = out[1]
    return columns, val


def forward_gradient(mode: Mode, f: Callable, args: tuple, kinds: list[str],
                     chunk: int | None) -> Any:
    """``gradient(Forward..., f, *args, chunk=)``: the Jacobian of a float-valued ``f``
    (one entry per argument, shaped like it); an array or tuple result is refused."""
    from isozyme.calls import GradientResult  # noqa: PLC0415

    derivs, val = _forward(mode, f, args, kinds, chunk, float_valued=True)
    return GradientResult(tuple(derivs), val) if mode.with_primal else tuple(derivs)


def _forward(mode: Mode, f: Callable, args: tuple, kinds: list[str], chunk: int | None,
             float_valued: bool = False):
    fwd = ForwardWithPrimal if mode.with_primal else Forward
    derivs: list[object] = []
    val: object = None
    have_val = False
    consts: list[object] = [a if isinstance(a, Const) else Const(a) for a in args]
    inputs = _SameInputs(f, args)
    for i, kind in enumerate(kinds):
        if kind == "const":
            derivs.append(None)
            continue
        x = args[i]
        shape = () if kind == "scalar" else tuple(_meta(x).shape)
        n = int(np.prod(shape)) if shape else 1
        width = min(chunk or DEFAULT_CHUNK, n) if n else 1
        try:  # shared read-only seeds, unless f writes x (then its shadows are written)
            columns, first = _columns(fwd, f, list(consts), i, x, n, width, True, inputs)
        except ReadOnlyError:
            columns, first = _columns(fwd, f, list(consts), i, x, n, width, False, inputs)
        if float_valued and not all(is_float_scalar(c) for c in columns):
            inputs.finish()
            raise AnnotationError(
                f"gradient needs a function returning a float; "
                f"{getattr(f, '__name__', 'f')} returns an array or a tuple: use "
                "jacobian(mode, f, ...)"
            )
        if mode.with_primal and not have_val and n:
            val, have_val = first, True
        derivs.append(_assemble(columns, shape, x))
    inputs.finish()
    if mode.with_primal and not have_val:
        val = f(*[a.val if isinstance(a, Const) else a for a in args])
    return derivs, val


def _assemble(parts: list[object], arg_shape: tuple[int, ...], x: object):
    """The Jacobian block of one argument from its columns (the derivatives along each
    of its elements): the argument's axes trail the output's."""
    if not parts:
        return None
    first = parts[0]
    if isinstance(first, tuple):  # a function returning a tuple: one block per output
        return tuple(
            _assemble([p[k] for p in parts], arg_shape, x)  # type: ignore[index]
            for k in range(len(first))
        )
    return _stack(parts, arg_shape, first if is_array(first) else x)


def _output_template(f: Callable, args: tuple, n_outs: tuple[int, ...] | None) -> object:
    """The primal output of ``f`` (its structure and shapes seed reverse mode)."""
    if n_outs is not None:
        # the output's dtype: that of the float arguments (float32 in, float32 out)
        floats = [_meta(a).dtype for a in args
                  if not isinstance(a, Const) and is_array(a)
                  and _meta(a).dtype in (np.float64, np.float32)]
        dtype = np.result_type(*floats) if floats else np.float64
        return np.zeros(n_outs, dtype=dtype) if n_outs else 0.0
    from isozyme.api import autodiff  # noqa: PLC0415

    # The compiled primal (forward mode with every argument Const), not a Python call.
    return autodiff(ForwardWithPrimal, f, *[a if isinstance(a, Const) else Const(a)
                                            for a in args])[1]


def _output_seeds(template: object) -> list[object]:
    """One unit cotangent per scalar of the output (a float, an array or a tuple)."""
    if isinstance(template, tuple):
        seeds: list[object] = []
        zero = tuple(make_zero(t) for t in template)
        for k, t in enumerate(template):
            for s in _output_seeds(t):
                seeds.append(zero[:k] + (s,) + zero[k + 1:])
        return seeds
    if is_array(template):  # read-only, shared: vjp only reads its seed
        return [lanes[0] for lanes in unit_seed_chunks(template, 1)]
    return [1.0]


def _reverse(mode: Mode, f: Callable, args: tuple, kinds: list[str], chunk: int | None,
             n_outs: tuple[int, ...] | None):
    """Rows of the Jacobian: ``width`` vector-Jacobian products per batched reverse
    sweep (``vjp(..., seeds=...)``), the last chunk padded with zero seeds."""
    from isozyme.vjp import vjp  # noqa: PLC0415

    inputs = _SameInputs(f, args)
    template = _output_template(f, args, n_outs)
    if n_outs is None:
        inputs.after_sweep()
    rev = ReverseWithPrimal if mode.with_primal else Reverse
    out_seeds = _output_seeds(template)
    n = len(out_seeds)
    width = min(chunk or DEFAULT_CHUNK, n) if n else 1
    padded = -(-n // width) * width
    if padded > n:
        out_seeds = out_seeds + [_zero_seed(template)] * (padded - n)
    rows: list[list[object]] = [[] for _ in args]
    val: object = None
    # every row's shadow of an array argument: a row of one zero block per argument
    blocks = [array_module(a).zeros((padded,) + tuple(_meta(a).shape),
                                    dtype=_meta(a).dtype) if k == "array" else None
              for a, k in zip(args, kinds)]
    consts = [a if isinstance(a, Const) else Const(a) for a in args]
    for r in range(0, padded, width):
        if width == 1:
            anns = [
                Active(a) if k == "scalar" else _duplicated(a, b[r]) if k == "array" else c
                for a, k, b, c in zip(args, kinds, blocks, consts)
            ]
            out = vjp(rev, f, out_seeds[r], *anns)
            inputs.after_sweep()
            lanes: Sequence[tuple] = (out[0],)
        else:
            anns = [
                Active(a) if k == "scalar"
                else _batch(a, tuple(b[r + j] for j in range(width))) if k == "array" else c
                for a, k, b, c in zip(args, kinds, blocks, consts)
            ]
            out = vjp(rev, f, *anns, seeds=tuple(out_seeds[r : r + width]))
            inputs.after_sweep()
            lanes = out[0]
        for i, k in enumerate(kinds):
            if k == "scalar":
                rows[i] += [lane[i] for lane in lanes]
        if mode.with_primal and r == 0:
            val = out[1]
    inputs.finish()
    derivs = []
    for i, k in enumerate(kinds):
        if k == "const":
            derivs.append(None)
            continue
        if k == "array" and is_array(template):  # the block is the Jacobian already
            out_shape = tuple(_meta(template).shape)
            derivs.append(blocks[i][:n].reshape(out_shape + tuple(_meta(args[i]).shape)))
            continue
        part = rows[i][:n] if k == "scalar" else list(blocks[i][:n])  # type: ignore[index]
        derivs.append(_rows_to_jacobian(part, template, args[i], k))
    return derivs, val


def _zero_seed(template: object) -> object:
    """A zero cotangent shaped like the output (pads the last chunk of rows)."""
    if isinstance(template, tuple):
        return tuple(make_zero(t) for t in template)
    return make_zero(template) if is_array(template) else 0.0


def _rows_to_jacobian(rows: list[object], template: object, x: object, kind: str) -> object:
    """Rows (one per output scalar, each shaped like ``x``) as ``out.shape + x.shape``;
    a tuple of blocks for a tuple output."""
    if isinstance(template, tuple):
        blocks, k = [], 0
        for t in template:
            n = _meta(t).size if is_array(t) else 1
            blocks.append(_rows_to_jacobian(rows[k : k + n], t, x, kind))
            k += n
        return tuple(blocks)
    x_shape = tuple(_meta(x).shape) if kind == "array" else ()
    if not is_array(template):
        return rows[0]
    out_shape = tuple(_meta(template).shape)
    xp = array_module(x if kind == "array" else template)
    dtype = _meta(x).dtype if kind == "array" else _meta(template).dtype
    return xp.asarray(
        xp.stack([xp.asarray(r, dtype=dtype) for r in rows]) if kind == "array"
        else xp.asarray(rows, dtype=dtype)
    ).reshape(out_shape + x_shape)


def jacobian(
    mode: Mode,
    f: Callable,
    *args: Any,
    chunk: int | None = None,
    n_outs: Sequence[int] | None = None,
) -> Any:
    """The Jacobian of ``f`` with respect to each argument (Enzyme.jl's ``jacobian``).

    ``Forward``/``ForwardWithPrimal``: one batch (vector) forward sweep per ``chunk``
    elements of an argument (default ``min(size, 16)``; ``chunk=1`` is plain forward
    mode), giving columns.  ``Reverse``/``ReverseWithPrimal``: vector-Jacobian
    products (:func:`isozyme.vjp`), one batched reverse sweep per ``chunk`` output
    elements (default ``min(size, 16)``), giving rows; ``n_outs`` (the output's shape,
    ``()`` for a float) saves the primal run that otherwise finds it.

    Returns one entry per argument (``None`` for ``Const`` and non-float arguments):
    an array with ``J.shape == out.shape + arg.shape`` (a float for a float of a
    float; a tuple of blocks when ``f`` returns a tuple).  ``...WithPrimal``: a
    :class:`~isozyme.GradientResult` ``(derivs, val)``.

    >>> def foo(x):
    ...     return np.array([(1.0 - x[0])**2 + 100.0 * (x[1] - x[0]**2)**2, x[0] * x[1]])
    >>> jacobian(Forward, foo, np.array([1.0, 2.0]))[0]
    array([[-400.,  200.],
           [   2.,    1.]])
    """
    from isozyme.calls import GradientResult  # noqa: PLC0415

    if not isinstance(mode, Mode):
        raise AnnotationError(f"the first argument must be a mode, got {mode!r}")
    chunk = check_chunk(chunk)
    if n_outs is not None:
        if not isinstance(n_outs, (tuple, list)) or not all(
            isinstance(d, int) and d >= 0 for d in n_outs
        ):
            raise AnnotationError(f"n_outs must be a tuple of sizes, got {n_outs!r}")
        n_outs = tuple(n_outs)
    args = plain_arguments(args)
    kinds = argument_kinds(args)
    if mode.reverse:
        derivs, val = _reverse(mode, f, args, kinds, chunk, n_outs)  # type: ignore[arg-type]
    else:
        derivs, val = _forward(mode, f, args, kinds, chunk)
    if mode.with_primal:
        return GradientResult(tuple(derivs), val)
    return tuple(derivs)
