"""The table of Python callables isozyme knows how to emit IR for.

Maps ``math.*``, numpy scalar functions and builtins (``abs``, ``min``, ``max``,
``float``, ``int``, ``round``, ``pow``...) to IR builders.  A builder is only used when
an argument is traced; on plain numbers the original function runs (see
:func:`isozyme.frontends.python.functions.converted_call`).

Also lists the builtins that may safely receive a traced value as they are
(``isinstance``, ``tuple``, ``len``...); ``print``, ``hash``, ``id`` and the like are
handled before this table is consulted (:mod:`.side_effects`, :mod:`.debug_print`).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import f32, f64, i1, i64
from xdsl.ir import Operation

from .diagnostics import trace_error
from .tracer import (
    Tracer,
    absolute,
    as_tracer,
    cast,
    compare,
    constant,
    emit1,
    is_float_type,
    is_int_type,
    power,
    result_type,
    ssa,
    to_bool,
)

Builder = Callable[..., Any]


# --------------------------------------------------------------------------- helpers


def _float(x: object) -> Tracer:
    """``x`` as a float tracer (ints and bools become ``f64``; ``f32`` stays ``f32``)."""
    t = as_tracer(x)
    return t if is_float_type(t.type) else cast(t, f64)


def _unary(op_cls: type[Operation]) -> Builder:
    def build(x: object) -> Tracer:
        return emit1(op_cls(ssa(_float(x))))

    build.__doc__ = f"Emit ``{op_cls.name}`` on the argument converted to float."  # type: ignore[attr-defined]
    return build


def _binary(op_cls: type[Operation]) -> Builder:
    def build(a: object, b: object) -> Tracer:
        t = result_type(a, b)
        if not is_float_type(t):
            t = f64
        return emit1(op_cls(ssa(as_tracer(a, t)), ssa(as_tracer(b, t))))

    return build


def _log(x: object, base: object = None) -> Tracer:
    """``math.log(x[, base])`` = ``log(x) / log(base)``, as CPython computes it."""
    lx = emit1(mathd.LogOp(ssa(_float(x))))
    if base is None:
        return lx
    if isinstance(base, Tracer):
        return lx / emit1(mathd.LogOp(ssa(_float(base))))
    return lx / math.log(base)  # type: ignore[arg-type]


def _math_pow(x: object, y: object) -> Tracer:
    # math.pow always computes in floating point.
    xb = _float(x)
    if isinstance(y, Tracer) and not is_float_type(y.type):
        return power(xb, y)
    if isinstance(y, bool):
        y = int(y)
    return power(xb, y if isinstance(y, (int, Tracer)) else float(y))  # type: ignore[arg-type]


def _hypot(*xs: object) -> Tracer:
    """``hypot(a, b, ...)`` scaled by the largest magnitude so that ``a*a + b*b`` cannot
    overflow or underflow: ``m * sqrt(sum((x/m)**2))`` with ``m = max |x|``."""
    fs = [_float(x) for x in xs]
    if not fs:
        return constant(0.0, f64)
    t = result_type(*fs)
    mags = [absolute(cast(f, t)) for f in fs]
    if len(mags) == 1:
        return mags[0]
    m = mags[0]
    for a in mags[1:]:
        m = emit1(arith.MaximumfOp(ssa(m), ssa(a)))
    is_zero = compare("==", m, 0.0)
    scale = emit1(arith.SelectOp(ssa(is_zero), ssa(constant(1.0, t)), ssa(m)))
    total = None
    for a in mags:
        u = a / scale
        total = u * u if total is None else total + u * u
    return m * emit1(mathd.SqrtOp(ssa(total)))  # type: ignore[arg-type]


def _min_max(is_max: bool) -> Builder:
    def build(*args: object, **kwargs: object) -> Any:
        if kwargs:
            raise trace_error(
                "min()/max() with keyword arguments", "`key=`/`default=` need Python bools"
            )
        values = list(args[0]) if len(args) == 1 else list(args)
        if not values:
            raise ValueError("min()/max() arg is an empty sequence")
        acc = values[0]
        for v in values[1:]:
            acc = _min_max2(acc, v, is_max)
        return acc

    return build


def _min_max2(a: object, b: object, is_max: bool, nan_propagating: bool = True) -> Any:
    if not (isinstance(a, Tracer) or isinstance(b, Tracer)):
        return max(a, b) if is_max else min(a, b)  # type: ignore[type-var]
    t = result_type(a, b)
    if t == i1:
        t = i64
    x, y = as_tracer(a, t), as_tracer(b, t)
    if is_float_type(t):
        if nan_propagating:
            cls = arith.MaximumfOp if is_max else arith.MinimumfOp
        else:
            cls = arith.MaxnumfOp if is_max else arith.MinnumfOp
    else:
        cls = arith.MaxSIOp if is_max else arith.MinSIOp
    return emit1(cls(ssa(x), ssa(y)))


def _to_float(x: object = 0.0) -> Any:
    return cast(as_tracer(x), f64) if isinstance(x, Tracer) else float(x)  # type: ignore[arg-type]


def _to_int(x: object = 0) -> Any:
    if isinstance(x, Tracer):
        return cast(x, i64)  # floats: arith.fptosi truncates toward zero, as int() does
    return int(x)  # type: ignore[call-overload]


def _to_bool(x: object = False) -> Any:
    return to_bool(x) if isinstance(x, Tracer) else bool(x)


def _round(x: object, ndigits: object = None) -> Any:
    return round(x, ndigits)  # type: ignore[call-overload]  # Tracer.__round__


def _np_round(x: object, decimals: int = 0) -> Tracer:
    xf = _float(x)
    if decimals == 0:
        return emit1(mathd.RoundEvenOp(ssa(xf)))
    scale = 10.0 ** int(decimals)
    return emit1(mathd.RoundEvenOp(ssa(xf * scale))) / scale


def _builtin_pow(base: object, exp: object, mod: object = None) -> Any:
    if mod is not None:
        raise trace_error("pow() with a modulus", "not supported on traced values")
    return power(base, exp)


def _divmod(a: object, b: object) -> tuple[Any, Any]:
    return a // b, a % b  # type: ignore[operator]


def _abs(x: object) -> Any:
    return absolute(as_tracer(x))


def _np_float(t: Any) -> Builder:
    def build(x: object = 0.0) -> Tracer:
        return cast(as_tracer(x), t)

    return build


def _isnan(x: object) -> Tracer:
    xf = _float(x)
    return emit1(arith.CmpfOp(ssa(xf), ssa(xf), "uno"))


def _isinf(x: object) -> Tracer:
    xf = _float(x)
    return compare("==", absolute(xf), math.inf)


def _isfinite(x: object) -> Tracer:
    xf = _float(x)
    return compare("<", absolute(xf), math.inf)


def _sign(x: object) -> Tracer:
    t = as_tracer(x)
    if not (is_float_type(t.type) or is_int_type(t.type)):
        t = cast(t, i64)
    one, zero, minus = constant(1, t.type), constant(0, t.type), constant(-1, t.type)
    pos = compare(">", t, zero)
    neg = compare("<", t, zero)
    inner = emit1(arith.SelectOp(ssa(neg), ssa(minus), ssa(t if is_float_type(t.type) else zero)))
    return emit1(arith.SelectOp(ssa(pos), ssa(one), ssa(inner)))


def _square(x: object) -> Tracer:
    t = as_tracer(x)
    return t * t


def _np_power(a: object, b: object) -> Any:
    return power(a, b)


def _reciprocal(x: object) -> Tracer:
    return 1.0 / _float(x)


def _select(cond: Tracer, a: object, b: object) -> Tracer:
    t = result_type(a, b)
    return emit1(arith.SelectOp(ssa(cond), ssa(as_tracer(a, t)), ssa(as_tracer(b, t))))


def _logaddexp(a: object, b: object, base2: bool = False) -> Tracer:
    """``np.logaddexp(a, b)`` = ``hi + log1p(exp(lo - hi))`` with ``hi``/``lo`` the larger
    and smaller operand: no overflow, and at ``a == b`` the derivative is 1/2 for each
    (both operands reach the result through the select and ``exp(lo - hi)``).  Infinite
    ``hi``: the result is ``hi`` (numpy's ``inf``, and ``-inf`` for two ``-inf``);
    ``np.logaddexp2`` with ``base2``."""
    t = result_type(a, b)
    if not is_float_type(t):
        t = f64
    x, y = as_tracer(a, t), as_tracer(b, t)
    ge = compare(">=", x, y)
    hi, lo = _select(ge, x, y), _select(ge, y, x)
    if base2:
        tail = emit1(mathd.Log1pOp(ssa(emit1(mathd.Exp2Op(ssa(lo - hi)))))) * (1 / math.log(2))
    else:
        tail = emit1(mathd.Log1pOp(ssa(emit1(mathd.ExpOp(ssa(lo - hi))))))
    lo_is_number = emit1(arith.CmpfOp(ssa(lo), ssa(lo), "ord"))
    at_inf = emit1(arith.AndIOp(ssa(_isinf(hi)), ssa(lo_is_number)))
    return _select(at_inf, hi, hi + tail)


# Stirling's series of lgamma(w) - ((w - 1/2) log w - w + log(2 pi)/2), in powers of 1/w:
# B_2k / (2k (2k - 1) w^(2k - 1)) for k = 1..7 (the next term is < 1e-17 at w >= 10).
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156)
_LGAMMA_SHIFT = 10


def _lgamma(x: object) -> Tracer:
    """``math.lgamma(x)`` from elementary ops, so that AD differentiates it like any
    expression: reflection ``log(pi / |sin(pi x)|) - lgamma(1 - x)`` for ``x < 1/2``,
    the recurrence ``lgamma(z) = lgamma(z + 10) - log(z (z+1) ... (z+9))`` for
    ``z < 10``, and Stirling's series at ``w >= 10`` (absolute error ~1e-15).  Its
    derivative is therefore digamma computed by the same reflection (``-pi cot(pi x)``),
    recurrence (``- sum 1/(z + k)``) and asymptotic series (``log w - 1/(2w) - ...``).
    Poles (0, -1, -2, ...) give ``inf`` where CPython raises ValueError."""
    xf = _float(x)
    small = compare("<", xf, 0.5)
    z = _select(small, 1.0 - xf, xf)
    shifted = compare("<", z, float(_LGAMMA_SHIFT))
    prod: object = 1.0
    for k in range(_LGAMMA_SHIFT):
        prod = _select(shifted, z + float(k), 1.0) * prod
    w = _select(shifted, z + float(_LGAMMA_SHIFT), z)
    r = 1.0 / w
    r2 = r * r
    series: object = _STIRLING[-1]
    for c in reversed(_STIRLING[:-1]):
        series = series * r2 + c
    lw = emit1(mathd.LogOp(ssa(w)))
    lg = (w - 0.5) * lw - w + 0.5 * math.log(2 * math.pi) + series * r \
        - emit1(mathd.LogOp(ssa(as_tracer(prod, xf.type))))
    # sin(pi x) of x reduced modulo 2 (exact), so large |x| keeps its digits
    red = xf - 2.0 * emit1(mathd.FloorOp(ssa(xf * 0.5)))
    s = absolute(emit1(mathd.SinOp(ssa(red * math.pi))))
    # where the reflection is not taken (x >= 1/2) sin may be 0 (even integers): keep
    # log(pi / s) finite there, or its zero adjoint times an infinite partial is NaN
    s = _select(small, s, 1.0)
    reflected = emit1(mathd.LogOp(ssa(math.pi / s))) - lg
    out = _select(small, reflected, lg)
    return _select(_isinf(xf), math.inf, out)


def _gamma(x: object) -> Tracer:
    """``math.gamma(x)`` = ``sign * exp(lgamma(x))``, negative for ``x < 0`` when
    ``floor(x)`` is odd."""
    xf = _float(x)
    fl = emit1(mathd.FloorOp(ssa(xf)))
    odd = compare("!=", fl - 2.0 * emit1(mathd.FloorOp(ssa(fl * 0.5))), 0.0)
    neg = emit1(arith.AndIOp(ssa(compare("<", xf, 0.0)), ssa(odd)))
    return _select(neg, -1.0, 1.0) * emit1(mathd.ExpOp(ssa(_lgamma(xf))))


# --------------------------------------------------------------------------- the table

_exp, _sqrt = _unary(mathd.ExpOp), _unary(mathd.SqrtOp)

TABLE: dict[Any, Builder] = {
    # math
    math.sin: _unary(mathd.SinOp),
    math.cos: _unary(mathd.CosOp),
    math.tan: _unary(mathd.TanOp),
    math.asin: _unary(mathd.AsinOp),
    math.acos: _unary(mathd.AcosOp),
    math.atan: _unary(mathd.AtanOp),
    math.atan2: _binary(mathd.Atan2Op),
    math.sinh: _unary(mathd.SinhOp),
    math.cosh: _unary(mathd.CoshOp),
    math.tanh: _unary(mathd.TanhOp),
    math.asinh: _unary(mathd.AsinhOp),
    math.acosh: _unary(mathd.AcoshOp),
    math.atanh: _unary(mathd.AtanhOp),
    math.exp: _exp,
    math.expm1: _unary(mathd.ExpM1Op),
    math.log: _log,
    math.log1p: _unary(mathd.Log1pOp),
    math.log2: _unary(mathd.Log2Op),
    math.log10: _unary(mathd.Log10Op),
    math.sqrt: _sqrt,
    math.pow: _math_pow,
    math.hypot: _hypot,
    math.fabs: _unary(mathd.AbsFOp),
    math.floor: math.floor,  # Tracer.__floor__: math.floor + fptosi (returns int)
    math.ceil: math.ceil,  # Tracer.__ceil__
    math.trunc: math.trunc,  # Tracer.__trunc__
    math.copysign: _binary(mathd.CopySignOp),
    math.erf: _unary(mathd.ErfOp),
    math.lgamma: _lgamma,
    math.gamma: _gamma,
    math.isnan: _isnan,
    math.isinf: _isinf,
    math.isfinite: _isfinite,
    # numpy scalar functions
    np.sin: _unary(mathd.SinOp),
    np.cos: _unary(mathd.CosOp),
    np.tan: _unary(mathd.TanOp),
    np.arcsin: _unary(mathd.AsinOp),
    np.arccos: _unary(mathd.AcosOp),
    np.arctan: _unary(mathd.AtanOp),
    np.arctan2: _binary(mathd.Atan2Op),
    np.sinh: _unary(mathd.SinhOp),
    np.cosh: _unary(mathd.CoshOp),
    np.tanh: _unary(mathd.TanhOp),
    np.arcsinh: _unary(mathd.AsinhOp),
    np.arccosh: _unary(mathd.AcoshOp),
    np.arctanh: _unary(mathd.AtanhOp),
    np.exp: _exp,
    np.exp2: _unary(mathd.Exp2Op),
    np.expm1: _unary(mathd.ExpM1Op),
    np.log: _unary(mathd.LogOp),
    np.log1p: _unary(mathd.Log1pOp),
    np.log2: _unary(mathd.Log2Op),
    np.log10: _unary(mathd.Log10Op),
    np.sqrt: _sqrt,
    np.cbrt: _unary(mathd.CbrtOp),
    np.power: _np_power,
    np.hypot: _hypot,
    np.logaddexp: _logaddexp,
    np.logaddexp2: lambda a, b: _logaddexp(a, b, base2=True),
    np.abs: _abs,
    np.fabs: _unary(mathd.AbsFOp),
    np.floor: _unary(mathd.FloorOp),
    np.ceil: _unary(mathd.CeilOp),
    np.trunc: _unary(mathd.TruncOp),
    np.round: _np_round,
    np.around: _np_round,
    np.rint: _unary(mathd.RoundEvenOp),
    np.maximum: lambda a, b: _min_max2(a, b, True),
    np.minimum: lambda a, b: _min_max2(a, b, False),
    np.fmax: lambda a, b: _min_max2(a, b, True, nan_propagating=False),
    np.fmin: lambda a, b: _min_max2(a, b, False, nan_propagating=False),
    np.square: _square,
    np.sign: _sign,
    np.copysign: _binary(mathd.CopySignOp),
    np.reciprocal: _reciprocal,
    np.isnan: _isnan,
    np.isinf: _isinf,
    np.isfinite: _isfinite,
    np.float64: _np_float(f64),
    np.float32: _np_float(f32),
    np.int64: _np_float(i64),
    # builtins
    builtins.abs: _abs,
    builtins.min: _min_max(False),
    builtins.max: _min_max(True),
    builtins.float: _to_float,
    builtins.int: _to_int,
    builtins.bool: _to_bool,
    builtins.round: _round,
    builtins.pow: _builtin_pow,
    builtins.divmod: _divmod,
}
if hasattr(math, "cbrt"):  # Python >= 3.11
    TABLE[math.cbrt] = _unary(mathd.CbrtOp)
if hasattr(math, "exp2"):
    TABLE[math.exp2] = _unary(mathd.Exp2Op)
if np.absolute is not np.abs:
    TABLE[np.absolute] = _abs


def lookup(f: object) -> Builder | None:
    """The IR builder for callable ``f``, or ``None`` if ``f`` is not in the table.
    ``np.vectorize(g)`` of a function ``g`` in the table is ``g``'s builder."""
    if isinstance(f, np.vectorize):
        return lookup(f.pyfunc)
    try:
        return TABLE.get(f)
    except TypeError:  # unhashable callable
        return None


#: Builtins that may receive traced values unchanged (they do not need their value).
PASS_THROUGH: frozenset[Any] = frozenset(
    {
        builtins.isinstance,
        builtins.issubclass,
        builtins.type,
        builtins.repr,
        builtins.getattr,
        builtins.setattr,
        builtins.hasattr,
        builtins.callable,
        builtins.tuple,
        builtins.list,
        builtins.dict,
        builtins.set,
        builtins.frozenset,
        builtins.zip,
        builtins.enumerate,
        builtins.reversed,
        builtins.sorted,
        builtins.sum,
        builtins.all,
        builtins.any,
        builtins.map,
        builtins.filter,
        builtins.iter,
        builtins.next,
        builtins.len,
        builtins.range,
        builtins.slice,
        builtins.object,
        builtins.super,
    }
)


def passes_through(f: object) -> bool:
    """Whether builtin ``f`` may be called as-is with traced arguments."""
    try:
        return f in PASS_THROUGH
    except TypeError:
        return False
