"""Traced values and their operators.

A :class:`Tracer` wraps an ``SSAValue`` of a scalar type (``f64``, ``f32``, ``i64``,
``i1`` or ``index``) of the function being traced.  Python operators on tracers append
``arith``/``math`` ops at the current insertion point (see :mod:`.context`) and return new
tracers.  Plain Python numbers mixed with tracers become ``arith.constant`` ops.

Typing follows Python and numpy, with Python numbers "weak" as in JAX: ``int`` with
``float`` gives ``float`` (``arith.sitofp``), ``f32`` with ``f64`` gives ``f64``
(``arith.extf``), a Python ``float`` with an ``f32`` tracer stays ``f32``, ``bool``
arithmetic gives ``int`` and ``int / int`` gives ``float``.

Everything that needs the *concrete* value of a tracer (``bool(x)``, ``int(x)`` on
unconverted code paths, ``range(x)``) raises :class:`isozyme.errors.TraceError` naming the
user's file and line.

The class is subclassed by :class:`.arrays.ArrayTracer` (``memref`` values); operators
dispatch through module-level functions keyed on the IR type and refuse arrays
(:func:`whole_array_error`).  Integer values may carry a known lower bound
(:func:`lower_bound`: loop indices, sizes) so that array indexing can skip the
negative-index wrap.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    f32,
    f64,
    i1,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue

from isozyme.errors import TraceError

from .context import current_builder
from .diagnostics import trace_error, unconverted_reason, user_location

index = IndexType()

# --------------------------------------------------------------------------- types


def is_float_type(t: Attribute) -> bool:
    """Whether ``t`` is ``f32`` or ``f64``."""
    return isinstance(t, (Float32Type, Float64Type))


def is_int_type(t: Attribute) -> bool:
    """Whether ``t`` is a (non-bool) integer type: ``i64`` (or another width) or ``index``."""
    return (isinstance(t, IntegerType) and t.width.data != 1) or isinstance(t, IndexType)


def is_bool_type(t: Attribute) -> bool:
    """Whether ``t`` is ``i1``."""
    return isinstance(t, IntegerType) and t.width.data == 1


def scalar_type_of(value: object) -> Attribute | None:
    """The IR type a Python/numpy scalar becomes, or ``None`` if it is not a number."""
    if isinstance(value, Tracer):
        return value.type
    if isinstance(value, (bool, np.bool_)):
        return i1
    if isinstance(value, (int, np.integer)):
        return i64
    if isinstance(value, np.float32):
        return f32
    if isinstance(value, (float, np.floating)):
        return f64
    return None


def is_number(value: object) -> bool:
    """Whether ``value`` is a Python/numpy scalar isozyme can turn into a constant."""
    return not isinstance(value, Tracer) and scalar_type_of(value) is not None


def _is_strong(value: object) -> bool:
    # Tracers and numpy scalars carry their type; Python numbers adapt (JAX's weak types).
    return isinstance(value, (Tracer, np.generic))


def result_type(*operands: object) -> Attribute:
    """The common IR type of a binary operation on ``operands`` (tracers and numbers)."""
    return join_types(*[(scalar_type_of(x), _is_strong(x)) for x in operands])


def type_and_strength(value: object) -> tuple[Attribute, bool]:
    """``(IR type, strong)`` of a tracer or number (Python numbers are weakly typed)."""
    t = scalar_type_of(value)
    assert t is not None
    return t, _is_strong(value)


def join_types(*kinds: tuple[Attribute, bool]) -> Attribute:
    """The common type of ``(type, strong)`` pairs: float beats int beats bool; weak
    (Python-number) types adapt to strong ones, e.g. a Python float with f32 is f32."""
    strong_floats = [t for t, s in kinds if s and is_float_type(t)]
    if any(is_float_type(t) for t, _ in kinds):
        if not strong_floats:
            return f64
        widest = f64 if any(isinstance(t, Float64Type) for t in strong_floats) else f32
        if widest == f32 and any(s and is_int_type(t) for t, s in kinds):
            return f64  # numpy: float32 with int64 gives float64
        return widest
    if any(is_int_type(t) for t, _ in kinds):
        return i64
    return i1


# --------------------------------------------------------------------------- emission


class EscapedValueError(TraceError):
    """A tracer of one ``func.func`` was used while building another one."""


def emit(op: Operation) -> Operation:
    """Append ``op`` at the current insertion point and return it."""
    return current_builder().insert(op)


def emit1(op: Operation) -> "Tracer":
    """Append a single-result ``op`` and return its result as a :class:`Tracer`."""
    emit(op)
    return Tracer(op.results[0])


def ssa(value: "Tracer") -> SSAValue:
    """The ``SSAValue`` of ``value``, checking it belongs to the function being built
    (and, for a variable that may be unassigned, that it is assigned: see
    ``control_flow.late_value``)."""
    unbound_check = getattr(value, "unbound_check", None)
    if unbound_check is not None:
        unbound_check()
    if value.builder is not current_builder():
        raise EscapedValueError(
            str(
                trace_error(
                    "a traced value from another function",
                    "a helper function uses a traced value of its caller through a "
                    "closure or a global; pass it as an argument instead",
                )
            )
        )
    v = value.value
    owner = v.owner
    block = owner if isinstance(owner, Block) else owner.parent_block()
    if not value.builder.visible(block):
        raise trace_error(
            "a traced value outside the loop or branch that computed it",
            "a value computed inside a traced `for`/`while`/`if` was kept in a Python "
            "object (a list, a dict, an attribute, a nonlocal) and used after it; carry it "
            "in a variable assigned before the loop, or in both branches",
        )
    return v


def constant(value: object, type_: Attribute) -> "Tracer":
    """Emit ``arith.constant value : type_`` (converting the Python value to ``type_``)."""
    if is_float_type(type_):
        attr = FloatAttr(float(value), type_)
    elif is_bool_type(type_):
        attr = IntegerAttr(1 if value else 0, i1)
    else:
        v = int(value)
        if not -(2**63) <= v < 2**63:
            raise trace_error("an integer constant", f"{v} does not fit in 64 bits")
        attr = IntegerAttr(v, type_)
    return emit1(arith.ConstantOp(attr))


def cast(value: "Tracer", type_: Attribute) -> "Tracer":
    """Convert a tracer to ``type_`` with Python semantics (truthiness for ``i1``)."""
    src = value.type
    if src == type_:
        return value
    v = ssa(value)
    if is_bool_type(type_):
        zero = constant(0, src)
        if is_float_type(src):
            return emit1(arith.CmpfOp(v, zero.value, "une"))
        return emit1(arith.CmpiOp(v, zero.value, "ne"))
    if is_bool_type(src):
        widened = emit1(arith.ExtUIOp(v, i64))
        return cast(widened, type_)
    if isinstance(src, IndexType) or isinstance(type_, IndexType):
        if is_float_type(type_):
            return cast(emit1(arith.IndexCastOp(v, i64)), type_)
        if is_float_type(src):
            return cast(cast(value, i64), type_)
        return emit1(arith.IndexCastOp(v, type_))
    if is_float_type(type_):
        if is_float_type(src):
            if isinstance(type_, Float64Type):
                return emit1(arith.ExtFOp(v, type_))
            return emit1(arith.TruncFOp(v, type_))
        return emit1(arith.SIToFPOp(v, type_))
    if is_float_type(src):
        return emit1(arith.FPToSIOp(v, type_))
    if src.width.data < type_.width.data:  # type: ignore[attr-defined]
        return emit1(arith.ExtSIOp(v, type_))
    return emit1(arith.TruncIOp(v, type_))


def as_tracer(value: object, type_: Attribute | None = None) -> "Tracer":
    """A tracer of ``type_`` for a tracer or Python number (constants are materialized)."""
    check_defined(value)
    if isinstance(value, Tracer):
        if type_ is not None and is_array_value(value):
            raise whole_array_error("an array used as a number")
        return value if type_ is None else cast(value, type_)
    t = scalar_type_of(value)
    if t is None:
        raise trace_error(
            f"a value of type {type(value).__name__}",
            "only numbers (float, int, bool) and traced values can be used in traced code",
        )
    return constant(value, type_ if type_ is not None else t)


def is_array_value(value: object) -> bool:
    """Whether ``value`` is a traced array (a tracer of ``memref`` type)."""
    return isinstance(value, Tracer) and isinstance(value.value.type, MemRefType)


def whole_array_error(construct: str) -> TraceError:
    """The TraceError for an operation on whole arrays that has no rule (the supported
    ones: docs/supported.md, generated from :mod:`.whole_array.registration`)."""
    return trace_error(
        construct,
        "this whole-array numpy operation is not supported; see docs/supported.md for the "
        "numpy functions traced code supports, or write a loop over the elements "
        "(`for i in range(len(x)): ... x[i] ...`)",
    )


def _reject_arrays(op: str, *operands: object) -> None:
    if any(is_array_value(x) for x in operands):
        raise whole_array_error(f"the array operation `{op}`")


def lower_bound(value: object) -> int | None:
    """A known lower bound of an integer value (Python ints are their own bound)."""
    if isinstance(value, Tracer):
        entry = value.builder.lower_bounds.get(id(value.value))
        if entry is not None and entry[0] is value.value:
            return entry[1]
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return None


def set_lower_bound(value: "Tracer", bound: int) -> None:
    """Record that the integer ``value`` is at least ``bound`` (e.g. a loop index)."""
    value.builder.lower_bounds[id(value.value)] = (value.value, bound)


def _propagate_lower_bound(op: str, a: object, b: object, result: "Tracer") -> None:
    la, lb = lower_bound(a), lower_bound(b)
    if la is None or lb is None:
        return
    if op == "+":
        set_lower_bound(result, la + lb)
    elif op == "-" and not isinstance(b, Tracer):
        set_lower_bound(result, la - lb)
    elif op in ("*", "//") and la >= 0 and lb >= 0:
        set_lower_bound(result, 0)


def to_bool(value: "Tracer") -> "Tracer":
    """Python truthiness of a tracer as an ``i1`` tracer (``if``, ``while``, ``and``,
    ``or``, ``not``, ``bool()``); the truth value of an array raises, as numpy's does."""
    if is_array_value(value):
        shape = value.type.get_shape()  # type: ignore[attr-defined]
        if not all(s == 1 for s in shape):  # dynamic sizes are never 1 (see arrays.py)
            raise ambiguous_truth_error()
        value = value[(0,) * len(shape)]  # numpy: the truth of its one element
    return cast(value, i1)


