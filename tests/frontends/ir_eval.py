"""A reference evaluator for ``traced`` IR, for tests only (the JIT lives elsewhere).

Uses xDSL's interpreter (``func``, ``arith``, ``scf``, ``math``) and fills in the ops it
lacks (``arith.divf``, casts, ``math.sin``...) on Python floats and ints.  ``i1`` values
are Python bools.  ``f32`` results are rounded to float32.

``linalg.generic`` is not interpreted: run xDSL's ``convert-linalg-to-loops`` first
(:func:`lower_linalg`); the ``affine.apply`` ops it emits for constant indices are.

Memrefs are numpy arrays (any strides: a memref argument may be a view): ``memref.load``,
``store``, ``dim``, ``alloc`` (with dynamic sizes), ``dealloc``, ``copy``, ``subview`` (a
numpy view, checked to lie within its source; a step 0 broadcasts), ``expand_shape``,
``collapse_shape``, ``transpose`` and ``extract_strided_metadata`` act on them.  Pass a
``memory`` dict to :func:`evaluate` to count allocations and frees; a load, store or
dealloc of a freed buffer raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.dialects import arith, builtin, memref
from xdsl.dialects import math as mathd
from xdsl.interpreter import Interpreter, InterpreterFunctions, PythonValues, impl, register_impls
from xdsl.interpreters.affine import AffineFunctions
from xdsl.interpreters.arith import ArithFunctions
from xdsl.interpreters.func import FuncFunctions
from xdsl.interpreters.math import MathFunctions
from xdsl.interpreters.scf import ScfFunctions
from xdsl.ir import Operation

from isozyme.dialects.check import CHECK_KINDS, CheckOp
from isozyme.dialects.memref_ext import TransposeOp


def _round_to(op: Operation, value: Any) -> Any:
    t = op.results[0].type
    if isinstance(t, builtin.Float32Type):
        return float(np.float32(value))
    if isinstance(t, builtin.IntegerType) and t.width.data == 1:
        return bool(value)
    if isinstance(t, builtin.IntegerType | builtin.IndexType) and isinstance(value, int):
        value &= (1 << 64) - 1
        return value - (1 << 64) if value >= 1 << 63 else value
    return value


def _unary(fn: Callable[[Any], Any]):
    def run(self: Any, interpreter: Interpreter, op: Operation, args: PythonValues) -> PythonValues:
        return (_round_to(op, fn(args[0])),)

    return run


def _binary(fn: Callable[[Any, Any], Any]):
    def run(self: Any, interpreter: Interpreter, op: Operation, args: PythonValues) -> PythonValues:
        return (_round_to(op, fn(args[0], args[1])),)

    return run


def _fdiv(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _safe(fn: Callable[..., float]) -> Callable[..., float]:
    def run(*args: float) -> float:
        try:
            return fn(*args)
        except ValueError:
            return math.nan
        except OverflowError:
            return math.inf

    return run


def _ceildiv(a: int, b: int) -> int:
    return -((-a) // b)


@register_impls
class ExtraFunctions(InterpreterFunctions):
    """The ops xDSL's interpreter does not implement (or implements for another use)."""

    @impl(arith.ConstantOp)
    def run_constant(self, interpreter: Interpreter, op: arith.ConstantOp, args: PythonValues):
        value = op.value
        if isinstance(value, builtin.IntegerAttr) and value.type == builtin.i1:
            return (bool(value.value.data),)
        return (value.value.data,)  # type: ignore[union-attr]

    run_divf = impl(arith.DivfOp)(_binary(_fdiv))
    run_addf = impl(arith.AddfOp)(_binary(lambda a, b: a + b))
    run_subf = impl(arith.SubfOp)(_binary(lambda a, b: a - b))
    run_mulf = impl(arith.MulfOp)(_binary(lambda a, b: a * b))
    run_addi = impl(arith.AddiOp)(_binary(lambda a, b: a + b))
    run_subi = impl(arith.SubiOp)(_binary(lambda a, b: a - b))
    run_muli = impl(arith.MuliOp)(_binary(lambda a, b: a * b))
    run_andi = impl(arith.AndIOp)(_binary(lambda a, b: a & b))
    run_ori = impl(arith.OrIOp)(_binary(lambda a, b: a | b))
    run_xori = impl(arith.XOrIOp)(_binary(lambda a, b: a ^ b))
    run_negf = impl(arith.NegfOp)(_unary(lambda a: -a))
    run_sitofp = impl(arith.SIToFPOp)(_unary(float))
    run_fptosi = impl(arith.FPToSIOp)(_unary(int))
    run_extf = impl(arith.ExtFOp)(_unary(float))
    run_truncf = impl(arith.TruncFOp)(_unary(float))
    run_extui = impl(arith.ExtUIOp)(_unary(int))
    run_extsi = impl(arith.ExtSIOp)(_unary(int))
    run_trunci = impl(arith.TruncIOp)(_unary(int))
    run_minsi = impl(arith.MinSIOp)(_binary(min))
    run_maxsi = impl(arith.MaxSIOp)(_binary(max))
    run_ceildivsi = impl(arith.CeilDivSIOp)(_binary(_ceildiv))
    run_divsi = impl(arith.DivSIOp)(_binary(lambda a, b: int(a / b)))
    run_maxnumf = impl(arith.MaxnumfOp)(_binary(lambda a, b: b if math.isnan(a) else a if math.isnan(b) else max(a, b)))
    run_minnumf = impl(arith.MinnumfOp)(_binary(lambda a, b: b if math.isnan(a) else a if math.isnan(b) else min(a, b)))

    run_sin = impl(mathd.SinOp)(_unary(math.sin))
    run_cos = impl(mathd.CosOp)(_unary(math.cos))
    run_tan = impl(mathd.TanOp)(_unary(math.tan))
    run_asin = impl(mathd.AsinOp)(_unary(_safe(math.asin)))
    run_acos = impl(mathd.AcosOp)(_unary(_safe(math.acos)))
    run_atan = impl(mathd.AtanOp)(_unary(math.atan))
    run_atan2 = impl(mathd.Atan2Op)(_binary(math.atan2))
    run_sinh = impl(mathd.SinhOp)(_unary(_safe(math.sinh)))
    run_cosh = impl(mathd.CoshOp)(_unary(_safe(math.cosh)))
    run_tanh = impl(mathd.TanhOp)(_unary(math.tanh))
    run_asinh = impl(mathd.AsinhOp)(_unary(math.asinh))
    run_acosh = impl(mathd.AcoshOp)(_unary(_safe(math.acosh)))
    run_atanh = impl(mathd.AtanhOp)(_unary(_safe(math.atanh)))
    run_exp = impl(mathd.ExpOp)(_unary(_safe(math.exp)))
    run_exp2 = impl(mathd.Exp2Op)(_unary(_safe(lambda x: 2.0**x)))
    run_expm1 = impl(mathd.ExpM1Op)(_unary(_safe(math.expm1)))
    run_log = impl(mathd.LogOp)(_unary(_safe(math.log)))
    run_log1p = impl(mathd.Log1pOp)(_unary(_safe(math.log1p)))
    run_log2 = impl(mathd.Log2Op)(_unary(_safe(math.log2)))
    run_log10 = impl(mathd.Log10Op)(_unary(_safe(math.log10)))
    run_sqrt = impl(mathd.SqrtOp)(_unary(_safe(math.sqrt)))
    run_cbrt = impl(mathd.CbrtOp)(_unary(lambda x: math.copysign(abs(x) ** (1 / 3), x)))
    run_powf = impl(mathd.PowFOp)(_binary(_safe(math.pow)))
    run_fpowi = impl(mathd.FPowIOp)(_binary(_safe(lambda a, n: float(a) ** int(n))))
    run_ipowi = impl(mathd.IPowIOp)(_binary(lambda a, n: a**n if n >= 0 else 0))
    run_absf = impl(mathd.AbsFOp)(_unary(abs))
    run_absi = impl(mathd.AbsIOp)(_unary(abs))
    run_floor = impl(mathd.FloorOp)(_unary(lambda x: float(math.floor(x)) if math.isfinite(x) else x))
    run_ceil = impl(mathd.CeilOp)(_unary(lambda x: float(math.ceil(x)) if math.isfinite(x) else x))
    run_trunc = impl(mathd.TruncOp)(_unary(lambda x: float(math.trunc(x)) if math.isfinite(x) else x))
    run_roundeven = impl(mathd.RoundEvenOp)(_unary(lambda x: float(round(x)) if math.isfinite(x) else x))
    run_copysign = impl(mathd.CopySignOp)(_binary(math.copysign))
    run_erf = impl(mathd.ErfOp)(_unary(math.erf))

    @impl(CheckOp)
    def run_check(self, interpreter: Interpreter, op: CheckOp, args: PythonValues):
        """``isz.check``: raise the isozyme error of the check's kind when it fails."""
        if not args[0]:
            import isozyme.errors as errors  # noqa: PLC0415

            cls = getattr(errors, CHECK_KINDS[op.kind.data])
            raise cls(op.message.data.format(*args[1:]))
        return ()


