"""``print_cuda``: the CUDA C of outlined kernels compiles with ``nvcc -ptx -arch=sm_90``.

:data:`KERNELS` is a set of host functions with ``scf.parallel`` loops (elementwise
math in f32 and f64, gather, scatter with ``atomic_rmw addf``, a 2-D stencil on strided
memrefs, reductions, ``scf.for``/``if``/``while`` inside a kernel, every ``cmpf``
predicate, ``select``, casts, integer ops, views); each is outlined by
``gpu-outline-parallel-loops`` and printed.  ``test_cuda_emu_kernels.py`` runs the same
kernels through the CPU emulation and checks their numbers against numpy.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import pytest
from xdsl.dialects.builtin import ModuleOp
from xdsl.dialects.gpu import GPU
from xdsl.parser import Parser

from isozyme.compiler.context import make_context
from isozyme.compiler.gpu import OutlineParallelLoopsPass
from isozyme.compiler.gpu.cuda_printer import print_cuda
from isozyme.dialects.gpu_ext import IszGpu
from isozyme.errors import UnsupportedError


def context():
    ctx = make_context()
    assert {GPU.name, IszGpu.name} <= set(ctx.registered_dialect_names)  # the kernels'
    return ctx


def ploop(ivs: str, lbs: str, ubs: str, steps: str, body: str, *, init: str = "",
          result: str = "", rtype: str = "", combine: str = "") -> str:
    """An ``scf.parallel`` in generic syntax (xDSL 0.74 has no custom syntax for it).

    ``combine`` is the reduce region's op name; ``body`` must define ``%red`` then."""
    rank = len(ivs.split(","))
    operands = ", ".join(x for x in (lbs, ubs, steps, init) if x)
    nred = 1 if init else 0
    types = ", ".join(["index"] * 3 * rank + ([rtype] if init else []))
    args = ", ".join(f"{v.strip()}: index" for v in ivs.split(","))
    if init:
        reduce = f"""    scf.reduce(%red : {rtype}) {{
    ^bb9(%ra: {rtype}, %rb: {rtype}):
      %rc = {combine} %ra, %rb : {rtype}
      scf.reduce.return %rc : {rtype}
    }}"""
    else:
        reduce = "    scf.reduce"
    res = f"{result} = " if result else ""
    return f"""  {res}"scf.parallel"({operands})
      <{{operandSegmentSizes = array<i32: {rank}, {rank}, {rank}, {nred}>}}> ({{
  ^bb0({args}):
{body}
{reduce}
  }}) : ({types}) -> ({rtype})
"""


# (name in MLIR, numpy name, arity) of the float math functions tested; inputs in
# (0.1, 0.9) keep every one defined.
MATH_FUNCS = [
    ("math.sin", "sin", 1), ("math.cos", "cos", 1), ("math.tan", "tan", 1),
    ("math.asin", "arcsin", 1), ("math.acos", "arccos", 1), ("math.atan", "arctan", 1),
    ("math.atan2", "arctan2", 2), ("math.sinh", "sinh", 1), ("math.cosh", "cosh", 1),
    ("math.tanh", "tanh", 1), ("math.asinh", "arcsinh", 1), ("math.atanh", "arctanh", 1),
    ("math.exp", "exp", 1), ("math.exp2", "exp2", 1), ("math.expm1", "expm1", 1),
    ("math.log", "log", 1), ("math.log2", "log2", 1), ("math.log10", "log10", 1),
    ("math.log1p", "log1p", 1), ("math.sqrt", "sqrt", 1), ("math.cbrt", "cbrt", 1),
    ("math.powf", "power", 2), ("math.absf", "abs", 1), ("math.floor", "floor", 1),
    ("math.ceil", "ceil", 1), ("math.roundeven", "rint", 1), ("math.round", "round", 1),
    ("math.trunc", "trunc", 1), ("math.copysign", "copysign", 2), ("math.erf", "erf", 1),
    ("math.rsqrt", "rsqrt", 1), ("math.fma", "fma", 3),
]


