"""The ``cuda`` stage: CUDA C of the kernels of a ``gpu.module``.

:func:`print_cuda` prints one translation unit that ``nvcc -x cu`` compiles as it is
(and, behind the ``cuda-emu`` header, ``g++``): a prologue of ``<stdint.h>``, the memref
descriptor typedefs and the helper functions the kernels use, then every
``gpu.func ... kernel`` as ``extern "C" __global__ void <name>(<params>)``.  Modelled on
xDSL's WGSL printer: one method per op, and every op it does not know raises
:class:`~isozyme.errors.UnsupportedError` naming it, so nothing is printed wrong.

Conventions (``docs/gpu.md``):

* ``index``/``i64`` -> ``int64_t``, ``i32`` -> ``int32_t``, ``i1`` -> ``bool``,
  ``f64`` -> ``double``, ``f32`` -> ``float``.
* A memref is MLIR's descriptor struct, passed by value, the layout the LLVM lowering
  uses: ``typedef struct { T* allocated; T* aligned; int64_t offset; int64_t sizes[R];
  int64_t strides[R]; } iz_memref_<T>_<R>;``.  Sizes, strides and the offset that the
  memref type fixes statically are used as constants, the others are read from the
  descriptor (as ``convert-memref-to-llvm`` does).  Views are descriptor arithmetic.
* ``memref.alloca`` of a static shape and ``memref.alloc`` whose sizes are constants
  (an ``np.zeros(3)`` in a ``prange`` body) are per-thread C arrays (at most
  ``MAX_LOCAL_ELEMENTS``); their ``memref.dealloc`` frees nothing.  A kernel has no
  allocator: an ``alloc`` of a run-time size is refused.
* Integer ``addi``/``subi``/``muli``/``shli`` wrap (computed unsigned), as in MLIR.
  ``floordivsi``/``ceildivsi``, ``maximumf``/``minimumf`` (NaN-propagating, ``-0 < +0``),
  ``fptosi``/``fptoui`` (saturating, NaN -> 0, as the CPU lowering's
  ``llvm.fpto*i.sat``) and ``ipowi`` are prologue helpers.
* ``memref.atomic_rmw``: ``addf``/``addi`` are ``atomicAdd``; the other kinds are
  ``atomicCAS`` loops on the element's bits.  One marked ``isozyme.warp_aggregate``
  (a reduction that every thread reaches) first combines the 32 values of a warp with
  ``__shfl_down_sync`` and lets lane 0 issue the atomic (device code only:
  ``#ifdef __CUDA_ARCH__``; the emulator issues one atomic per thread).
* ``scf.for``/``if``/``while`` and nested ``scf.parallel`` (with ``scf.reduce``) are C
  loops and ``if``s; the values they yield are variables declared before them.
* ``memref.load``/``store`` of memory the threads share (a memref parameter of the
  kernel, or a view of one) are ``IZ_LOAD(m.aligned, index)`` and
  ``IZ_STORE(m.aligned, index, value)``: plain accesses (defined in the prologue),
  which ``cuda-emu``'s race checker redefines; per-thread arrays are accessed directly.
* ``isz_gpu.report_failure`` (a failed run-time check) is an ``atomicCAS`` of
  ``status[0]`` from 0 to the check's id, the values written by the thread that won it,
  and a ``return`` that ends the thread (legal anywhere in the kernel's C).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from xdsl.dialects import arith, builtin, gpu, math, memref, scf
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    Float32Type,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    NoneAttr,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.traits import IsTerminator

from isozyme.compiler.gpu.outline_parallel_loops import WARP_AGGREGATE_ATTR
from isozyme.compiler.lowering._common import LoweringError
from isozyme.compiler.lowering.convert_memref_to_llvm import kept_dims
from isozyme.dialects.gpu_ext import ReportFailureOp
from isozyme.dialects.math_ext import ErfcOp, SincosOp
from isozyme.dialects.memref_ext import TransposeOp, atomic_rmw_kind_name
from isozyme.errors import UnsupportedError

_INT_C = {64: "int64_t", 32: "int32_t", 16: "int16_t", 8: "int8_t"}
_UINT_C = {64: "uint64_t", 32: "uint32_t", 16: "uint16_t", 8: "uint8_t"}


def c_type(t: Attribute) -> str:
    """The C type of a kernel value of type ``t``."""
    if isinstance(t, IndexType):
        return "int64_t"
    if isinstance(t, IntegerType):
        w = t.width.data
        if w == 1:
            return "bool"
        if w in _INT_C:
            return _INT_C[w]
    if isinstance(t, Float64Type):
        return "double"
    if isinstance(t, Float32Type):
        return "float"
    if isinstance(t, MemRefType):
        return descriptor_name(t)
    raise UnsupportedError(f"type {t} in a GPU kernel (CUDA printer)")


def _u_type(t: Attribute) -> str:
    """The unsigned C type of the same width (``bool`` stays ``bool``)."""
    if isinstance(t, IndexType):
        return "uint64_t"
    if isinstance(t, IntegerType):
        w = t.width.data
        if w == 1:
            return "bool"
        return _UINT_C[w]
    raise UnsupportedError(f"unsigned view of type {t} in a GPU kernel")


def _width(t: Attribute) -> int:
    if isinstance(t, IndexType):
        return 64
    assert isinstance(t, IntegerType)
    return t.width.data


def descriptor_name(t: MemRefType) -> str:
    """``iz_memref_<T>_<R>``: the descriptor typedef of memref type ``t``."""
    elem = c_type(t.element_type)
    if isinstance(t.element_type, MemRefType):
        raise UnsupportedError(f"memref of memrefs {t} in a GPU kernel")
    return f"iz_memref_{elem}_{t.get_num_dims()}"


def descriptor_typedef(elem: str, rank: int) -> str:
    """The C typedef of a descriptor (``docs/gpu.md``)."""
    arrays = (f" int64_t sizes[{rank}]; int64_t strides[{rank}];" if rank else "")
    return (f"typedef struct {{ {elem}* allocated; {elem}* aligned; int64_t offset;"
            f"{arrays} }} iz_memref_{elem}_{rank};")


def _float_literal(value: float, t: Attribute) -> str:
    f32 = isinstance(t, Float32Type)
    # NaN and infinities as bit patterns through CUDA's intrinsics, which NVRTC, nvcc
    # and cuda-emu's header all have (GCC's __builtin_nan may not be there)
    if value != value:
        return "__int_as_float(0x7fc00000)" if f32 else "__longlong_as_double(0x7ff8000000000000LL)"
    if value in (float("inf"), float("-inf")):
        inf = "__int_as_float(0x7f800000)" if f32 else "__longlong_as_double(0x7ff0000000000000LL)"
        return inf if value > 0 else f"(-{inf})"
    text = value.hex()
    return f"({text}f)" if f32 else f"({text})"


def _int_literal(value: int, t: Attribute) -> str:
    if isinstance(t, IntegerType) and t.width.data == 1:
        return "true" if value & 1 else "false"
    ct = c_type(t)
    w = _width(t)
    value &= (1 << w) - 1
    if value >= 1 << (w - 1):
        value -= 1 << w
    if value == -(1 << (w - 1)):
        return f"(({ct})(-{(1 << (w - 1)) - 1}LL - 1))"
    return f"(({ct}){value}LL)"


# ---------------------------------------------------------------------------------------
# Helper functions of the prologue (emitted only when a kernel uses them).

_HELPERS: dict[str, str] = {
    "iz_floordivsi": """\