def _np_dtype(t: Any) -> Any:
    if isinstance(t, builtin.IntegerType) and t.width.data == 1:
        return np.bool_
    if isinstance(t, builtin.Float64Type):
        return np.float64
    if isinstance(t, builtin.Float32Type):
        return np.float32
    return np.int64


def _scalar(value: Any) -> Any:
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


@register_impls
class MemRefNumpyFunctions(InterpreterFunctions):
    """``memref`` ops on numpy arrays (honoring their strides and offsets)."""

    def __init__(self, memory: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.memory = memory if memory is not None else {}
        self.memory.setdefault("allocs", 0)
        self.memory.setdefault("deallocs", 0)
        self.freed: list[np.ndarray] = []

    def _check(self, arr: np.ndarray, what: str) -> None:
        if any(arr is f or arr.base is f for f in self.freed):  # the buffer or a view
            raise RuntimeError(f"{what} of a freed buffer")

    @impl(memref.AllocOp)
    def run_alloc(self, interpreter: Interpreter, op: memref.AllocOp, args: PythonValues):
        t = op.memref.type
        dyn = iter(args)
        shape = [next(dyn) if d == builtin.DYNAMIC_INDEX else d for d in t.get_shape()]
        self.memory["allocs"] += 1
        # Fill with NaN / a marker so that reading an unwritten element shows.
        dtype = _np_dtype(t.element_type)
        fill = {np.int64: -999999, np.bool_: False}.get(dtype, np.nan)
        return (np.full(shape, fill, dtype=dtype),)

    @impl(memref.DeallocOp)
    def run_dealloc(self, interpreter: Interpreter, op: memref.DeallocOp, args: PythonValues):
        self._check(args[0], "dealloc")
        self.freed.append(args[0])
        self.memory["deallocs"] += 1
        return ()

    @impl(memref.LoadOp)
    def run_load(self, interpreter: Interpreter, op: memref.LoadOp, args: PythonValues):
        arr, *indices = args
        self._check(arr, "load")
        if any(not 0 <= i < n for i, n in zip(indices, arr.shape)):
            raise IndexError(f"load out of bounds: {indices} of shape {arr.shape}")
        return (_scalar(arr[tuple(indices)]),)

    @impl(memref.StoreOp)
    def run_store(self, interpreter: Interpreter, op: memref.StoreOp, args: PythonValues):
        value, arr, *indices = args
        self._check(arr, "store")
        if any(not 0 <= i < n for i, n in zip(indices, arr.shape)):
            raise IndexError(f"store out of bounds: {indices} of shape {arr.shape}")
        arr[tuple(indices)] = value
        return ()

    @impl(memref.DimOp)
    def run_dim(self, interpreter: Interpreter, op: memref.DimOp, args: PythonValues):
        return (int(args[0].shape[args[1]]),)

    @impl(memref.SubviewOp)
    def run_subview(self, interpreter: Interpreter, op: memref.SubviewOp, args: PythonValues):
        """A numpy view: offsets, sizes and steps (any sign) per dimension; a
        rank-reducing subview drops dimensions of static size 1 (the first ones that
        make the result rank)."""
        arr = args[0]
        self._check(arr, "subview")
        dyn = iter(args[1:])

        def values(static: Any) -> list[int]:
            return [next(dyn) if v == builtin.DYNAMIC_INDEX else v for v in static.get_values()]

        offsets = values(op.static_offsets)
        sizes = values(op.static_sizes)
        steps = values(op.static_strides)
        result_rank = op.result.type.get_num_dims()
        static_ones = [k for k, v in enumerate(op.static_sizes.get_values()) if v == 1]
        dropped = set(static_ones[: arr.ndim - result_rank])
        assert len(dropped) == arr.ndim - result_rank, "rank reduction of a non-1 dimension"
        index: list[Any] = []
        zero_steps = [k for k in range(arr.ndim) if steps[k] == 0 and k not in dropped]
        for k in zero_steps:  # a broadcast (stride 0): element o repeated n times
            if not 0 <= offsets[k] < arr.shape[k]:
                raise IndexError(f"subview offset {offsets[k]} out of bounds")
            steps[k] = 1
        for k in range(arr.ndim):
            o, n, s = offsets[k], sizes[k], steps[k]
            if k in zero_steps:
                index.append(slice(o, o + 1))
                continue
            if k in dropped:
                if not 0 <= o < arr.shape[k]:
                    raise IndexError(f"subview offset {o} out of bounds for size {arr.shape[k]}")
                index.append(o)
                continue
            if n < 0:
                raise IndexError(f"subview with negative size {n}")
            if n == 0:
                index.append(slice(0, 0))
                continue
            last = o + (n - 1) * s
            if not (0 <= o < arr.shape[k] and 0 <= last < arr.shape[k]):
                raise IndexError(f"subview [{o}, {last}] out of bounds for size {arr.shape[k]}")
            stop = last + (1 if s > 0 else -1)
            index.append(slice(o, None if stop < 0 else stop, s))
        out = arr[tuple(index)]
        if zero_steps:
            kept = [k for k in range(arr.ndim) if k not in dropped]
            strides = [0 if k in zero_steps else out.strides[j] for j, k in enumerate(kept)]
            out = np.lib.stride_tricks.as_strided(
                out, shape=[sizes[k] for k in kept], strides=strides)
        assert out.ndim == result_rank and np.shares_memory(out, arr) or out.size == 0
        return (out,)

    @impl(memref.ExpandShapeOp)
    def run_expand_shape(self, interpreter: Interpreter, op: memref.ExpandShapeOp,
                         args: PythonValues):
        """A numpy reshape that splits dimensions (always a view)."""
        arr = args[0]
        self._check(arr, "expand_shape")
        dyn = iter(args[1:])
        shape = [next(dyn) if v == builtin.DYNAMIC_INDEX else v
                 for v in op.static_output_shape.get_values()]
        out = arr.reshape(shape)
        assert np.shares_memory(out, arr) or out.size == 0
        return (out,)

    @impl(memref.CollapseShapeOp)
    def run_collapse_shape(self, interpreter: Interpreter, op: memref.CollapseShapeOp,
                           args: PythonValues):
        """A numpy reshape that merges groups of dimensions (a view: checked)."""
        arr = args[0]
        self._check(arr, "collapse_shape")
        groups = [[int(i.value.data) for i in g.data] for g in op.reassociation.data]
        out = arr.reshape([int(np.prod([arr.shape[k] for k in g])) for g in groups])
        assert np.shares_memory(out, arr) or out.size == 0, "collapse of a non-contiguous view"
        return (out,)

    @impl(TransposeOp)
    def run_transpose(self, interpreter: Interpreter, op: TransposeOp, args: PythonValues):
        """``np.transpose`` (a view)."""
        self._check(args[0], "transpose")
        return (args[0].transpose(op.perm),)

    @impl(memref.CastOp)
    def run_cast(self, interpreter: Interpreter, op: memref.CastOp, args: PythonValues):
        """``memref.cast``: the same array (only its static type changes)."""
        self._check(args[0], "cast")
        return (args[0],)

    @impl(memref.ExtractStridedMetaDataOp)
    def run_extract_strided_metadata(self, interpreter: Interpreter,
                                     op: memref.ExtractStridedMetaDataOp,
                                     args: PythonValues):
        """Sizes and strides in elements (the base buffer and offset are not modelled:
        the array itself and 0)."""
        arr = args[0]
        return (arr, 0, *[int(n) for n in arr.shape],
                *[s // arr.itemsize for s in arr.strides])

    @impl(memref.CopyOp)
    def run_copy(self, interpreter: Interpreter, op: memref.CopyOp, args: PythonValues):
        src, dst = args
        self._check(src, "copy")
        self._check(dst, "copy")
        dst[...] = src
        return ()


def evaluate(
    module: builtin.ModuleOp, name: str, *args: Any, memory: dict[str, Any] | None = None
) -> tuple[Any, ...]:
    """Run ``func.func @name`` of ``module`` on Python values (numpy arrays for memrefs);
    returns its results.  ``memory``, if given, receives ``allocs``/``deallocs`` counts."""
    interpreter = Interpreter(module)
    interpreter.register_implementations(MemRefNumpyFunctions(memory))
    interpreter.register_implementations(FuncFunctions())
    interpreter.register_implementations(ArithFunctions())
    interpreter.register_implementations(ScfFunctions())
    interpreter.register_implementations(MathFunctions())
    interpreter.register_implementations(AffineFunctions())  # affine.apply (linalg lowering)
    interpreter.register_implementations(ExtraFunctions(), override=True)
    return tuple(interpreter.call_op(name, args))


def lower_linalg(module: builtin.ModuleOp) -> builtin.ModuleOp:
    """A clone of ``module`` with every ``linalg.generic`` lowered to ``scf.for`` loops by
    xDSL's ``convert-linalg-to-loops`` (verified)."""
    from xdsl.context import Context
    from xdsl.transforms.convert_linalg_to_loops import ConvertLinalgToLoopsPass

    lowered = module.clone()
    ConvertLinalgToLoopsPass().apply(Context(), lowered)
    lowered.verify()
    return lowered