def ambiguous_truth_error() -> TraceError:
    """The TraceError for ``if x:``/``while x:``/``x and y``/``bool(x)`` on an array
    (numpy raises a ValueError there, for any array of more than one element)."""
    return trace_error(
        "the truth value of a traced array",
        "The truth value of an array with more than one element is ambiguous. Use "
        "a.any() or a.all() (numpy's message; a traced array's size is not known at "
        "trace time, so isozyme refuses every size); test a scalar instead, e.g. "
        "`if np.max(x) > 0:` or `if x[i] > 0:`",
    )


# --------------------------------------------------------------------------- undefined


class Undefined:
    """Stands for a variable that has no value after traced control flow.

    For example a name assigned in only one branch of an ``if`` on a traced condition.
    Any use raises a TraceError that explains where the variable lost its value.
    """

    def __init__(self, name: str, why: str = "") -> None:
        self.name = name
        self.why = why

    def error(self) -> TraceError:
        """The TraceError raised when this undefined variable is used."""
        why = self.why or "it is not defined here"
        return trace_error(f"a use of variable '{self.name}'", why)

    def _fail(self, *args: object, **kwargs: object) -> Any:
        raise self.error()

    __bool__ = __index__ = __int__ = __float__ = __call__ = __iter__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _fail
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _fail
    __mod__ = __rmod__ = __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = _fail
    __lt__ = __le__ = __gt__ = __ge__ = __getitem__ = _fail
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = __invert__ = _fail

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise self.error()

    def __repr__(self) -> str:
        return f"<undefined {self.name}>"