template <typename T> __device__ inline T iz_floordivsi(T a, T b) {
  T q = a / b, r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? q - 1 : q;
}""",
    "iz_ceildivsi": """\
template <typename T> __device__ inline T iz_ceildivsi(T a, T b) {
  T q = a / b, r = a % b;
  return (r != 0 && ((r < 0) == (b < 0))) ? q + 1 : q;
}""",
    "iz_ceildivui": """\
template <typename T> __device__ inline T iz_ceildivui(T a, T b) {
  return a / b + (a % b != 0 ? 1 : 0);
}""",
    # maximumf/minimumf: NaN if either is NaN; -0 < +0 (IEEE 754-2019 maximum).
    "iz_maximumf": """\
__device__ inline double iz_maximumf(double a, double b) {
  if (a != a || b != b) return a + b;
  if (a == b) return copysign(1.0, a) < 0 ? b : a;
  return a > b ? a : b;
}
__device__ inline float iz_maximumf(float a, float b) {
  if (a != a || b != b) return a + b;
  if (a == b) return copysignf(1.0f, a) < 0 ? b : a;
  return a > b ? a : b;
}""",
    "iz_minimumf": """\
__device__ inline double iz_minimumf(double a, double b) {
  if (a != a || b != b) return a + b;
  if (a == b) return copysign(1.0, a) < 0 ? a : b;
  return a < b ? a : b;
}
__device__ inline float iz_minimumf(float a, float b) {
  if (a != a || b != b) return a + b;
  if (a == b) return copysignf(1.0f, a) < 0 ? a : b;
  return a < b ? a : b;
}""",
    # b ** e by squaring, wrapping; e < 0: 1 for b == 1, +-1 for b == -1, else 0
    # (as the CPU lowering's __iz_ipowi).
    "iz_ipowi": """\