def math_kernel(t: str) -> str:
    """``out[i, k] = f_k(s * x[i], ...)`` for every function of :data:`MATH_FUNCS`;
    ``s`` scales the argument (10 for the rounding functions: they need integers and
    halves; -1 for ``absf``), the second operand is ``y[i]``, the third ``x[i]``."""
    lines = []
    for k, (op, _, arity) in enumerate(MATH_FUNCS):
        scaled = "%x10" if op in ("math.floor", "math.ceil", "math.roundeven",
                                  "math.round", "math.trunc") else \
            ("%xneg" if op in ("math.absf", "math.copysign") else "%v")
        operands = ", ".join([scaled, "%w", "%v"][:arity])
        lines.append(f"""    %r{k} = {op} {operands} : {t}
    %k{k} = arith.constant {k} : index
    memref.store %r{k}, %out[%i, %k{k}] : memref<?x?x{t}>""")
    body = f"""    %v = memref.load %x[%i] : memref<?x{t}>
    %w = memref.load %y[%i] : memref<?x{t}>
    %x10 = arith.mulf %v, %ten : {t}
    %xneg = arith.negf %v : {t}
""" + "\n".join(lines)
    return f"""
func.func @math_{t}(%x: memref<?x{t}>, %y: memref<?x{t}>, %out: memref<?x?x{t}>, %n: index) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %ten = arith.constant 10.0 : {t}
{ploop("%i", "%c0", "%n", "%c1", body)}  return
}}
"""


GATHER = f"""
func.func @gather(%x: memref<?xf64>, %idx: memref<?xi64>, %y: memref<?xf64>, %n: index) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
{ploop("%i", "%c0", "%n", "%c1", '''    %j64 = memref.load %idx[%i] : memref<?xi64>
    %j = arith.index_cast %j64 : i64 to index
    %v = memref.load %x[%j] : memref<?xf64>
    memref.store %v, %y[%i] : memref<?xf64>''')}  return
}}
"""

SCATTER_F32 = f"""
func.func @scatter(%x: memref<?xf32>, %idx: memref<?xi64>, %y: memref<?xf32>, %n: index) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
{ploop("%i", "%c0", "%n", "%c1", '''    %j64 = memref.load %idx[%i] : memref<?xi64>
    %j = arith.index_cast %j64 : i64 to index
    %v = memref.load %x[%i] : memref<?xf32>
    %o = "memref.atomic_rmw"(%v, %y, %j) <{kind = 0 : i64}> : (f32, memref<?xf32>, index) -> f32''')}  return
}}
"""

SM = "memref<?x?xf64, strided<[?, ?], offset: ?>>"
STENCIL = f"""
func.func @stencil(%u: {SM}, %out: {SM}, %n: index, %m: index, %k: f64) {{
  %c1 = arith.constant 1 : index
  %n1 = arith.subi %n, %c1 : index
  %m1 = arith.subi %m, %c1 : index
  %four = arith.constant 4.0 : f64
{ploop("%i, %j", "%c1, %c1", "%n1, %m1", "%c1, %c1", f'''    %im = arith.subi %i, %c1 : index
    %ip = arith.addi %i, %c1 : index
    %jm = arith.subi %j, %c1 : index
    %jp = arith.addi %j, %c1 : index
    %a = memref.load %u[%im, %j] : {SM}
    %b = memref.load %u[%ip, %j] : {SM}
    %c = memref.load %u[%i, %jm] : {SM}
    %d = memref.load %u[%i, %jp] : {SM}
    %e = memref.load %u[%i, %j] : {SM}
    %s1 = arith.addf %a, %b : f64
    %s2 = arith.addf %c, %d : f64
    %s3 = arith.addf %s1, %s2 : f64
    %e4 = arith.mulf %e, %four : f64
    %lap = arith.subf %s3, %e4 : f64
    %kl = arith.mulf %k, %lap : f64
    %r = arith.addf %e, %kl : f64
    memref.store %r, %out[%i, %j] : {SM}''')}  return
}}
"""