#: The value of a variable not (yet) assigned, before any control flow.
UNDEF = Undefined("?")


def check_defined(*values: object) -> None:
    """Raise the error of the first :class:`Undefined` among ``values``."""
    for v in values:
        if isinstance(v, Undefined):
            raise v.error()


# --------------------------------------------------------------------------- operators

_FLOAT_BINOPS = {"+": arith.AddfOp, "-": arith.SubfOp, "*": arith.MulfOp, "/": arith.DivfOp}
_INT_BINOPS = {
    "+": arith.AddiOp,
    "-": arith.SubiOp,
    "*": arith.MuliOp,
    "&": arith.AndIOp,
    "|": arith.OrIOp,
    "^": arith.XOrIOp,
    "<<": arith.ShLIOp,
    ">>": arith.ShRSIOp,
}
_CMPF = {"<": "olt", "<=": "ole", ">": "ogt", ">=": "oge", "==": "oeq", "!=": "une"}
_CMPI = {"<": "slt", "<=": "sle", ">": "sgt", ">=": "sge", "==": "eq", "!=": "ne"}
_PY_OPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
    "&": operator.and_,
    "|": operator.or_,
    "^": operator.xor,
    "<<": operator.lshift,
    ">>": operator.rshift,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def _operand_ok(x: object) -> bool:
    return isinstance(x, Tracer) or is_number(x)


