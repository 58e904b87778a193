"""Import-time wiring of whole-array operations into the tracer: the ``ArrayTracer``
operators and methods, and the numpy functions in ``ARRAY_AWARE`` (used when an
argument is a traced array) and ``TABLE``.  Imported by the package ``__init__``, which
:mod:`..arrays` imports last.
"""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.builtin import i1

from .. import builtins_table
from ..arrays import ARRAY_AWARE, ARRAY_TABLE, ArrayTracer
from ..builtins_table import TABLE
from ..tracer import absolute, constant, emit1, is_bool_type, negate, ssa
from .array_builders import flatten, np_array, np_asarray, np_concatenate, np_diag, np_stack, reshape
from .contractions import np_dot, np_einsum, np_inner, np_matmul, np_outer, np_vdot
from .copies import np_transpose
from .elementwise import (
    _binop,
    _operand_like,
    _ufunc,
    astype,
    elementwise,
    inplace,
    np_clip,
    np_where,
)
from .reductions import _method_reducer, _reducer

_INPLACE_NAMES = {"+": "add", "-": "sub", "*": "mul", "/": "truediv", "//": "floordiv",
                  "%": "mod", "**": "pow", "&": "and", "|": "or", "^": "xor",
                  "<<": "lshift", ">>": "rshift"}
for _op, _name in _INPLACE_NAMES.items():
    _f, _r = _binop(_op)
    setattr(ArrayTracer, f"__{_name}__", _f)
    setattr(ArrayTracer, f"__r{_name}__", _r)
    setattr(ArrayTracer, f"__i{_name}__",
            (lambda o: lambda self, other: inplace(o, self, other))(_op))
for _op, _name, _refl in [("<", "lt", ">"), ("<=", "le", ">="), (">", "gt", "<"),
                          (">=", "ge", "<="), ("==", "eq", "=="), ("!=", "ne", "!=")]:
    setattr(ArrayTracer, f"__{_name}__", _binop(_op)[0])
ArrayTracer.__hash__ = object.__hash__  # type: ignore[method-assign,assignment]
ArrayTracer.__neg__ = lambda self: elementwise(negate, self)  # type: ignore[method-assign,assignment,return-value]
ArrayTracer.__pos__ = lambda self: elementwise(lambda a: +a, self)  # type: ignore[method-assign,assignment,return-value]
ArrayTracer.__abs__ = lambda self: elementwise(absolute, self)  # type: ignore[method-assign,assignment,return-value]
ArrayTracer.__invert__ = lambda self: elementwise(  # type: ignore[method-assign,assignment]
    lambda a: emit1(arith.XOrIOp(ssa(a), ssa(constant(1, i1)))) if is_bool_type(a.type)
    else ~a, self)


# `@` lives here rather than in .elementwise: it is a contraction (.contractions).
def _matmul_method(self: ArrayTracer, other: object) -> Any:
    if not _operand_like(other):
        return NotImplemented
    return np_matmul(self, other)


def _rmatmul_method(self: ArrayTracer, other: object) -> Any:
    if not _operand_like(other):
        return NotImplemented
    return np_matmul(other, self)


ArrayTracer.__matmul__ = _matmul_method  # type: ignore[method-assign,assignment]
ArrayTracer.__rmatmul__ = _rmatmul_method  # type: ignore[method-assign,assignment]


for _f, _b in list(TABLE.items()):
    if isinstance(_f, np.ufunc):
        ARRAY_AWARE[_f] = _ufunc(_b, _f.__name__, _f.nin)
ARRAY_AWARE[builtins.abs] = lambda x: elementwise(absolute, x)
ARRAY_AWARE[np.round] = ARRAY_AWARE[np.around] = (
    lambda a, decimals=0: elementwise(lambda v: builtins_table._np_round(v, decimals), a))
ARRAY_AWARE[np.where] = np_where
ARRAY_AWARE[np.clip] = np_clip
for _kind, _fns in [("sum", [np.sum]), ("prod", [np.prod]), ("mean", [np.mean]),
                    ("max", [np.max, np.amax]), ("min", [np.min, np.amin])]:
    for _fn in _fns:
        ARRAY_AWARE[_fn] = _reducer(_kind)
        TABLE[_fn] = _reducer(_kind)  # np.sum(s) of a traced scalar is s
    setattr(ArrayTracer, _kind, _method_reducer(_kind))