REDUCTIONS = f"""
func.func @sumsq(%x: memref<?xf64>, %n: index) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
{ploop("%i", "%c0", "%n", "%c1", '''    %v = memref.load %x[%i] : memref<?xf64>
    %red = arith.mulf %v, %v : f64''', init="%z", result="%r", rtype="f64",
       combine="arith.addf")}  return %r : f64
}}
func.func @maxf32(%x: memref<?xf32>, %n: index) -> f32 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant -1.0e30 : f32
{ploop("%i", "%c0", "%n", "%c1", '''    %red = memref.load %x[%i] : memref<?xf32>''',
       init="%z", result="%r", rtype="f32", combine="arith.maximumf")}  return %r : f32
}}
func.func @count(%x: memref<?xf64>, %n: index) -> i64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0 : i64
  %zf = arith.constant 0.0 : f64
{ploop("%i", "%c0", "%n", "%c1", '''    %v = memref.load %x[%i] : memref<?xf64>
    %p = arith.cmpf ogt, %v, %zf : f64
    %red = arith.extui %p : i1 to i64''',
       init="%z", result="%r", rtype="i64", combine="arith.addi")}  return %r : i64
}}
func.func @argsum(%n: index) -> index {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
{ploop("%i", "%c0", "%n", "%c1", '''    %red = arith.muli %i, %i : index''',
       init="%c0", result="%r", rtype="index", combine="arith.addi")}  return %r : index
}}
"""

# y[i] = x[i] > 0 ? sum_{k < i mod 5} x[k] : -(number of halvings of |x[i]|*100 to
# below 1): scf.for with an iter_arg, scf.if with a result, scf.while.
CONTROL = f"""
func.func @control(%x: memref<?xf64>, %y: memref<?xf64>, %n: index) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c5 = arith.constant 5 : index
  %zero = arith.constant 0.0 : f64
  %one = arith.constant 1.0 : f64
  %half = arith.constant 0.5 : f64
  %hundred = arith.constant 100.0 : f64
{ploop("%i", "%c0", "%n", "%c1", '''    %v = memref.load %x[%i] : memref<?xf64>
    %pos = arith.cmpf ogt, %v, %zero : f64
    %r = scf.if %pos -> (f64) {
      %m = arith.remui %i, %c5 : index
      %s = scf.for %k = %c0 to %m step %c1 iter_args(%acc = %zero) -> (f64) {
        %xk = memref.load %x[%k] : memref<?xf64>
        %acc2 = arith.addf %acc, %xk : f64
        scf.yield %acc2 : f64
      }
      scf.yield %s : f64
    } else {
      %a = math.absf %v : f64
      %a100 = arith.mulf %a, %hundred : f64
      %res:2 = scf.while (%w = %a100, %c = %zero) : (f64, f64) -> (f64, f64) {
        %big = arith.cmpf oge, %w, %one : f64
        scf.condition(%big) %w, %c : f64, f64
      } do {
      ^bb1(%w2: f64, %c2: f64):
        %w3 = arith.mulf %w2, %half : f64
        %c3 = arith.addf %c2, %one : f64
        scf.yield %w3, %c3 : f64, f64
      }
      %neg = arith.negf %res#1 : f64
      scf.yield %neg : f64
    }
    memref.store %r, %y[%i] : memref<?xf64>''')}  return
}}
"""

CMPF_PREDICATES = ["false", "oeq", "ogt", "oge", "olt", "ole", "one", "ord", "ueq",
                   "ugt", "uge", "ult", "ule", "une", "uno", "true"]


def cmpf_kernel() -> str:
    """``out[i, p] = cmpf <p>(a[i], b[i]) ? 1.0 : 0.0`` for every predicate, and
    ``flags[i] = cmpf olt`` stored as an ``i1``."""
    lines = []
    for k, p in enumerate(CMPF_PREDICATES):
        lines.append(f"""    %p{k} = arith.cmpf {p}, %a, %b : f64
    %s{k} = arith.select %p{k}, %one, %zero : f64
    %k{k} = arith.constant {k} : index
    memref.store %s{k}, %out[%i, %k{k}] : memref<?x?xf64>""")
    body = """    %a = memref.load %x[%i] : memref<?xf64>
    %b = memref.load %y[%i] : memref<?xf64>
    memref.store %p4, %flags[%i] : memref<?xi1>
""" + "\n".join(lines)
    # %p4 is used before its definition above: move the flag store to the end.
    body = body.replace("    memref.store %p4, %flags[%i] : memref<?xi1>\n", "")
    body += "\n    memref.store %p4, %flags[%i] : memref<?xi1>"
    return f"""
func.func @cmpf(%x: memref<?xf64>, %y: memref<?xf64>, %out: memref<?x?xf64>, %flags: memref<?xi1>, %n: index) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  %one = arith.constant 1.0 : f64
{ploop("%i", "%c0", "%n", "%c1", body)}  return
}}
"""