def binary(op: str, a: object, b: object) -> Any:
    """Apply the Python binary operator ``op`` (``"+"``, ``"<"``, ...) to ``a`` and ``b``.

    Emits IR when either is a tracer, else computes the Python result.  Returns
    ``NotImplemented`` for operands that are neither numbers nor tracers.
    """
    check_defined(a, b)
    if not (isinstance(a, Tracer) or isinstance(b, Tracer)):
        return _PY_OPS[op](a, b)
    _reject_arrays(op, a, b)
    if not (_operand_ok(a) and _operand_ok(b)):
        return NotImplemented
    if op in _CMPF:
        return compare(op, a, b)
    if op == "**":
        return power(a, b)
    t = result_type(a, b)
    if op in ("&", "|", "^", "<<", ">>"):
        if is_float_type(t):
            raise trace_error(
                f"operator {op}", "bitwise operators need integer or bool operands"
            )
        if op in ("<<", ">>") and is_bool_type(t):
            t = i64
        x, y = as_tracer(a, t), as_tracer(b, t)
        return emit1(_INT_BINOPS[op](ssa(x), ssa(y)))
    if op == "/" or (is_float_type(t) and op in ("//", "%")):
        if not is_float_type(t):
            t = f64
        x, y = as_tracer(a, t), as_tracer(b, t)
        if op == "/":
            return emit1(arith.DivfOp(ssa(x), ssa(y)))
        quotient = emit1(mathd.FloorOp(ssa(emit1(arith.DivfOp(ssa(x), ssa(y))))))
        if op == "//":
            return quotient
        # Python's float modulo: a - floor(a / b) * b (sign of b).
        return x - quotient * y
    if is_bool_type(t):
        t = i64  # Python: True + True == 2
    x, y = as_tracer(a, t), as_tracer(b, t)
    if is_float_type(t):
        return emit1(_FLOAT_BINOPS[op](ssa(x), ssa(y)))
    if op in ("//", "%"):
        y = _nonzero_divisor(y, b)
        if op == "//":
            return emit1(arith.FloorDivSIOp(ssa(x), ssa(y)))
        return _int_mod(x, y, b)
    result = emit1(_INT_BINOPS[op](ssa(x), ssa(y)))
    if op in ("+", "-", "*"):
        _propagate_lower_bound(op, a, b, result)
    return result


def _nonzero_divisor(y: "Tracer", b_original: object) -> "Tracer":
    """The divisor of an integer ``//`` or ``%``, checked when the code runs to be
    non-zero (Python's ZeroDivisionError: ``isozyme.DivisionByZeroError``) and replaced
    by 1 where it is zero, so that the division never traps (SIGFPE), even where it is
    evaluated before the check."""
    if is_number(b_original) and b_original != 0:
        return y
    from .runtime_checks import require  # noqa: PLC0415 (import cycle)

    zero = constant(0, y.type)
    nonzero = emit1(arith.CmpiOp(ssa(y), ssa(zero), "ne"))
    require(nonzero, "zerodivision", "integer division or modulo by zero")
    return emit1(arith.SelectOp(ssa(nonzero), ssa(y), ssa(constant(1, y.type))))


def _int_mod(x: "Tracer", y: "Tracer", b_original: object) -> "Tracer":
    """Python integer ``%``: ``remsi`` then add ``y`` when the signs of r and y differ."""
    r = emit1(arith.RemSIOp(ssa(x), ssa(y)))
    zero = constant(0, r.type)
    r_neg = emit1(arith.CmpiOp(ssa(r), ssa(zero), "slt"))
    if is_number(b_original) and b_original > 0:  # type: ignore[operator]
        fix = r_neg
    else:
        y_neg = emit1(arith.CmpiOp(ssa(y), ssa(zero), "slt"))
        differ = emit1(arith.XOrIOp(ssa(r_neg), ssa(y_neg)))
        nonzero = emit1(arith.CmpiOp(ssa(r), ssa(zero), "ne"))
        fix = emit1(arith.AndIOp(ssa(nonzero), ssa(differ)))
    fixed = emit1(arith.AddiOp(ssa(r), ssa(y)))
    return emit1(arith.SelectOp(ssa(fix), ssa(fixed), ssa(r)))