template <typename T, typename U> __device__ inline T iz_ipowi(T b, T e) {
  if (e < 0) return b == 1 ? (T)1 : (b == -1 ? ((e & 1) ? (T)-1 : (T)1) : (T)0);
  U r = 1, x = (U)b;
  while (e > 0) { if (e & 1) r *= x; x *= x; e >>= 1; }
  return (T)r;
}""",
}


def _fpto_helper(name: str, signed: bool, itype: str, width: int, ftype: str) -> str:
    """A saturating float -> integer conversion (NaN -> 0), as ``llvm.fpto*i.sat``."""
    if signed:
        hi = f"({ftype})" + f"{float(2 ** (width - 1)).hex()}"
        lo = f"-{hi}"
        imax = f"({itype})(((uint64_t)1 << {width - 1}) - 1)"
        imin = f"({itype})(-({imax}) - 1)"
    else:
        hi = f"({ftype})" + f"{float(2 ** width).hex()}"
        lo = f"({ftype})0"
        imax = f"({itype})~({itype})0"
        imin = f"({itype})0"
    return (f"__device__ inline {itype} {name}({ftype} x) {{\n"
            f"  if (x != x) return 0;\n"
            f"  if (x <= {lo}) return {imin};\n"
            f"  if (x >= {hi}) return {imax};\n"
            f"  return ({itype})x;\n}}")


# atomic_rmw kind -> combination of the current value ``c`` and the operand ``v``.
_ATOMIC_COMBINE: dict[str, Callable[[str, str], str]] = {
    "assign": lambda t, u: "v",
    "mulf": lambda t, u: "c * v",
    "muli": lambda t, u: f"({t})(({u})c * ({u})v)",
    "maximumf": lambda t, u: "iz_maximumf(c, v)",
    "minimumf": lambda t, u: "iz_minimumf(c, v)",
    "maxnumf": lambda t, u: "fmaxf(c, v)" if t == "float" else "fmax(c, v)",
    "minnumf": lambda t, u: "fminf(c, v)" if t == "float" else "fmin(c, v)",
    "maxs": lambda t, u: "(c > v ? c : v)",
    "mins": lambda t, u: "(c < v ? c : v)",
    "maxu": lambda t, u: f"(({u})c > ({u})v ? c : v)",
    "minu": lambda t, u: f"(({u})c < ({u})v ? c : v)",
    "ori": lambda t, u: f"({t})(c | v)",
    "andi": lambda t, u: f"({t})(c & v)",
    "xori": lambda t, u: f"({t})(c ^ v)",
    "addf": lambda t, u: "c + v",
    "addi": lambda t, u: f"({t})(({u})c + ({u})v)",
}

def _combine_helper(name: str, kind: str, t: str) -> str:
    """``name(c, v)``: the combination of ``kind`` (a warp's partial reductions)."""
    u = "uint64_t" if t in ("double", "int64_t") else "uint32_t"
    return (f"__device__ inline {t} {name}({t} c, {t} v) {{ "
            f"return {_ATOMIC_COMBINE[kind](t, u)}; }}")


# C type -> (CAS word type, bits of a value, value of bits).
_CAS_WORDS: dict[str, tuple[str, str, str]] = {
    "double": ("unsigned long long", "(unsigned long long)__double_as_longlong({})",
               "__longlong_as_double((long long){})"),
    "float": ("unsigned int", "__float_as_uint({})", "__uint_as_float({})"),
    "int64_t": ("unsigned long long", "(unsigned long long)({})", "(int64_t)({})"),
    "int32_t": ("unsigned int", "(unsigned int)({})", "(int32_t)({})"),
}


def _atomic_helper(name: str, kind: str, t: str) -> str:
    """An ``atomicCAS`` loop applying ``kind`` to ``*p``; returns the old value."""
    word, to_bits, from_bits = _CAS_WORDS[t]
    u = "uint64_t" if word == "unsigned long long" else "uint32_t"
    combine = _ATOMIC_COMBINE[kind](t, u)
    return (f"__device__ inline {t} {name}({t}* p, {t} v) {{\n"
            f"  {word}* a = ({word}*)p;\n"
            f"  {word} old = *a, assumed;\n"
            f"  do {{\n"
            f"    assumed = old;\n"
            f"    {t} c = {from_bits.format('assumed')};\n"
            f"    {t} n = {combine};\n"
            f"    old = atomicCAS(a, assumed, {to_bits.format('n')});\n"
            f"  }} while (assumed != old);\n"
            f"  return {from_bits.format('old')};\n}}")


# ---------------------------------------------------------------------------------------
# Op tables.

_FLOAT_BINARY = {arith.AddfOp: "+", arith.SubfOp: "-", arith.MulfOp: "*",
                 arith.DivfOp: "/"}
_WRAPPING = {arith.AddiOp: "+", arith.SubiOp: "-", arith.MuliOp: "*"}
_BITWISE = {arith.AndIOp: "&", arith.OrIOp: "|", arith.XOrIOp: "^"}

_CMPI = {"eq": ("==", False), "ne": ("!=", False), "slt": ("<", False),
         "sle": ("<=", False), "sgt": (">", False), "sge": (">=", False),
         "ult": ("<", True), "ule": ("<=", True), "ugt": (">", True),
         "uge": (">=", True)}

#: cmpf predicate -> C expression of ``a`` and ``b`` (C comparisons are ordered, ``!=``
#: is unordered).
_CMPF = {
    "false": "false", "true": "true",
    "oeq": "({a} == {b})", "ogt": "({a} > {b})", "oge": "({a} >= {b})",
    "olt": "({a} < {b})", "ole": "({a} <= {b})",
    "one": "({a} < {b} || {a} > {b})", "ord": "({a} == {a} && {b} == {b})",
    "ueq": "!({a} < {b} || {a} > {b})", "ugt": "!({a} <= {b})",
    "uge": "!({a} < {b})", "ult": "!({a} >= {b})", "ule": "!({a} > {b})",
    "une": "({a} != {b})", "uno": "({a} != {a} || {b} != {b})",
}

#: math op -> C math function (double version; ``f`` appended for float).
_MATH = {
    math.SinOp: "sin", math.CosOp: "cos", math.TanOp: "tan", math.AsinOp: "asin",
    math.AcosOp: "acos", math.AtanOp: "atan", math.Atan2Op: "atan2",
    math.SinhOp: "sinh", math.CoshOp: "cosh", math.TanhOp: "tanh",
    math.AsinhOp: "asinh", math.AcoshOp: "acosh", math.AtanhOp: "atanh",
    math.ExpOp: "exp", math.Exp2Op: "exp2", math.ExpM1Op: "expm1", math.LogOp: "log",
    math.Log2Op: "log2", math.Log10Op: "log10", math.Log1pOp: "log1p",
    math.SqrtOp: "sqrt", math.CbrtOp: "cbrt", math.ErfOp: "erf", math.PowFOp: "pow",
    math.AbsFOp: "fabs", math.FloorOp: "floor", math.CeilOp: "ceil",
    math.RoundEvenOp: "rint", math.RoundOp: "round", math.TruncOp: "trunc",
    math.CopySignOp: "copysign", math.FmaOp: "fma", ErfcOp: "erfc",
}

_GPU_IDS = {gpu.BlockIdOp: "blockIdx", gpu.ThreadIdOp: "threadIdx",
            gpu.BlockDimOp: "blockDim", gpu.GridDimOp: "gridDim"}


@dataclass
class KernelInfo:
    """A printed kernel: its name and the C types of its parameters, in order."""

    name: str
    param_types: list[str]


@dataclass
class CudaUnit:
    """The printed translation unit and what the emulator's trampolines need."""

    text: str
    kernels: list[KernelInfo]


_Expr = int | str  # an index known statically, or a C expression


def _mul(a: _Expr, b: _Expr) -> _Expr:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    for x, y in ((a, b), (b, a)):
        if x == 1:
            return y
        if x == 0:
            return 0
    return f"({a} * {b})"


def _add(a: _Expr, b: _Expr) -> _Expr:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if a == 0:
        return b
    if b == 0:
        return a
    return f"({a} + {b})"


def _c(e: _Expr) -> str:
    return f"((int64_t){e}LL)" if isinstance(e, int) else e


#: The most elements of a per-thread array (``memref.alloc`` of constant sizes in a
#: kernel): 32 KiB of doubles in the thread's local memory.
MAX_LOCAL_ELEMENTS = 4096


#: Integer division and remainder: the C expression (fields ``a``, ``b``, the C type
#: ``ct``, its unsigned twin ``ut``, the helper ``fn``) and the helper it needs, if any.
_INT_DIVISIONS: dict[type[Operation], tuple[str, str | None]] = {
    arith.DivSIOp: ("{a} / {b}", None),
    arith.RemSIOp: ("{a} % {b}", None),
    arith.DivUIOp: ("({ct})(({ut}){a} / ({ut}){b})", None),
    arith.RemUIOp: ("({ct})(({ut}){a} % ({ut}){b})", None),
    arith.FloorDivSIOp: ("{fn}({a}, {b})", "iz_floordivsi"),
    arith.CeilDivSIOp: ("{fn}({a}, {b})", "iz_ceildivsi"),
    arith.CeilDivUIOp: ("({ct}){fn}(({ut}){a}, ({ut}){b})", "iz_ceildivui"),
}

#: Shifts: logical ones on the unsigned twin, arithmetic right shift on the signed type.
_SHIFTS: dict[type[Operation], str] = {
    arith.ShLIOp: "({ct})(({ut}){a} << {b})",
    arith.ShRUIOp: "({ct})(({ut}){a} >> {b})",
    arith.ShRSIOp: "({ct})({a} >> {b})",
}

#: Float min/max: MLIR's NaN-propagating ones through helpers, the ``*numf`` ones as C's
#: ``fmax``/``fmin`` (``f`` suffix for ``f32``): ``(name, is a helper)``.
_FLOAT_MINMAX: dict[type[Operation], tuple[str, bool]] = {
    arith.MaximumfOp: ("iz_maximumf", True),
    arith.MinimumfOp: ("iz_minimumf", True),
    arith.MaxnumfOp: ("fmax", False),
    arith.MinnumfOp: ("fmin", False),
}


@dataclass
class _Printer:
    """Prints the kernels of one ``gpu.module``."""

    lines: list[str] = field(default_factory=list)
    names: dict[SSAValue, str] = field(default_factory=dict)
    count: int = 0
    indent: int = 0
    typedefs: dict[tuple[str, int], None] = field(default_factory=dict)
    helpers: dict[str, str] = field(default_factory=dict)
    #: the per-thread arrays of ``memref.alloc`` (their ``dealloc`` frees nothing)
    local: set[SSAValue] = field(default_factory=set)
    #: memrefs over memory every thread of the launch sees: the kernel's memref
    #: parameters and their views; their loads and stores go through ``IZ_LOAD`` /
    #: ``IZ_STORE`` (cuda-emu's race checker), per-thread arrays' do not
    shared: set[SSAValue] = field(default_factory=set)

    # -- emission ----------------------------------------------------------------------
    def emit(self, line: str) -> None:
        self.lines.append("  " * self.indent + line)

    def fresh(self, prefix: str = "v") -> str:
        self.count += 1
        return f"{prefix}{self.count - 1}"

    def name(self, v: SSAValue) -> str:
        if v not in self.names:
            raise UnsupportedError(f"value {v} used in a GPU kernel before its definition "
                                   "(CUDA printer)")
        return self.names[v]

    def ctype(self, t: Attribute) -> str:
        if isinstance(t, MemRefType):
            self.typedefs[(c_type(t.element_type), t.get_num_dims())] = None
        return c_type(t)

    def define(self, v: SSAValue, expr: str) -> None:
        """``T name = expr;`` for the SSA value ``v``."""
        n = self.fresh()
        self.names[v] = n
        self.emit(f"{self.ctype(v.type)} {n} = {expr};")

    def declare(self, v: SSAValue) -> str:
        """``T name;`` for a value a region assigns later."""
        n = self.fresh()
        self.names[v] = n
        self.emit(f"{self.ctype(v.type)} {n};")
        return n

    def helper(self, name: str, code: str | None = None) -> str:
        if name not in self.helpers:
            self.helpers[name] = _HELPERS[name] if code is None else code
        return name

    # -- kernels -----------------------------------------------------------------------
    def kernel(self, f: gpu.FuncOp) -> KernelInfo:
        if f.kernel is None:
            raise UnsupportedError(
                f"gpu.func @{f.sym_name.data} without the kernel attribute (device "
                "functions are not printed)")
        if len(f.body.blocks) != 1:
            raise UnsupportedError(f"gpu.func @{f.sym_name.data} with several blocks")
        block = f.body.block
        params = []
        types = []
        for arg in block.args:
            n = self.fresh("p")
            self.names[arg] = n
            if isinstance(arg.type, MemRefType):
                self.shared.add(arg)
            types.append(self.ctype(arg.type))
            params.append(f"{types[-1]} {n}")
        name = f.sym_name.data
        self.emit(f'extern "C" __global__ void {name}({", ".join(params)}) {{')
        self.indent += 1
        self.block(block, self.kernel_terminator)
        self.indent -= 1
        self.emit("}")
        return KernelInfo(name, types)

    def kernel_terminator(self, op: Operation) -> None:
        if not isinstance(op, gpu.ReturnOp) or op.args:
            raise UnsupportedError(f"{op.name} ending a GPU kernel")
        self.emit("return;")

    def block(self, block: Block, terminator: Callable[[Operation], None] | None) -> None:
        """Print the ops of ``block``; its terminator goes to ``terminator``."""
        for op in block.ops:
            if op is block.last_op and terminator is not None and op.has_trait(
                    IsTerminator):
                terminator(op)
            else:
                self.op(op)

    def op(self, op: Operation) -> None:
        handler = _DISPATCH.get(type(op))
        if handler is None:
            raise UnsupportedError(
                f"{op.name} in a GPU kernel: the CUDA printer does not support it")
        handler(self, op)

    # -- arith -------------------------------------------------------------------------
    def constant(self, op: arith.ConstantOp) -> None:
        v, t = op.value, op.result.type
        if isinstance(v, IntegerAttr) and op.result.uses and all(
                isinstance(u.operation, (memref.AllocOp, memref.DimOp))
                for u in op.result.uses):
            # read as a number by its users (a per-thread array's size, a dimension):
            # a variable would be declared but never referenced (an nvcc warning)
            self.names[op.result] = _int_literal(v.value.data, t)
            return
        if isinstance(v, FloatAttr):
            self.define(op.result, _float_literal(v.value.data, t))
        elif isinstance(v, IntegerAttr):
            self.define(op.result, _int_literal(v.value.data, t))
        else:
            raise UnsupportedError(f"arith.constant {v} in a GPU kernel (only scalars)")

    def float_binary(self, op: Operation) -> None:
        a, b = (self.name(x) for x in op.operands)
        self.define(op.results[0], f"{a} {_FLOAT_BINARY[type(op)]} {b}")

    def negf(self, op: arith.NegfOp) -> None:
        self.define(op.result, f"-{self.name(op.operand)}")

    def wrapping(self, op: Operation) -> None:
        a, b = (self.name(x) for x in op.operands)
        t = op.results[0].type
        sym = _WRAPPING[type(op)]
        if c_type(t) == "bool":  # i1: add/sub are xor, mul is and
            self.define(op.results[0], f"{a} != {b}" if sym in "+-" else f"{a} && {b}")
            return
        u = _u_type(t)
        self.define(op.results[0], f"({c_type(t)})(({u}){a} {sym} ({u}){b})")

    def bitwise(self, op: Operation) -> None:
        a, b = (self.name(x) for x in op.operands)
        t = op.results[0].type
        self.define(op.results[0], f"({c_type(t)})({a} {_BITWISE[type(op)]} {b})")

    def int_div(self, op: Operation) -> None:
        a, b = (self.name(x) for x in op.operands)
        t = op.results[0].type
        ct, ut = c_type(t), _u_type(t)
        if ct == "bool":
            raise UnsupportedError(f"{op.name} on i1 in a GPU kernel")
        form, helper = _INT_DIVISIONS[type(op)]
        fn = self.helper(helper) if helper else ""
        self.define(op.results[0], form.format(a=a, b=b, ct=ct, ut=ut, fn=fn))

    def shift(self, op: Operation) -> None:
        a, b = (self.name(x) for x in op.operands)
        t = op.results[0].type
        ct, ut = c_type(t), _u_type(t)
        self.define(op.results[0], _SHIFTS[type(op)].format(a=a, b=b, ct=ct, ut=ut))

    def int_minmax(self, op: Operation) -> None:
        a, b = (self.name(x) for x in op.operands)
        t = op.results[0].type
        unsigned = isinstance(op, (arith.MaxUIOp, arith.MinUIOp))
        bigger = isinstance(op, (arith.MaxUIOp, arith.MaxSIOp))
        x, y = (f"({_u_type(t)}){a}", f"({_u_type(t)}){b}") if unsigned else (a, b)
        self.define(op.results[0], f"{x} {'>' if bigger else '<'} {y} ? {a} : {b}")

    def float_minmax(self, op: Operation) -> None:
        a, b = (self.name(x) for x in op.operands)
        f32 = isinstance(op.results[0].type, Float32Type)
        name, is_helper = _FLOAT_MINMAX[type(op)]
        fn = self.helper(name) if is_helper else name + ("f" if f32 else "")
        self.define(op.results[0], f"{fn}({a}, {b})")

    def cmpi(self, op: arith.CmpiOp) -> None:
        pred = arith.CMPI_COMPARISON_OPERATIONS[op.predicate.value.data]
        sym, unsigned = _CMPI[pred]
        a, b = self.name(op.lhs), self.name(op.rhs)
        if unsigned:
            u = _u_type(op.lhs.type)
            a, b = f"({u}){a}", f"({u}){b}"
        elif c_type(op.lhs.type) == "bool" and sym not in ("==", "!="):
            a, b = f"(-(int){a})", f"(-(int){b})"  # a signed i1: true is -1
        self.define(op.result, f"{a} {sym} {b}")

    def cmpf(self, op: arith.CmpfOp) -> None:
        pred = arith.CMPF_COMPARISON_OPERATIONS[op.predicate.value.data]
        self.define(op.result, _CMPF[pred].format(a=self.name(op.lhs),
                                                  b=self.name(op.rhs)))

    def select(self, op: arith.SelectOp) -> None:
        c, a, b = (self.name(x) for x in (op.cond, op.lhs, op.rhs))
        self.define(op.result, f"{c} ? {a} : {b}")

    def cast(self, op: Operation) -> None:
        src = op.operands[0]
        s = self.name(src)
        st, dt = src.type, op.results[0].type
        sc, dc = c_type(st), c_type(dt)
        match op:
            case arith.SIToFPOp():
                # i1 is signed: true is -1 (LLVM's sitofp).
                expr = f"({s} ? ({dc})-1 : ({dc})0)" if sc == "bool" else f"({dc}){s}"
            case arith.UIToFPOp():
                expr = f"({dc})({_u_type(st)}){s}"
            case arith.FPToSIOp() | arith.FPToUIOp():
                signed = isinstance(op, arith.FPToSIOp)
                if dc == "bool":
                    raise UnsupportedError(f"{op.name} to i1 in a GPU kernel")
                w = _width(dt)
                name = f"iz_{'fptosi' if signed else 'fptoui'}_i{w}_{sc}"
                itype = dc if signed else _u_type(dt)
                self.helper(name, _fpto_helper(name, signed, itype, w, sc))
                expr = f"({dc}){name}({s})"
            case arith.ExtFOp() | arith.TruncFOp():
                expr = f"({dc}){s}"
            case arith.BitcastOp():
                expr = self.bitcast(s, sc, dc, op)
            case _:  # integer width changes: index_cast, extsi, extui, trunci
                if dc == "bool":
                    expr = f"(bool)({s} & 1)"
                elif sc == "bool" or isinstance(op, arith.ExtUIOp):
                    # i1 -> wider is unsigned (the CPU lowering's zext).
                    expr = f"({dc})({_u_type(st)}){s}"
                else:
                    expr = f"({dc}){s}"
        self.define(op.results[0], expr)

    @staticmethod
    def bitcast(s: str, sc: str, dc: str, op: Operation) -> str:
        table = {("double", "int64_t"): "(int64_t)__double_as_longlong({})",
                 ("int64_t", "double"): "__longlong_as_double((long long){})",
                 ("float", "int32_t"): "__float_as_int({})",
                 ("int32_t", "float"): "__int_as_float({})"}
        if sc == dc:
            return s
        if (sc, dc) not in table:
            raise UnsupportedError(f"{op.name} from {sc} to {dc} in a GPU kernel")
        return table[(sc, dc)].format(s)

    # -- math --------------------------------------------------------------------------
    def float_math(self, op: Operation) -> None:
        f32 = isinstance(op.results[0].type, Float32Type)
        fn = _MATH[type(op)] + ("f" if f32 else "")
        args = ", ".join(self.name(x) for x in op.operands)
        self.define(op.results[0], f"{fn}({args})")

    def sincos(self, op: SincosOp) -> None:
        f32 = isinstance(op.operand.type, Float32Type)
        x = self.name(op.operand)
        self.define(op.sin, f"{'sinf' if f32 else 'sin'}({x})")
        self.define(op.cos, f"{'cosf' if f32 else 'cos'}({x})")

    def other_math(self, op: Operation) -> None:
        t = op.results[0].type
        x = [self.name(v) for v in op.operands]
        ct = c_type(t)
        match op:
            case math.FPowIOp():
                fn = "powf" if ct == "float" else "pow"
                expr = f"{fn}({x[0]}, ({ct}){x[1]})"
            case math.RsqrtOp():
                expr = "(1.0f / sqrtf({}))" if ct == "float" else "(1.0 / sqrt({}))"
                expr = expr.format(x[0])
            case math.IPowIOp():
                expr = f"{self.helper('iz_ipowi')}<{ct}, {_u_type(t)}>({x[0]}, {x[1]})"
            case math.AbsIOp():
                u = _u_type(t)
                expr = f"({ct})({x[0]} < 0 ? -({u}){x[0]} : ({u}){x[0]})"
            case _:
                w = _width(t)
                if w not in (32, 64):
                    raise UnsupportedError(f"{op.name} on i{w} in a GPU kernel")
                ll = "ll" if w == 64 else ""
                arg = f"(unsigned long long){x[0]}" if w == 64 else f"(unsigned int){x[0]}"
                sarg = f"(long long){x[0]}" if w == 64 else f"(int){x[0]}"
                if isinstance(op, math.CountLeadingZerosOp):
                    expr = f"({ct})__clz{ll}({sarg})"
                elif isinstance(op, math.CountTrailingZerosOp):
                    expr = f"({ct})({x[0]} == 0 ? {w} : __ffs{ll}({sarg}) - 1)"
                elif isinstance(op, math.CtPopOp):
                    expr = f"({ct})__popc{ll}({arg})"
                else:
                    raise UnsupportedError(f"{op.name} in a GPU kernel")
        self.define(op.results[0], expr)

    # -- memref ------------------------------------------------------------------------
    @staticmethod
    def _mtype(v: SSAValue) -> MemRefType:
        t = v.type
        if not isinstance(t, MemRefType):
            raise UnsupportedError(f"unranked memref {t} in a GPU kernel")
        return t

    def size(self, v: SSAValue, k: int) -> _Expr:
        s = self._mtype(v).get_shape()[k]
        return f"{self.name(v)}.sizes[{k}]" if s == DYNAMIC_INDEX else s

    def strides(self, v: SSAValue) -> list[_Expr]:
        t = self._mtype(v)
        strides = t.get_strides()
        if strides is None:
            raise UnsupportedError(f"memref layout of {t} in a GPU kernel (not strided)")
        return [f"{self.name(v)}.strides[{k}]" if s is None or s == DYNAMIC_INDEX else s
                for k, s in enumerate(strides)]

    def offset(self, v: SSAValue) -> _Expr:
        o = self._mtype(v).get_offset()
        return f"{self.name(v)}.offset" if o is None or o == DYNAMIC_INDEX else o

    def element(self, v: SSAValue, indices: Sequence[SSAValue]) -> str:
        """``m.aligned[offset + sum(i_k * stride_k)]``."""
        return f"{self.name(v)}.aligned[{self.linear_index(v, indices)}]"

    def element_at(self, v: SSAValue, k: int) -> str:
        """Element ``k`` (a constant) of the rank-1 memref ``v``."""
        linear = _add(self.offset(v), _mul(k, self.strides(v)[0]))
        return f"{self.name(v)}.aligned[{_c(linear)}]"

    def linear_index(self, v: SSAValue, indices: Sequence[SSAValue]) -> str:
        """``offset + sum(i_k * stride_k)``: the element's index from ``aligned``."""
        linear = self.offset(v)
        for idx, stride in zip(indices, self.strides(v)):
            linear = _add(linear, _mul(self.name(idx), stride))
        return _c(linear)

    def load(self, op: memref.LoadOp) -> None:
        """A plain load; through ``IZ_LOAD(aligned, index)`` (``PROLOGUE``) from
        memory the threads share, so cuda-emu's race checker sees it."""
        if op.memref not in self.shared:
            self.define(op.res, self.element(op.memref, op.indices))
            return
        m = self.name(op.memref)
        self.define(op.res, f"IZ_LOAD({m}.aligned, "
                            f"{self.linear_index(op.memref, op.indices)})")

    def store(self, op: memref.StoreOp) -> None:
        """A plain store; through ``IZ_STORE(aligned, index, value)`` to memory the
        threads share (see :meth:`load`)."""
        if op.memref not in self.shared:
            self.emit(f"{self.element(op.memref, op.indices)} = {self.name(op.value)};")
            return
        m = self.name(op.memref)
        self.emit(f"IZ_STORE({m}.aligned, {self.linear_index(op.memref, op.indices)}, "
                  f"{self.name(op.value)});")

    def atomic(self, op: memref.AtomicRMWOp) -> None:
        kind = atomic_rmw_kind_name(op)
        t = c_type(op.value.type)
        ptr = f"&{self.element(op.memref, op.indices)}"
        v = self.name(op.value)
        # The old value is declared only when used (nvcc warns of a variable set but
        # never used; the reductions' atomics never use theirs).
        used = bool(op.result.uses)
        if WARP_AGGREGATE_ATTR not in op.attributes or t not in _CAS_WORDS:
            if used:
                self.define(op.result, self.atomic_expr(kind, t, ptr, v))
            else:
                self.emit(f"(void){self.atomic_expr(kind, t, ptr, v)};")
            return
        # Every thread of the block is here: combine the warp's 32 values by shuffles,
        # then lane 0 issues the one atomic (32 times fewer atomics on one address).
        # The emulator runs threads one by one: there, each thread issues its own.
        combine = f"iz_combine_{kind}_{t}"
        self.dependencies(kind, t)  # printed before the helpers that call them
        self.helper(combine, _combine_helper(combine, kind, t))
        res = self.declare(op.result) if used else None
        assign = f"{res} = " if used else "(void)"
        w = self.fresh("w")
        self.emit("#ifdef __CUDA_ARCH__")
        self.emit(f"{t} {w} = {v};")
        self.emit(f"for (int o = 16; o > 0; o >>= 1) "
                  f"{w} = {combine}({w}, __shfl_down_sync(0xffffffffu, {w}, o));")
        if used:
            self.emit(f"{res} = {w};")
        self.emit(f"if ((threadIdx.x & 31u) == 0u) "
                  f"{assign}{self.atomic_expr(kind, t, ptr, w)};")
        self.emit("#else")
        self.emit(f"{assign}{self.atomic_expr(kind, t, ptr, v)};")
        self.emit("#endif")

    def dependencies(self, kind: str, t: str) -> None:
        """Print the helpers a combination of ``kind`` calls."""
        for dep in ("iz_maximumf", "iz_minimumf"):
            if dep in _ATOMIC_COMBINE[kind](t, ""):
                self.helper(dep)

    def atomic_expr(self, kind: str, t: str, ptr: str, v: str) -> str:
        """The expression applying ``kind`` to ``*ptr`` atomically; its value is the
        old one."""
        if kind == "addf" or (kind == "addi" and t == "int32_t"):
            return f"atomicAdd({ptr}, {v})"
        if kind == "addi" and t == "int64_t":
            return (f"(int64_t)atomicAdd((unsigned long long*){ptr}, "
                    f"(unsigned long long){v})")
        if t not in _CAS_WORDS:
            raise UnsupportedError(f"memref.atomic_rmw {kind} on {t} in a GPU kernel")
        name = f"iz_atomic_{kind}_{t}"
        self.dependencies(kind, t)
        self.helper(name, _atomic_helper(name, kind, t))
        return f"{name}({ptr}, {v})"

    def dim(self, op: memref.DimOp) -> None:
        rank = self._mtype(op.source).get_num_dims()
        if rank == 0:
            raise UnsupportedError("memref.dim of a rank-0 memref in a GPU kernel")
        k = _constant_index(op.index)
        if k is not None:
            self.define(op.result, _c(self.size(op.source, k)))
            return
        expr = _c(self.size(op.source, rank - 1))
        i = self.name(op.index)
        for j in range(rank - 2, -1, -1):
            expr = f"({i} == {j} ? {_c(self.size(op.source, j))} : {expr})"
        self.define(op.result, expr)

    def descriptor(self, result: SSAValue, src: SSAValue, offset: _Expr,
                   sizes: Sequence[_Expr], strides: Sequence[_Expr],
                   allocated: str | None = None, aligned: str | None = None) -> None:
        """A new descriptor: ``src``'s pointers (or the given ones) and these fields."""
        a = allocated or f"{self.name(src)}.allocated"
        b = aligned or f"{self.name(src)}.aligned"
        if aligned is None and src in self.shared:  # a view of shared memory
            self.shared.add(result)
        fields = [a, b, _c(offset)]
        if sizes:
            fields.append("{" + ", ".join(_c(s) for s in sizes) + "}")
            fields.append("{" + ", ".join(_c(s) for s in strides) + "}")
        self.define(result, "{" + ", ".join(fields) + "}")

    def cast_view(self, op: memref.CastOp) -> None:
        dest = op.dest.type
        if not isinstance(dest, MemRefType) or \
                dest.get_num_dims() != self._mtype(op.source).get_num_dims():
            raise UnsupportedError(f"memref.cast to {dest} in a GPU kernel")
        if op.source in self.shared:
            self.shared.add(op.dest)
        self.define(op.dest, self.name(op.source))

    def subview(self, op: memref.SubviewOp) -> None:
        mtype = self._mtype(op.source)
        result_t = op.result.type
        assert isinstance(result_t, MemRefType)
        rank = mtype.get_num_dims()

        def values(static: builtin.DenseArrayBase, dynamic) -> list[_Expr]:
            dyn = iter(dynamic)
            return [self.name(next(dyn)) if v == DYNAMIC_INDEX else v
                    for v in static.get_values()]

        offsets = values(op.static_offsets, op.offsets)
        sizes = values(op.static_sizes, op.sizes)
        steps = values(op.static_strides, op.strides)
        src_strides = self.strides(op.source)
        offset = self.offset(op.source)
        for k in range(rank):
            offset = _add(offset, _mul(offsets[k], src_strides[k]))
        new_strides = [_mul(src_strides[k], steps[k]) for k in range(rank)]
        try:
            kept = kept_dims(mtype, result_t,
                              [v if isinstance(v, int) else None for v in sizes],
                              [v if isinstance(v, int) else None for v in new_strides])
        except LoweringError as e:
            raise UnsupportedError(f"memref.subview in a GPU kernel: {e}") from e
        self.descriptor(op.result, op.source, offset, [sizes[k] for k in kept],
                        [new_strides[k] for k in kept])

    def transpose(self, op: TransposeOp) -> None:
        rank = self._mtype(op.source).get_num_dims()
        sizes = [self.size(op.source, k) for k in range(rank)]
        strides = self.strides(op.source)
        perm = op.perm
        self.descriptor(op.result, op.source, self.offset(op.source),
                        [sizes[p] for p in perm], [strides[p] for p in perm])

    def expand_shape(self, op: memref.ExpandShapeOp) -> None:
        src_strides = self.strides(op.src)
        dyn = iter(op.output_shape)
        out_sizes: list[_Expr] = [self.name(next(dyn)) if v == DYNAMIC_INDEX else v
                                  for v in op.static_output_shape.get_values()]
        out_strides: list[_Expr] = [0] * len(out_sizes)
        for i, group in enumerate(_groups(op)):
            stride = src_strides[i]
            for k in reversed(group):
                out_strides[k] = stride
                stride = _mul(stride, out_sizes[k])
        self.descriptor(op.result, op.src, self.offset(op.src), out_sizes, out_strides)

    def collapse_shape(self, op: memref.CollapseShapeOp) -> None:
        rank = self._mtype(op.src).get_num_dims()
        sizes = [self.size(op.src, k) for k in range(rank)]
        strides = self.strides(op.src)
        out_sizes: list[_Expr] = []
        out_strides: list[_Expr] = []
        for group in _groups(op):
            size: _Expr = 1
            stride: _Expr = 1
            for k in group:  # the innermost dimension not of size 1 gives the stride
                size = _mul(size, sizes[k])
                if isinstance(sizes[k], int):
                    if sizes[k] != 1:
                        stride = strides[k]
                else:
                    stride = f"({sizes[k]} == 1 ? {_c(stride)} : {_c(strides[k])})"
            out_sizes.append(size)
            out_strides.append(stride)
        self.descriptor(op.result, op.src, self.offset(op.src), out_sizes, out_strides)

    def alloca(self, op: memref.AllocaOp) -> None:
        t = self._mtype(op.memref)
        shape = t.get_shape()
        if op.dynamic_sizes or any(s == DYNAMIC_INDEX for s in shape) or \
                not isinstance(t.layout, NoneAttr):
            raise UnsupportedError(
                f"memref.alloca of {t} in a GPU kernel: only static shapes with the "
                "identity layout (a per-thread array)")
        self.local_array(op.memref, list(shape))

    def alloc(self, op: memref.AllocOp) -> None:
        """``memref.alloc`` in a kernel (an array created in a ``prange`` body, or a
        whole-array temporary there): a per-thread array when every size is a constant
        (the frontend types ``np.zeros(3)`` as ``memref<?xf64>`` of a constant size);
        a size known only at run time is refused."""
        t = self._mtype(op.memref)
        if not isinstance(t.layout, NoneAttr):
            raise UnsupportedError(f"memref.alloc of {t} in a GPU kernel (not the "
                                   "identity layout)")
        dynamic = iter(op.dynamic_sizes)
        shape: list[int] = []
        for s in t.get_shape():
            size = _constant_index(next(dynamic)) if s == DYNAMIC_INDEX else s
            if size is None:
                raise UnsupportedError(
                    f"memref.alloc of {t} in a GPU kernel with a size known only at run "
                    "time (an array created inside a prange body, or a whole-array "
                    "expression there, such as r = A[i] * v): a kernel has no "
                    "allocator; give the array a constant size, create it outside the "
                    "parallel loop, or write the inner loop out")
            shape.append(size)
        count = 1
        for size in shape:
            count *= size
        if count > MAX_LOCAL_ELEMENTS:
            raise UnsupportedError(
                f"memref.alloc of {count} elements in a GPU kernel: a per-thread array "
                f"holds at most {MAX_LOCAL_ELEMENTS}; create it outside the parallel loop")
        self.local_array(op.memref, shape)
        self.local.add(op.memref)

    def dealloc(self, op: memref.DeallocOp) -> None:
        """The end of a per-thread array (nothing to free)."""
        if op.memref not in self.local:
            raise UnsupportedError("memref.dealloc in a GPU kernel of a memref that the "
                                   "kernel did not allocate")
        self.emit(f"// {self.name(op.memref)} ends here (a per-thread array)")

    def local_array(self, result: SSAValue, shape: list[int]) -> None:
        """A per-thread C array of ``shape`` (row-major) and its descriptor."""
        count = 1
        for s in shape:
            count *= s
        strides: list[_Expr] = [1] * len(shape)
        for k in range(len(shape) - 2, -1, -1):
            strides[k] = _mul(strides[k + 1], shape[k + 1])
        buf = self.fresh("buf")
        t = self._mtype(result)
        self.emit(f"{c_type(t.element_type)} {buf}[{max(count, 1)}];")
        self.descriptor(result, result, 0, list(shape), strides, buf, buf)

    # -- scf ---------------------------------------------------------------------------
    def assign_all(self, targets: Sequence[str], values: Sequence[SSAValue]) -> None:
        """Parallel assignment (through temporaries when there are several)."""
        if len(targets) == 1:
            self.emit(f"{targets[0]} = {self.name(values[0])};")
            return
        temps = []
        for v in values:
            tmp = self.fresh("t")
            self.emit(f"{self.ctype(v.type)} {tmp} = {self.name(v)};")
            temps.append(tmp)
        for tgt, tmp in zip(targets, temps):
            self.emit(f"{tgt} = {tmp};")

    def yield_to(self, targets: Sequence[str]) -> Callable[[Operation], None]:
        def terminator(op: Operation) -> None:
            if not isinstance(op, scf.YieldOp):
                raise UnsupportedError(f"{op.name} ending an scf region in a GPU kernel")
            if targets:
                self.assign_all(targets, list(op.operands))
        return terminator

    def for_(self, op: scf.ForOp) -> None:
        body = op.body.block
        iters = []
        for res, init, arg in zip(op.res, op.iter_args, body.args[1:]):
            if init in self.shared:  # a view carried through the loop
                self.shared.update((res, arg))
            self.define(res, self.name(init))
            self.names[arg] = self.names[res]
            iters.append(self.names[res])
        iv = self.fresh("i")
        self.names[body.args[0]] = iv
        t = self.ctype(op.lb.type)
        self.emit(f"for ({t} {iv} = {self.name(op.lb)}; {iv} < {self.name(op.ub)}; "
                  f"{iv} += {self.name(op.step)}) {{")
        self.indent += 1
        self.block(body, self.yield_to(iters))
        self.indent -= 1
        self.emit("}")

    def if_(self, op: scf.IfOp) -> None:
        outs = [self.declare(r) for r in op.output]
        self.emit(f"if ({self.name(op.cond)}) {{")
        self.indent += 1
        self.block(op.true_region.block, self.yield_to(outs))
        self.indent -= 1
        if op.false_region.blocks and list(op.false_region.block.ops):
            self.emit("} else {")
            self.indent += 1
            self.block(op.false_region.block, self.yield_to(outs))
            self.indent -= 1
        self.emit("}")

    def alloca_scope(self, op: memref.AllocaScopeOp) -> None:
        """``memref.alloca_scope``: a C block (its per-thread arrays end with it)."""
        outs = [self.declare(r) for r in op.results]

        def scope_return(term: Operation) -> None:
            if not isinstance(term, memref.AllocaScopeReturnOp):
                raise UnsupportedError(f"{term.name} ending a memref.alloca_scope")
            if outs:
                self.assign_all(outs, list(term.operands))

        self.emit("{")
        self.indent += 1
        self.block(op.scope.block, scope_return)
        self.indent -= 1
        self.emit("}")

    def while_(self, op: scf.WhileOp) -> None:
        before, after = op.before_region.block, op.after_region.block
        carried = []
        for arg, init in zip(before.args, op.arguments):
            n = self.fresh()
            self.names[arg] = n
            self.emit(f"{self.ctype(arg.type)} {n} = {self.name(init)};")
            carried.append(n)
        outs = [self.declare(r) for r in op.res]
        for arg, res in zip(after.args, op.res):
            self.names[arg] = self.names[res]
        self.emit("for (;;) {")
        self.indent += 1

        def condition(term: Operation) -> None:
            if not isinstance(term, scf.ConditionOp):
                raise UnsupportedError(f"{term.name} ending an scf.while condition")
            for o, v in zip(outs, term.args):
                self.emit(f"{o} = {self.name(v)};")
            self.emit(f"if (!{self.name(term.condition)}) break;")

        self.block(before, condition)
        self.block(after, self.yield_to(carried))
        self.indent -= 1
        self.emit("}")

    def parallel(self, op: scf.ParallelOp) -> None:
        """A nested ``scf.parallel``: sequential loops, reductions into variables."""
        accs = []
        for res, init in zip(op.res, op.initVals):
            self.define(res, self.name(init))
            accs.append(self.names[res])
        body = op.body.block
        for iv, lb, ub, step in zip(body.args, op.lowerBound, op.upperBound, op.step):
            n = self.fresh("i")
            self.names[iv] = n
            self.emit(f"for (int64_t {n} = {self.name(lb)}; {n} < {self.name(ub)}; "
                      f"{n} += {self.name(step)}) {{")
            self.indent += 1

        def reduce(term: Operation) -> None:
            assert isinstance(term, scf.ReduceOp)
            for acc, value, region in zip(accs, term.args, term.reductions):
                a, b = region.block.args
                self.names[a] = acc
                self.names[b] = self.name(value)
                self.emit("{")
                self.indent += 1

                def ret(r: Operation, acc: str = acc) -> None:
                    self.emit(f"{acc} = {self.name(r.operands[0])};")

                self.block(region.block, ret)
                self.indent -= 1
                self.emit("}")

        self.block(body, reduce)
        for _ in body.args:
            self.indent -= 1
            self.emit("}")

    # -- gpu ---------------------------------------------------------------------------
    def report_failure(self, op: ReportFailureOp) -> None:
        """A failed check: the first thread to fail sets ``status[0]`` to the check's
        id (compare-and-swap from 0) and writes its values; the thread ends (a C
        ``return`` anywhere in the kernel, loops included)."""
        k = op.check.value.data
        word = "unsigned long long"
        self.emit(f"if (atomicCAS(({word}*)&{self.element_at(op.status, 0)}, 0ull, "
                  f"{k}ull) == 0ull) {{")
        self.indent += 1
        for j, v in enumerate(op.values):
            # i1 widens to 0/1, narrower integers sign-extend (as the CPU status).
            self.emit(f"{self.element_at(op.status, 1 + j)} = (int64_t){self.name(v)};")
        self.indent -= 1
        self.emit("}")
        self.emit("return;")

    def gpu_id(self, op: Operation) -> None:
        dim = op.dimension.data.value  # type: ignore[attr-defined]
        self.define(op.results[0], f"(int64_t){_GPU_IDS[type(op)]}.{dim}")

    def global_id(self, op: gpu.GlobalIdOp) -> None:
        d = op.dimension.data.value
        self.define(op.result,
                    f"(int64_t)blockIdx.{d} * (int64_t)blockDim.{d} + (int64_t)threadIdx.{d}")


def _constant_index(value: SSAValue) -> int | None:
    owner = value.owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr):
        return owner.value.value.data
    return None