#: (name, MLIR computing %r from %v (f64) and %q (i64), result type) of the cast and
#: integer kernels; ``emu`` checks each against numpy.
INT_OPS = [
    ("fptosi", "%r = arith.fptosi %v : f64 to i64", "i64"),
    ("fptosi32", "%r0 = arith.fptosi %v : f64 to i32\n    %r = arith.extsi %r0 : i32 to i64", "i64"),
    ("fptoui32", "%r0 = arith.fptoui %v : f64 to i32\n    %r = arith.extui %r0 : i32 to i64", "i64"),
    ("sitofp", "%r = arith.sitofp %q : i64 to f64", "f64"),
    ("uitofp32", "%q32 = arith.trunci %q : i64 to i32\n    %r = arith.uitofp %q32 : i32 to f64", "f64"),
    ("truncf", "%r0 = arith.truncf %v : f64 to f32\n    %r = arith.extf %r0 : f32 to f64", "f64"),
    ("floordivsi", "%r = arith.floordivsi %q, %seven : i64", "i64"),
    ("ceildivsi", "%r = arith.ceildivsi %q, %seven : i64", "i64"),
    ("divsi", "%r = arith.divsi %q, %seven : i64", "i64"),
    ("remsi", "%r = arith.remsi %q, %seven : i64", "i64"),
    ("maxsi", "%r = arith.maxsi %q, %seven : i64", "i64"),
    ("minui", "%r = arith.minui %q, %seven : i64", "i64"),
    ("shli", "%r = arith.shli %q, %three : i64", "i64"),
    ("shrsi", "%r = arith.shrsi %q, %three : i64", "i64"),
    ("shrui", "%r = arith.shrui %q, %three : i64", "i64"),
    ("xori", "%r = arith.xori %q, %seven : i64", "i64"),
    ("ipowi", "%r = math.ipowi %q, %three : i64", "i64"),
    ("fpowi", "%r = math.fpowi %v, %q : f64, i64", "f64"),
    ("absi", "%r = math.absi %q : i64", "i64"),
    ("ctpop", "%r = math.ctpop %q : i64", "i64"),
    ("ctlz", "%r = math.ctlz %q : i64", "i64"),
    ("cttz", "%r = math.cttz %q : i64", "i64"),
    ("maximumf", "%r = arith.maximumf %v, %zero : f64", "f64"),
    ("minimumf", "%r = arith.minimumf %v, %zero : f64", "f64"),
    ("maxnumf", "%r = arith.maxnumf %v, %zero : f64", "f64"),
    ("minnumf", "%r = arith.minnumf %v, %zero : f64", "f64"),
    ("i1cast", "%b = arith.cmpi slt, %q, %seven : i64\n    %r = arith.extsi %b : i1 to i64", "i64"),
    ("i1slt", "%bb_ = arith.cmpi slt, %q, %seven : i64\n    %tt_ = arith.constant true\n"
     "    %ss_ = arith.cmpi slt, %tt_, %bb_ : i1\n    %r = arith.extui %ss_ : i1 to i64", "i64"),
]


def int_kernel() -> str:
    """``fout[i, k]``/``iout[i, k]`` = op ``k`` of :data:`INT_OPS` on ``v[i]``,
    ``q[i]``."""
    lines = []
    for k, (_, code, t) in enumerate(INT_OPS):
        code = code.replace("%r0", f"%r0_{k}").replace("%q32", f"%q32_{k}") \
            .replace("%b ", f"%b{k} ").replace("%b\n", f"%b{k}\n")
        code = code.replace("%r ", f"%r{k} ").replace("%r\n", f"%r{k}\n")
        out = "%fout" if t == "f64" else "%iout"
        lines.append(f"""    {code}
    %k{k} = arith.constant {k} : index
    memref.store %r{k}, {out}[%i, %k{k}] : memref<?x?x{t}>""")
    body = """    %v = memref.load %x[%i] : memref<?xf64>
    %q = memref.load %ints[%i] : memref<?xi64>
""" + "\n".join(lines)
    return f"""
func.func @ints(%x: memref<?xf64>, %ints: memref<?xi64>, %fout: memref<?x?xf64>, %iout: memref<?x?xi64>, %n: index) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %seven = arith.constant 7 : i64
  %three = arith.constant 3 : i64
  %zero = arith.constant 0.0 : f64
{ploop("%i", "%c0", "%n", "%c1", body)}  return
}}
"""