ARRAY_AWARE.update({
    np.dot: np_dot,
    np.matmul: np_matmul,
    np.outer: np_outer,
    np.inner: np_inner,
    np.vdot: np_vdot,
    np.einsum: np_einsum,
    np.transpose: np_transpose,
    np.array: np_array,
    np.asarray: np_asarray,
    np.concatenate: np_concatenate,
    np.stack: np_stack,
    np.diag: np_diag,
    np.reshape: lambda a, newshape=None, order="C", **kw: reshape(
        a, kw.get("shape", newshape), order=order),
    np.ravel: lambda a, order="C": reshape(a, -1, order=order, what="ravel"),
})
# np.array / np.asarray of lists holding traced scalars (no array argument).
TABLE[np.array] = np_array
TABLE[np.asarray] = np_asarray

ArrayTracer.T = property(np_transpose)  # type: ignore[attr-defined]
ArrayTracer.transpose = lambda self, *axes: np_transpose(  # type: ignore[attr-defined]
    self, (axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes) or None)
ArrayTracer.dot = lambda self, other: np_dot(self, other)  # type: ignore[attr-defined]
ArrayTracer.reshape = lambda self, *shape, order="C": reshape(self, *shape, order=order)  # type: ignore[attr-defined]
ArrayTracer.ravel = lambda self, order="C": reshape(self, -1, order=order, what="ravel")  # type: ignore[attr-defined]
ArrayTracer.flatten = lambda self, order="C": flatten(self, order=order)  # type: ignore[attr-defined]
ArrayTracer.astype = astype  # type: ignore[attr-defined]
ArrayTracer.clip = lambda self, a_min=None, a_max=None, **kw: np_clip(self, a_min, a_max, **kw)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- issue 9
# Statistics, scans, builders and shape functions (modules .statistics, .scans,
# .builders, .shaping).
from .scans import np_diff, np_roll, scan  # noqa: E402
from .statistics import np_any_all, np_arg_extreme, np_norm, np_std, np_var  # noqa: E402

ARRAY_AWARE.update({
    np.var: np_var,
    np.std: np_std,
    np.linalg.norm: np_norm,
    np.cumsum: lambda a, axis=None, dtype=None, out=None: scan("sum", a, axis, dtype, out),
    np.cumprod: lambda a, axis=None, dtype=None, out=None: scan("prod", a, axis, dtype, out),
    np.diff: np_diff,
    np.roll: np_roll,
    np.any: lambda a, axis=None, out=None, keepdims=False, **kw: np_any_all(
        "any", a, axis, out, keepdims, **kw),
    np.all: lambda a, axis=None, out=None, keepdims=False, **kw: np_any_all(
        "all", a, axis, out, keepdims, **kw),
    np.argmax: lambda a, axis=None, out=None, **kw: np_arg_extreme("max", a, axis, out, **kw),
    np.argmin: lambda a, axis=None, out=None, **kw: np_arg_extreme("min", a, axis, out, **kw),
})
ArrayTracer.var = lambda self, *a, **kw: np_var(self, *a, **kw)  # type: ignore[attr-defined]
ArrayTracer.std = lambda self, *a, **kw: np_std(self, *a, **kw)  # type: ignore[attr-defined]
ArrayTracer.cumsum = lambda self, axis=None, dtype=None, out=None: scan(  # type: ignore[attr-defined]
    "sum", self, axis, dtype, out)
ArrayTracer.cumprod = lambda self, axis=None, dtype=None, out=None: scan(  # type: ignore[attr-defined]
    "prod", self, axis, dtype, out)
ArrayTracer.any = lambda self, axis=None, out=None, keepdims=False, **kw: np_any_all(  # type: ignore[attr-defined]
    "any", self, axis, out, keepdims, **kw)
ArrayTracer.all = lambda self, axis=None, out=None, keepdims=False, **kw: np_any_all(  # type: ignore[attr-defined]
    "all", self, axis, out, keepdims, **kw)
ArrayTracer.argmax = lambda self, axis=None, out=None, **kw: np_arg_extreme(  # type: ignore[attr-defined]
    "max", self, axis, out, **kw)
ArrayTracer.argmin = lambda self, axis=None, out=None, **kw: np_arg_extreme(  # type: ignore[attr-defined]
    "min", self, axis, out, **kw)