def _groups(op: memref.ExpandShapeOp | memref.CollapseShapeOp) -> list[list[int]]:
    return [[int(i.value.data) for i in g.data] for g in op.reassociation.data]


_DISPATCH: dict[type[Operation], Callable[[_Printer, Operation], None]] = {
    arith.ConstantOp: _Printer.constant,
    arith.NegfOp: _Printer.negf,
    arith.CmpiOp: _Printer.cmpi,
    arith.CmpfOp: _Printer.cmpf,
    arith.SelectOp: _Printer.select,
    memref.LoadOp: _Printer.load,
    memref.StoreOp: _Printer.store,
    memref.AtomicRMWOp: _Printer.atomic,
    memref.DimOp: _Printer.dim,
    memref.CastOp: _Printer.cast_view,
    memref.SubviewOp: _Printer.subview,
    memref.ExpandShapeOp: _Printer.expand_shape,
    memref.CollapseShapeOp: _Printer.collapse_shape,
    memref.AllocaOp: _Printer.alloca,
    memref.AllocaScopeOp: _Printer.alloca_scope,
    memref.AllocOp: _Printer.alloc,
    memref.DeallocOp: _Printer.dealloc,
    TransposeOp: _Printer.transpose,
    scf.ForOp: _Printer.for_,
    scf.IfOp: _Printer.if_,
    scf.WhileOp: _Printer.while_,
    scf.ParallelOp: _Printer.parallel,
    gpu.GlobalIdOp: _Printer.global_id,
    ReportFailureOp: _Printer.report_failure,
    **{t: _Printer.float_binary for t in _FLOAT_BINARY},
    **{t: _Printer.wrapping for t in _WRAPPING},
    **{t: _Printer.bitwise for t in _BITWISE},
    **{t: _Printer.int_div for t in _INT_DIVISIONS},
    **{t: _Printer.shift for t in _SHIFTS},
    **{t: _Printer.int_minmax for t in (arith.MaxSIOp, arith.MinSIOp, arith.MaxUIOp,
                                        arith.MinUIOp)},
    **{t: _Printer.float_minmax for t in _FLOAT_MINMAX},
    **{t: _Printer.cast for t in (arith.SIToFPOp, arith.UIToFPOp, arith.FPToSIOp,
                                  arith.FPToUIOp, arith.ExtFOp, arith.TruncFOp,
                                  arith.IndexCastOp, arith.ExtSIOp, arith.ExtUIOp,
                                  arith.TruncIOp, arith.BitcastOp)},
    **{t: _Printer.float_math for t in _MATH},
    SincosOp: _Printer.sincos,
    **{t: _Printer.other_math for t in (math.FPowIOp, math.RsqrtOp, math.IPowIOp,
                                        math.AbsIOp, math.CountLeadingZerosOp,
                                        math.CountTrailingZerosOp, math.CtPopOp)},
    **{t: _Printer.gpu_id for t in _GPU_IDS},
}