# y[i] = sum_k m[i, k] (a rank-reducing subview) + mT[0, i] (transpose) + flat[i]
# (collapse_shape) + e[0, i] (expand_shape of the flat view to 1 x (n*k)).
VIEWS = """
func.func @views(%m: memref<?x?xf64>, %y: memref<?xf64>, %n: index, %k: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  %nk = arith.muli %n, %k : index
""" + ploop("%i", "%c0", "%n", "%c1", """    %row = memref.subview %m[%i, 0] [1, %k] [1, 1] : memref<?x?xf64> to memref<?xf64, strided<[1], offset: ?>>
    %s = scf.for %j = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f64) {
      %v = memref.load %row[%j] : memref<?xf64, strided<[1], offset: ?>>
      %a2 = arith.addf %acc, %v : f64
      scf.yield %a2 : f64
    }
    %t = memref.transpose %m affine_map<(d0, d1) -> (d1, d0)> : memref<?x?xf64> to memref<?x?xf64, strided<[?, ?], offset: ?>>
    %tv = memref.load %t[%c0, %i] : memref<?x?xf64, strided<[?, ?], offset: ?>>
    %flat = memref.collapse_shape %m [[0, 1]] : memref<?x?xf64> into memref<?xf64>
    %fv = memref.load %flat[%i] : memref<?xf64>
    %e = memref.expand_shape %flat [[0, 1]] output_shape [%c1, %nk] : memref<?xf64> into memref<?x?xf64>
    %ev = memref.load %e[%c0, %i] : memref<?x?xf64>
    %d = memref.dim %m, %c1 : memref<?x?xf64>
    %df = arith.index_cast %d : index to i64
    %dff = arith.sitofp %df : i64 to f64
    %u1 = arith.addf %s, %tv : f64
    %u2 = arith.addf %u1, %fv : f64
    %u3 = arith.addf %u2, %ev : f64
    %u4 = arith.addf %u3, %dff : f64
    memref.store %u4, %y[%i] : memref<?xf64>""") + """  return
}
"""

# order[slot] = iv / 256 for the first thread of each block, slot from an atomic
# counter: the order in which blocks ran.
BLOCK_ORDER = """
func.func @order(%order: memref<?xi64>, %counter: memref<1xi64>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c256 = arith.constant 256 : index
  %one = arith.constant 1 : i64
""" + ploop("%i", "%c0", "%n", "%c1", """    %t = arith.remui %i, %c256 : index
    %first = arith.cmpi eq, %t, %c0 : index
    scf.if %first {
      %slot = "memref.atomic_rmw"(%one, %counter, %c0) <{kind = 1 : i64}> : (i64, memref<1xi64>, index) -> i64
      %b = arith.divui %i, %c256 : index
      %b64 = arith.index_cast %b : index to i64
      %s = arith.index_cast %slot : i64 to index
      memref.store %b64, %order[%s] : memref<?xi64>
    }""") + """  return
}
"""


# y[i] = sum_j a[i, j] * s by a nested scf.parallel with a reduction (sequential in
# the kernel); alloca'd per-thread scratch holds the partial sum.
NESTED = """
func.func @nested(%a: memref<?x?xf64>, %y: memref<?xf64>, %n: index, %m: index, %s: f64) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
""" + ploop("%i", "%c0", "%n", "%c1", ploop("%j", "%c0", "%m", "%c1", """    %v = memref.load %a[%i, %j] : memref<?x?xf64>
    %red = arith.mulf %v, %s : f64""", init="%zero", result="%r", rtype="f64",
                                           combine="arith.addf") + """    %tmp = memref.alloca() : memref<2xf64>
    memref.store %r, %tmp[%c1] : memref<2xf64>
    %t = memref.load %tmp[%c1] : memref<2xf64>
    memref.store %t, %y[%i] : memref<?xf64>""") + """  return
}
"""

#: (MLIR constant, C/numpy value) stored by the constants kernel, f64 then i64.
FLOAT_CONSTANTS = ["0.1", "-0.0", "1.0e300", "0x7FF0000000000000", "0xFFF0000000000000",
                   "0x7FF8000000000000", "4.9406564584124654e-324"]
