"""Contractions: ``np.einsum``, ``np.dot``, ``@``/``np.matmul``, ``np.outer``,
``np.inner``/``np.vdot``.  Each is one generic whose loops are the output indices
(``parallel``) then the summed indices (``reduction``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdsl.dialects import memref
from xdsl.dialects.builtin import i64

from ..shape_checks import broadcast_view, unify_sizes
from ..arrays import ArrayTracer
from ..diagnostics import trace_error
from ..tracer import (
    Tracer,
    cast,
    emit1,
    is_array_value,
    is_bool_type,
    join_types,
    ssa,
    whole_array_error,
)
from .array_builders import _as_array_operand
from .elementwise import _BINARY_FNS, elementwise
from .linalg_builder import (
    _ZERO,
    Size,
    _d,
    _is_one,
    _map,
    _static,
    fill,
    generic,
    new_buffer,
)


def _expand_ellipsis(subscripts: str, ranks: Sequence[int]) -> str:
    """``subscripts`` with each ``...`` replaced by letters not used elsewhere, one per
    broadcast dimension, aligned on the right across operands (numpy's rule); an
    implicit output gets the ``...`` letters first, as numpy puts them."""
    s = subscripts.replace(" ", "")
    lhs, arrow, out = s.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(ranks):
        raise ValueError(f"einsum: {len(ins)} operand subscripts for {len(ranks)} operands")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in s]
    counts = []
    for part, r in zip(ins, ranks):
        if part.count("...") > 1 or part.replace("...", "").count(".") > 0:
            raise ValueError(f"einsum: invalid subscripts {subscripts!r}")
        counts.append(r - len(part.replace("...", "")) if "..." in part else 0)
    if any(c < 0 for c in counts):
        raise ValueError("einsum: an operand has more subscripts than dimensions")
    width = max(counts, default=0)
    if width > len(spare):
        raise ValueError("einsum: too many broadcast dimensions")
    letters = spare[:width]
    ins = [p.replace("...", "".join(letters[width - c:])) for p, c in zip(ins, counts)]
    if arrow:
        out = out.replace("...", "".join(letters))
    else:
        joined = "".join(ins)
        out = "".join(letters) + "".join(
            sorted(c for c in set(joined) if joined.count(c) == 1 and c not in letters))
    return ",".join(ins) + "->" + out


def _parse_einsum(subscripts: str, n: int) -> tuple[list[str], str]:
    s = subscripts.replace(" ", "")
    if "." in s:
        raise trace_error("np.einsum with `...`", "write every index explicitly")
    if "->" in s:
        lhs, out = s.split("->")
    else:
        lhs = s
        letters = lhs.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    ins = lhs.split(",")
    if len(ins) != n:
        raise ValueError(f"einsum: {len(ins)} operand subscripts for {n} operands")
    for part in [*ins, out]:
        if not all(c.isalpha() for c in part):
            raise ValueError(f"einsum: invalid subscripts {subscripts!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"einsum: output subscript repeated in {subscripts!r}")
    if any(c not in lhs for c in out):
        raise ValueError(f"einsum: output subscript not in the inputs in {subscripts!r}")
    return ins, out


def contract(operands: Sequence[ArrayTracer], subs: Sequence[str], out: str,
             broadcast: bool | str = False) -> Any:
    """One generic for ``np.einsum(','.join(subs) + '->' + out, *operands)``.

    Sizes with the same letter must be equal (``np.dot``, ``@``: checked when tracing,
    before the call or in the compiled code, see :mod:`..shape_checks`); with
    ``broadcast`` (``True`` for every letter, as ``np.einsum``; or the letters that
    broadcast, as the stack dimension of ``@``) a size 1 broadcasts, as in numpy."""
    for x, s in zip(operands, subs):
        if x.ndim != len(s):
            raise ValueError(f"einsum: operand of rank {x.ndim} has subscripts {s!r}")
    letters = list(out)
    for s in subs:
        for c in s:
            if c not in letters:
                letters.append(c)
    pos = {c: k for k, c in enumerate(letters)}
    size: dict[str, Size] = {}
    late: list[list[int]] = [[] for _ in operands]
    for c in letters:
        dims = [(x, j) for x, s in zip(operands, subs) for j, cj in enumerate(s) if cj == c]
        size[c], runtime = unify_sizes(
            dims, broadcast=broadcast is True or (isinstance(broadcast, str) and c in broadcast))
        for x, j in runtime:
            late[next(i for i, o in enumerate(operands) if o is x)].append(j)
    operands = [broadcast_view(x, [size[c] for c in s], dims) if dims else x
                for x, s, dims in zip(operands, subs, late)]
    nloops = len(letters)
    maps = []
    for x, s in zip(operands, subs):
        exprs = [_ZERO if _static(x, j) == 1 and not _is_one(size[c]) else _d(pos[c])
                 for j, c in enumerate(s)]
        maps.append(_map(nloops, exprs))
    elt = join_types(*[(x.element_type, True) for x in operands])
    if is_bool_type(elt):
        elt = i64
    summed = nloops > len(out)
    result = new_buffer([size[c] for c in out], elt)
    if summed:
        fill(result, 0)

    def body(*args: Tracer) -> object:
        vals = [cast(a, elt) for a in args[: len(operands)]]
        p = vals[0]
        for v in vals[1:]:
            p = p * v
        return args[len(operands)] + p if summed else p

    generic([ssa(x) for x in operands], maps, result, _map(nloops, [_d(pos[c]) for c in out]),
            ["parallel"] * len(out) + ["reduction"] * (nloops - len(out)), body,
            reads_output=summed)
    if result.ndim == 0:
        return emit1(memref.LoadOp.get(ssa(result), []))
    return result


def np_einsum(subscripts: object, *operands: object, **kwargs: object) -> Any:
    """``np.einsum`` with explicit or implicit subscripts on arrays; ``...`` stands for
    the broadcast dimensions (letters of their own, :func:`_expand_ellipsis`)."""
    if not isinstance(subscripts, str):
        raise trace_error("np.einsum without a subscripts string",
                          "pass the subscripts as the first argument")
    if kwargs.get("out") is not None:
        raise trace_error("np.einsum with out=", "not supported on traced arrays")
    ops = [_as_array_operand(o, "np.einsum") for o in operands]
    if not all(is_array_value(o) for o in ops):
        raise trace_error("np.einsum with a scalar operand", "operands must be arrays")
    if "." in subscripts:
        subscripts = _expand_ellipsis(subscripts, [o.ndim for o in ops])  # type: ignore[union-attr]
    subs, out = _parse_einsum(subscripts, len(ops))
    return contract(ops, subs, out, broadcast=True)  # type: ignore[arg-type]


_DOT_SUBS = {(1, 1): (["i", "i"], ""), (2, 1): (["ij", "j"], "i"),
             (1, 2): (["j", "jk"], "k"), (2, 2): (["ij", "jk"], "ik")}


def np_dot(a: object, b: object, out: object = None) -> Any:
    """``np.dot`` of 1-D/2-D arrays (a product when an operand is a scalar)."""
    if out is not None:
        raise trace_error("np.dot with out=", "not supported on traced arrays")
    a, b = _as_array_operand(a, "np.dot"), _as_array_operand(b, "np.dot")
    if not (is_array_value(a) and is_array_value(b)):
        return elementwise(_BINARY_FNS["*"], a, b)
    key = (a.ndim, b.ndim)  # type: ignore[union-attr]
    if key not in _DOT_SUBS:
        raise whole_array_error(f"np.dot of arrays of ranks {key}")
    subs, out_s = _DOT_SUBS[key]
    return contract([a, b], subs, out_s)  # type: ignore[list-item]


def np_matmul(a: object, b: object, **kwargs: object) -> Any:
    """``a @ b``/``np.matmul``: 1-D/2-D arrays, and stacks of matrices of any rank
    whose leading (stack) dimensions broadcast, as numpy's."""
    if kwargs.get("out") is not None:
        raise trace_error("np.matmul with out=", "not supported on traced arrays")
    a, b = _as_array_operand(a, "`@`"), _as_array_operand(b, "`@`")
    if not (is_array_value(a) and is_array_value(b)):
        raise ValueError("matmul: Input operand does not have enough dimensions")
    key = (a.ndim, b.ndim)  # type: ignore[union-attr]
    if key in _DOT_SUBS:
        subs, out_s = _DOT_SUBS[key]
        return contract([a, b], subs, out_s)  # type: ignore[list-item]
    if 0 in key:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    # Stacks of matrices: the leading dimensions broadcast (numpy's rule), a 1-D
    # operand is a row (left) or a column (right) vector whose dimension is dropped.
    stack = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: max(key) - 2]
    sa = stack[len(stack) - (key[0] - 2):] + "ij" if key[0] > 1 else "j"
    sb = stack[len(stack) - (key[1] - 2):] + "jk" if key[1] > 1 else "j"
    out = stack + ("i" if key[0] > 1 else "") + ("k" if key[1] > 1 else "")
    return contract([a, b], [sa, sb], out, broadcast=stack)  # type: ignore[list-item]


def np_outer(a: object, b: object, out: object = None) -> Any:
    """``np.outer`` of two 1-D arrays."""
    a, b = _as_array_operand(a, "np.outer"), _as_array_operand(b, "np.outer")
    if not (is_array_value(a) and is_array_value(b)) or a.ndim != 1 or b.ndim != 1:  # type: ignore[union-attr]
        raise whole_array_error("np.outer of operands that are not both 1-D arrays")
    return contract([a, b], ["i", "j"], "ij")  # type: ignore[list-item]


def np_inner(a: object, b: object) -> Any:
    """``np.inner`` of two 1-D arrays (a traced scalar)."""
    a, b = _as_array_operand(a, "np.inner"), _as_array_operand(b, "np.inner")
    if not (is_array_value(a) and is_array_value(b)) or a.ndim != 1 or b.ndim != 1:  # type: ignore[union-attr]
        raise whole_array_error("np.inner of operands that are not both 1-D arrays")
    return contract([a, b], ["i", "i"], "")  # type: ignore[list-item]


def np_vdot(a: object, b: object) -> Any:
    """``np.vdot`` of two 1-D real arrays: the same as :func:`np_inner`."""
    return np_inner(a, b)