from .index_builders import (  # noqa: E402
    np_eye,
    np_identity,
    np_linspace,
    np_tril,
    np_triu,
    tri_indices,
    tri_indices_from,
)
from .shaping import (  # noqa: E402
    np_concatenate_nd,
    np_expand_dims,
    np_hstack,
    np_pad,
    np_squeeze,
    np_stack_nd,
    np_vstack,
)

# Builders: a traced buffer whenever converted code calls them (also with Python ints).
ARRAY_TABLE.update({
    np.eye: np_eye,
    np.identity: np_identity,
    np.linspace: np_linspace,
    np.triu_indices: lambda n, k=0, m=None: tri_indices(True, n, k, m),
    np.tril_indices: lambda n, k=0, m=None: tri_indices(False, n, k, m),
})
ARRAY_AWARE.update({
    np.triu: np_triu,
    np.tril: np_tril,
    np.triu_indices_from: lambda arr, k=0: tri_indices_from(True, arr, k),
    np.tril_indices_from: lambda arr, k=0: tri_indices_from(False, arr, k),
    np.squeeze: np_squeeze,
    np.expand_dims: np_expand_dims,
    np.concatenate: np_concatenate_nd,
    np.stack: np_stack_nd,
    np.hstack: np_hstack,
    np.vstack: np_vstack,
    np.pad: np_pad,
})
ArrayTracer.squeeze = lambda self, axis=None: np_squeeze(self, axis)  # type: ignore[attr-defined]

# The operator ufuncs (np.add(x, y, out=z)...): the operators' element rules.
from .elementwise import _BINARY_FNS  # noqa: E402

for _f, _op in [(np.add, "+"), (np.subtract, "-"), (np.multiply, "*"), (np.divide, "/"),
                (np.true_divide, "/"), (np.floor_divide, "//"), (np.mod, "%"),
                (np.remainder, "%"), (np.less, "<"), (np.less_equal, "<="),
                (np.greater, ">"), (np.greater_equal, ">="), (np.equal, "=="),
                (np.not_equal, "!=")]:
    TABLE.setdefault(_f, _BINARY_FNS[_op])
    ARRAY_AWARE[_f] = _ufunc(TABLE[_f], _f.__name__, _f.nin)
for _f, _fn in [(np.negative, negate), (np.positive, lambda a: +a)]:
    TABLE.setdefault(_f, _fn)
    ARRAY_AWARE[_f] = _ufunc(_fn, _f.__name__, _f.nin)


def np_vectorize(pyfunc: Any, *args: object, **kwargs: object) -> Any:
    """``np.vectorize(g)`` in traced code, for a ``g`` with a scalar rule (``math.lgamma``,
    ``math.erf``...): ``g`` applied elementwise (one ``linalg.generic``), e.g. a
    ``gammaln`` on arrays.  Other functions raise: write the loop."""
    from ..diagnostics import trace_error  # noqa: PLC0415

    builder = builtins_table.lookup(pyfunc)
    if builder is None or args or kwargs:
        name = getattr(pyfunc, "__name__", type(pyfunc).__name__)
        raise trace_error(f"np.vectorize of {name}",
                          "only functions isozyme has a scalar rule for (math.*, numpy "
                          "scalar functions) are vectorized; write a loop over the elements")

    def vectorized(*xs: object) -> Any:
        return elementwise(builder, *xs)

    vectorized.runs_on_traced_values = True  # type: ignore[attr-defined]  # (functions.py)
    return vectorized


ARRAY_TABLE[np.vectorize] = np_vectorize


# --------------------------------------------------------------------------- the table