INT_CONSTANTS = ["0", "-1", "9223372036854775807", "-9223372036854775808", "123456789012"]


def constants_kernel() -> str:
    """``fout[i, k]``/``iout[i, k]`` = the k-th constant: literals printed exactly."""
    lines = []
    for k, c in enumerate(FLOAT_CONSTANTS):
        lines.append(f"""    %f{k} = arith.constant {c} : f64
    %kf{k} = arith.constant {k} : index
    memref.store %f{k}, %fout[%i, %kf{k}] : memref<?x?xf64>""")
    for k, c in enumerate(INT_CONSTANTS):
        lines.append(f"""    %q{k} = arith.constant {c} : i64
    %kq{k} = arith.constant {k} : index
    memref.store %q{k}, %iout[%i, %kq{k}] : memref<?x?xi64>""")
    lines.append("""    %b = arith.constant true
    %h = arith.constant 0.5 : f32
    %hh = arith.extf %h : f32 to f64
    %sel = arith.select %b, %hh, %f0 : f64
    %klast = arith.constant 7 : index
    memref.store %sel, %fout[%i, %klast] : memref<?x?xf64>""")
    return f"""
func.func @consts(%fout: memref<?x?xf64>, %iout: memref<?x?xi64>, %n: index) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
{ploop("%i", "%c0", "%n", "%c1", chr(10).join(lines))}  return
}}
"""


#: (combining op, element type, init) of the reductions of the "reduce_kinds" set: one
#: function ``@red_<k>(%x: memref<?xT>, %n: index) -> T`` each.
REDUCE_KINDS = [
    ("arith.mulf", "f64", "1.0"), ("arith.minimumf", "f64", "0x7FF0000000000000"),
    ("arith.maxnumf", "f64", "0xFFF0000000000000"), ("arith.minnumf", "f32", "1.0e30"),
    ("arith.muli", "i64", "1"), ("arith.maxsi", "i64", "-100"), ("arith.minsi", "i32", "100"),
    ("arith.maxui", "i64", "0"), ("arith.minui", "i64", "-1"), ("arith.ori", "i64", "0"),
    ("arith.andi", "i64", "-1"), ("arith.xori", "i64", "0"), ("arith.addi", "i32", "5"),
]


def reduce_kinds_kernel() -> str:
    funcs = []
    for k, (op, t, init) in enumerate(REDUCE_KINDS):
        funcs.append(f"""
func.func @red_{k}(%x: memref<?x{t}>, %n: index) -> {t} {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant {init} : {t}
{ploop("%i", "%c0", "%n", "%c1", f"    %red = memref.load %x[%i] : memref<?x{t}>",
       init="%z", result="%r", rtype=t, combine=op)}  return %r : {t}
}}
""")
    return "".join(funcs)


@dataclass
class Kernel:
    """A test program: MLIR source of host functions with parallel loops."""

    name: str
    source: str


KERNELS = {
    "math_f64": Kernel("math_f64", math_kernel("f64")),
    "math_f32": Kernel("math_f32", math_kernel("f32")),
    "gather": Kernel("gather", GATHER),
    "scatter": Kernel("scatter", SCATTER_F32),
    "stencil": Kernel("stencil", STENCIL),
    "reductions": Kernel("reductions", REDUCTIONS),
    "control": Kernel("control", CONTROL),
    "cmpf": Kernel("cmpf", cmpf_kernel()),
    "ints": Kernel("ints", int_kernel()),
    "views": Kernel("views", VIEWS),
    "order": Kernel("order", BLOCK_ORDER),
    "nested": Kernel("nested", NESTED),
    "constants": Kernel("constants", constants_kernel()),
    "reduce_kinds": Kernel("reduce_kinds", reduce_kinds_kernel()),
}


def outlined(source: str) -> ModuleOp:
    """Parse, verify and outline ``source``."""
    module = Parser(context(), source).parse_module()
    module.verify()
    OutlineParallelLoopsPass().apply(context(), module)
    module.verify()
    return module