def compare(op: str, a: object, b: object) -> Any:
    """``a op b`` for a comparison operator: ``arith.cmpf`` (ordered; ``!=`` is ``une``
    so that NaN != NaN as in Python) or ``arith.cmpi`` (signed)."""
    check_defined(a, b)
    if not (isinstance(a, Tracer) or isinstance(b, Tracer)):
        return _PY_OPS[op](a, b)
    _reject_arrays(op, a, b)
    if not (_operand_ok(a) and _operand_ok(b)):
        return NotImplemented
    t = result_type(a, b)
    if is_bool_type(t) and op not in ("==", "!="):
        t = i64  # Python orders False < True; i1 signed order is the opposite
    x, y = as_tracer(a, t), as_tracer(b, t)
    if is_float_type(t):
        return emit1(arith.CmpfOp(ssa(x), ssa(y), _CMPF[op]))
    return emit1(arith.CmpiOp(ssa(x), ssa(y), _CMPI[op]))


def _int_power_by_squaring(x: "Tracer", n: int) -> "Tracer":
    result: Tracer | None = None
    base = x
    while n:
        if n & 1:
            result = base if result is None else result * base
        n >>= 1
        if n:
            base = base * base
    assert result is not None
    return result


def power(a: object, b: object) -> Any:
    """``a ** b``: small integer constants become multiplications, float exponents
    ``math.powf``, integer exponents ``math.fpowi`` (``i64`` exponent) for a float
    base.  An integer base with a traced integer exponent gives ``math.ipowi`` (an int,
    as in Python) when the exponent is known to be non-negative (a loop index, a size),
    else ``math.fpowi`` of the base as a float (a float: Python's result is a float for a
    negative exponent, and the sign is only known at run time)."""
    check_defined(a, b)
    if not (isinstance(a, Tracer) or isinstance(b, Tracer)):
        return a**b  # type: ignore[operator]
    _reject_arrays("**", a, b)
    if not (_operand_ok(a) and _operand_ok(b)):
        return NotImplemented
    # A float constant exponent with an integral value acts as an int (x ** 2.0).
    if is_number(b) and isinstance(b, (float, np.floating)) and float(b).is_integer():
        if abs(b) <= 64 and isinstance(a, Tracer) and is_float_type(a.type):
            b = int(b)
    if is_number(b) and isinstance(b, (int, np.integer)) and not isinstance(b, bool):
        n = int(b)
        x = as_tracer(a)
        if is_bool_type(x.type):
            x = cast(x, i64)
        if is_int_type(x.type) and n < 0:
            x = cast(x, f64)  # Python: int ** negative int is a float
        if n == 0:
            return constant(1, x.type)
        if abs(n) <= 4:
            r = _int_power_by_squaring(x, abs(n))
            return r if n > 0 else constant(1.0, x.type) / r
        if is_int_type(x.type):
            return _int_power_by_squaring(x, n)
        return emit1(mathd.FPowIOp(ssa(x), ssa(constant(n, i64))))
    t_b = scalar_type_of(b)
    t_a = scalar_type_of(a)
    if not is_float_type(t_b):  # traced integer exponent
        n = as_tracer(b, i64)
        if is_float_type(t_a):
            x = as_tracer(a, t_a if isinstance(a, Tracer) else f64)
            return emit1(mathd.FPowIOp(ssa(x), ssa(n)))  # i64 exponent, never truncated
        x = as_tracer(a, i64)
        n = cast(n, i64)  # an index (loop variable): ipowi's operands share one type
        nb = lower_bound(b)
        if nb is not None and nb >= 0:  # a loop index, a size: Python's int result
            r = emit1(mathd.IPowIOp(ssa(x), ssa(n)))
            if lower_bound(a) is not None and lower_bound(a) >= 0:  # type: ignore[operator]
                set_lower_bound(r, 0)
            return r
        # Python's int ** int is an int for n >= 0 and a float for n < 0: a type known
        # only at run time.  Give the float, as `float(a) ** n`: equal to Python's value
        # in both cases (libm's pow is correctly rounded), an int only in type.
        return emit1(mathd.FPowIOp(ssa(cast(x, f64)), ssa(n)))
    t = result_type(a, b)
    if not is_float_type(t):
        t = f64
    x, y = as_tracer(a, t), as_tracer(b, t)
    return emit1(mathd.PowFOp(ssa(x), ssa(y)))


