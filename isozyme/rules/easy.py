"""General rules derived from an ``easy_rule``'s Jacobian.

``jac(*args)`` returns one tuple per output of ``f`` (one output: one tuple; a bare
value is the one entry of a one-argument function), one entry per argument:
``Constant`` (no derivative) or the partial derivative, whose shape says how it
contracts: scalar argument and output: a number; array argument ``x``, scalar output:
an array of ``x``'s shape (the gradient); scalar argument, array output ``y``: an array
of ``y``'s shape; array argument and output: an array of shape ``y.shape + x.shape``.

From it, :func:`derive` makes Enzyme's three general rules:

- forward: ``tangent_j = sum_i J_ji . dx_i`` per batch lane;
- augmented primal: the primal; the tape is nothing (the reverse rule recomputes the
  Jacobian from the primal arguments) unless an array argument may be overwritten
  before the reverse sweep (``overwritten``): then the tape is the Jacobian itself;
- reverse: ``adj_i = sum_j J_ji^T . dy_j`` per lane; a Duplicated array argument's
  adjoint is added into its shadow in place.

The rules are plain Python run on traced values (not converted: their control flow is
on static values only); they call ``f``, ``jac`` and numpy through ``converted_call``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from isozyme.annotations import Active, BatchDuplicated, Const, Duplicated
from isozyme.errors import RuleError

from .config import AugmentedReturn, Constant, needs_primal, needs_shadow, width
from .registry import function_name

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def call(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` as converted code calls it (traced, ruled or from the table)."""
    from isozyme.frontends.python.functions import converted_call  # noqa: PLC0415

    return converted_call(fn, *args)