def nvcc_ptx(source: str, tmp_path) -> None:
    """Compile ``source`` with ``nvcc -ptx -arch=sm_90 -x cu`` (fails the test on an
    error)."""
    cu = tmp_path / "kernels.cu"
    cu.write_text(source)
    out = subprocess.run(["nvcc", "-ptx", "-arch=sm_90", "-x", "cu", str(cu), "-o",
                          str(tmp_path / "kernels.ptx")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + "\n" + source
    assert "warning" not in out.stderr, out.stderr  # e.g. a variable set but never used
    assert ".entry" in (tmp_path / "kernels.ptx").read_text()


@pytest.mark.parametrize("name", list(KERNELS))
def test_nvcc_compiles(name, tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not on PATH")
    nvcc_ptx(print_cuda(outlined(KERNELS[name].source)), tmp_path)


def test_translation_unit_shape():
    text = print_cuda(outlined(KERNELS["scatter"].source))
    assert text.startswith("// CUDA C of isozyme's kernels")
    assert "#include <stdint.h>" in text
    assert 'extern "C" __global__ void scatter_k0(iz_memref_int64_t_1 p0, iz_memref_float_1 p1, ' in text
    assert ("typedef struct { float* allocated; float* aligned; int64_t offset; "
            "int64_t sizes[1]; int64_t strides[1]; } iz_memref_float_1;") in text
    assert "atomicAdd(&" in text
    assert "atomicCAS" not in text  # only the helpers a kernel uses are printed


def test_atomic_cas_for_other_kinds():
    text = print_cuda(outlined(KERNELS["reductions"].source))
    assert "iz_atomic_maximumf_float" in text and "atomicCAS" in text
    assert "__uint_as_float" in text
    # sumsq: addf on a double is atomicAdd.
    assert "double v" in text and "atomicAdd(&" in text


def test_reductions_combine_a_warp_before_the_atomic():
    text = print_cuda(outlined(KERNELS["reductions"].source))
    device, host = text.split("#ifdef __CUDA_ARCH__", 1)[1].split("#else", 1)
    assert "__shfl_down_sync(0xffffffffu" in device
    assert "if ((threadIdx.x & 31u) == 0u)" in device
    assert "__shfl" not in host.split("#endif")[0]


def test_unused_atomic_results_are_not_declared():
    # a reduction's atomic (warp-aggregated) and a scatter's: their old values are not
    # used, so no variable holds them (nvcc would warn: set but never used)
    for name, calls in (("reductions", ("atomicAdd(", "iz_atomic_maximumf_float(")),
                        ("scatter", ("atomicAdd(",))):
        text = print_cuda(outlined(KERNELS[name].source))
        lines = [ln.strip() for ln in text.splitlines()
                 if any(c in ln for c in calls) and "__device__" not in ln
                 and "old =" not in ln and "return" not in ln]
        assert lines, name
        for ln in lines:
            assert ln.startswith(("(void)", "if ((threadIdx.x & 31u) == 0u) (void)")), ln


def _alloc_kernel(alloc: str, size: str = "%c3") -> str:
    """A loop whose body allocates ``alloc`` (``{size}`` substituted), fills and reads
    it, and deallocates it (what an ``np.zeros(3)`` in a ``prange`` body becomes)."""
    return """
func.func @local(%x: memref<?xf64>, %y: memref<?xf64>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
""" + ploop("%i", "%c0", "%n", "%c1", f"""    %t = {alloc.format(size=size)}
    %v = memref.load %x[%i] : memref<?xf64>
    memref.store %v, %t[%c1, %c1] : memref<?x3xf64>
    %w = memref.load %t[%c1, %c1] : memref<?x3xf64>
    %u = arith.mulf %w, %w : f64
    memref.store %u, %y[%i] : memref<?xf64>
    memref.dealloc %t : memref<?x3xf64>""") + """  return
}
"""


def test_alloc_of_constant_size_is_a_per_thread_array(tmp_path):
    text = print_cuda(outlined(_alloc_kernel("memref.alloc({size}) : memref<?x3xf64>")))
    assert "double buf" in text and "[9];" in text  # 3 x 3, row-major
    assert "malloc" not in text and "free(" not in text
    assert "ends here (a per-thread array)" in text
    if shutil.which("nvcc") is not None:
        nvcc_ptx(text, tmp_path)


def test_alloc_of_run_time_size_is_refused():
    module = outlined(_alloc_kernel("memref.alloc({size}) : memref<?x3xf64>", size="%n"))
    with pytest.raises(UnsupportedError, match=r"memref.alloc of memref<\?x3xf64> in a "
                       r"GPU kernel with a size known only at run time"):
        print_cuda(module)


def test_alloc_larger_than_a_per_thread_array_is_refused():
    src = _alloc_kernel("memref.alloc({size}) : memref<?x3xf64>").replace(
        "%c3 = arith.constant 3 : index", "%c3 = arith.constant 3 : index\n"
        "  %big = arith.constant 100000 : index")
    module = outlined(src.replace("memref.alloc(%c3)", "memref.alloc(%big)"))
    with pytest.raises(UnsupportedError, match="memref.alloc of 300000 elements in a GPU "
                       "kernel: a per-thread array holds at most 4096"):
        print_cuda(module)


def test_strided_memref_reads_strides_from_descriptor():
    text = print_cuda(outlined(KERNELS["stencil"].source))
    assert ".strides[0]" in text and ".strides[1]" in text and ".offset" in text
    # An identity-layout memref has a static innermost stride of 1.
    gather = print_cuda(outlined(KERNELS["gather"].source))
    assert ".strides[0]" not in gather


def test_float_constants_are_exact():
    src = """
func.func @c(%y: memref<?xf64>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %a = arith.constant 0.1 : f64
""" + ploop("%i", "%c0", "%n", "%c1",
            "    memref.store %a, %y[%i] : memref<?xf64>") + "  return\n}\n"
    text = print_cuda(outlined(src))
    assert (0.1).hex() in text


def _gpu_module(body: str, args: str = "%a: memref<?xf64>") -> ModuleOp:
    src = f"""
builtin.module attributes {{gpu.container_module}} {{
  "gpu.module"() <{{sym_name = "isozyme_kernels"}}> ({{
    "gpu.func"() <{{function_type = (memref<?xf64>) -> (), kernel}}> ({{
    ^bb0({args}):
{body}
      "gpu.return"() : () -> ()
    }}) {{sym_name = "k"}} : () -> ()
  }}) : () -> ()
}}
"""
    module = Parser(context(), src).parse_module()
    module.verify()
    return module


def test_unknown_op_is_refused_by_name():
    module = _gpu_module("""
      %l = memref.alloca() : memref<4xf64>
      %m = memref.alloca() : memref<4xf64>
      "memref.copy"(%l, %m) : (memref<4xf64>, memref<4xf64>) -> ()
""")
    with pytest.raises(UnsupportedError, match="memref.copy in a GPU kernel: the CUDA "
                       "printer does not support it"):
        print_cuda(module)


def test_unsupported_type_is_refused():
    module = _gpu_module("""
      %c = arith.constant 1.0 : f16
""")
    with pytest.raises(UnsupportedError, match="type f16 in a GPU kernel"):
        print_cuda(module)


def test_handwritten_gpu_func_prints_ids():
    module = _gpu_module("""
      %b = "gpu.block_id"() <{dimension = #gpu<dim x>}> : () -> index
      %t = "gpu.thread_id"() <{dimension = #gpu<dim y>}> : () -> index
      %g = "gpu.grid_dim"() <{dimension = #gpu<dim z>}> : () -> index
""")
    text = print_cuda(module)
    assert "(int64_t)blockIdx.x" in text and "(int64_t)threadIdx.y" in text
    assert "(int64_t)gridDim.z" in text


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_prologue_defines_the_integer_types_without_system_headers(tmp_path):
    # NVRTC (CuPy's RawModule) defines __CUDACC_RTC__ and has no <stdint.h>: the
    # prologue then defines the fixed-width types itself, with the right sizes
    from isozyme.compiler.gpu.cuda_printer import PROLOGUE

    src = tmp_path / "prologue.cpp"
    src.write_text(PROLOGUE + "\n".join(
        f"static_assert(sizeof({t}) == {n}, \"{t}\");"
        for t, n in (("int8_t", 1), ("uint8_t", 1), ("int16_t", 2), ("uint16_t", 2),
                     ("int32_t", 4), ("uint32_t", 4), ("int64_t", 8), ("uint64_t", 8))
    ) + "\n")
    for flags in (["-D__CUDACC_RTC__", "-nostdinc"], []):
        proc = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", *flags, "-x", "c++",
                               str(src)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