def negate(a: "Tracer") -> "Tracer":
    """``-a`` (``arith.negf`` for floats, ``0 - a`` for integers and bools)."""
    if is_float_type(a.type):
        return emit1(arith.NegfOp(ssa(a)))
    x = cast(a, i64)
    return emit1(arith.SubiOp(ssa(constant(0, i64)), ssa(x)))


def absolute(a: "Tracer") -> "Tracer":
    """``abs(a)``: ``math.absf`` / ``math.absi``; bools become ints."""
    if is_float_type(a.type):
        return emit1(mathd.AbsFOp(ssa(a)))
    return emit1(mathd.AbsIOp(ssa(cast(a, i64))))


def _concrete_value_error(what: str) -> TraceError:
    filename, line = user_location()
    reason = unconverted_reason(filename, line)
    hint = (
        "its value is only known when the compiled code runs. isozyme converts "
        "`if`/`elif`/`else`, `for`/`while` loops (with `break`/`continue`/`return`), "
        "`assert`, `and`/`or`/`not` and `x if c else y` on traced values, but not "
        "comprehension filters, generators (`yield`), loop exits inside `try`/`with`, or "
        "code it cannot trace (docs/supported.md lists what traced code may use)"
    )
    if reason is not None:
        return trace_error(reason, f"cannot use a traced value as {what} here; {hint}")
    return trace_error(f"the use of a traced value as {what}", hint)


# --------------------------------------------------------------------------- Tracer