#: What a supported function does not do (numpy's behaviour otherwise); the docs'
#: table of supported numpy functions prints these beside the names.
NOTES: dict[str, str] = {
    "numpy.sum": "axis=None|int|tuple, keepdims, dtype; no out=/where=/initial=",
    "numpy.var": "axis, ddof (or correction), keepdims; no out=/where=/dtype=",
    "numpy.std": "axis, ddof (or correction), keepdims; no out=/where=/dtype=",
    "numpy.linalg.norm": "vectors: ord None/2, 1, inf, -inf, 0, p; matrices: None/'fro', "
                         "1, -1, inf, -inf (no 2, -2, 'nuc'); axis int or pair, keepdims",
    "numpy.cumsum": "axis None or int, dtype; a loop (scf.for); no out=",
    "numpy.cumprod": "axis None or int, dtype; a loop (scf.for); no out=",
    "numpy.diff": "n, axis; no prepend=/append=",
    "numpy.roll": "shift int or traced int, axis None/int/tuple",
    "numpy.argmax": "axis None or int, keepdims; int64 result, no derivative",
    "numpy.argmin": "axis None or int, keepdims; int64 result, no derivative",
    "numpy.eye": "N, M (ints or traced ints), k a Python int, dtype",
    "numpy.linspace": "scalar start/stop (traced or not), num, endpoint, retstep, dtype; "
                      "no axis=",
    "numpy.triu": "rank >= 2, k a Python int",
    "numpy.tril": "rank >= 2, k a Python int",
    "numpy.triu_indices": "n, m ints or traced ints, k a Python int; int64 arrays",
    "numpy.tril_indices": "n, m ints or traced ints, k a Python int; int64 arrays",
    "numpy.pad": "mode='constant' only, one constant value (number or traced scalar)",
    "numpy.squeeze": "a view; drops the dimensions that are statically 1",
    "numpy.concatenate": "arrays of one rank, any axis (or None)",
    "numpy.matmul": "1-D/2-D, and stacks of any rank (broadcast)",
    "numpy.einsum": "subscripts string, explicit or implicit output, `...`",
    "numpy.dot": "1-D and 2-D operands (or a scalar)",
    "numpy.diag": "k=0, of a 1-D or 2-D array",
    "numpy.where": "three arguments (the one-argument form has a data-dependent size)",
    "numpy.reshape": "C order, one -1; a view (a layout numpy would copy raises)",
    "math.lgamma": "from elementary ops (derivative: digamma by the same series); "
                   "inf at the poles where CPython raises",
    "math.gamma": "sign * exp(lgamma(x))",
    "numpy.vectorize": "of a function with a scalar rule (math.lgamma...), created in "
                       "traced code",
}
_UFUNC_NOTE = "elementwise with broadcasting; out= (keyword or positional); no where=/dtype="
_SCALAR_NOTE = "on traced scalars"
_BUILDER_NOTE = "builds a traced array (sizes may be traced integers)"


def _public_names() -> dict[int, list[str]]:
    """id of each public callable of numpy, numpy.linalg, math and builtins -> its
    qualified names (aliases included)."""
    names: dict[int, list[str]] = {}
    for prefix, module in [("numpy", np), ("numpy.linalg", np.linalg), ("math", math),
                           ("builtins", builtins)]:
        for name, obj in vars(module).items():
            if not name.startswith("_") and callable(obj):
                names.setdefault(id(obj), []).append(f"{prefix}.{name}")
    return names


def supported_numpy_functions() -> list[tuple[str, str]]:
    """The numpy, ``math`` and builtin functions traced code may call, and the
    ``ndarray`` methods and properties of traced arrays, as sorted ``(qualified name,
    note)`` pairs (``("numpy.linalg.norm", "vectors: ord None/2, ...")``), read from
    the frontend's own tables (:data:`..arrays.ARRAY_TABLE`, :data:`..arrays.ARRAY_AWARE`,
    :data:`..builtins_table.TABLE`) so the documentation cannot drift from them."""
    names = _public_names()
    rows: dict[str, str] = {}

    def add(f: object, default: str) -> None:
        for name in names.get(id(f), []):
            if rows.get(name) == _SCALAR_NOTE and default == "on traced arrays":
                default = "on traced scalars and arrays"
            if name not in rows or rows[name] == _SCALAR_NOTE:
                rows[name] = NOTES.get(name, default)

    for f in TABLE:
        add(f, _UFUNC_NOTE if isinstance(f, np.ufunc) else _SCALAR_NOTE)
    for f in ARRAY_AWARE:
        add(f, _UFUNC_NOTE if isinstance(f, np.ufunc) else "on traced arrays")
    for f in ARRAY_TABLE:
        add(f, _BUILDER_NOTE)
    for attr, value in sorted(vars(ArrayTracer).items()):
        if not attr.startswith("_") and hasattr(np.ndarray, attr):
            kind = "attribute" if isinstance(value, property) else "method"
            rows[f"numpy.ndarray.{attr}"] = NOTES.get(f"numpy.{attr}",
                                                      f"{kind} of traced arrays")
    return sorted(rows.items())