def supports(op: Operation) -> bool:
    """Whether the printer has a rule for ``op``'s type (its operand and result types
    are checked when it prints: :func:`c_type`)."""
    return type(op) in _DISPATCH

# NVRTC (CuPy's RawModule compiles with it; it defines __CUDACC_RTC__) has no system
# headers: the fixed-width integer types are defined here unless a header already did.
PROLOGUE = """\
// CUDA C of isozyme's kernels (stage "cuda"); memrefs are MLIR's descriptors.
#if defined(__CUDACC_RTC__)
#ifndef INT64_MAX
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#endif
#else
#include <stdint.h>
#endif
// Loads and stores of the memory the threads of a launch share: plain accesses here;
// cuda-emu's race checker (IZ_EMU_RACECHECK) defines its own first.
#ifndef IZ_LOAD
#define IZ_LOAD(aligned, index) ((aligned)[index])
#define IZ_STORE(aligned, index, value) ((aligned)[index] = (value))
#endif
"""


def _gpu_modules(op: builtin.ModuleOp | gpu.ModuleOp) -> list[gpu.ModuleOp]:
    if isinstance(op, gpu.ModuleOp):
        return [op]
    return [o for o in op.walk() if isinstance(o, gpu.ModuleOp)]


def translate(op: builtin.ModuleOp | gpu.ModuleOp) -> CudaUnit:
    """Print the kernels of ``op`` (a ``gpu.module``, or a module holding them) and
    describe their parameters."""
    p = _Printer()
    kernels = []
    for gmod in _gpu_modules(op):
        for f in gmod.body.block.ops:
            if not isinstance(f, gpu.FuncOp):
                raise UnsupportedError(f"{f.name} in a gpu.module (CUDA printer)")
            kernels.append(p.kernel(f))
            p.emit("")
    parts = [PROLOGUE]
    parts += [descriptor_typedef(e, r) for e, r in p.typedefs]
    parts += list(p.helpers.values())
    parts.append("\n".join(p.lines))
    return CudaUnit("\n".join(parts) + "\n", kernels)


def print_cuda(op: builtin.ModuleOp | gpu.ModuleOp) -> str:
    """One CUDA C translation unit with every kernel of ``op`` (``docs/gpu.md``)."""
    return translate(op).text
