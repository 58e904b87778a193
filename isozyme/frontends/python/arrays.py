"""Traced numpy arrays: :class:`ArrayTracer` over ``memref`` values (see docs/ir.md,
"Arrays (memrefs)").

An array argument of rank r is a block argument of type
``memref<?x...x?xT, strided<[?, ..., ?], offset: ?>>`` (:func:`array_memref_type`): every
size, stride and the offset dynamic, so one trace serves every shape and every view.

* ``x[i]``, ``x[i, j]`` are ``memref.load`` (indices cast to ``index``; negative indices
  wrap with ``memref.dim``), ``x[i] = v`` is ``memref.store`` (``v`` converted to the
  element type); ``x[i] += v`` works through both.
* ``x.shape``/``len(x)``/``x.size`` are ``memref.dim`` (cast to ``i64``; static sizes stay
  Python ints), ``x.ndim`` a Python int and ``x.dtype`` the numpy dtype.
* Local arrays (``np.zeros``, ``np.ones``, ``np.empty``, ``np.full``, the ``*_like``
  variants, ``np.copy``/``x.copy()``, ``np.arange``) are ``memref.alloc`` with dynamic
  sizes and the identity layout, filled by ``scf.for`` loops, and freed by
  ``memref.dealloc`` at the end of the region that allocated them (the function, or the
  body of a traced loop or branch) unless a helper function returns them.
* Whole-array numpy operations (``x * 2``, ``np.sin(x)``, ``np.sum(x)``, ``x @ y``,
  ``x[:, None]``...) are ``linalg.generic`` ops on buffers: see :mod:`.whole_array`, which
  installs the operators and methods on :class:`ArrayTracer`.
* Slices, partial indices (``A[i]``, ``A[:, j]``), ``...``: views (``memref.subview``),
  see :mod:`.views`; slice assignment ``x[a:b] = v`` writes through such a view.
* Index arrays and boolean masks (``x[idx]``, ``x[rows, cols]``, ``x[mask] = v``,
  ``np.add.at``): gather/scatter loops, see :mod:`.fancy_indexing`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects import arith, memref, scf
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
    MemRefType,
    NoneAttr,
    StridedLayoutAttr,
    f32,
    f64,
    i1,
    i64,
)
from xdsl.ir import Attribute, Block, Region, SSAValue

from .buffer_ownership import record_alloc
from .context import FunctionBuilder, current_builder
from .diagnostics import trace_error
from .tracer import (
    Tracer,
    as_tracer,
    cast,
    check_defined,
    constant,
    emit,
    emit1,
    index,
    is_array_value,
    is_bool_type,
    is_float_type,
    is_number,
    lower_bound,
    set_lower_bound,
    ssa,
    whole_array_error,
)

# --------------------------------------------------------------------------- types

_NP_OF = {"f64": np.dtype(np.float64), "f32": np.dtype(np.float32), "i64": np.dtype(np.int64)}


def _elt_key(t: Attribute) -> str | None:
    if isinstance(t, Float64Type):
        return "f64"
    if isinstance(t, Float32Type):
        return "f32"
    if isinstance(t, IntegerType) and t.width.data == 64:
        return "i64"
    return None


def is_array_type(t: object) -> bool:
    """Whether ``t`` is a memref type isozyme traces (element f64, f32 or i64)."""
    return isinstance(t, MemRefType) and _elt_key(t.element_type) is not None


def array_memref_type(
    rank: int, element_type: Attribute, unit_inner_stride: bool = False,
    ones: Sequence[int] = (),
) -> MemRefType:
    """The IR type of a numpy array argument of ``rank`` and element type ``element_type``
    (``f64``, ``f32`` or ``i64``): ``memref<?x...x?xT, strided<[?, ...], offset: ?>>``,
    every size, stride and the offset dynamic.

    With ``unit_inner_stride`` the innermost stride is the constant 1
    (``strided<[?, 1], offset: ?>``): the layout of contiguous rows, which lets LLVM
    vectorize loops over them.  The dimensions listed in ``ones`` have the static size 1:
    the signature records which dimensions of an argument are 1, so that numpy's
    broadcasting of size-1 dimensions is decided when tracing (a dynamic size is never 1).
    """
    if _elt_key(element_type) is None:
        raise ValueError(f"array element types are f64, f32 or i64, not {element_type}")
    if rank < 1:
        raise ValueError(f"array rank must be at least 1, not {rank}")
    strides: list = [NoneAttr()] * rank
    if unit_inner_stride:
        strides[-1] = 1
    layout = StridedLayoutAttr(strides, NoneAttr())
    shape = [1 if k in ones else DYNAMIC_INDEX for k in range(rank)]
    return MemRefType(element_type, shape, layout)


def element_type_of_dtype(dtype: object) -> Attribute:
    """The IR element type of a numpy dtype (float64, float32, int64)."""
    try:
        d = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        d = None
    for key, npd in _NP_OF.items():
        if d == npd:
            return {"f64": f64, "f32": f32, "i64": i64}[key]
    raise trace_error(f"an array of dtype {dtype!r}", "arrays are float64, float32 or int64")


def numpy_dtype(t: Attribute) -> np.dtype:
    """The numpy dtype of IR element type ``t``."""
    if isinstance(t, IntegerType) and t.width.data == 1:
        return np.dtype(np.bool_)  # comparisons of whole arrays give i1 arrays
    key = _elt_key(t)
    assert key is not None
    return _NP_OF[key]


# --------------------------------------------------------------------------- helpers


def wrap(value: SSAValue, builder: Any = None) -> Tracer:
    """A :class:`Tracer` for a scalar value, an :class:`ArrayTracer` for a memref."""
    if isinstance(value.type, MemRefType):
        return ArrayTracer(value, builder)
    return Tracer(value, builder)


def _visible(t: Tracer) -> bool:
    fb = current_builder()
    if t.builder is not fb:
        return False
    owner = t.value.owner
    block = owner if isinstance(owner, Block) else owner.parent_block()
    return fb.visible(block)


def to_index(value: object) -> SSAValue:
    """``value`` (a Python int or an integer tracer) as an ``index`` SSA value.  An
    ``i64`` that is the ``index_cast`` of an ``index`` value gives that value back."""
    check_defined(value)
    if isinstance(value, Tracer):
        if is_array_value(value):
            raise whole_array_error("an array used as an index")
        if is_float_type(value.type):
            raise trace_error("an array index or size that is a float",
                              "indices and sizes must be integers; use int(...)")
        if isinstance(value.type, IndexType):
            return ssa(value)
        owner = value.value.owner
        if isinstance(owner, arith.IndexCastOp) and isinstance(owner.input.type, IndexType):
            ssa(value)
            return owner.input
        if is_bool_type(value.type):
            value = cast(value, i64)
        return ssa(cast(value, index))
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise trace_error(f"an array index or size of type {type(value).__name__}",
                          "indices and sizes must be integers")
    return ssa(constant(int(value), index))


def _for_each_index(sizes: Sequence[SSAValue], body: Callable[[list[SSAValue]], None]) -> None:
    """Emit nested ``scf.for`` loops over ``0 <= i_k < sizes[k]`` calling ``body`` with
    the induction variables in the innermost block."""
    fb = current_builder()
    zero = ssa(constant(0, index))
    one = ssa(constant(1, index))

    def level(k: int, ivs: list[SSAValue]) -> None:
        if k == len(sizes):
            body(ivs)
            return
        block = Block(arg_types=[index])
        with fb.at(block):
            level(k + 1, [*ivs, block.args[0]])
            fb.insert(scf.YieldOp())
        emit(scf.ForOp(zero, sizes[k], one, [], Region(block)))

    level(0, [])


# --------------------------------------------------------------------------- tracer

class ArrayTracer(Tracer):
    """A traced numpy array: an SSA value of ``memref`` type (see the module docstring).

    Element reads and writes, ``shape``/``len``/``size``/``ndim``/``dtype`` and
    ``copy()``/``fill()``; whole-array operators and methods (``+``, ``@``, ``.sum()``,
    ``.T``, ``x[:, None]``...) come from :mod:`.whole_array`.
    """

    __slots__ = ("_cache",)

    def __init__(self, value: SSAValue, builder: Any = None) -> None:
        super().__init__(value, builder)
        self._cache: dict[Any, Tracer] = {}

    @property
    def type(self) -> MemRefType:  # type: ignore[override]
        """The memref type."""
        return self.value.type  # type: ignore[return-value]

    @property
    def element_type(self) -> Attribute:
        """The IR element type (``f64``, ``f32`` or ``i64``)."""
        return self.type.element_type

    @property
    def dtype(self) -> np.dtype:  # type: ignore[override]
        """The numpy dtype of the elements."""
        return numpy_dtype(self.element_type)

    @property
    def ndim(self) -> int:
        """The rank (a Python int)."""
        return self.type.get_num_dims()

    def __repr__(self) -> str:
        name = self.value.name_hint or f"{id(self.value) & 0xFFFF:x}"
        return f"ArrayTracer(%{name}: {self.type})"

    # -- sizes

    def _cached(self, key: Any, make: Callable[[], Tracer]) -> Tracer:
        t = self._cache.get(key)
        if t is None or not _visible(t):
            t = self._cache[key] = make()
        return t

    def dim_index(self, k: int) -> SSAValue:
        """Size ``k`` as an ``index`` SSA value (``memref.dim``, or a constant)."""
        static = self.type.get_shape()[k]
        if static != DYNAMIC_INDEX:
            return ssa(self._cached(("cidx", k), lambda: constant(static, index)))

        def make() -> Tracer:
            c = constant(k, index)
            return emit1(memref.DimOp(ssa(self), ssa(c)))

        return ssa(self._cached(("idx", k), make))

    def dim(self, k: int) -> Any:
        """Size ``k``: a Python int when static, else an ``i64`` tracer."""
        static = self.type.get_shape()[k]
        if static != DYNAMIC_INDEX:
            return static

        def make() -> Tracer:
            t = emit1(arith.IndexCastOp(self.dim_index(k), i64))
            set_lower_bound(t, 0)
            return t

        return self._cached(("i64", k), make)

    @property
    def shape(self) -> tuple[Any, ...]:
        """The sizes: Python ints for static sizes, ``i64`` tracers for dynamic ones."""
        return tuple(self.dim(k) for k in range(self.ndim))

    @property
    def size(self) -> Any:
        """The number of elements (product of the sizes)."""
        total: Any = 1
        for d in self.shape:
            total = d if (isinstance(total, int) and total == 1) else total * d
        if isinstance(total, Tracer):
            set_lower_bound(total, 0)
        return total

    def length(self) -> Any:
        """``len(x)``: the first size."""
        return self.dim(0)

    def __len__(self) -> int:
        static = self.type.get_shape()[0]
        if static != DYNAMIC_INDEX:
            return static
        from .static_shapes import concrete_int  # noqa: PLC0415 (import cycle)

        # Python's C code asked (e.g. list(x)): the size of an argument specialises
        return concrete_int(ssa(self.dim(0)), lambda: trace_error(
            "len() of a traced array here",
            "its length is only known when the code runs; call len(x) in converted code "
            "or use x.shape[0]"))

    # -- indexing

    def _indices(self, key: object) -> list[SSAValue]:
        """The ``index`` values of an element key (every dimension an integer)."""
        from .views import expand_key  # noqa: PLC0415

        keys = expand_key(self, key)
        return [self._one_index(k, i) for k, i in enumerate(keys)]

    def _one_index(self, k: int, i: object, checked: bool = True) -> SSAValue:
        """The ``index`` offset of integer index ``i`` in dimension ``k``: wrapped when
        it may be negative (numpy's ``x[-1]``) and, unless ``checked`` is False or
        ``isozyme.config(boundscheck=False)``, bounds-checked at run time
        (``OutOfBoundsError`` outside ``[-n, n)``); a Python int on a static size is
        checked now."""
        from .runtime_checks import check_index, static_index_error  # noqa: PLC0415

        static = self.type.get_shape()[k]
        if isinstance(i, Tracer):
            if is_float_type(i.type):
                raise trace_error("an array index that is a float",
                                  "array indices must be integers; use int(...)")
            if is_bool_type(i.type):
                i = cast(i, i64)
            lb = lower_bound(i)
            idx = to_index(i)
            size = self.dim_index(k)
            if lb is not None and lb >= 0:
                out = idx
            else:
                zero = constant(0, index)
                neg = emit1(arith.CmpiOp(idx, ssa(zero), "slt"))
                wrapped = emit1(arith.AddiOp(idx, size))
                out = ssa(emit1(arith.SelectOp(ssa(neg), ssa(wrapped), idx)))
            if checked:
                check_index(i, out, size, k)
            return out
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise trace_error(f"an array index of type {type(i).__name__}",
                              "array indices must be integers")
        i = int(i)
        if static != DYNAMIC_INDEX:
            if not -static <= i < static:
                raise static_index_error(i, k, static)
            return to_index(i % static)
        size = self.dim_index(k)
        out = to_index(i) if i >= 0 else ssa(emit1(arith.AddiOp(size, to_index(i))))
        if checked:
            check_index(i, out, size, k)
        return out

    def __getitem__(self, key: object) -> Tracer:
        from .views import getitem  # noqa: PLC0415

        return getitem(self, key)

    def __setitem__(self, key: object, value: object) -> None:
        from .views import setitem  # noqa: PLC0415

        if setitem(self, key, value):
            return
        idx = self._indices(key)
        check_defined(value)
        if is_array_value(value):
            raise whole_array_error("assigning an array to an array element")
        if not (isinstance(value, Tracer) or is_number(value)):
            raise trace_error(f"storing a {type(value).__name__} into an array",
                              "array elements are numbers")
        v = as_tracer(value, self.element_type)
        emit(memref.StoreOp.get(ssa(v), ssa(self), idx))

    # -- methods

    def copy(self) -> "ArrayTracer":
        """``x.copy()``: a new array (identity layout) with the same elements."""
        return copy_array(self)

    def fill(self, value: object) -> None:
        """``x.fill(v)``: store ``v`` in every element."""
        _fill(self, value)

    def __iter__(self) -> Any:
        raise trace_error("iteration over a traced array",
                          "write `for i in range(len(x)):` and index with x[i]")

    def __bool__(self) -> bool:
        """Refused as numpy refuses it (see :func:`.tracer.ambiguous_truth_error`); a
        one-element array needs its run-time value, as a traced scalar does."""
        from .tracer import ambiguous_truth_error  # noqa: PLC0415

        if all(s == 1 for s in self.type.get_shape()):
            return super().__bool__()
        raise ambiguous_truth_error()

    def __array__(self, *args: object, **kwargs: object) -> Any:
        raise whole_array_error("converting a traced array to a numpy array")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        name = getattr(func, "__name__", str(func))
        raise whole_array_error(f"numpy.{name} on an array")

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and hasattr(np.ndarray, name):
            raise whole_array_error(f"the array attribute/method `.{name}`")
        raise AttributeError(name)


def _arith_error(op: str) -> Callable[..., Any]:
    def fail(self: Any, *args: object) -> Any:
        raise whole_array_error(f"the array operation `{op}`")

    return fail


for _name, _sym in [
    ("add", "+"), ("sub", "-"), ("mul", "*"), ("truediv", "/"), ("floordiv", "//"),
    ("mod", "%"), ("pow", "**"), ("and", "&"), ("or", "|"), ("xor", "^"),
    ("lshift", "<<"), ("rshift", ">>"), ("matmul", "@"),
]:
    setattr(ArrayTracer, f"__{_name}__", _arith_error(_sym))
    setattr(ArrayTracer, f"__r{_name}__", _arith_error(_sym))
    setattr(ArrayTracer, f"__i{_name}__", _arith_error(_sym + "="))
for _name, _sym in [("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="), ("eq", "=="),
                    ("ne", "!="), ("neg", "-"), ("pos", "+"), ("abs", "abs"),
                    ("invert", "~"), ("round", "round"), ("floor", "floor"),
                    ("ceil", "ceil"), ("trunc", "trunc"), ("float", "float"),
                    ("int", "int"), ("index", "int"), ("complex", "complex")]:
    setattr(ArrayTracer, f"__{_name}__", _arith_error(_sym))
ArrayTracer.__hash__ = object.__hash__  # type: ignore[method-assign,assignment]


# --------------------------------------------------------------------------- creation


def _shape_operands(shape: object) -> list[object]:
    check_defined(shape)
    if isinstance(shape, (tuple, list)):
        dims = list(shape)
    else:
        dims = [shape]
    if not dims:
        raise trace_error("a 0-dimensional array", "arrays have rank 1 or more")
    for d in dims:
        check_defined(d)
        if is_array_value(d):
            raise whole_array_error("an array used as a shape")
        if not isinstance(d, Tracer):
            if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)):
                raise trace_error(f"an array size of type {type(d).__name__}",
                                  "sizes must be integers")
            if int(d) < 0:
                raise ValueError("negative dimensions are not allowed")
    return dims


def alloc(sizes: Sequence[object], element_type: Attribute) -> ArrayTracer:
    """``memref.alloc`` of an array of ``sizes`` (Python or traced ints) with the identity
    layout.  A Python-int size 1 is static in the type (it broadcasts, as in numpy);
    every other size is dynamic (``memref<?x1xf64>``).  A negative traced size raises
    ``ShapeError`` at run time, as numpy does."""
    fb = current_builder()
    operands: list[SSAValue | int] = []
    for s in sizes:
        if isinstance(s, Tracer):
            idx = to_index(s)
            lb = lower_bound(s)
            if lb is None or lb < 0:  # numpy raises for negative sizes: so do we
                from .runtime_checks import require  # noqa: PLC0415

                ok = emit1(arith.CmpiOp(idx, ssa(constant(0, index)), "sge"))
                require(ok, "shape", "negative dimensions are not allowed: {0}", Tracer(idx))
            operands.append(idx)
        elif int(s) == 1:  # type: ignore[call-overload]
            operands.append(1)
        else:
            operands.append(to_index(s))
    return _alloc_op(fb, operands, element_type)


def _alloc_op(
    fb: FunctionBuilder, sizes: Sequence[SSAValue | int], element_type: Attribute
) -> ArrayTracer:
    """``memref.alloc`` of ``sizes``: ``index`` values are dynamic sizes, ints static."""
    static = [s if isinstance(s, int) else DYNAMIC_INDEX for s in sizes]
    t = MemRefType(element_type, static)
    op = emit(memref.AllocOp([s for s in sizes if not isinstance(s, int)], [], t))
    record_alloc(fb, op.results[0])
    x = ArrayTracer(op.results[0])
    for k, size in enumerate(sizes):  # its sizes are known: no memref.dim needed
        if not isinstance(size, int):
            x._cache[("idx", k)] = Tracer(size)
    return x


def _sizes_of(x: ArrayTracer) -> list[SSAValue]:
    return [x.dim_index(k) for k in range(x.ndim)]


def _fill(x: ArrayTracer, value: object) -> None:
    check_defined(value)
    if is_array_value(value):
        raise whole_array_error("filling an array with an array")
    v = ssa(as_tracer(value, x.element_type))
    _for_each_index(_sizes_of(x), lambda ivs: current_builder().insert(
        memref.StoreOp.get(v, ssa(x), ivs)))


def _dtype_or(dtype: object, default: Attribute) -> Attribute:
    return default if dtype is None else element_type_of_dtype(dtype)


def _default_fill_type(value: object) -> Attribute:
    if isinstance(value, Tracer):
        if is_array_value(value):
            raise whole_array_error("an array used as a fill value")
        return i64 if value.type in (i1, index) else value.type
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return i64
    if isinstance(value, np.float32):
        return f32
    return f64


def np_zeros(shape: object, dtype: object = None, order: str = "C", **kw: object) -> ArrayTracer:
    """``numpy.zeros`` of traced arrays (a local buffer or a query)."""
    x = alloc(_shape_operands(shape), _dtype_or(dtype, f64))
    _fill(x, 0)
    return x


def np_ones(shape: object, dtype: object = None, order: str = "C", **kw: object) -> ArrayTracer:
    """``numpy.ones`` of traced arrays (a local buffer or a query)."""
    x = alloc(_shape_operands(shape), _dtype_or(dtype, f64))
    _fill(x, 1)
    return x


def np_empty(shape: object, dtype: object = None, order: str = "C", **kw: object) -> ArrayTracer:
    """``numpy.empty`` of traced arrays (a local buffer or a query)."""
    return alloc(_shape_operands(shape), _dtype_or(dtype, f64))


def np_full(shape: object, fill_value: object, dtype: object = None, order: str = "C",
            **kw: object) -> ArrayTracer:
    """``numpy.full`` of traced arrays (a local buffer or a query)."""
    x = alloc(_shape_operands(shape), _dtype_or(dtype, _default_fill_type(fill_value)))
    _fill(x, fill_value)
    return x


def _like(x: object, what: str) -> ArrayTracer:
    check_defined(x)
    if not is_array_value(x):
        raise trace_error(f"{what} of a {type(x).__name__}", "its argument must be a traced array")
    return x  # type: ignore[return-value]


def _alloc_like(x: ArrayTracer, dtype: object, shape: object) -> ArrayTracer:
    if shape is not None:
        return alloc(_shape_operands(shape), _dtype_or(dtype, x.element_type))
    sizes = [1 if x.type.get_shape()[k] == 1 else x.dim_index(k) for k in range(x.ndim)]
    return _alloc_op(current_builder(), sizes, _dtype_or(dtype, x.element_type))


def np_zeros_like(a: object, dtype: object = None, order: str = "K", subok: bool = True,
                  shape: object = None, **kw: object) -> ArrayTracer:
    """``numpy.zeros_like`` of traced arrays (a local buffer or a query)."""
    x = _alloc_like(_like(a, "np.zeros_like"), dtype, shape)
    _fill(x, 0)
    return x


def np_ones_like(a: object, dtype: object = None, order: str = "K", subok: bool = True,
                 shape: object = None, **kw: object) -> ArrayTracer:
    """``numpy.ones_like`` of traced arrays (a local buffer or a query)."""
    x = _alloc_like(_like(a, "np.ones_like"), dtype, shape)
    _fill(x, 1)
    return x


def np_empty_like(a: object, dtype: object = None, order: str = "K", subok: bool = True,
                  shape: object = None, **kw: object) -> ArrayTracer:
    """``numpy.empty_like`` of traced arrays (a local buffer or a query)."""
    return _alloc_like(_like(a, "np.empty_like"), dtype, shape)


def np_full_like(a: object, fill_value: object, dtype: object = None, order: str = "K",
                 subok: bool = True, shape: object = None, **kw: object) -> ArrayTracer:
    """``numpy.full_like`` of traced arrays (a local buffer or a query)."""
    x = _alloc_like(_like(a, "np.full_like"), dtype, shape)
    _fill(x, fill_value)
    return x


def copy_array(a: object, order: str = "K", **kw: object) -> ArrayTracer:
    """``np.copy(x)`` / ``x.copy()``: alloc + an element-wise copy loop."""
    src = _like(a, "np.copy")
    dst = _alloc_like(src, None, None)

    def body(ivs: list[SSAValue]) -> None:
        fb = current_builder()
        v = fb.insert(memref.LoadOp.get(ssa(src), ivs)).results[0]
        fb.insert(memref.StoreOp.get(v, ssa(dst), ivs))

    _for_each_index(_sizes_of(dst), body)
    return dst


def np_arange(*args: object, dtype: object = None, **kw: object) -> ArrayTracer:
    """``np.arange(stop)``, ``(start, stop[, step])``: numpy's dtype (int64 for integer
    arguments, float64 if any is a float) unless ``dtype`` is given."""
    check_defined(*args)
    if "start" in kw or "stop" in kw or "step" in kw:
        raise trace_error("np.arange with keyword bounds", "pass start/stop/step positionally")
    if not 1 <= len(args) <= 3:
        raise TypeError("arange() takes 1 to 3 positional arguments")
    if len(args) == 1:
        start, stop, step = 0, args[0], 1
    elif len(args) == 2:
        start, stop, step = args[0], args[1], 1
    else:
        start, stop, step = args
    for a in (start, stop, step):
        if is_array_value(a):
            raise whole_array_error("np.arange with an array argument")
    any_float = any(
        (isinstance(a, Tracer) and is_float_type(a.type))
        or (not isinstance(a, Tracer) and isinstance(a, (float, np.floating)))
        for a in (start, stop, step)
    )
    elt = _dtype_or(dtype, f64 if any_float else i64)
    traced = any(isinstance(a, Tracer) for a in (start, stop, step))
    if not traced:
        n: object = len(np.arange(start, stop, step))  # type: ignore[call-overload]
    else:
        if any_float:
            raise trace_error("np.arange with traced float bounds",
                              "traced bounds of np.arange must be integers")
        from .control_flow import _trip_count  # noqa: PLC0415 (import cycle)

        n = _trip_count(start, stop, step)
        set_lower_bound(n, 0)  # type: ignore[arg-type]
    x = alloc([n], elt)

    def body(ivs: list[SSAValue]) -> None:
        v: Any = cast(Tracer(ivs[0]), f64 if any_float else i64)
        if isinstance(step, Tracer) or step != 1:
            v = v * step
        if isinstance(start, Tracer) or start != 0:
            v = start + v
        current_builder().insert(memref.StoreOp.get(ssa(as_tracer(v, elt)), ssa(x), ivs))

    _for_each_index([x.dim_index(0)], body)
    return x


def np_len(x: object) -> Any:
    """``len(x)``: ``x.shape[0]`` for a traced array, else the builtin."""
    if is_array_value(x):
        return x.length()  # type: ignore[union-attr]
    return builtins.len(x)  # type: ignore[arg-type]


def np_shape(x: object) -> Any:
    """``numpy.shape`` of traced arrays (a local buffer or a query)."""
    return x.shape if is_array_value(x) else np.shape(x)  # type: ignore[union-attr]


def np_size(x: object, axis: int | None = None) -> Any:
    """``numpy.size`` of traced arrays (a local buffer or a query)."""
    if is_array_value(x):
        return x.size if axis is None else x.shape[axis]  # type: ignore[union-attr]
    return np.size(x, axis)  # type: ignore[arg-type]


def np_ndim(x: object) -> Any:
    """``numpy.ndim`` of traced arrays (a local buffer or a query)."""
    return x.ndim if is_array_value(x) else np.ndim(x)  # type: ignore[union-attr]


#: Array builders: used whenever converted code calls them while tracing (even with
#: only Python arguments: a local array must be a traced buffer, not a trace-time one).
ARRAY_TABLE: dict[Any, Callable[..., Any]] = {
    np.zeros: np_zeros,
    np.ones: np_ones,
    np.empty: np_empty,
    np.full: np_full,
    np.zeros_like: np_zeros_like,
    np.ones_like: np_ones_like,
    np.empty_like: np_empty_like,
    np.full_like: np_full_like,
    np.copy: copy_array,
    np.arange: np_arange,
}

#: Functions that accept traced arrays (used when an argument is traced).
ARRAY_AWARE: dict[Any, Callable[..., Any]] = {
    builtins.len: np_len,
    np.shape: np_shape,
    np.size: np_size,
    np.ndim: np_ndim,
}



# Whole-array operations (linalg.generic): installs ArrayTracer operators/methods and
# extends ARRAY_AWARE.  Imported last: it builds on this module.
from . import whole_array as _whole_array  # noqa: E402,F401

# np.add.at / np.subtract.at (the accumulating scatters of fancy indexing), np.take.
from .fancy_indexing import np_take as _np_take  # noqa: E402
from .fancy_indexing import ufunc_at as _ufunc_at  # noqa: E402

ARRAY_AWARE[np.take] = _np_take
ArrayTracer.take = lambda self, indices, axis=None, **kw: _np_take(  # type: ignore[attr-defined]
    self, indices, axis, **kw)
ARRAY_AWARE[np.add.at] = _ufunc_at("+")
ARRAY_AWARE[np.subtract.at] = _ufunc_at("-")