class Tracer:
    """A traced scalar: an SSA value of the function being traced.

    Supports Python's arithmetic, comparison, bitwise and unary operators, ``abs``,
    ``round``, ``math.floor``/``ceil``/``trunc`` (through their dunder methods), and
    mixing with Python and numpy numbers.  Using it where Python needs a concrete value
    (``bool``, ``int``, ``float``, indexing) raises :class:`isozyme.errors.TraceError`.
    """

    __array_ufunc__ = None  # make numpy scalars defer to our reflected operators
    __slots__ = ("value", "builder")

    def __init__(self, value: SSAValue, builder: Any = None) -> None:
        self.value = value
        self.builder = builder if builder is not None else current_builder()

    @property
    def type(self) -> Attribute:
        """The IR type of the value."""
        return self.value.type

    @property
    def dtype(self) -> Attribute:
        """Alias of :attr:`type` (array tracers will share this attribute)."""
        return self.value.type

    def __repr__(self) -> str:
        name = self.value.name_hint or f"{id(self.value) & 0xFFFF:x}"
        return f"Tracer(%{name}: {self.type})"

    __hash__ = object.__hash__

    # arithmetic
    def __add__(self, o: object) -> Any: return binary("+", self, o)
    def __radd__(self, o: object) -> Any: return binary("+", o, self)
    def __sub__(self, o: object) -> Any: return binary("-", self, o)
    def __rsub__(self, o: object) -> Any: return binary("-", o, self)
    def __mul__(self, o: object) -> Any: return binary("*", self, o)
    def __rmul__(self, o: object) -> Any: return binary("*", o, self)
    def __truediv__(self, o: object) -> Any: return binary("/", self, o)
    def __rtruediv__(self, o: object) -> Any: return binary("/", o, self)
    def __floordiv__(self, o: object) -> Any: return binary("//", self, o)
    def __rfloordiv__(self, o: object) -> Any: return binary("//", o, self)
    def __mod__(self, o: object) -> Any: return binary("%", self, o)
    def __rmod__(self, o: object) -> Any: return binary("%", o, self)
    def __pow__(self, o: object) -> Any: return power(self, o)
    def __rpow__(self, o: object) -> Any: return power(o, self)
    def __and__(self, o: object) -> Any: return binary("&", self, o)
    def __rand__(self, o: object) -> Any: return binary("&", o, self)
    def __or__(self, o: object) -> Any: return binary("|", self, o)
    def __ror__(self, o: object) -> Any: return binary("|", o, self)
    def __xor__(self, o: object) -> Any: return binary("^", self, o)
    def __rxor__(self, o: object) -> Any: return binary("^", o, self)
    def __lshift__(self, o: object) -> Any: return binary("<<", self, o)
    def __rlshift__(self, o: object) -> Any: return binary("<<", o, self)
    def __rshift__(self, o: object) -> Any: return binary(">>", self, o)
    def __rrshift__(self, o: object) -> Any: return binary(">>", o, self)

    # comparisons
    def __lt__(self, o: object) -> Any: return compare("<", self, o)
    def __le__(self, o: object) -> Any: return compare("<=", self, o)
    def __gt__(self, o: object) -> Any: return compare(">", self, o)
    def __ge__(self, o: object) -> Any: return compare(">=", self, o)
    def __eq__(self, o: object) -> Any: return compare("==", self, o)  # type: ignore[override]
    def __ne__(self, o: object) -> Any: return compare("!=", self, o)  # type: ignore[override]

    # unary
    def __neg__(self) -> "Tracer": return negate(self)
    def __pos__(self) -> "Tracer": return cast(self, i64) if is_bool_type(self.type) else self
    def __abs__(self) -> "Tracer": return absolute(self)

    def __invert__(self) -> "Tracer":
        x = cast(self, i64)
        return emit1(arith.XOrIOp(ssa(x), ssa(constant(-1, i64))))

    # rounding (math.floor / math.ceil / math.trunc / round return ints, as in Python)
    def _to_int(self, op_cls: type[Operation]) -> "Tracer":
        if not is_float_type(self.type):
            return cast(self, i64)
        return cast(emit1(op_cls(ssa(self))), i64)

    def __floor__(self) -> "Tracer": return self._to_int(mathd.FloorOp)
    def __ceil__(self) -> "Tracer": return self._to_int(mathd.CeilOp)
    def __trunc__(self) -> "Tracer": return self._to_int(mathd.TruncOp)

    def __round__(self, ndigits: int | None = None) -> "Tracer":
        if ndigits is None:
            return self._to_int(mathd.RoundEvenOp)
        if not is_float_type(self.type):
            return self
        scale = 10.0 ** int(ndigits)
        scaled = self * scale
        return emit1(mathd.RoundEvenOp(ssa(scaled))) / scale

    # conversions needing a concrete value
    # (a value fixed per call, such as a size, is folded or specialised: static_shapes.py)
    def __bool__(self) -> bool:
        return bool(self._concrete("a Python bool"))

    def __index__(self) -> int:
        return self._concrete("a Python int (an index, a `range` bound, a size)")

    def __int__(self) -> int:
        return self._concrete("a Python int")

    def _concrete(self, what: str) -> int:
        from .static_shapes import concrete_int  # noqa: PLC0415

        return concrete_int(self.value, lambda: _concrete_value_error(what))

    def __float__(self) -> float:
        raise _concrete_value_error("a Python float")

    def __complex__(self) -> complex:
        raise _concrete_value_error("a Python complex")

    def __format__(self, spec: str) -> str:
        # f"{x}" and str.format would bake the tracer's own text into the program.
        raise trace_error(
            "formatting a traced value as text (an f-string or str.format)",
            "its value is only known when the compiled code runs; print it as a separate "
            "argument, which prints the run-time value on every call: print('x =', x)",
        )

    def __iter__(self) -> Any:
        raise trace_error("iteration over a traced scalar", "a scalar is not iterable")

    def __len__(self) -> int:
        raise trace_error("len() of a traced scalar", "a scalar has no length")

    def __getitem__(self, key: object) -> Any:
        """Index a 0-d value as numpy does (``np.max`` of a 1-D array, say): ``x[...]``
        and ``x[()]`` are ``x``; each ``None`` adds an axis of size 1, so ``x[None]``
        and ``x[..., None]`` are new arrays of shape ``(1,)``."""
        keys = key if isinstance(key, tuple) else (key,)
        if sum(k is Ellipsis for k in keys) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        indexed = [k for k in keys if k is not None and k is not Ellipsis]
        if indexed:
            raise IndexError("too many indices for array: array is 0-dimensional, "
                             f"but {len(indexed)} were indexed")
        n_new = sum(k is None for k in keys)
        if n_new == 0:
            return self
        from .whole_array.array_builders import np_array  # noqa: PLC0415 (upper layer)

        nested: object = self
        for _ in range(n_new):
            nested = [nested]
        return np_array(nested)