def converted(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``fn`` as running on traced values as it is (not AST-converted)."""
    from isozyme.frontends.python.ast_transform import mark_converted  # noqa: PLC0415

    return mark_converted(fn)


def ndim(v: object) -> int:
    """The number of dimensions of a traced or numpy value (0 for scalars)."""
    from isozyme.frontends.python.tracer import Tracer  # noqa: PLC0415

    if isinstance(v, Tracer):
        return len(getattr(v.type, "shape", ()))
    return int(np.ndim(v))  # type: ignore[arg-type]


def is_static_zero(v: object) -> bool:
    """A Python/numpy zero (not a traced value): a seed of an inactive output."""
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v == 0


def unaliased(J: Any) -> Any:
    """``J``, copied when it is a traced array the rule's function did not allocate (an
    argument or a view of one, which the caller may overwrite before the reverse)."""
    from isozyme.frontends.python.buffer_ownership import returned_array  # noqa: PLC0415
    from isozyme.frontends.python.tracer import is_array_value  # noqa: PLC0415

    if is_array_value(J):
        return returned_array(J, public=True)
    return J


def mul(a: Any, b: Any) -> Any:
    """``a * b`` with an array operand first (a traced scalar does not multiply arrays)."""
    return b * a if ndim(b) > 0 and ndim(a) == 0 else a * b


def rows_of(value: object, n_args: int, label: str,
            result_shape: tuple[bool, int] | None = None) -> list[tuple[Any, ...]]:
    """``jac``'s value as one tuple per output, each with one entry per argument
    (``result_shape``: whether ``f`` returns a tuple, and how many results)."""
    if isinstance(value, (tuple, list)) and value and all(
            isinstance(r, (tuple, list)) for r in value):
        rows = [tuple(r) for r in value]
    elif isinstance(value, (tuple, list)):
        rows = [tuple(value)]
    else:
        rows = [(value,)]
    if result_shape is not None:
        is_tuple, n_out = result_shape
        if is_tuple and n_args == 1 and len(rows) == 1 and len(rows[0]) == n_out != 1:
            rows = [(r,) for r in rows[0]]  # one argument: a bare entry per output
        if len(rows) != n_out:
            raise RuleError(
                f"{label}: the Jacobian has {len(rows)} rows; expected one row per result "
                f"of the function ({n_out}), each with one entry per argument ({n_args})")
    for j, row in enumerate(rows):
        if len(row) != n_args:
            raise RuleError(
                f"{label}: row {j} of the Jacobian has {len(row)} entries; expected one "
                f"per argument ({n_args}): a derivative or rules.Constant")
    return rows


def _contract(how: Callable[[], Any], label: str, what: str) -> Any:
    """``how()``, a shape error in it named as the rule's (the Jacobian entry does
    not fit the argument or the result)."""
    from isozyme.errors import IsozymeError  # noqa: PLC0415

    try:
        return how()
    except RuleError:
        raise
    except IsozymeError as exc:
        raise RuleError(f"{label}: {what} does not fit: {exc}") from exc


def check_sizes(J: Any, first: int, v: Any, label: str, what: str) -> None:
    """Check that the dimensions of ``J`` from ``first`` on are ``v``'s sizes: at
    trace time where both are known, else when the compiled code runs (a
    ``ShapeError`` naming the rule)."""
    from isozyme.frontends.python.runtime_checks import require  # noqa: PLC0415

    if ndim(v) == 0:
        return
    for k in range(ndim(v)):
        jk, vk = J.shape[first + k], v.shape[k]
        message = (f"{label}: a Jacobian entry has size {{0}} in dimension {first + k}, "
                   f"where {what} has size {{1}}")
        if isinstance(jk, int) and isinstance(vk, int):
            if jk != vk:
                raise RuleError(message.format(jk, vk))
            continue
        require(jk == vk, "shape", message, jk, vk)


def jvp(J: Any, dx: Any, nx: int, label: str) -> Any:
    """The contribution ``J . dx`` of an argument with ``nx`` dimensions."""
    if nx > 0 and ndim(J) >= nx:
        check_sizes(J, ndim(J) - nx, dx, label, "the argument")
    return _contract(lambda: _jvp(J, dx, nx, label), label,
                     "a Jacobian entry times its argument's tangent")


def vjp(J: Any, dy: Any, x: Any, label: str) -> Any:
    """The contribution ``J^T . dy`` to the adjoint of argument ``x``."""
    nx = ndim(x)
    if ndim(J) != nx + ndim(dy):
        raise RuleError(f"{label}: a Jacobian entry has {ndim(J)} dimensions; expected "
                        f"{nx + ndim(dy)}: the result's ({ndim(dy)}) then the "
                        f"argument's ({nx})")
    check_sizes(J, nx and ndim(J) - nx, x, label, "the argument")
    check_sizes(J, 0, dy, label, "the result")
    return _contract(lambda: _vjp(J, dy, nx, label), label,
                     "a Jacobian entry times its result's seed")


def _jvp(J: Any, dx: Any, nx: int, label: str) -> Any:
    ny = ndim(J) - nx
    if ny < 0:
        raise RuleError(f"{label}: a Jacobian entry has {ndim(J)} dimensions for an "
                        f"argument with {nx}; expected at least {nx}")
    if nx == 0:
        return mul(J, dx)
    if ny == 0:
        return call(np.sum, J * dx)
    ys, xs = _LETTERS[:ny], _LETTERS[ny:ny + nx]
    return call(np.einsum, f"{ys}{xs},{xs}->{ys}", J, dx)


def _vjp(J: Any, dy: Any, nx: int, label: str) -> Any:
    ny = ndim(J) - nx
    if ny < 0:
        raise RuleError(f"{label}: a Jacobian entry has {ndim(J)} dimensions for an "
                        f"argument with {nx}; expected at least {nx}")
    if ny == 0:
        return mul(J, dy)
    if nx == 0:
        return call(np.sum, J * dy)
    ys, xs = _LETTERS[:ny], _LETTERS[ny:ny + nx]
    return call(np.einsum, f"{ys}{xs},{ys}->{xs}", J, dy)


def derive(f: Callable[..., Any], jac: Callable[..., Any]) -> tuple[Callable[..., Any], ...]:
    """The forward, augmented primal and reverse rules of ``f`` given by ``jac``."""
    fname = function_name(f)
    label = f"the easy_rule of {fname}"

    def primal_of(vals: list[Any]) -> Any:
        return call(f, *vals)

    @converted
    def forward(config: Any, func: Any, RT: Any, *args: Any) -> Any:
        vals = [a.val for a in args]
        rows = rows_of(call(jac, *vals), len(args), label, config.result_shape)
        multi = len(rows) > 1 or bool(config.result_shape and config.result_shape[0])
        w = width(config)
        primal = primal_of(vals) if needs_primal(config) else None
        if not needs_shadow(config):
            return primal
        shadows = []
        for lane in range(w):
            tans = []
            for j, row in enumerate(rows):
                t = None
                for J, a in zip(row, args):
                    if J is Constant or not isinstance(a, (Duplicated, BatchDuplicated)):
                        continue
                    dx = a.dval if isinstance(a, Duplicated) else a.dvals[lane]
                    c = jvp(J, dx, ndim(a.val), label)
                    t = c if t is None else t + c
                if t is None:  # no derivative reaches output j: a zero of its kind
                    if primal is None:
                        primal = primal_of(vals)
                    y = primal[j] if multi else primal
                    t = call(np.zeros_like, y) if ndim(y) > 0 else 0.0
                tans.append(t)
            shadows.append(tuple(tans) if multi else tans[0])
        if needs_primal(config):
            return Duplicated(primal, shadows[0]) if w == 1 else \
                BatchDuplicated(primal, tuple(shadows))
        return shadows[0] if w == 1 else tuple(shadows)

    @converted
    def augmented(config: Any, func: Any, RT: Any, *args: Any) -> AugmentedReturn:
        vals = [a.val for a in args]
        primal = primal_of(vals) if needs_primal(config) else None
        tape = None
        if any(ow and ndim(v) > 0 for ow, v in zip(config.overwritten[1:], vals)):
            # the arrays may change before the reverse sweep: keep the Jacobian, its
            # entries that are (or view) an argument copied (jac = lambda x: ((x,),))
            tape = [tuple(unaliased(J) for J in row) for row in
                    rows_of(call(jac, *vals), len(args), label, config.result_shape)]
        return AugmentedReturn(primal, None, tape)

    @converted
    def reverse(config: Any, func: Any, dret: Any, tape: Any, *args: Any) -> tuple[Any, ...]:
        vals = [a.val for a in args]
        w = width(config)
        adjoints: list[Any] = [
            (0.0 if w == 1 else (0.0,) * w) if isinstance(a, Active) else None for a in args]
        if not isinstance(dret, Active):  # no result is differentiated: zero adjoints
            return tuple(adjoints)
        rows = tape if tape is not None else rows_of(call(jac, *vals), len(args), label,
                                                     config.result_shape)
        multi = len(rows) > 1 or bool(config.result_shape and config.result_shape[0])
        lanes = [dret.val] if w == 1 else list(dret.val)
        seeds = [list(s) if multi else [s] for s in lanes]
        for i, a in enumerate(args):
            if isinstance(a, Const):
                continue
            if isinstance(a, Active):
                per_lane = []
                for lane in range(w):
                    total = None
                    for row, dy in zip(rows, seeds[lane]):
                        if row[i] is Constant or is_static_zero(dy):
                            continue
                        c = vjp(row[i], dy, a.val, label)
                        total = c if total is None else total + c
                    per_lane.append(0.0 if total is None else total)
                adjoints[i] = per_lane[0] if w == 1 else tuple(per_lane)
            else:  # a Duplicated array: its adjoint goes into its shadow
                shadows = [a.dval] if isinstance(a, Duplicated) else list(a.dvals)
                for lane in range(w):
                    for row, dy in zip(rows, seeds[lane]):
                        if row[i] is Constant or is_static_zero(dy):
                            continue
                        shadow = shadows[lane]
                        shadow += vjp(row[i], dy, a.val, label)
        return tuple(adjoints)

    for rule in (forward, augmented, reverse):
        rule.jacobian = jac  # type: ignore[attr-defined]
    return forward, augmented, reverse
