"""Whole-array numpy code on :class:`.arrays.ArrayTracer` (docs/ir.md, "Whole-array
numpy code"): each operation is one ``linalg.generic`` on buffers.

IR form
-------
An operation allocates its result (``memref.alloc``, identity layout, registered for the
``memref.dealloc`` at the end of the enclosing function/loop body like any local array)
and emits one ``linalg.generic`` with ``ins`` = its operands and ``outs`` = the result.
Sizes are dynamic (``memref.dim`` of an operand that has that dimension) except
dimensions that are statically 1 (``x[:, None]``, ``keepdims=True``), which stay static
(``memref<?x1xf64>``).  The loops of the generic are the dimensions of the result
(elementwise ops), or of the input (reductions), or the distinct einsum indices
(contractions), in that order.

* **Python numbers** are not operands: they become ``arith.constant`` ops inside the
  body (the scalar tracing rules of :mod:`.tracer` apply unchanged in the body, so
  ``x * 2`` on an ``i64`` array stays integer, ``x / 2`` is float, ...).
* **Traced scalars** (``f64``/``f32``/``i64``/``i1`` SSA values) are ``ins`` operands
  of their own (non-shaped) type, with the indexing map ``(d0, ..., dn-1) -> ()`` (as
  many dims as loops, no results: that is what xDSL's verifier wants for a scalar) and a
  body argument of the scalar's type.  xDSL's ``convert-linalg-to-loops`` passes such an
  operand to the body as it is (no load).
* **Broadcasting** follows numpy on ranks (missing leading dimensions) and on static 1
  dimensions: operand dimension j of an operand of rank r maps to loop
  ``d(j + R - r)``, or to the affine constant ``0`` when the operand's dimension is
  statically 1 and the result's is not (e.g. ``(d0, d1) -> (d0, 0)`` for a
  ``memref<?x1xf64>`` against a ``memref<?x?xf64>``).  Two dynamic dimensions are
  assumed equal.  ``convert-linalg-to-loops`` turns a constant map result into
  ``affine.apply affine_map<() -> (0)>()``; ``lower-affine`` makes it an
  ``arith.constant``.
* **Comparisons** (``x > 0``) produce ``i1`` arrays (``memref<?xi1>``); ``np.where``
  selects with them, arithmetic converts them like Python bools.
* **Reductions** (``np.sum/prod/max/min/mean``, methods too, ``axis=None|int|tuple``,
  ``keepdims``) first fill the output with a generic with no inputs (``0``, ``1``,
  ``-inf``/``+inf``; integer min/max for integer arrays), then accumulate with one
  generic: the input's map is the identity, the output's map keeps the non-reduced
  loops (the constant 0 for a reduced dimension kept with ``keepdims``), and reduced
  loops are ``reduction`` iterators.  The body is ``out (+|*|maximumf|minimumf) in``
  (``maximumf``/``minimumf`` propagate NaN like numpy).  A full reduction writes a
  rank-0 ``memref<f64>`` and returns the ``memref.load`` of it (a scalar Tracer).
  ``np.mean`` divides by the count (a traced ``i64`` scalar input) afterwards.
* **Contractions** (``np.dot``, ``@``/``np.matmul``, ``np.outer``, ``np.einsum`` with
  explicit or implicit subscripts) are one generic whose loops are the output indices
  (``parallel``) then the summed indices (``reduction``); the body multiplies the inputs
  and, when something is summed, adds the output argument (after a fill with 0).
* **Views**: slices and partial indices (``x[1:-1]``, ``A[i]``, ``A[:, j]``, ``x[::-1]``)
  are ``memref.subview`` views (:mod:`.views`); generics read and write through them.
* **Copies**: ``x.T``/``np.transpose`` (permuted input map) and ``x[:, None]``-style
  indexing with ``None`` (a new buffer with static 1 dimensions; its loops include those
  dimensions, of trip count 1) are copy generics; writes into them raise.
* **In place**: ``x += y`` (any binary operator) is a generic with ``outs = [x]`` whose
  body reads the output argument; ``x[key] = y`` copies ``y`` (broadcast) into the view
  ``x[key]``.  An operand that is another view of the output's memory is copied into a
  new buffer first (numpy's overlap rule).
* Not expressible as a generic with dynamic sizes (they need index arithmetic on
  sizes), so emitted as ``scf.for`` loops of ``memref.load``/``store`` like the other
  local-array builders: ``np.array([a, b, ...])`` (and nested lists), ``np.diag``,
  ``np.concatenate``/``np.stack`` of 1-D arrays, ``x.reshape``/``ravel``/``flatten``
  between 1-D and 2-D.

Everything else on whole arrays raises the TraceError of
:func:`.tracer.whole_array_error`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects import arith, memref
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    AffineMapAttr,
    IndexType,
    MemRefType,
    f64,
    i1,
    i64,
)
from xdsl.dialects.linalg.attrs import IteratorTypeAttr
from xdsl.dialects.linalg.ops import GenericOp, YieldOp
from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.ir.affine import AffineExpr, AffineMap

from . import builtins_table
from .arrays import (
    ARRAY_AWARE,
    ArrayTracer,
    _for_each_index,
    _record_alloc,
    to_index,
)
from .builtins_table import TABLE, _min_max2
from .context import current_builder
from .diagnostics import trace_error
from .tracer import (
    Tracer,
    absolute,
    as_tracer,
    binary,
    cast,
    check_defined,
    compare,
    constant,
    emit,
    emit1,
    is_array_value,
    is_bool_type,
    is_float_type,
    is_number,
    join_types,
    negate,
    power,
    result_type,
    ssa,
    to_bool,
    whole_array_error,
)

Size = Any  # a Python int (static size) or an ``index`` SSAValue (dynamic size)

# --------------------------------------------------------------------------- helpers


def _d(k: int) -> AffineExpr:
    return AffineExpr.dimension(k)


_ZERO = AffineExpr.constant(0)


def _map(num_loops: int, exprs: Sequence[AffineExpr]) -> AffineMapAttr:
    return AffineMapAttr(AffineMap(num_loops, 0, tuple(exprs)))


def _identity(n: int) -> AffineMapAttr:
    return _map(n, [_d(k) for k in range(n)])


def _static(x: ArrayTracer, j: int) -> int:
    return x.type.get_shape()[j]


def _size(x: ArrayTracer, j: int) -> Size:
    """Dimension ``j`` of ``x``: a Python int when static, else an ``index`` value."""
    s = _static(x, j)
    return s if s != DYNAMIC_INDEX else x.dim_index(j)


def _is_one(s: Size) -> bool:
    return isinstance(s, int) and s == 1


def new_buffer(shape: Sequence[Size], element_type: Attribute) -> ArrayTracer:
    """``memref.alloc`` of ``shape`` (static ints stay static in the type, ``index``
    values are dynamic sizes), identity layout, freed at the end of the current block."""
    fb = current_builder()
    if isinstance(element_type, IndexType):
        element_type = i64
    static = [s if isinstance(s, int) else DYNAMIC_INDEX for s in shape]
    dynamic = [s for s in shape if not isinstance(s, int)]
    t = MemRefType(element_type, static)
    op = emit(memref.AllocOp(dynamic, [], t))
    _record_alloc(fb, op.results[0])
    x = ArrayTracer(op.results[0])
    for k, s in enumerate(shape):
        if not isinstance(s, int):
            x._cache[("idx", k)] = Tracer(s)
    return x


def _iterators(kinds: Sequence[str]) -> list[IteratorTypeAttr]:
    return [IteratorTypeAttr.parallel() if k == "parallel" else IteratorTypeAttr.reduction()
            for k in kinds]


def _element_or_type(v: SSAValue) -> Attribute:
    t = v.type
    return t.element_type if isinstance(t, MemRefType) else t


def generic(
    inputs: Sequence[SSAValue],
    input_maps: Sequence[AffineMapAttr],
    output: ArrayTracer | None,
    output_map: AffineMapAttr,
    iterators: Sequence[str],
    body: Callable[..., object],
    *,
    output_shape: Sequence[Size] | None = None,
    output_type: Attribute | None = None,
    reads_output: bool = False,
) -> ArrayTracer:
    """Emit one ``linalg.generic``.  ``body`` receives one Tracer per input (and the
    output's element when ``reads_output``) and returns the value to yield (a Tracer or
    a Python number).  With ``output=None`` the output buffer of ``output_shape`` is
    allocated after the body is built, with ``output_type`` or the type of the body's
    value."""
    fb = current_builder()
    block = Block(arg_types=[_element_or_type(v) for v in inputs])
    if output is not None and reads_output:
        block.insert_arg(output.element_type, len(inputs))
    with fb.at(block):
        args = [Tracer(a) for a in block.args]
        value = body(*args)
        if output is not None:
            out_t = output.element_type
        elif output_type is not None:
            out_t = output_type
        else:
            out_t = as_tracer(value).type
            if isinstance(out_t, IndexType):
                out_t = i64
        result = ssa(as_tracer(value, out_t))
    if output is None:
        assert output_shape is not None
        output = new_buffer(output_shape, out_t)
    if not (reads_output and len(block.args) > len(inputs)):
        block.insert_arg(out_t, len(inputs))
    with fb.at(block):
        fb.insert(YieldOp(result))
    emit(GenericOp(
        list(inputs), [ssa(output)], Region(block), [*input_maps, output_map],
        _iterators(iterators),
    ))
    return output


def fill(buffer: ArrayTracer, value: object) -> None:
    """A generic with no inputs writing ``value`` into every element of ``buffer``."""
    n = buffer.ndim
    generic([], [], buffer, _identity(n), ["parallel"] * n, lambda: value)


def _check_array_operand(x: object, what: str) -> None:
    check_defined(x)
    if not (isinstance(x, Tracer) or is_number(x)):
        raise trace_error(f"{what} with a {type(x).__name__}",
                          "operands are traced arrays, traced scalars or numbers")


def _as_array_operand(x: object, what: str) -> object:
    """Numpy arrays and lists of numbers become traced constants (np.array)."""
    if isinstance(x, (list, tuple)) and x and not any(isinstance(v, str) for v in x):
        return np_array(x)
    if isinstance(x, np.ndarray):
        if x.ndim == 0:
            return x.item()
        return np_array(x.tolist(), dtype=x.dtype)
    _check_array_operand(x, what)
    return x


# --------------------------------------------------------------------------- broadcasting


def broadcast_shape(arrays: Sequence[ArrayTracer]) -> list[Size]:
    """numpy's broadcast of the arrays' shapes on ranks and static 1 dimensions (two
    dynamic dimensions are assumed equal)."""
    rank = max(a.ndim for a in arrays)
    shape: list[Size] = []
    for k in range(rank):
        statics: list[int] = []
        dynamic: Size = None
        for a in arrays:
            j = k - (rank - a.ndim)
            if j < 0:
                continue
            s = _static(a, j)
            if s == DYNAMIC_INDEX:
                if dynamic is None:
                    dynamic = a.dim_index(j)
            else:
                statics.append(s)
        others = sorted({s for s in statics if s != 1})
        if len(others) > 1:
            raise ValueError(f"operands could not be broadcast together (sizes {others})")
        if others:
            shape.append(others[0])
        elif dynamic is not None:
            shape.append(dynamic)
        else:
            shape.append(1)
    return shape


def broadcast_map(a: ArrayTracer, shape: Sequence[Size]) -> AffineMapAttr:
    """The map of ``a`` broadcast to ``shape`` (loops = the dimensions of ``shape``)."""
    rank = len(shape)
    exprs = []
    for j in range(a.ndim):
        k = j + rank - a.ndim
        if _static(a, j) == 1 and not _is_one(shape[k]):
            exprs.append(_ZERO)
        else:
            exprs.append(_d(k))
    return _map(rank, exprs)


def elementwise(fn: Callable[..., object], *operands: object,
                output_type: Attribute | None = None) -> Any:
    """``fn`` applied elementwise (with broadcasting) to arrays, traced scalars and
    Python numbers; ``fn`` gets Tracers for arrays and traced scalars and the Python
    numbers as they are.  Without an array operand, ``fn`` is applied directly."""
    ops = [_as_array_operand(o, "a whole-array operation") for o in operands]
    arrays = [o for o in ops if is_array_value(o)]
    if not arrays:
        return fn(*ops)
    shape = broadcast_shape(arrays)  # type: ignore[arg-type]
    rank = len(shape)
    inputs: list[SSAValue] = []
    maps: list[AffineMapAttr] = []
    slots: list[int | None] = []
    for o in ops:
        if is_array_value(o):
            slots.append(len(inputs))
            inputs.append(ssa(o))  # type: ignore[arg-type]
            maps.append(broadcast_map(o, shape))  # type: ignore[arg-type]
        elif isinstance(o, Tracer):
            slots.append(len(inputs))
            inputs.append(ssa(o))
            maps.append(_map(rank, []))
        else:
            slots.append(None)

    def body(*args: Tracer) -> object:
        vals = [o if s is None else args[s] for o, s in zip(ops, slots)]
        return fn(*vals)

    return generic(inputs, maps, None, _identity(rank), ["parallel"] * rank, body,
                   output_shape=shape, output_type=output_type)


def inplace(op: str, target: ArrayTracer, value: object) -> ArrayTracer:
    """``target op= value`` (numpy: in place, ``value`` broadcast to ``target``)."""
    from .views import separate_if_overlapping  # noqa: PLC0415

    check_writable(target)
    value = _as_array_operand(value, f"`{op}=`")
    value = separate_if_overlapping(target, value)
    # Only whether a dimension is statically 1 matters here (no memref.dim needed).
    shape: list[Size] = [_static(target, j) if _static(target, j) != DYNAMIC_INDEX else None
                         for j in range(target.ndim)]
    rank = len(shape)
    inputs: list[SSAValue] = []
    maps: list[AffineMapAttr] = []
    if is_array_value(value):
        if value.ndim > rank:  # type: ignore[union-attr]
            raise ValueError("non-broadcastable output operand")
        inputs.append(ssa(value))  # type: ignore[arg-type]
        maps.append(broadcast_map(value, shape))  # type: ignore[arg-type]
    elif isinstance(value, Tracer):
        inputs.append(ssa(value))
        maps.append(_map(rank, []))

    if op == "=":
        def body(*args: Tracer) -> object:
            return args[0] if inputs else value
        return generic(inputs, maps, target, _identity(rank), ["parallel"] * rank, body)

    def body_op(*args: Tracer) -> object:
        if inputs:
            v, out = args[0], args[1]
        else:
            v, out = value, args[0]
        return _BINARY_FNS[op](out, v)

    return generic(inputs, maps, target, _identity(rank), ["parallel"] * rank, body_op,
                   reads_output=True)


# --------------------------------------------------------------------------- operators


def _select(c: object, a: object, b: object) -> Any:
    t = result_type(a, b)
    cond = to_bool(as_tracer(c))
    return emit1(arith.SelectOp(ssa(cond), ssa(as_tracer(a, t)), ssa(as_tracer(b, t))))


_BINARY_FNS: dict[str, Callable[[object, object], object]] = {
    op: (lambda o: lambda a, b: binary(o, a, b))(op)
    for op in ("+", "-", "*", "/", "//", "%", "&", "|", "^", "<<", ">>")
}
_BINARY_FNS["**"] = power
for _op in ("<", "<=", ">", ">=", "==", "!="):
    _BINARY_FNS[_op] = (lambda o: lambda a, b: compare(o, a, b))(_op)


def _binop(op: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    fn = _BINARY_FNS[op]

    def forward(self: ArrayTracer, other: object) -> Any:
        if not _operand_like(other):
            return NotImplemented
        return elementwise(fn, self, other)

    def reflected(self: ArrayTracer, other: object) -> Any:
        if not _operand_like(other):
            return NotImplemented
        return elementwise(fn, other, self)

    return forward, reflected


def _operand_like(x: object) -> bool:
    return isinstance(x, (Tracer, np.ndarray, list)) or is_number(x)


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


def _ufunc(builder: Callable[..., Any], name: str) -> Callable[..., Any]:
    def run(*args: object, **kwargs: object) -> Any:
        if kwargs:
            raise trace_error(f"numpy.{name} with keyword arguments ({', '.join(kwargs)})",
                              "out=/where=/dtype= are not supported on traced arrays")
        return elementwise(builder, *args)

    return run


def np_where(condition: object, x: object = None, y: object = None) -> Any:
    if x is None or y is None:
        raise trace_error("np.where with one argument",
                          "the indices of the true elements have a data-dependent size")
    return elementwise(_select, condition, x, y)


def np_clip(a: object, a_min: object = None, a_max: object = None, out: object = None,
            **kwargs: object) -> Any:
    a_min = kwargs.pop("min", a_min)
    a_max = kwargs.pop("max", a_max)
    if out is not None or kwargs:
        raise trace_error("np.clip with out=/extra keywords", "not supported on traced arrays")

    bounds = [(b, is_max) for b, is_max in ((a_min, True), (a_max, False)) if b is not None]

    def body(v: object, *bs: object) -> object:
        for b, (_, is_max) in zip(bs, bounds):
            v = _min_max2(v, b, is_max)
        return v

    return elementwise(body, a, *[b for b, _ in bounds])


# --------------------------------------------------------------------------- reductions

_NEUTRAL = {"sum": 0, "prod": 1}


def _normalize_axes(axis: object, ndim: int) -> list[int]:
    check_defined(axis)
    if axis is None:
        return list(range(ndim))
    axes = list(axis) if isinstance(axis, (tuple, list)) else [axis]
    out = []
    for a in axes:
        if isinstance(a, Tracer) or not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise trace_error("a reduction axis that is not a Python int",
                              "axis must be known when tracing")
        a = int(a)
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(f"axis {a} is out of bounds for array of dimension {ndim}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError("duplicate value in 'axis'")
    return sorted(out)


def _extreme(kind: str, t: Attribute) -> object:
    if is_float_type(t):
        return -np.inf if kind == "max" else np.inf
    if is_bool_type(t):
        return kind != "max"
    return -(2**63) if kind == "max" else 2**63 - 1


def reduce(kind: str, x: object, axis: object = None, dtype: object = None, out: object = None,
           keepdims: bool = False, **kwargs: object) -> Any:
    """``np.sum/prod/max/min/mean(x, axis, keepdims)`` (see the module docstring)."""
    check_defined(x)
    if out is not None or kwargs.get("where") is not None or kwargs.get("initial") is not None:
        raise trace_error(f"np.{kind} with out=/where=/initial=",
                          "not supported on traced arrays")
    if not is_array_value(x):
        x = _as_array_operand(x, f"np.{kind}")
        if not is_array_value(x):
            return x if kind != "mean" else as_tracer(x) * 1.0
    assert isinstance(x, ArrayTracer)
    if isinstance(keepdims, Tracer):
        raise trace_error("a traced keepdims", "keepdims must be a Python bool")
    axes = _normalize_axes(axis, x.ndim)
    elt = x.element_type
    if dtype is not None:
        from .arrays import element_type_of_dtype  # noqa: PLC0415

        elt = element_type_of_dtype(dtype)
    elif kind == "mean" and not is_float_type(elt):
        elt = f64
    elif kind in ("sum", "prod", "mean") and is_bool_type(elt):
        elt = i64
    n = x.ndim
    out_shape: list[Size] = []
    out_exprs: list[AffineExpr] = []
    for k in range(n):
        if k in axes:
            if keepdims:
                out_shape.append(1)
                out_exprs.append(_d(k) if _static(x, k) == 1 else _ZERO)
        else:
            out_shape.append(_size(x, k))
            out_exprs.append(_d(k))
    result = new_buffer(out_shape, elt)
    init = _NEUTRAL.get(kind, 0) if kind in ("sum", "prod", "mean") else _extreme(kind, elt)
    fill(result, init)

    def body(a: Tracer, acc: Tracer) -> object:
        v = cast(a, elt)
        if kind in ("sum", "mean"):
            return acc + v
        if kind == "prod":
            return acc * v
        return _min_max2(acc, v, kind == "max")

    generic([ssa(x)], [_identity(n)], result, _map(n, out_exprs),
            ["reduction" if k in axes else "parallel" for k in range(n)], body,
            reads_output=True)
    count: Any = None
    if kind == "mean":
        count = 1
        for k in axes:
            d = x.dim(k)
            count = d if isinstance(count, int) and count == 1 else count * d
    if result.ndim == 0:
        value = emit1(memref.LoadOp.get(ssa(result), []))
        return value / count if kind == "mean" else value
    if kind == "mean":
        result = elementwise(lambda s, c: s / c, result, count, output_type=elt)
    return result


def _reducer(kind: str) -> Callable[..., Any]:
    def run(x: object, axis: object = None, *args: object, **kwargs: object) -> Any:
        if kind in ("max", "min") and args:  # np.max(a, axis, out, keepdims)
            names = ["out", "keepdims"]
        else:
            names = ["dtype", "out", "keepdims"]
        kwargs.update(zip(names, args))
        return reduce(kind, x, axis, **kwargs)

    return run


def _method_reducer(kind: str) -> Callable[..., Any]:
    run = _reducer(kind)

    def method(self: ArrayTracer, axis: object = None, *args: object, **kwargs: object) -> Any:
        return run(self, axis, *args, **kwargs)

    method.__name__ = kind
    return method


# --------------------------------------------------------------------------- contractions


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


def contract(operands: Sequence[ArrayTracer], subs: Sequence[str], out: str) -> Any:
    """One generic for ``np.einsum(','.join(subs) + '->' + out, *operands)``."""
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
    for c in letters:
        found: Size = None
        for x, s in zip(operands, subs):
            for j, cj in enumerate(s):
                if cj != c:
                    continue
                st = _static(x, j)
                if st == DYNAMIC_INDEX:
                    if found is None or _is_one(found):
                        found = x.dim_index(j)
                elif st != 1 or found is None:
                    found = st
        size[c] = found
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
    if not isinstance(subscripts, str):
        raise trace_error("np.einsum without a subscripts string",
                          "pass the subscripts as the first argument")
    if kwargs.get("out") is not None:
        raise trace_error("np.einsum with out=", "not supported on traced arrays")
    ops = [_as_array_operand(o, "np.einsum") for o in operands]
    subs, out = _parse_einsum(subscripts, len(ops))
    if not all(is_array_value(o) for o in ops):
        raise trace_error("np.einsum with a scalar operand", "operands must be arrays")
    return contract(ops, subs, out)  # type: ignore[arg-type]


_DOT_SUBS = {(1, 1): (["i", "i"], ""), (2, 1): (["ij", "j"], "i"),
             (1, 2): (["j", "jk"], "k"), (2, 2): (["ij", "jk"], "ik")}


def np_dot(a: object, b: object, out: object = None) -> Any:
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
    if kwargs.get("out") is not None:
        raise trace_error("np.matmul with out=", "not supported on traced arrays")
    a, b = _as_array_operand(a, "`@`"), _as_array_operand(b, "`@`")
    if not (is_array_value(a) and is_array_value(b)):
        raise ValueError("matmul: Input operand does not have enough dimensions")
    key = (a.ndim, b.ndim)  # type: ignore[union-attr]
    if key == (3, 3):
        return contract([a, b], ["bij", "bjk"], "bik")  # type: ignore[list-item]
    if key not in _DOT_SUBS:
        raise whole_array_error(f"`@` (matmul) of arrays of ranks {key}")
    subs, out_s = _DOT_SUBS[key]
    return contract([a, b], subs, out_s)  # type: ignore[list-item]


def np_outer(a: object, b: object, out: object = None) -> Any:
    a, b = _as_array_operand(a, "np.outer"), _as_array_operand(b, "np.outer")
    if not (is_array_value(a) and is_array_value(b)) or a.ndim != 1 or b.ndim != 1:  # type: ignore[union-attr]
        raise whole_array_error("np.outer of operands that are not both 1-D arrays")
    return contract([a, b], ["i", "j"], "ij")  # type: ignore[list-item]


def np_inner(a: object, b: object) -> Any:
    a, b = _as_array_operand(a, "np.inner"), _as_array_operand(b, "np.inner")
    if not (is_array_value(a) and is_array_value(b)) or a.ndim != 1 or b.ndim != 1:  # type: ignore[union-attr]
        raise whole_array_error("np.inner of operands that are not both 1-D arrays")
    return contract([a, b], ["i", "i"], "")  # type: ignore[list-item]


def np_vdot(a: object, b: object) -> Any:
    return np_inner(a, b)


# --------------------------------------------------------------------------- copies


def np_transpose(a: object, axes: object = None) -> Any:
    a = _as_array_operand(a, "np.transpose")
    if not is_array_value(a):
        return a
    assert isinstance(a, ArrayTracer)
    n = a.ndim
    if axes is None:
        perm = list(range(n))[::-1]
    else:
        perm = [int(p) % n for p in (axes if isinstance(axes, (tuple, list)) else [axes])]
        if sorted(perm) != list(range(n)):
            raise ValueError("axes don't match array")
    # out[k] = in[perm[k]]: input dimension perm[k] is loop k.
    in_exprs: list[AffineExpr] = [_ZERO] * n
    for k, p in enumerate(perm):
        in_exprs[p] = _d(k)
    shape = [_size(a, p) for p in perm]
    out = generic([ssa(a)], [_map(n, in_exprs)], None, _identity(n), ["parallel"] * n,
                  lambda v: v, output_shape=shape, output_type=a.element_type)
    return mark_copy(out, "a transpose (x.T, np.transpose)")


def _is_py_int(k: object) -> bool:
    return isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))


def _expand_key(x: ArrayTracer, key: object) -> list[object]:
    keys = list(key) if type(key) is tuple else [key]
    if keys.count(Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(1 for k in keys if k is not None and k is not Ellipsis)
    if used > x.ndim:
        raise IndexError(f"too many indices for array: array is {x.ndim}-dimensional, "
                         f"but {used} were indexed")
    if Ellipsis in keys:
        e = keys.index(Ellipsis)
        keys[e:e + 1] = [slice(None)] * (x.ndim - used)
    else:
        keys += [slice(None)] * (x.ndim - used)
    return keys


def mark_copy(x: ArrayTracer, what: str) -> ArrayTracer:
    """Record that ``x`` is a copy where numpy would give a view: writes raise."""
    x._cache["copy_of_view"] = what  # type: ignore[assignment]
    return x


def check_writable(x: ArrayTracer) -> None:
    what = x._cache.get("copy_of_view")
    if what is not None:
        raise trace_error(
            f"a write into the result of {what}",
            "numpy gives a view there, isozyme a copy, so the write would be lost; "
            "write into the original array with explicit indices instead")


def getitem_view(x: ArrayTracer, key: object) -> ArrayTracer:
    """``x[:, None]``, ``x[None]``: a copy into a new buffer with a static 1 dimension for
    each ``None`` (Python int indices are constants in the input's map).  Slices and
    integer indices are views (:mod:`.views`), which calls this for the ``None`` items
    only."""
    keys = _expand_key(x, key)
    shape: list[Size] = []
    in_exprs: list[AffineExpr] = []
    j = 0
    for k in keys:
        if k is None:
            shape.append(1)
            continue
        if _is_py_int(k):
            i, static = int(k), _static(x, j)
            if static != DYNAMIC_INDEX:
                if not -static <= i < static:
                    raise IndexError(f"index {i} is out of bounds for axis {j} with size "
                                     f"{static}")
                i %= static
            elif i < 0:
                raise trace_error("a negative index next to `:` on a dimension of "
                                  "unknown size", "use x.shape[k] - 1 in a loop instead")
            in_exprs.append(AffineExpr.constant(i))
        else:
            in_exprs.append(_d(len(shape)))
            shape.append(_size(x, j))
        j += 1
    n = len(shape)
    out = generic([ssa(x)], [_map(n, in_exprs)], None, _identity(n), ["parallel"] * n,
                  lambda v: v, output_shape=shape, output_type=x.element_type)
    return mark_copy(out, "indexing with `None` (a new axis)")


def copy_to_new(x: ArrayTracer) -> ArrayTracer:
    """A copy generic of ``x`` into a new buffer (identity layout)."""
    n = x.ndim
    return generic([ssa(x)], [_identity(n)], None, _identity(n), ["parallel"] * n,
                   lambda v: v, output_shape=[_size(x, j) for j in range(n)],
                   output_type=x.element_type)


# --------------------------------------------------------------------------- loop-built


def _store(value: object, buf: ArrayTracer, idx: Sequence[SSAValue]) -> None:
    emit(memref.StoreOp.get(ssa(as_tracer(value, buf.element_type)), ssa(buf), list(idx)))


def _nested_shape(obj: object) -> tuple[list[int], list[object]]:
    if isinstance(obj, (list, tuple)):
        if not obj:
            raise trace_error("np.array of an empty list", "arrays have at least one element")
        subs = [_nested_shape(o) for o in obj]
        first = subs[0][0]
        if any(s[0] != first for s in subs):
            raise ValueError("np.array of a ragged nested sequence")
        return [len(obj), *first], [v for s in subs for v in s[1]]
    return [], [obj]


def np_array(obj: object, dtype: object = None, copy: object = True, **kwargs: object) -> Any:
    """``np.array(x)`` of a traced array (a copy), or of (nested) lists of numbers,
    traced scalars and 1-D traced arrays (np.stack)."""
    from .arrays import copy_array, element_type_of_dtype  # noqa: PLC0415

    check_defined(obj)
    if is_array_value(obj):
        if dtype is not None and element_type_of_dtype(dtype) != obj.element_type:  # type: ignore[union-attr]
            return astype(obj, dtype)  # type: ignore[arg-type]
        return copy_array(obj)
    if isinstance(obj, (list, tuple)) and any(is_array_value(o) for o in obj):
        return np_stack(list(obj))
    shape, leaves = _nested_shape(obj)
    if not shape:
        return as_tracer(obj) if isinstance(obj, Tracer) else np.array(obj, dtype=dtype)
    for v in leaves:
        check_defined(v)
        if not (isinstance(v, Tracer) or is_number(v)):
            raise trace_error(f"np.array of a {type(v).__name__}",
                              "elements are numbers or traced scalars")
    if dtype is not None:
        elt = element_type_of_dtype(dtype)
    else:
        from .tracer import type_and_strength  # noqa: PLC0415

        elt = join_types(*[type_and_strength(v) for v in leaves])
        if is_bool_type(elt):
            elt = i64
    buf = new_buffer([to_index(s) for s in shape], elt)
    for flat, v in enumerate(leaves):
        idx, rest = [], flat
        for s in reversed(shape):
            idx.append(rest % s)
            rest //= s
        _store(v, buf, [to_index(i) for i in reversed(idx)])
    return buf


def _require_1d(xs: Sequence[object], what: str) -> list[ArrayTracer]:
    out = []
    for x in xs:
        x = _as_array_operand(x, what)
        if not is_array_value(x) or x.ndim != 1:  # type: ignore[union-attr]
            raise whole_array_error(f"{what} of operands that are not all 1-D arrays")
        out.append(x)
    return out  # type: ignore[return-value]


def _join_elt(xs: Sequence[ArrayTracer]) -> Attribute:
    t = join_types(*[(x.element_type, True) for x in xs])
    return i64 if is_bool_type(t) else t


def np_concatenate(arrays: object, axis: object = 0, **kwargs: object) -> Any:
    if axis not in (0, -1) or kwargs.get("out") is not None:
        raise whole_array_error("np.concatenate other than of 1-D arrays along axis 0")
    xs = _require_1d(list(arrays), "np.concatenate")  # type: ignore[call-overload]
    total: Any = 0
    for x in xs:
        total = x.dim(0) if isinstance(total, int) and total == 0 else total + x.dim(0)
    buf = new_buffer([to_index(total)], _join_elt(xs))
    offset: Any = 0
    for x in xs:
        off = to_index(offset)

        def body(ivs: list[SSAValue], x: ArrayTracer = x, off: SSAValue = off) -> None:
            v = emit1(memref.LoadOp.get(ssa(x), ivs))
            j = emit1(arith.AddiOp(ivs[0], off))
            _store(v, buf, [ssa(j)])

        _for_each_index([x.dim_index(0)], body)
        offset = x.dim(0) if isinstance(offset, int) and offset == 0 else offset + x.dim(0)
    return buf


def np_stack(arrays: object, axis: object = 0, **kwargs: object) -> Any:
    if axis not in (0, 1, -1) or kwargs.get("out") is not None:
        raise whole_array_error("np.stack other than of 1-D arrays")
    xs = _require_1d(list(arrays), "np.stack")  # type: ignore[call-overload]
    n = xs[0].dim_index(0)
    k = to_index(len(xs))
    shape = [k, n] if axis == 0 else [n, k]
    buf = new_buffer(shape, _join_elt(xs))
    for r, x in enumerate(xs):
        rr = to_index(r)

        def body(ivs: list[SSAValue], x: ArrayTracer = x, rr: SSAValue = rr) -> None:
            v = emit1(memref.LoadOp.get(ssa(x), ivs))
            _store(v, buf, [rr, ivs[0]] if axis == 0 else [ivs[0], rr])

        _for_each_index([n], body)
    return buf


def np_diag(v: object, k: int = 0) -> Any:
    v = _as_array_operand(v, "np.diag")
    if k != 0 or not is_array_value(v) or v.ndim not in (1, 2):  # type: ignore[union-attr]
        raise whole_array_error("np.diag other than of a 1-D or 2-D array with k=0")
    assert isinstance(v, ArrayTracer)
    if v.ndim == 1:
        n = v.dim_index(0)
        buf = new_buffer([n, n], v.element_type)
        fill(buf, 0)

        def body1(ivs: list[SSAValue]) -> None:
            x = emit1(memref.LoadOp.get(ssa(v), ivs))
            _store(x, buf, [ivs[0], ivs[0]])

        _for_each_index([n], body1)
        return buf
    m = ssa(emit1(arith.MinSIOp(v.dim_index(0), v.dim_index(1))))
    out = new_buffer([m], v.element_type)

    def body2(ivs: list[SSAValue]) -> None:
        x = emit1(memref.LoadOp.get(ssa(v), [ivs[0], ivs[0]]))
        _store(x, out, ivs)

    _for_each_index([m], body2)
    return out


def reshape(x: object, *shape: object, order: str = "C") -> Any:
    """``x.reshape(...)`` between 1-D and 2-D (C order), with one ``-1`` allowed."""
    if order != "C":
        raise whole_array_error("reshape with order other than 'C'")
    x = _as_array_operand(x, "reshape")
    if not is_array_value(x):
        raise whole_array_error("reshape of a scalar")
    assert isinstance(x, ArrayTracer)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    dims = list(shape)
    if any(isinstance(d, Tracer) and is_array_value(d) for d in dims):
        raise whole_array_error("an array used as a shape")
    if dims.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension")
    size = x.size
    if -1 in dims:
        known: Any = 1
        for d in dims:
            if not (isinstance(d, int) and d == -1):
                known = d if isinstance(known, int) and known == 1 else known * d
        dims[dims.index(-1)] = size // known
    if x.ndim == 1 and len(dims) == 1:
        return x
    if x.ndim == 2 and len(dims) == 1:  # flatten
        buf = new_buffer([to_index(dims[0])], x.element_type)
        ncols = x.dim_index(1)

        def body(ivs: list[SSAValue]) -> None:
            v = emit1(memref.LoadOp.get(ssa(x), ivs))
            j = emit1(arith.AddiOp(ssa(emit1(arith.MuliOp(ivs[0], ncols))), ivs[1]))
            _store(v, buf, [ssa(j)])

        _for_each_index([x.dim_index(0), ncols], body)
        return buf
    if x.ndim == 1 and len(dims) == 2:  # (n,) -> (r, c)
        r, c = to_index(dims[0]), to_index(dims[1])
        buf = new_buffer([r, c], x.element_type)

        def body2(ivs: list[SSAValue]) -> None:
            j = emit1(arith.AddiOp(ssa(emit1(arith.MuliOp(ivs[0], c))), ivs[1]))
            v = emit1(memref.LoadOp.get(ssa(x), [ssa(j)]))
            _store(v, buf, ivs)

        _for_each_index([r, c], body2)
        return buf
    raise whole_array_error(f"reshape of a rank-{x.ndim} array to rank {len(dims)}")


def astype(x: ArrayTracer, dtype: object, **kwargs: object) -> Any:
    from .arrays import element_type_of_dtype  # noqa: PLC0415

    if dtype in (bool, np.bool_):
        return elementwise(to_bool, x, output_type=i1)
    t = element_type_of_dtype(dtype)
    return elementwise(lambda a: cast(a, t), x, output_type=t)


# --------------------------------------------------------------------------- registration

for _f, _b in list(TABLE.items()):
    if isinstance(_f, np.ufunc):
        ARRAY_AWARE[_f] = _ufunc(_b, _f.__name__)
ARRAY_AWARE[builtins.abs] = lambda x: elementwise(absolute, x)
ARRAY_AWARE[np.round] = ARRAY_AWARE[np.around] = (
    lambda a, decimals=0: elementwise(lambda v: builtins_table._np_round(v, decimals), a))
ARRAY_AWARE[np.where] = np_where
ARRAY_AWARE[np.clip] = np_clip
for _kind, _fns in [("sum", [np.sum]), ("prod", [np.prod]), ("mean", [np.mean]),
                    ("max", [np.max, np.amax]), ("min", [np.min, np.amin])]:
    for _fn in _fns:
        ARRAY_AWARE[_fn] = _reducer(_kind)
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
    np.asarray: np_array,
    np.concatenate: np_concatenate,
    np.stack: np_stack,
    np.diag: np_diag,
    np.reshape: lambda a, newshape=None, order="C", **kw: reshape(
        a, kw.get("shape", newshape), order=order),
    np.ravel: lambda a, order="C": reshape(a, -1, order=order),
})
# np.array / np.asarray of lists holding traced scalars (no array argument).
TABLE[np.array] = np_array
TABLE[np.asarray] = np_array

ArrayTracer.T = property(np_transpose)  # type: ignore[attr-defined]
ArrayTracer.transpose = lambda self, *axes: np_transpose(  # type: ignore[attr-defined]
    self, (axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes) or None)
ArrayTracer.dot = lambda self, other: np_dot(self, other)  # type: ignore[attr-defined]
ArrayTracer.reshape = lambda self, *shape, order="C": reshape(self, *shape, order=order)  # type: ignore[attr-defined]
ArrayTracer.ravel = lambda self, order="C": reshape(self, -1, order=order)  # type: ignore[attr-defined]
ArrayTracer.flatten = lambda self, order="C": reshape(self, -1, order=order)  # type: ignore[attr-defined]
ArrayTracer.astype = astype  # type: ignore[attr-defined]
ArrayTracer.clip = lambda self, a_min=None, a_max=None, **kw: np_clip(self, a_min, a_max, **kw)  # type: ignore[attr-defined]

__all__ = [
    "broadcast_map",
    "broadcast_shape",
    "contract",
    "elementwise",
    "fill",
    "generic",
    "new_buffer",
    "reduce",
]
